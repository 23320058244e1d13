// Replica state beside the target: the three stores (a datastore folder, an S3 bucket on moto,
// block blobs on Azurite) do the same conditional writes, the move lease names its holder and
// is taken over only from a dead holder, and a pass that died on one machine is resumed safely
// on another that has none of its journal.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { acquireLease, fileStateStore, type StateStore } from "../../sdk/contracts/state-store.ts";
import { s3StateStore } from "../../sdk/clouds/aws/state-store.ts";
import { blobStateStore } from "../../sdk/clouds/azure/state-store.ts";
import { vsphereStateStore } from "../../sdk/clouds/vsphere/state-store.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { rawFileReplica } from "../../sdk/clouds/local/replica-target.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { isPortableError } from "../../sdk/errors.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { replicate } from "../../sdk/transfer/replicate.ts";
import { TargetReplicaStore } from "../../sdk/transfer/target-store.ts";
import { fileSha256 } from "../harness/disk.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { MiB, spread, writeBlocks } from "./replica-helpers.ts";

const coded = (code: string) => (error: unknown) => isPortableError(error) && error.code === code;

describe("state stores beside the target", () => {
  let moto: Moto;
  let azurite: Azurite;
  let sim: Vcsim;
  let dir: string;
  const stores: Array<{ name: string; make: () => Promise<StateStore> }> = [];
  before(async () => {
    [moto, azurite, sim] = await Promise.all([startMoto(), startAzurite(), startVcsim()]);
    dir = await mkdtemp(join(tmpdir(), "pw-state-"));
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey });
    const container = await containerFor(azurite, "disks");
    stores.push(
      { name: "datastore folder", make: async () => fileStateStore(join(dir, "ds", ".portable-state")) },
      { name: "S3 bucket (moto)", make: () => s3StateStore({ bucket: "pw-state-test", region: moto.region, endpoint: moto.endpoint }) },
      { name: "blob container (Azurite)", make: async () => blobStateStore(container) },
      { name: "VM folder (vcsim)", make: async () => vsphereStateStore({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem }, { datacenter: "DC0", datastore: "LocalDS_0", path: "web" }) },
    );
  });
  after(async () => {
    await Promise.all([moto?.stop(), azurite?.stop(), sim?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  for (const index of [0, 1, 2, 3]) {
    it(`GIVEN the ${["datastore folder", "S3 bucket (moto)", "blob container (Azurite)", "VM folder on a vSphere datastore (vcsim)"][index]} WHEN written with conditions THEN a create fails if present, a replace fails if changed, and a lease names its holder`, async () => {
      const store = await stores[index]!.make();
      assert.equal(await store.get("web.absent.json"), undefined);
      const first = await store.put("web.record.json", '{"v":1}', { ifAbsent: true });
      await assert.rejects(store.put("web.record.json", '{"v":2}', { ifAbsent: true }), coded("STATE_CONFLICT"), stores[index]!.name);
      const second = await store.put("web.record.json", '{"v":2}', { ifMatch: first });
      await assert.rejects(store.put("web.record.json", '{"v":3}', { ifMatch: first }), coded("STATE_CONFLICT"), "a stale etag");
      assert.deepEqual(await store.get("web.record.json"), { text: '{"v":2}', etag: second });
      await store.delete("web.record.json");
      assert.equal(await store.get("web.record.json"), undefined);

      const lease = await acquireLease(store, "web.lease.json", "move web local → aws");
      await assert.rejects(acquireLease(store, "web.lease.json", "move web local → azure"), (error: unknown) => {
        assert.ok(coded("STATE_LEASE_HELD")(error));
        assert.match((error as Error).message, new RegExp(`held by pid ${process.pid} on ${hostname()} \\(move web local → aws\\)`));
        return true;
      });
      await lease.release();
      assert.equal(await store.get("web.lease.json"), undefined, "released");
      await (await acquireLease(store, "web.lease.json", "again")).release();
      await store.tidy?.();
      assert.equal(await store.get("web.lease.json"), undefined);
    });
  }

  it("GIVEN a lease whose holder died WHEN another run asks THEN it is taken over: at once from the same host, after expiry from another", async () => {
    const store = fileStateStore(join(dir, "leases"));
    // A process that is gone: a child that has exited.
    const gone = spawnSync(process.execPath, ["-e", "0"]).pid;
    await store.put("a.lease.json", JSON.stringify({ host: hostname(), pid: gone, purpose: "killed", acquiredAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 3_600_000).toISOString() }));
    await (await acquireLease(store, "a.lease.json", "after a kill")).release();
    // Another host's live-looking lease is held until it expires.
    await store.put("b.lease.json", JSON.stringify({ host: "elsewhere", pid: 1, purpose: "up on a laptop", acquiredAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 3_600_000).toISOString() }));
    await assert.rejects(acquireLease(store, "b.lease.json", "ci"), (error: unknown) => coded("STATE_LEASE_HELD")(error) && /held by pid 1 on elsewhere \(up on a laptop\)/.test((error as Error).message));
    await store.put("b.lease.json", JSON.stringify({ host: "elsewhere", pid: 1, purpose: "up on a laptop", acquiredAt: new Date(0).toISOString(), expiresAt: new Date(Date.now() - 1000).toISOString() }));
    await (await acquireLease(store, "b.lease.json", "ci")).release();
  });

  it("GIVEN a pass that died on machine A WHEN machine B (no journal) runs it again THEN every block is rewritten and the target equals the source; on A it resumes from its journal", async () => {
    const source = join(dir, "src.raw");
    const target = join(dir, "dst.raw");
    await writeBlocks(source, 32 * MiB, spread(24, 64), "v1");
    const beside = fileStateStore(join(dir, "beside"));
    const pass = async (cache: string, abortAfter?: number) => {
      const disk = await openDisk(source, { format: "raw" });
      const controller = new AbortController();
      let sent = 0;
      try {
        return await replicate(disk, rawFileReplica({ path: target, virtualSizeBytes: disk.virtualSizeBytes }), {
          store: new TargetReplicaStore(beside, new FileReplicaStore(cache)),
          key: "web.disk0",
          signal: controller.signal,
          onBlockSent: () => {
            if (abortAfter !== undefined && ++sent >= abortAfter) controller.abort(new Error("killed"));
          },
        });
      } finally {
        await disk.close();
      }
    };
    await assert.rejects(pass(join(dir, "cache-a"), 6));
    assert.ok((await beside.get("web.disk0.pass.json")) !== undefined, "the pass is marked beside the target");
    // Garbage where the dead pass may have written: only a full rewrite makes the target right.
    await writeBlocks(target, undefined, [1, 2, 3], "torn");
    const onB = await pass(join(dir, "cache-b"));
    assert.equal(onB.resumed, true);
    assert.equal(await fileSha256(target), await fileSha256(source));
    assert.equal(onB.blocksSent, 64, "every block, data and zero, was written again: nothing on the target was trusted");
    assert.equal(await beside.get("web.disk0.pass.json"), undefined, "the commit drops the marker");

    // The same on A, which kept its journal: only what it had not acknowledged.
    await writeBlocks(source, undefined, spread(8, 64, 3), "v2");
    await assert.rejects(pass(join(dir, "cache-a2"), 3));
    const onA = await pass(join(dir, "cache-a2"));
    assert.equal(onA.resumed, true);
    assert.ok(onA.blocksSent < 8, `A resumed from its journal: ${onA.blocksSent} block(s) sent`);
    assert.equal(await fileSha256(target), await fileSha256(source));
  });
});
