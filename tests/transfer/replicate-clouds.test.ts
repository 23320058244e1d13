// Replication into the cloud targets through the real emulators: a resync after N changed
// blocks sends exactly N requests (counted at a loopback proxy), and an EBS pass killed with
// SIGKILL resumes into the same pending snapshot. moto ignores ParentSnapshotId and Azurite's
// page-range diff is wrong (DESIGN.md), so content is proven by reading every block back and
// comparing hashes with the source file.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDisk } from "../../sdk/disk/open.ts";
import { createAwsClients, type AwsClients } from "../../sdk/clouds/aws/clients.ts";
import { ebsReplica } from "../../sdk/clouds/aws/replica-target.ts";
import { pageBlobReplica } from "../../sdk/clouds/azure/replica-target.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import type { ReplicaTarget } from "../../sdk/contracts/replica-target.ts";
import { replicate } from "../../sdk/transfer/replicate.ts";
import { verifyReplica } from "../../sdk/transfer/verify.ts";
import { buildManifest } from "../../sdk/disk/manifest.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { useMotoCredentials } from "../clouds/aws/helpers.ts";
import { MiB, spread, writeBlocks } from "./replica-helpers.ts";

const SIZE = 1024 * MiB; // EBS rounds to whole GiB
const BLOCKS = SIZE / (512 * 1024);

function total(forwarded: ReadonlyMap<string, number>, match: (key: string) => boolean): number {
  let sum = 0;
  for (const [key, count] of forwarded) if (match(key)) sum += count;
  return sum;
}

async function pass(path: string, target: ReplicaTarget, store: FileReplicaStore, key: string) {
  const source = await openDisk(path, { format: "raw" });
  try {
    return await replicate(source, target, { store, key });
  } finally {
    await source.close();
  }
}

/** Reads the committed replica back block by block and compares with the source's manifest. */
async function assertReplicaEquals(path: string, target: ReplicaTarget, store: FileReplicaStore, key: string): Promise<void> {
  const committed = await store.loadCommitted(key);
  assert.ok(committed);
  const source = await openDisk(path, { format: "raw" });
  const expected = await buildManifest(source);
  await source.close();
  assert.equal(committed.manifest.digest(), expected.digest(), "our manifest of the replica is the source's");
  const back = await target.openReadBack(committed);
  const result = await verifyReplica(back, expected, { mode: "full" });
  await back.close();
  assert.deepEqual(result.mismatches, [], "every block read back equals the source");
}

describe("replicate() into EBS (moto) and a page blob (Azurite)", () => {
  let moto: Moto;
  let azurite: Azurite;
  let awsProxy: FaultProxy;
  let azureProxy: FaultProxy;
  let clients: AwsClients;
  let dir: string;

  before(async () => {
    [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
    useMotoCredentials(moto.credentials);
    awsProxy = await startFaultProxy(moto.endpoint, () => undefined);
    azureProxy = await startFaultProxy(new URL(azurite.blobEndpoint).origin, () => undefined);
    clients = createAwsClients({ region: moto.region, endpoint: awsProxy.endpoint });
    dir = await mkdtemp(join(tmpdir(), "pw-replicate-clouds-"));
  });
  after(async () => {
    clients?.destroy();
    await Promise.all([awsProxy?.stop(), azureProxy?.stop()]);
    await Promise.all([moto?.stop(), azurite?.stop()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN an EBS replica WHEN N blocks change THEN the next pass is a child snapshot with exactly N PutSnapshotBlock requests", async () => {
    const path = join(dir, "ebs.raw");
    const store = new FileReplicaStore(join(dir, "state-ebs"));
    await writeBlocks(path, SIZE, spread(40, BLOCKS), "v1");
    const target = ebsReplica({ ebs: clients.ebs, ec2: clients.ec2, virtualSizeBytes: SIZE });
    const first = await pass(path, target, store, "ebs");
    assert.equal(first.blocksSent, 40);

    const changed = spread(9, BLOCKS, 3);
    await writeBlocks(path, undefined, changed, "v2");
    const before = total(awsProxy.forwarded, (k) => k.startsWith("PUT /snapshots/"));
    const second = await pass(path, target, store, "ebs");
    const puts = total(awsProxy.forwarded, (k) => k.startsWith("PUT /snapshots/")) - before;
    assert.equal(puts, changed.length, "one PutSnapshotBlock per changed block, none more");
    assert.equal(second.blocksSent, changed.length);
    assert.notEqual(second.location, first.location, "the pass made a new (child) snapshot");
    assert.equal(String(second.targetState.chain).split(",").length, 2);
    await assertReplicaEquals(path, target, store, "ebs");
  });

  it("GIVEN a page-blob replica WHEN N blocks change THEN the resync sends exactly N Put Page requests", async () => {
    const container = await containerFor(azurite, "replicas", azureProxy.endpoint);
    const client = container.getPageBlobClient("disk0.vhd");
    const path = join(dir, "blob.raw");
    const store = new FileReplicaStore(join(dir, "state-blob"));
    await writeBlocks(path, SIZE, spread(40, BLOCKS, 5), "v1");
    const target = pageBlobReplica({ client, virtualSizeBytes: SIZE });
    await pass(path, target, store, "blob");

    const changed = spread(6, BLOCKS, 8);
    await writeBlocks(path, undefined, changed, "v2");
    const isPut = (k: string) => k.startsWith("PUT ") && k.endsWith("/replicas/disk0.vhd");
    const before = total(azureProxy.forwarded, isPut);
    const second = await pass(path, target, store, "blob");
    assert.equal(total(azureProxy.forwarded, isPut) - before, changed.length, "one Put Page per changed block (each 512 KiB, under the 4 MiB limit)");
    assert.equal(second.blocksSent, changed.length);
    await assertReplicaEquals(path, target, store, "blob");
  });

  it("GIVEN an EBS pass killed with SIGKILL WHEN rerun THEN it completes the same pending snapshot without re-sending finished blocks", async () => {
    const path = join(dir, "ebs-kill.raw");
    const storeDir = join(dir, "state-ebs-kill");
    const data = spread(80, BLOCKS, 11);
    await writeBlocks(path, SIZE, data, "v1");
    const child = spawn(process.execPath, [join(REPO_ROOT, "tests/transfer/fixtures/replicate-child.ts"), path, storeDir, "k", "ebs", awsProxy.endpoint, moto.region], {
      env: { ...process.env, PW_WRITE_DELAY_MS: "40" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let acknowledged = 0;
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        acknowledged += chunk.toString().split("\n").filter((l) => l.startsWith("done ")).length;
        if (acknowledged >= 25 && child.exitCode === null) child.kill("SIGKILL");
      });
      child.once("exit", (code, signal) => (signal === "SIGKILL" ? resolve() : reject(new Error(`child ended with ${code}/${signal} before the kill`))));
    });
    const store = new FileReplicaStore(storeDir);
    const pending = await store.loadPending("k");
    assert.ok(pending && pending.done.size >= 25);
    const snapshotId = pending.targetState.snapshotId;
    const putsBefore = new Map(awsProxy.forwarded);
    const target = ebsReplica({ ebs: clients.ebs, ec2: clients.ec2, virtualSizeBytes: SIZE });
    const rerun = await pass(path, target, store, "k");
    assert.equal(rerun.resumed, true);
    assert.equal(rerun.location, snapshotId, "the rerun completed the snapshot the killed run started");
    for (const index of pending.done.keys()) {
      const key = `PUT /snapshots/${snapshotId}/blocks/${index}`;
      assert.equal(awsProxy.forwarded.get(key), putsBefore.get(key), `block ${index} was not sent again`);
    }
    assert.equal(rerun.blocksSent + pending.done.size, data.length);
    await assertReplicaEquals(path, target, store, "k");
  });
});
