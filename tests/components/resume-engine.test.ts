// An `up` that fails mid-transfer (PutSnapshotBlock answers 503 until the retries run out) is
// followed by an `up` that resumes: the same pending snapshot is completed and no block the
// failed run finished is sent again (counted at the loopback proxy, per block index).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Disk } from "../../components/providers/disk.ts";
import { openSource } from "../../sdk/clouds/registry.ts";
import { qemuRawSha256, sourceSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { writeBlocks, spread, MiB } from "../transfer/replica-helpers.ts";

describe("portable:Disk resumes after a failed up (EBS on moto, faults at a proxy)", () => {
  let moto: Moto;
  let proxy: FaultProxy;
  let env: InlineStack;
  let failing = true;
  let puts = 0;
  let image = "";

  before(async () => {
    moto = await startMoto();
    // After 30 blocks, every PutSnapshotBlock fails with 503 while `failing` holds.
    proxy = await startFaultProxy(moto.endpoint, (context) => {
      if (context.method !== "PUT" || !context.url.includes("/blocks/")) return undefined;
      puts++;
      return failing && puts > 30 ? { kind: "status", status: 503, body: "{\"message\":\"injected\"}", headers: { "content-type": "application/json" } } : undefined;
    });
    const credentials = { AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey };
    Object.assign(process.env, credentials);
    let dir = "";
    env = await createInlineStack("pw-resume", async () => {
      const disk = new Disk("db-disk0", {
        workload: "db",
        disk: "disk0",
        source: image,
        sourceFormat: "raw",
        target: `ebs://?region=${moto.region}&endpoint=${encodeURIComponent(proxy.endpoint)}`,
        stateDir: join(dir, "state"),
        verify: "full",
      });
      return { location: disk.location, bytesSent: disk.bytesSent };
    }, credentials);
    dir = env.dir;
    image = join(dir, "db.raw");
    await writeBlocks(image, 1024 * MiB, spread(80, 2048, 4), "db");
  });
  after(async () => {
    await env?.cleanup();
    await proxy?.stop();
    await moto?.stop();
  });

  it("GIVEN an up whose uploads fail after 30 blocks WHEN up runs again THEN it resumes and re-sends no finished block", async () => {
    await assert.rejects(env.stack.up(), /RETRIES_EXHAUSTED|503|injected/);
    const firstRun = new Map(proxy.forwarded);
    const doneBefore = [...firstRun.entries()].filter(([k]) => k.startsWith("PUT /snapshots/") && k.includes("/blocks/"));
    assert.ok(doneBefore.length >= 20, `some blocks were stored before the faults (${doneBefore.length})`);

    failing = false;
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const snapshot = result.outputs.location!.value as string;
    let resent = 0;
    let sentNow = 0;
    for (const [key, count] of proxy.forwarded) {
      if (!key.startsWith(`PUT /snapshots/${snapshot}/blocks/`)) continue;
      const before = firstRun.get(key) ?? 0;
      if (count > before) sentNow++;
      if (before > 0 && count > before) resent++;
    }
    assert.ok(doneBefore.every(([k]) => k.startsWith(`PUT /snapshots/${snapshot}/`)), "the rerun completed the snapshot the failed run started");
    assert.equal(resent, 0, "no block stored by the failed run was sent again");
    assert.equal(sentNow + doneBefore.length, 80, `${doneBefore.length} before + ${sentNow} now = every data block`);
    const back = await openSource(`ebs://${snapshot}?region=${moto.region}&endpoint=${encodeURIComponent(moto.endpoint)}&size=${1024 * MiB}`);
    try {
      assert.equal(await sourceSha256(back), await qemuRawSha256(image, "raw"));
    } finally {
      await back.close();
    }
  });
});
