// portable:Disk through the real engine (built CLI, inline program, file:// backend), with
// dynamic resources only: a qcow2 placed on a local raw file, on EBS (moto) and in a page blob
// (Azurite); then moved, which copies from where the disk is now; then destroyed. Content is
// proven by reading every target back and hashing it against the source.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Disk } from "../../components/providers/disk.ts";
import { openSource } from "../../sdk/clouds/registry.ts";
import { qemuImg, qemuIo, qemuRawSha256, sourceSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { containerFor } from "../clouds/azure/helpers.ts";

async function hashOf(location: string): Promise<string> {
  const source = await openSource(location);
  try {
    return await sourceSha256(source);
  } finally {
    await source.close();
  }
}

describe("portable:Disk through the Pulumi engine (local file, EBS on moto, page blob on Azurite)", () => {
  let moto: Moto;
  let azurite: Azurite;
  let env: InlineStack;
  let target = "";
  let image = "";
  let expected = "";
  const outputs: Record<string, string> = {};

  before(async () => {
    [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
    await containerFor(azurite, "disks");
    const credentials = {
      AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    };
    Object.assign(process.env, credentials); // for reading back from this process
    let dir = "";
    env = await createInlineStack("pw-disk", async () => {
      const disk = new Disk("web-disk0", {
        workload: "web",
        disk: "disk0",
        source: image,
        target,
        stateDir: join(dir, "state"),
        verify: "full",
      });
      return { location: disk.location, bytesSent: disk.bytesSent, retained: disk.retained };
    }, credentials);
    dir = env.dir;
    image = join(dir, "web.qcow2");
    await qemuImg("create", "-q", "-f", "qcow2", image, "1G");
    await qemuIo("qcow2", image, ["write -P 0x5a 0 3M", "write -P 0x33 700M 1M", `write -P 0x11 ${1024 * 1024 * 1024 - 4096} 4k`]);
    expected = await qemuRawSha256(image, "qcow2");
  });
  after(async () => {
    await env?.cleanup();
    await Promise.all([moto?.stop(), azurite?.stop()]);
  });

  it("GIVEN a local target WHEN up THEN the raw replica holds the image", async () => {
    target = join(env.dir, "local", "web-disk0.raw");
    await import("node:fs/promises").then((fs) => fs.mkdir(join(env.dir, "local"), { recursive: true }));
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    outputs.local = result.outputs.location!.value as string;
    assert.equal(outputs.local, target);
    assert.equal(await hashOf(target), expected);
  });

  it("GIVEN the target changes to EBS WHEN up THEN the disk moves (copied from the local replica) and the local one is kept", async () => {
    target = `ebs://?region=${moto.region}&endpoint=${encodeURIComponent(moto.endpoint)}`;
    const result = await env.stack.up();
    assert.equal(result.summary.resourceChanges?.update, 1);
    const snapshot = result.outputs.location!.value as string;
    assert.match(snapshot, /^snap-/);
    assert.deepEqual(result.outputs.retained!.value, [outputs.local]);
    // moto ignores ParentSnapshotId, but this is a first snapshot: it holds every block.
    assert.equal(await hashOf(`ebs://${snapshot}?region=${moto.region}&endpoint=${encodeURIComponent(moto.endpoint)}&size=${1024 ** 3}`), expected);
  });

  it("GIVEN the target changes to a page blob WHEN up THEN the blob reads back as the image", async () => {
    target = `azblob://${azurite.accountName}/disks/web-disk0.vhd`;
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(await hashOf(target), expected);
  });

  it("GIVEN the target goes back to local WHEN up THEN only the blocks that differ are sent (none), and destroy removes every copy", async () => {
    target = join(env.dir, "local", "web-disk0.raw");
    const result = await env.stack.up();
    assert.equal(result.outputs.bytesSent!.value, 0, "the kept local replica already holds this content");
    assert.equal(await hashOf(target), expected);
    const destroyed = await env.stack.destroy();
    assert.equal(destroyed.summary.result, "succeeded");
    assert.equal(existsSync(target), false, "the local replica is gone");
    const blob = (await containerFor(azurite, "disks")).getPageBlobClient("web-disk0.vhd");
    assert.equal(await blob.exists(), false, "the page blob is gone");
  });
});
