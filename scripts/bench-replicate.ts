// npm run bench:replicate — warm replication of a 4 GiB disk with 1% dirtied between passes.
//
// Two figures:
// - bytes sent ÷ bytes changed on the second pass (target ≤ 1.05). The writer dirties 1% of the
//   disk in 512 KiB runs at 512 KiB-aligned offsets, like a guest rewriting whole extents; the
//   changed bytes are counted from what it wrote, not from our manifests.
// - the cutover's measured downtime next to the plan's estimate, made just before the cutover
//   with the same inputs the Pulumi preview uses (measured hashing rate, last pass's send rate).
// The source is a raw file written by a separate process (the "guest"); the target is a raw
// file replica, or with PW_BENCH_REPLICATE_TARGET=vsphere a disk on vcsim's datastore (a flat
// base, then one ESXi delta disk per pass: the figures add each delta file's size on the
// datastore against the whole disk every pass sent before); the target "machine" is a process
// whose health check is staying up. vcsim keeps its datastore under TMPDIR: set it to /dev/shm.
// The last line is one JSON object with every figure.
import { randomFillSync } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDisk } from "../sdk/disk/open.ts";
import { blockReplication, cutover, replicatePass } from "../sdk/migrate/migrate.ts";
import { describePlan, planMigration } from "../sdk/migrate/plan.ts";
import type { DiskReplication } from "../sdk/migrate/types.ts";
import { idleTarget, PROCESS_HEALTH_SECONDS, processMachine, stayedUp } from "./bench-machines.ts";
import { FileReplicaStore } from "../sdk/transfer/checkpoint.ts";
import { rawFileReplica } from "../sdk/clouds/local/replica-target.ts";
import type { VsphereClient } from "../sdk/clouds/vsphere/client.ts";
import { connectVsphere } from "../sdk/clouds/vsphere/disk-url.ts";
import { statDatastoreFile, type DatastoreFile } from "../sdk/clouds/vsphere/datastore.ts";
import { vsphereReplicaTarget } from "../sdk/clouds/vsphere/replica-target.ts";
import type { ReplicaTarget } from "../sdk/contracts/replica-target.ts";
import { startVcsim, type Vcsim } from "../tests/harness/vcsim.ts";

const MiB = 1024 * 1024;
const SIZE = Number(process.env.PW_BENCH_REPLICATE_BYTES ?? 4096 * MiB);
const BLOCK = 512 * 1024;
const BLOCKS = SIZE / BLOCK;
const DIRTY_FRACTION = 0.01;
const TARGET_RATIO = 1.05;
const dir = join(process.env.PW_BENCH_DIR ?? tmpdir(), `pw-bench-replicate-${process.pid}`);
const TARGET = process.env.PW_BENCH_REPLICATE_TARGET === "vsphere" ? "vsphere" : "local";
const DATASTORE_DISK: DatastoreFile = { datacenter: "DC0", datastore: "LocalDS_0", path: "bench/disk0.vmdk" };

/** Fills the disk with incompressible data, 64 MiB at a time. */
async function writeSource(path: string): Promise<void> {
  const handle = await open(path, "w");
  const chunk = Buffer.alloc(64 * MiB);
  for (let at = 0; at < SIZE; at += chunk.length) {
    randomFillSync(chunk);
    await handle.write(chunk, 0, Math.min(chunk.length, SIZE - at), at);
  }
  await handle.close();
}

/** Dirties `count` distinct whole blocks with new random bytes; returns the bytes written. */
async function dirty(path: string, count: number, seed: number): Promise<number> {
  const handle = await open(path, "r+");
  const chosen = new Set<number>();
  let state = seed;
  while (chosen.size < count) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    chosen.add(state % BLOCKS);
  }
  const data = Buffer.alloc(BLOCK);
  for (const index of chosen) {
    randomFillSync(data);
    await handle.write(data, 0, BLOCK, index * BLOCK);
  }
  await handle.sync();
  await handle.close();
  return chosen.size * BLOCK;
}

/** The guest: on start, dirties 1% of the disk in whole blocks, then idles until SIGTERM. */
const GUEST = `
const { open } = require("node:fs/promises");
const { randomFillSync } = require("node:crypto");
(async () => {
  const [path, blocks, count] = process.argv.slice(1);
  const handle = await open(path, "r+");
  const data = Buffer.alloc(${BLOCK});
  const chosen = new Set();
  while (chosen.size < Number(count)) chosen.add(Math.floor(Math.random() * Number(blocks)));
  for (const index of chosen) { randomFillSync(data); await handle.write(data, 0, data.length, index * ${BLOCK}); }
  await handle.sync();
  process.stdout.write("up\\n");
  process.on("SIGTERM", async () => { await handle.close(); process.exit(0); });
  setInterval(() => {}, 1000);
})();
`;

async function main(): Promise<void> {
  await mkdir(dir, { recursive: true });
  let sim: Vcsim | undefined;
  let client: VsphereClient | undefined;
  try {
    const sourcePath = join(dir, "source.raw");
    const targetPath = join(dir, "replica.raw");
    const store = new FileReplicaStore(join(dir, "state"));
    console.log(`bench:replicate: ${SIZE / MiB} MiB disk, ${DIRTY_FRACTION * 100}% dirtied between passes, into ${TARGET === "vsphere" ? "vSphere (vcsim datastore)" : "a local raw replica"}`);
    await writeSource(sourcePath);
    let target: ReplicaTarget;
    if (TARGET === "vsphere") {
      sim = await startVcsim();
      client = await connectVsphere({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
      target = vsphereReplicaTarget({ client, file: DATASTORE_DISK, virtualSizeBytes: SIZE });
    } else target = rawFileReplica({ path: targetPath, virtualSizeBytes: SIZE });
    /** vSphere: the size of layer `k`'s delta file on the datastore. */
    const deltaFileBytes = async (layer: number) => (client === undefined ? undefined : statDatastoreFile(client, { ...DATASTORE_DISK, path: `bench/disk0-pw${layer}-delta.vmdk` }));
    const disk: DiskReplication = blockReplication({
      key: "disk0",
      store,
      conversion: TARGET === "vsphere" ? "raw → vmdk (vSphere chain)" : "raw → raw (local replica)",
      openPointInTime: async () => {
        const source = await openDisk(sourcePath, { format: "raw" });
        return { source, release: () => source.close() };
      },
      target,
    });
    const first = await replicatePass([disk], 1);
    console.log(`pass 1 (full copy): ${(first.record.bytesSent / MiB).toFixed(0)} MiB in ${first.record.seconds.toFixed(2)} s`);

    const dirtyCount = Math.round(BLOCKS * DIRTY_FRACTION);
    const changedBytes = await dirty(sourcePath, dirtyCount, 42);
    const second = await replicatePass([disk], 2);
    // Each pass is verified, as a move's passes are: the plan estimates verification from it.
    const verifyBlocks = 256;
    await disk.verify({ mode: "sampled", blocks: verifyBlocks });
    const ratio = second.record.bytesSent / changedBytes;
    console.log(`pass 2 (delta): sent ${(second.record.bytesSent / MiB).toFixed(2)} MiB for ${(changedBytes / MiB).toFixed(2)} MiB changed → ratio ${ratio.toFixed(3)} (target ≤ ${TARGET_RATIO}) in ${second.record.seconds.toFixed(2)} s`);
    const pass2File = await deltaFileBytes(2);
    if (pass2File !== undefined) console.log(`pass 2 on the datastore: a delta disk of ${(pass2File / MiB).toFixed(2)} MiB (÷ changed ${(pass2File / changedBytes).toFixed(3)}; the whole disk, ${SIZE / MiB} MiB, is what every pass sent before)`);

    // The guest runs and dirties another 1%; then the plan, then the cutover.
    const guest = processMachine("guest", ["-e", GUEST, sourcePath, String(BLOCKS), String(dirtyCount)]);
    const targetMachine = idleTarget();
    await guest.start();
    const committed = await store.loadCommitted("disk0");
    const view = await openDisk(sourcePath, { format: "raw" });
    const plan = await planMigration([{ key: "disk0", source: view, conversion: disk.conversion!, ...(committed ? { committed } : {}) }], {
      mode: "warm",
      stopSeconds: 0.1,
      bootSeconds: PROCESS_HEALTH_SECONDS,
      finalDeltaBytes: dirtyCount * BLOCK,
      verifyFraction: (verifyBlocks * BLOCK) / SIZE,
    });
    await view.close();
    console.log(describePlan(plan));
    const record = await cutover({
      source: guest,
      target: targetMachine,
      disks: [disk],
      verify: { mode: "sampled", blocks: verifyBlocks },
      gracefulTimeoutMs: 5_000,
      healthCheck: () => stayedUp(targetMachine),
    });
    await targetMachine.stop();
    const downtime = (record.downtimeMs ?? 0) / 1000;
    for (const step of record.steps) console.log(`  ${step.name}: ${((Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000).toFixed(2)} s${step.detail ? ` (${step.detail})` : ""}`);
    console.log(`cutover: measured downtime ${downtime.toFixed(2)} s, plan estimate ${plan.downtimeSeconds.toFixed(2)} s (measured/estimate ${(downtime / plan.downtimeSeconds).toFixed(2)})`);
    const finalFile = await deltaFileBytes(Number((await store.loadCommitted("disk0"))?.targetState.layer ?? 0));
    console.log(JSON.stringify({
      bench: "replicate",
      target: TARGET,
      diskMiB: SIZE / MiB,
      dirtyFraction: DIRTY_FRACTION,
      pass1Seconds: Number(first.record.seconds.toFixed(2)),
      pass2Seconds: Number(second.record.seconds.toFixed(2)),
      changedBytes,
      bytesSent: second.record.bytesSent,
      sentOverChanged: Number(ratio.toFixed(4)),
      targetRatio: TARGET_RATIO,
      pass: ratio <= TARGET_RATIO,
      finalPassBytes: record.finalPass?.bytesSent,
      ...(pass2File === undefined ? {} : { pass2DeltaFileBytes: pass2File, pass2DeltaFileOverChanged: Number((pass2File / changedBytes).toFixed(4)), finalDeltaFileBytes: finalFile, finalDeltaFileOverDisk: Number(((finalFile ?? 0) / SIZE).toFixed(4)) }),
      downtimeSeconds: Number(downtime.toFixed(2)),
      estimatedDowntimeSeconds: Number(plan.downtimeSeconds.toFixed(2)),
      estimateBreakdown: Object.fromEntries(Object.entries(plan.downtimeBreakdown).map(([k, v]) => [k, Number(v.toFixed(2))])),
    }));
    if (ratio > TARGET_RATIO) process.exitCode = 1;
  } finally {
    await client?.logout().catch(() => {});
    await sim?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
