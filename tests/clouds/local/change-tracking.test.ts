// Change tracking of a running local machine's disk (QEMU dirty bitmaps read over NBD): a pass
// after the first reads only what the guest wrote, and no write is ever missed. The guest writes
// through QEMU's own block layer (`qemu-io` over the monitor), so the bitmaps see every write
// as they would a real guest's. Each case ends with the replica equal to the disk, byte for byte.
import assert from "node:assert/strict";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatastore, type LocalDatastore } from "../../../sdk/clouds/local/datastore.ts";
import { machineFiles, machineStatus, startMachine, stopMachine } from "../../../sdk/clouds/local/lifecycle.ts";
import { defineMachine, type LocalMachineDefinition } from "../../../sdk/clouds/local/machine.ts";
import { freezeDisk, trackedChangedBytes, type TrackOptions } from "../../../sdk/clouds/local/point-in-time.ts";
import { connectQmp } from "../../../sdk/clouds/local/qmp.ts";
import { rawFileReplica } from "../../../sdk/clouds/local/replica-target.ts";
import { harvestBitmaps, isTrackingBitmap, sealHarvest } from "../../../sdk/clouds/local/change-tracking.ts";
import { FileReplicaStore } from "../../../sdk/transfer/checkpoint.ts";
import { replicate, type ReplicateResult } from "../../../sdk/transfer/replicate.ts";
import type { CommittedReplica } from "../../../sdk/contracts/replica-target.ts";
import { parseWorkload } from "../../../sdk/spec/workload.ts";
import { fileSha256 } from "../../harness/disk.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { buildManifest } from "../../../sdk/disk/manifest.ts";
import { readFile, mkdir } from "node:fs/promises";
import { commitPlacement, replicaKey, replicaStoreFor } from "../../../sdk/migrate/disk-placement.ts";
import { diskTargetFor } from "../../../sdk/migrate/targets.ts";
import { planWorkload } from "../../../sdk/migrate/workload-plan.ts";
import { placementSchema, type Placement } from "../../../sdk/spec/placement.ts";
import { localDiskTarget } from "../../../sdk/clouds/local/location.ts";
import { BLOCK, MiB, spread, writeBlocks } from "../../transfer/replica-helpers.ts";

const SIZE = 64 * MiB;
const KEY = "track.d0.target";

async function hmp(store: LocalDatastore, name: string, command: string): Promise<void> {
  const qmp = await connectQmp((await machineFiles(store, name)).qmpSocket);
  try {
    await qmp.execute("human-monitor-command", { "command-line": command });
  } finally {
    qmp.close();
  }
}

/** The guest writes `pattern` over 64 KiB at `offset`, through QEMU's block layer. */
function guestWrite(store: LocalDatastore, name: string, offset: number, pattern: number): Promise<void> {
  return hmp(store, name, `qemu-io drive0 "write -P ${pattern} ${offset} 64k"`);
}

async function bitmapsOf(store: LocalDatastore, name: string): Promise<string[]> {
  const qmp = await connectQmp((await machineFiles(store, name)).qmpSocket);
  try {
    const blocks = (await qmp.execute("query-block")) as Array<{ device: string; inserted?: { "dirty-bitmaps"?: Array<{ name: string }> } }>;
    return (blocks.find((b) => b.device === "drive0")?.inserted?.["dirty-bitmaps"] ?? []).map((b) => b.name).filter(isTrackingBitmap);
  } finally {
    qmp.close();
  }
}

describe("local change tracking: dirty bitmaps of a running machine's disk", () => {
  let root: string;
  let store: LocalDatastore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "pw-track-"));
    store = await openDatastore(root);
  });
  after(async () => {
    for (const name of ["track", "lost", "restart", "late", "preview"]) await stopMachine(store, name, { graceMs: 0 }).catch(() => {});
    await rm(root, { recursive: true, force: true });
  });

  async function machineOn(name: string): Promise<{ machine: LocalMachineDefinition; disk: string; replica: string; stateDir: string }> {
    const disk = join(root, `${name}.raw`);
    await writeBlocks(disk, SIZE, spread(24, SIZE / BLOCK), name); // not bootable: SeaBIOS keeps QEMU up
    const workload = parseWorkload({ name, memoryMiB: 128, disks: [{ id: "d0", sizeBytes: SIZE, bus: "sata" }], guestOs: { family: "linux" } });
    const machine = defineMachine(workload, { disks: { d0: { path: disk, format: "raw" } } });
    await startMachine(store, machine, { accel: "tcg" });
    return { machine, disk, replica: join(root, `${name}-replica.raw`), stateDir: join(root, `${name}-state`) };
  }

  async function pass(m: { machine: LocalMachineDefinition; replica: string; stateDir: string }, options: { track?: TrackOptions; afterFreeze?: () => Promise<void> } = {}): Promise<ReplicateResult> {
    const frozen = await freezeDisk(store, m.machine, "d0", options.track ?? { key: KEY });
    try {
      await options.afterFreeze?.();
      return await replicate(frozen.source, rawFileReplica({ path: m.replica, virtualSizeBytes: SIZE }), { store: new FileReplicaStore(m.stateDir), key: KEY });
    } finally {
      await frozen.release();
    }
  }

  it("GIVEN a tracked replica WHEN the guest writes, also between the tracker's start and the freeze and after the freeze THEN each later pass reads only the dirty ranges and the replica ends equal to the disk", async () => {
    const m = await machineOn("track");
    const first = await pass(m);
    assert.equal(first.scan, "full");
    assert.ok(first.bytesRead >= 24 * BLOCK, "the first pass reads every allocated block");
    assert.equal((await bitmapsOf(store, "track")).length, 1, "one bitmap tracks the replica after its pass");

    await guestWrite(store, "track", 3 * MiB, 0x31);
    await guestWrite(store, "track", 40 * MiB + 64 * 1024, 0x32);
    // W1 lands after the new tracker starts and before the freeze (in the view); W2 after the
    // freeze (in the overlay, folded back at release): the pass after must still find W2.
    const second = await pass(m, {
      track: { key: KEY, afterStart: () => guestWrite(store, "track", 20 * MiB, 0x33) },
      afterFreeze: () => guestWrite(store, "track", 50 * MiB, 0x34),
    });
    assert.equal(second.scan, "tracked");
    assert.ok(second.bytesRead <= 3 * BLOCK, `a tracked pass reads only its dirty blocks (${second.bytesRead} bytes)`);
    assert.equal(second.blocksSent, 3, "the two earlier writes and W1 went");

    const third = await pass(m);
    assert.equal(third.scan, "tracked");
    assert.equal(third.blocksSent, 1, "W2, written into the overlay during the last pass, is not missed");
    assert.equal(await fileSha256(m.replica), await fileSha256(m.disk), "the replica equals the disk");
    assert.equal((await bitmapsOf(store, "track")).length, 1, "older bitmaps are removed once a later pass commits");

    // A preview's figure: the bitmap's count, without reading the disk.
    await guestWrite(store, "track", 7 * MiB, 0x35);
    const committed = await new FileReplicaStore(m.stateDir).loadCommitted(KEY);
    assert.equal(await trackedChangedBytes(store, m.disk, committed!.changeToken!), BLOCK, "the bitmap counts in manifest blocks: what a pass sends");
  });

  it("GIVEN a tracked replica WHEN its bitmap is lost THEN the next pass scans everything and the replica ends equal", async () => {
    const m = await machineOn("lost");
    await pass(m);
    const [bitmap] = await bitmapsOf(store, "lost");
    const qmp = await connectQmp((await machineFiles(store, "lost")).qmpSocket);
    try {
      const node = ((await qmp.execute("query-block")) as Array<{ device: string; inserted: { "node-name": string } }>).find((b) => b.device === "drive0")!.inserted["node-name"];
      await qmp.execute("block-dirty-bitmap-remove", { node, name: bitmap });
    } finally {
      qmp.close();
    }
    await guestWrite(store, "lost", 9 * MiB, 0x41);
    const second = await pass(m);
    assert.equal(second.scan, "full", "a lost bitmap is never trusted");
    assert.ok(second.bytesRead >= 24 * BLOCK);
    assert.equal(second.blocksSent, 1);
    assert.equal(await fileSha256(m.replica), await fileSha256(m.disk));
    const committed = await new FileReplicaStore(m.stateDir).loadCommitted(KEY);
    assert.equal(await trackedChangedBytes(store, m.disk, "qemu-bitmap:" + bitmap), undefined, "a plan cannot count a lost bitmap either");
    assert.notEqual(committed!.changeToken, "qemu-bitmap:" + bitmap);
  });

  it("GIVEN a tracked replica WHEN the machine stops THEN the stopped disk's pass reads the saved ranges; WHEN it restarts and writes, or its file is written while stopped, THEN the pass scans everything; each ends equal", async () => {
    const m = await machineOn("restart");
    await pass(m);
    await guestWrite(store, "restart", 11 * MiB, 0x51);
    const stop = await stopMachine(store, "restart", { graceMs: 0 });
    assert.equal(stop.method, "quit");
    const stopped = await pass(m);
    assert.equal(stopped.scan, "tracked", "the ranges saved at the stop answer for the stopped disk");
    assert.equal(stopped.blocksSent, 1);
    assert.equal(await fileSha256(m.replica), await fileSha256(m.disk));

    // Another tool writes the stopped disk: its stamp moves, nothing saved is trusted.
    const handle = await open(m.disk, "r+");
    await handle.write(Buffer.alloc(4096, 0x52), 0, 4096, 30 * MiB);
    await handle.close();
    const edited = await pass(m);
    assert.equal(edited.scan, "full");
    assert.equal(edited.blocksSent, 1);
    assert.equal(await fileSha256(m.replica), await fileSha256(m.disk));

    // Restarted mid-migration: the new QEMU has no bitmap of the last pass (a raw file keeps none).
    await pass(m); // a stopped pass: its token is the file's stamp
    await startMachine(store, m.machine, { accel: "tcg" });
    await pass(m); // running again: the stamp token no longer answers once the guest writes
    await guestWrite(store, "restart", 13 * MiB, 0x53);
    await stopMachine(store, "restart", { graceMs: 0 });
    await startMachine(store, m.machine, { accel: "tcg" });
    await guestWrite(store, "restart", 17 * MiB, 0x54);
    const restarted = await pass(m);
    assert.equal(restarted.scan, "full", "a bitmap that died with its QEMU is never guessed at");
    assert.equal(restarted.blocksSent, 2);
    assert.equal(await fileSha256(m.replica), await fileSha256(m.disk));
    await stopMachine(store, "restart", { graceMs: 0 });
  });

  it("GIVEN a stop saving the bitmaps WHEN something writes the paused machine's disk before QEMU exits THEN the saved ranges are dropped, the next pass scans everything, and the replica ends equal", async () => {
    const m = await machineOn("late");
    await pass(m);
    await guestWrite(store, "late", 5 * MiB, 0x71);
    const files = await machineFiles(store, "late");
    const qmp = await connectQmp(files.qmpSocket);
    try {
      await qmp.execute("stop");
      await harvestBitmaps((fn) => fn(qmp), files.dir);
      // A write no guest could make now (it is paused): through the monitor, after the harvest.
      await qmp.execute("human-monitor-command", { "command-line": 'qemu-io drive0 "write -P 0x72 33M 64k"' });
      await qmp.execute("quit").catch(() => {});
    } finally {
      qmp.close();
    }
    for (let i = 0; i < 100 && (await machineStatus(store, "late")).state === "running"; i++) await new Promise((r) => setTimeout(r, 100));
    await sealHarvest(files.dir);
    const after = await pass(m);
    assert.equal(after.scan, "full", "ranges saved before a write are never trusted");
    assert.equal(after.blocksSent, 2);
    assert.equal(await fileSha256(m.replica), await fileSha256(m.disk));
  });

  it("GIVEN a workload on a running local machine with tracked replicas elsewhere WHEN previewed THEN its plan reads none of the disks' data (the process's read counter), and the same plan without tracking reads them all", async () => {
    const name = "preview";
    const from = placementSchema.parse({ kind: "local", dir: join(root, "from") }) as Extract<Placement, { kind: "local" }>;
    const to = placementSchema.parse({ kind: "local", dir: join(root, "to") });
    const here = await openDatastore(from.dir);
    const workload = parseWorkload({ name, memoryMiB: 128, disks: [{ id: "boot", sizeBytes: SIZE, bus: "sata" }, { id: "data", sizeBytes: SIZE, bus: "sata" }], guestOs: { family: "linux" } });
    const paths = { boot: localDiskTarget(from, `${name}-boot`), data: localDiskTarget(from, `${name}-data`) };
    await mkdir(join(from.dir, "disks"), { recursive: true });
    for (const [id, path] of Object.entries(paths)) await writeBlocks(path, SIZE, spread(48, SIZE / BLOCK, id.length), id);
    const machine = defineMachine(workload, { disks: { boot: { path: paths.boot, format: "raw" }, data: { path: paths.data, format: "raw" } } });
    await startMachine(here, machine, { accel: "tcg" });
    const stateDir = join(root, "preview-state");
    const disks = (["boot", "data"] as const).map((id) => ({ id, source: "unused.raw", target: diskTargetFor(to, name, id) }));
    // The workload runs on `from`; a staged pass of each disk into `to` committed with tracking.
    const placed = async (dir: string, id: "boot" | "data") => {
      // The disk's record on `from`, as its placement left it (what a move reads it by).
      await commitPlacement(dir, name, id, { target: paths[id], location: paths[id], virtualSizeBytes: SIZE });
      const source = await openDisk(paths[id], { format: "raw" });
      await (await replicaStoreFor(paths[id], dir)).commit(replicaKey(name, id, paths[id]), { manifest: await buildManifest(source), location: paths[id], targetState: {}, passes: 1 });
      await source.close();
    };
    for (const disk of disks) {
      await placed(stateDir, disk.id);
      const key = replicaKey(name, disk.id, disk.target);
      const frozen = await freezeDisk(here, machine, disk.id, { key });
      try {
        await mkdir(join(root, "to", "disks"), { recursive: true });
        await replicate(frozen.source, rawFileReplica({ path: disk.target, virtualSizeBytes: SIZE }), { store: await replicaStoreFor(disk.target, stateDir), key });
      } finally {
        await frozen.release();
      }
    }
    const qmp = await connectQmp((await machineFiles(here, name)).qmpSocket);
    try {
      await qmp.execute("human-monitor-command", { "command-line": 'qemu-io drive1 "write -P 0x61 1M 64k"' });
    } finally {
      qmp.close();
    }
    const input = { workload, placement: to, mode: "warm" as const, stateDir, disks };
    const readBytes = async () => Number(/^rchar: (\d+)$/m.exec(await readFile("/proc/self/io", "utf8"))![1]);

    // Without tokens (a replica from an untracked source), the plan reads every allocated block.
    // The records are beside the replicas (the `to` datastore): the tokens go, and come back after.
    const records = new Map<string, CommittedReplica>();
    for (const disk of disks) {
      const key = replicaKey(name, disk.id, disk.target);
      const store = await replicaStoreFor(disk.target, stateDir);
      const record = (await store.loadCommitted(key))!;
      records.set(key, record);
      const { changeToken: _token, ...untracked } = record;
      await store.commit(key, untracked);
    }
    const beforeScan = await readBytes();
    const scanned = await planWorkload(input);
    const scanRead = (await readBytes()) - beforeScan;
    for (const disk of disks) {
      const key = replicaKey(name, disk.id, disk.target);
      await (await replicaStoreFor(disk.target, stateDir)).commit(key, records.get(key)!);
    }
    assert.ok(scanned.plan.disks.every((d) => !d.tracked));
    assert.ok(scanRead >= 2 * 48 * BLOCK, `the untracked plan reads both disks (${scanRead} bytes)`);

    const before = await readBytes();
    const plan = await planWorkload(input);
    const read = (await readBytes()) - before;
    assert.deepEqual(plan.plan.disks.map((d) => [d.key, d.tracked, d.bytesToMove]), [["boot", true, 0], ["data", true, BLOCK]], "the data disk's one dirty block, from the bitmap");
    // Only the boot disk's readiness inspection reads (its partition table and filesystems).
    assert.ok(read < 2 * MiB, `the tracked plan read ${read} bytes of a ${2 * 48 * BLOCK}-byte workload`);
    assert.match(plan.summary, /change tracking: the final pass reads only what changed/);
    await stopMachine(here, name, { graceMs: 0 });
  });
});
