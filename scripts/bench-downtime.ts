// npm run bench:downtime — the cutover's downtime at 1, 4 and 16 GiB virtual, with change tracking.
//
// The source is a real local QEMU machine (not bootable: SeaBIOS keeps it up) whose disk holds the
// same written data at every size (PW_BENCH_DOWNTIME_WRITTEN_MIB, at the start of the disk). A
// writer dirties it at a fixed rate through QEMU's own block layer (`qemu-io` over the monitor),
// so QEMU's dirty bitmaps see the writes as they would a guest's. Per move (local → a local raw
// replica, local → EBS on moto) and size:
//   1. two warm passes (the full copy, then a tracked delta);
//   2. the plan, as a preview makes it: the tracker's count and the measured rate of change,
//      nothing of the disk read;
//   3. the cutover: one more warm pass, stop (the guest is paused, the bitmaps' ranges saved,
//      QEMU quits), the final pass from the saved ranges, sampled verification, the target
//      started and health-checked.
// The stop's cost (on a small tracked machine) and the target's start are measured once
// beforehand: what the plan's timings file holds after a first move. Rounds interleave the sizes; medians are reported.
// The last line is JSON: downtime_16g_over_1g (target ≤ 1.2) per move and the worst, and per
// move and size measured_over_estimate (target 0.8–1.2). Files live in PW_BENCH_DIR (/dev/shm).
import { randomFillSync } from "node:crypto";
import { mkdir, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatastore, type LocalDatastore } from "../sdk/clouds/local/datastore.ts";
import { machineFiles, startMachine, stopMachine } from "../sdk/clouds/local/lifecycle.ts";
import { defineMachine } from "../sdk/clouds/local/machine.ts";
import { freezeFile, trackedChangedBytes } from "../sdk/clouds/local/point-in-time.ts";
import { connectQmp } from "../sdk/clouds/local/qmp.ts";
import { rawFileReplica } from "../sdk/clouds/local/replica-target.ts";
import { createAwsClients } from "../sdk/clouds/aws/clients.ts";
import { ebsReplica } from "../sdk/clouds/aws/replica-target.ts";
import type { ReplicaTarget } from "../sdk/contracts/replica-target.ts";
import { blockReplication, cutover, warmReplicate } from "../sdk/migrate/migrate.ts";
import { describePlan, planMigration } from "../sdk/migrate/plan.ts";
import type { Machine } from "../sdk/migrate/types.ts";
import { FileReplicaStore } from "../sdk/transfer/checkpoint.ts";
import { parseWorkload } from "../sdk/spec/workload.ts";
import { startMoto, type Moto } from "../tests/harness/moto.ts";
import { idleTarget, stayedUp } from "./bench-machines.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIZES_GIB = (process.env.PW_BENCH_DOWNTIME_SIZES ?? "1,4,16").split(",").map(Number);
const WRITTEN = Number(process.env.PW_BENCH_DOWNTIME_WRITTEN_MIB ?? 256) * MiB;
const MOVES = (process.env.PW_BENCH_DOWNTIME_MOVES ?? "local,ebs").split(",") as Array<"local" | "ebs">;
const ROUNDS = Number(process.env.PW_BENCH_DOWNTIME_ROUNDS ?? 3);
/** The writer: this many 64 KiB writes every tick, at offsets inside the written data. */
const WRITES_PER_TICK = 8;
const TICK_MS = 250;
const WRITE_BYTES = 64 * 1024;
const RATE_BYTES_PER_SECOND = (WRITES_PER_TICK * WRITE_BYTES * 1000) / TICK_MS;
const VERIFY_BLOCKS = 64;
/** How long the guest writes between the warm passes and the plan. */
const GUEST_SECONDS = 3;
const KEY = "bench.d0";
const root = join(process.env.PW_BENCH_DIR ?? tmpdir(), `pw-bench-downtime-${process.pid}`);

async function writeSource(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, "w");
  await handle.truncate(sizeBytes);
  const chunk = Buffer.alloc(64 * MiB);
  for (let at = 0; at < WRITTEN; at += chunk.length) {
    randomFillSync(chunk);
    await handle.write(chunk, 0, Math.min(chunk.length, WRITTEN - at), at);
  }
  await handle.close();
}

/** Dirties the machine's disk at RATE_BYTES_PER_SECOND until stopped; the same offsets at every size. */
function startWriter(socket: string): { stop(): Promise<number>; readonly failures: string[] } {
  const failures: string[] = [];
  let seed = 7;
  let written = 0;
  let running = true;
  let wake: (() => void) | undefined;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      // The monitor serves one client at a time: a tick that cannot have it is skipped.
      const qmp = await connectQmp(socket).catch(() => undefined);
      try {
        for (let i = 0; i < WRITES_PER_TICK && running && qmp !== undefined; i++) {
          seed = (seed * 1103515245 + 12345) % 2 ** 31;
          const offset = (seed % (WRITTEN / WRITE_BYTES)) * WRITE_BYTES;
          const reply = await qmp.execute("human-monitor-command", { "command-line": `qemu-io drive0 "write -P ${seed % 251} ${offset} 64k"` });
          // qemu-io reports to QEMU's log; the monitor answers "" when the write went through.
          if (reply === "") written += WRITE_BYTES;
          else failures.push(String(reply));
        }
      } catch (error) {
        failures.push((error as Error).message);
      } finally {
        qmp?.close();
      }
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.max(0, TICK_MS - (Date.now() - started)));
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
    }
  })();
  return {
    failures,
    async stop() {
      running = false;
      wake?.();
      await loop;
      return written;
    },
  };
}

interface Source {
  readonly store: LocalDatastore;
  readonly disk: string;
  readonly name: string;
  readonly machine: ReturnType<typeof defineMachine>;
}

async function startSource(dir: string, name: string, sizeBytes: number): Promise<Source> {
  const store = await openDatastore(join(dir, "ds"));
  const disk = join(dir, `${name}.raw`);
  await writeSource(disk, sizeBytes);
  const workload = parseWorkload({ name, memoryMiB: 128, disks: [{ id: "d0", sizeBytes, bus: "sata" }], guestOs: { family: "linux" } });
  const machine = defineMachine(workload, { disks: { d0: { path: disk, format: "raw" } } });
  await startMachine(store, machine, { accel: "tcg" });
  return { store, disk, name, machine };
}

/** The source as the cutover sees it: its stop ends the writer (the guest shuts down), then QEMU. */
function sourceMachine(source: Source, writer: { stop(): Promise<number> }): Machine {
  let up = true;
  return {
    name: `local:${source.name}`,
    isRunning: async () => up,
    async start() {
      await startMachine(source.store, source.machine, { accel: "tcg" });
      up = true;
    },
    async stop() {
      await writer.stop();
      const result = await stopMachine(source.store, source.name, { graceMs: 0 });
      up = false;
      return { graceful: result.method === "powerdown" };
    },
  };
}

/** What the target's start and health check cost: the process machine, started once. */
async function measureBoot(): Promise<number> {
  const machine = idleTarget();
  const started = performance.now();
  await machine.start();
  await stayedUp(machine);
  const seconds = (performance.now() - started) / 1000;
  await machine.stop();
  return seconds;
}

/** What a stop costs on this machine: a small tracked machine, frozen once, then stopped. */
async function measureStop(): Promise<number> {
  const dir = join(root, "rehearsal");
  await mkdir(dir, { recursive: true });
  const source = await startSource(dir, "rehearsal", 64 * MiB);
  const view = await freezeFile(source.store, source.disk, "raw", { key: KEY });
  await view.release();
  const started = performance.now();
  await stopMachine(source.store, source.name, { graceMs: 0 });
  const seconds = (performance.now() - started) / 1000;
  await rm(dir, { recursive: true, force: true });
  return seconds;
}

interface Run {
  readonly move: "local" | "ebs";
  readonly sizeGiB: number;
  readonly round: number;
  readonly downtimeSeconds: number;
  readonly estimateSeconds: number;
  readonly finalPassBytes: number;
  readonly finalPassSeconds: number;
  readonly estimateFinalDeltaBytes: number;
}

async function oneRun(move: "local" | "ebs", sizeGiB: number, round: number, timings: { stopSeconds: number; bootSeconds: number }, moto: Moto | undefined): Promise<Run> {
  const dir = join(root, `${move}-${sizeGiB}g-${round}`);
  await mkdir(dir, { recursive: true });
  const sizeBytes = sizeGiB * GiB;
  const source = await startSource(dir, `src${sizeGiB}`, sizeBytes);
  const socket = (await machineFiles(source.store, source.name)).qmpSocket;
  const writer = startWriter(socket);
  try {
    const store = new FileReplicaStore(join(dir, "state"));
    let target: ReplicaTarget;
    if (move === "ebs") {
      const clients = createAwsClients({ region: moto!.region, endpoint: moto!.endpoint });
      target = ebsReplica({ ebs: clients.ebs, ec2: clients.ec2, virtualSizeBytes: sizeBytes });
    } else target = rawFileReplica({ path: join(dir, "replica.raw"), virtualSizeBytes: sizeBytes });
    const disk = blockReplication({ key: KEY, store, target, conversion: `raw → ${move}`, openPointInTime: () => freezeFile(source.store, source.disk, "raw", { key: KEY }) });
    await warmReplicate([disk], { maxPasses: 2, deltaThresholdBytes: 0 });
    // Each pass is verified, as a move's passes are: the plan estimates verification from it.
    await disk.verify({ mode: "sampled", blocks: VERIFY_BLOCKS });
    // The guest keeps writing for a while: the plan measures its rate of change.
    await new Promise((r) => setTimeout(r, GUEST_SECONDS * 1000));

    // The plan as a preview makes it: the bitmap's count, nothing of the disk read.
    const committed = (await store.loadCommitted(KEY))!;
    const changedBytes = await trackedChangedBytes(source.store, source.disk, committed.changeToken!);
    if (changedBytes === undefined) throw new Error("the tracker did not answer");
    const last = committed.lastPass!;
    const overSeconds = (Date.now() - (Date.parse(last.finishedAt) - last.seconds * 1000)) / 1000;
    const plan = await planMigration([{ key: KEY, committed, conversion: disk.conversion!, tracked: { changedBytes, overSeconds } }], {
      mode: "warm",
      maxPasses: 1,
      stopSeconds: timings.stopSeconds,
      bootSeconds: timings.bootSeconds,
      verifyBlocks: VERIFY_BLOCKS,
    });
    const targetMachine = idleTarget();
    const record = await cutover({
      source: sourceMachine(source, writer),
      target: targetMachine,
      disks: [disk],
      warm: { maxPasses: 1 },
      verify: { mode: "sampled", blocks: VERIFY_BLOCKS },
      healthCheck: () => stayedUp(targetMachine),
    });
    await targetMachine.stop();
    const downtime = (record.downtimeMs ?? 0) / 1000;
    if (round === 1) {
      console.log(`${move} ${sizeGiB} GiB: ${describePlan(plan).split("\n").slice(1).join("; ").replace(/\s+/g, " ")}`);
      for (const step of record.steps) console.log(`  ${step.name}: ${((Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000).toFixed(2)} s${step.detail ? ` (${step.detail})` : ""}`);
    }
    const finalStep = record.steps.find((s) => s.name === "final-pass")!;
    return {
      move,
      sizeGiB,
      round,
      downtimeSeconds: downtime,
      estimateSeconds: plan.downtimeSeconds,
      finalPassBytes: record.finalPass?.bytesSent ?? 0,
      finalPassSeconds: (Date.parse(finalStep.endedAt) - Date.parse(finalStep.startedAt)) / 1000,
      estimateFinalDeltaBytes: plan.finalDeltaBytes,
    };
  } finally {
    const written = await writer.stop();
    if (round === 1) console.log(`  the writer wrote ${(written / MiB).toFixed(1)} MiB${writer.failures.length > 0 ? `; ${writer.failures.length} write(s) failed, first: ${writer.failures[0]}` : ""}`);
    await stopMachine(source.store, source.name, { graceMs: 0 }).catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await moto?.reset();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  await mkdir(root, { recursive: true });
  let moto: Moto | undefined;
  try {
    if (MOVES.includes("ebs")) {
      moto = await startMoto();
      process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;
    }
    console.log(`bench:downtime: ${SIZES_GIB.join(", ")} GiB virtual, ${WRITTEN / MiB} MiB written, dirtied at ${(RATE_BYTES_PER_SECOND / MiB).toFixed(1)} MiB/s through QEMU; moves ${MOVES.join(", ")}; ${ROUNDS} round(s)`);
    const stopSeconds = await measureStop();
    const bootSeconds = await measureBoot();
    console.log(`measured once beforehand, as a first move records them: the stop of a tracked machine (pause, save the bitmaps, quit) ${stopSeconds.toFixed(2)} s; the target's start and health check ${bootSeconds.toFixed(2)} s`);
    const runs: Run[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // Interleaved: each round visits every size, in an order that turns.
      const order = SIZES_GIB.map((_, i) => SIZES_GIB[(i + round - 1) % SIZES_GIB.length]!);
      for (const move of MOVES) {
        for (const size of order) {
          const run = await oneRun(move, size, round, { stopSeconds, bootSeconds }, moto);
          runs.push(run);
          console.log(`round ${round} ${move} ${size} GiB: downtime ${run.downtimeSeconds.toFixed(2)} s, estimate ${run.estimateSeconds.toFixed(2)} s (${(run.downtimeSeconds / run.estimateSeconds).toFixed(2)}), final pass ${(run.finalPassBytes / MiB).toFixed(1)} MiB in ${run.finalPassSeconds.toFixed(2)} s (estimated delta ${(run.estimateFinalDeltaBytes / MiB).toFixed(1)} MiB)`);
        }
      }
    }
    const byMove: Record<string, Record<string, { downtimeSeconds: number; estimateSeconds: number; measured_over_estimate: number; finalPassMiB: number }>> = {};
    const ratios: Record<string, number> = {};
    const overEstimate: Record<string, Record<string, number>> = {};
    for (const move of MOVES) {
      byMove[move] = {};
      overEstimate[move] = {};
      for (const size of SIZES_GIB) {
        const mine = runs.filter((r) => r.move === move && r.sizeGiB === size);
        const downtimeSeconds = median(mine.map((r) => r.downtimeSeconds));
        const estimateSeconds = median(mine.map((r) => r.estimateSeconds));
        const ratio = median(mine.map((r) => r.downtimeSeconds / r.estimateSeconds));
        byMove[move][`${size}g`] = { downtimeSeconds: Number(downtimeSeconds.toFixed(2)), estimateSeconds: Number(estimateSeconds.toFixed(2)), measured_over_estimate: Number(ratio.toFixed(3)), finalPassMiB: Number((median(mine.map((r) => r.finalPassBytes)) / MiB).toFixed(1)) };
        overEstimate[move][`${size}g`] = Number(ratio.toFixed(3));
        console.log(`${move} ${size} GiB: median downtime ${downtimeSeconds.toFixed(2)} s, estimate ${estimateSeconds.toFixed(2)} s, measured/estimate ${ratio.toFixed(2)}`);
      }
      const small = byMove[move][`${Math.min(...SIZES_GIB)}g`]!.downtimeSeconds;
      const large = byMove[move][`${Math.max(...SIZES_GIB)}g`]!.downtimeSeconds;
      ratios[move] = Number((large / small).toFixed(3));
      console.log(`${move}: downtime ${Math.max(...SIZES_GIB)} GiB ÷ ${Math.min(...SIZES_GIB)} GiB = ${ratios[move]!.toFixed(2)} (target ≤ 1.2)`);
    }
    const worst = Math.max(...Object.values(ratios));
    const estimatesOk = Object.values(overEstimate).every((m) => Object.values(m).every((r) => r >= 0.8 && r <= 1.2));
    console.log(JSON.stringify({
      bench: "downtime",
      writtenMiB: WRITTEN / MiB,
      dirtyMiBPerSecond: Number((RATE_BYTES_PER_SECOND / MiB).toFixed(2)),
      rounds: ROUNDS,
      stopSeconds: Number(stopSeconds.toFixed(3)),
      bootSeconds: Number(bootSeconds.toFixed(3)),
      downtime_16g_over_1g: worst,
      downtime_16g_over_1g_by_move: ratios,
      measured_over_estimate: overEstimate,
      targets: { downtime_16g_over_1g: 1.2, measured_over_estimate: [0.8, 1.2] },
      pass: worst <= 1.2 && estimatesOk,
      moves: byMove,
    }));
    if (!(worst <= 1.2 && estimatesOk)) process.exitCode = 1;
  } finally {
    await moto?.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
