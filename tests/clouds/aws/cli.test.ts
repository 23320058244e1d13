import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { openDisk } from "../../../sdk/disk/open.ts";
import { BlockManifest, buildManifest, changedBlocks, type ManifestJson } from "../../../sdk/disk/manifest.ts";
import { fileSha256, qemuImg } from "../../harness/disk.ts";
import { startFaultProxy, type FaultProxy } from "../../harness/fault-proxy.ts";
import { startMoto, type Moto } from "../../harness/moto.ts";
import { REPO_ROOT } from "../../harness/tools.ts";
import { BLOCK, buildMixedRaw, MiB, putsFor } from "./helpers.ts";

const exec = promisify(execFile);
const CLI = join(REPO_ROOT, "sdk", "cli", "portable.ts");
const IMAGE_BYTES = 64 * MiB;

describe("portable convert to and from ebs:// (moto)", () => {
  let moto: Moto;
  let proxy: FaultProxy;
  let dir: string;

  async function portable(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    // Credentials reach the CLI the way they reach it in real use: the default chain (here, env).
    const env = { ...process.env, AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey, AWS_EC2_METADATA_DISABLED: "true" };
    try {
      const { stdout, stderr } = await exec(process.execPath, [CLI, ...args], { env, maxBuffer: 16 * MiB });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }
  function assertNoSecrets(text: string): void {
    assert.ok(!text.includes(moto.credentials.secretAccessKey) && !text.includes(moto.credentials.accessKeyId), "no credential in CLI output");
  }

  before(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy(moto.endpoint, () => undefined);
    dir = await mkdtemp(join(tmpdir(), "pw-ebs-cli-"));
  });
  after(async () => {
    await proxy?.stop();
    await moto?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a qcow2 WHEN converted to ebs://, read back to raw, then a changed copy sent as a child THEN bytes match, an AMI is registered and the child carries only the delta", async () => {
    const raw = join(dir, "v1.raw");
    await buildMixedRaw(raw, IMAGE_BYTES, 5);
    const qcow2 = join(dir, "v1.qcow2");
    await qemuImg("convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
    const base = `region=${moto.region}&endpoint=${encodeURIComponent(proxy.endpoint)}`;
    const manifest = join(dir, "v1.manifest.json");

    const up = await portable("convert", qcow2, `ebs://?${base}&description=cli&tag=app=web&manifest-out=${encodeURIComponent(manifest)}&image=pw-cli&boot=uefi`);
    assert.equal(up.code, 0, up.stderr);
    const match = /^(snap-[0-9a-f]+) (ami-[0-9a-f]+)\n$/.exec(up.stdout);
    assert.ok(match, `stdout names the snapshot and the AMI: ${up.stdout}`);
    const snapshotId = match[1]!;
    assert.match(up.stderr, /convert qcow2 → ebs: 100%/);
    assertNoSecrets(up.stdout + up.stderr);
    const source = await openDisk(qcow2);
    const expected = await buildManifest(source).finally(() => source.close());
    assert.deepEqual(JSON.parse(await readFile(manifest, "utf8")), expected.toJSON(), "manifest-out holds our manifest");

    const back = join(dir, "back.raw");
    const down = await portable("convert", `ebs://${snapshotId}?${base}&size=${IMAGE_BYTES}`, back, "-O", "raw");
    assert.equal(down.code, 0, down.stderr);
    assertNoSecrets(down.stdout + down.stderr);
    assert.equal(await fileSha256(back), await fileSha256(raw));

    // A child: one block changed; the CLI sends that block only.
    const v2 = join(dir, "v2.raw");
    await copyFile(raw, v2);
    const changedIndex = expected.dataBlocks()[4]!;
    const file = await open(v2, "r+");
    await file.write(Buffer.alloc(BLOCK, 0x77), 0, BLOCK, changedIndex * BLOCK).finally(() => file.close());
    const child = await portable("convert", v2, `ebs://?${base}&parent=${snapshotId}&parent-manifest=${encodeURIComponent(manifest)}`);
    assert.equal(child.code, 0, child.stderr);
    const childId = child.stdout.trim();
    const v2Source = await openDisk(v2);
    const delta = changedBlocks(BlockManifest.fromJSON(expected.toJSON() as ManifestJson), await buildManifest(v2Source).finally(() => v2Source.close()));
    assert.deepEqual(delta, [changedIndex]);
    assert.deepEqual([...putsFor(proxy.forwarded, childId).keys()], delta);
  });

  it("GIVEN an ebs:// URL with an unknown key WHEN converting THEN exit 2 with EBS_URL_INVALID", async () => {
    const result = await portable("convert", join(dir, "none.raw"), `ebs://?region=${moto.region}&colour=blue`);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /EBS_URL_INVALID: .*unknown parameter "colour"/);
  });
});
