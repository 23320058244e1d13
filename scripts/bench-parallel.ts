// npm run bench:parallel — eight disk jobs at once in one process, and the peak RSS they cost.
//
// The input is the benchmarks' 1 GiB mixed image (scripts/mixed-image.ts: 60 % data, half of it
// incompressible) as qcow2. Each phase runs in a fresh child process, so its peak RSS
// (process.resourceUsage().maxRSS) is its own:
//   convert   qcow2 → streamOptimized VMDK files (reads ahead, deflate on the thread pool)
//   replicate qcow2 → raw file replicas (sdk/transfer/replicate.ts: hashing, blocks in flight)
// each as 1 job (the per-job cost), 8 jobs with the limit raised to 8 (no global limit), and
// 8 jobs under the default PORTABLE_MAX_PARALLEL_JOBS (sdk/transfer/job-slots.ts). Every job
// goes through withJobSlot, as placeDisk does. The figures: peak RSS, wall time, and the most
// jobs seen running at once (which must not exceed the limit). The check: every phase peaks
// within 256 MiB for its first running job + 64 MiB per further one (default limit 2: 320 MiB).
// Settings: PW_BENCH_PARALLEL_MIB (image size, default 1024), PW_BENCH_DIR (scratch directory).
// Prints a table and a final JSON line.
import { execFile, spawn } from "node:child_process";
import { mkdir, rm, stat } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { convert } from "../sdk/disk/convert.ts";
import { formatByName } from "../sdk/disk/formats/index.ts";
import { createFileTarget } from "../sdk/disk/io.ts";
import { openDisk } from "../sdk/disk/open.ts";
import { FileReplicaStore } from "../sdk/transfer/checkpoint.ts";
import { DEFAULT_MAX_PARALLEL_JOBS, jobSlotsInUse, MAX_PARALLEL_JOBS_ENV, withJobSlot } from "../sdk/transfer/job-slots.ts";
import { rawFileReplica } from "../sdk/clouds/local/replica-target.ts";
import { replicate } from "../sdk/transfer/replicate.ts";
import { TOOLS } from "../tests/harness/tools.ts";
import { buildMixedImage } from "./mixed-image.ts";

const MiB = 1024 * 1024;
const JOBS = 8;
/**
 * The documented bound (docs/decisions/0007-hardening.md): one job within DESIGN.md's 256 MiB
 * peak RSS, and each further job running at once within 64 MiB more, so memory follows the
 * limit, not the jobs started. Most of a job's RSS is not live data (~12 MiB of buffers with
 * forced GC) but Node and the modules (~105 MiB with no job) and freed buffers the GC has not
 * reclaimed yet (V8 lets ~64 MiB of external memory grow before it collects).
 */
const SINGLE_JOB_MiB = 256;
const PER_EXTRA_JOB_MiB = 64;
/** Threads for file I/O and deflate, as the CLI sets it (sdk/cli/portable.ts): one per core, 2 to 8. */
const UV_THREADS = String(Math.min(8, Math.max(2, availableParallelism())));

type PhaseKind = "convert" | "replicate";

interface PhaseResult {
  readonly phase: PhaseKind;
  readonly jobs: number;
  readonly limit: number;
  readonly peakRssMiB: number;
  readonly seconds: number;
  readonly maxRunning: number;
  readonly outputBytes: number;
}

async function runPhase(kind: PhaseKind, jobs: number, image: string, dir: string): Promise<PhaseResult> {
  const started = performance.now();
  let maxRunning = 0;
  const sample = setInterval(() => {
    maxRunning = Math.max(maxRunning, jobSlotsInUse().running);
  }, 20);
  let outputBytes = 0;
  const job = async (index: number) => {
    maxRunning = Math.max(maxRunning, jobSlotsInUse().running);
    const source = await openDisk(image);
    try {
      if (kind === "convert") {
        const out = join(dir, `out-${index}.vmdk`);
        const target = await createFileTarget(out, { overwrite: true });
        const sink = await formatByName("vmdk").createWriter(target, { virtualSizeBytes: source.virtualSizeBytes, subformat: "streamOptimized" });
        await convert(source, sink);
        const { size } = await stat(out);
        outputBytes += size;
        await rm(out, { force: true });
      } else {
        const out = join(dir, `replica-${index}.raw`);
        const result = await replicate(source, rawFileReplica({ path: out, virtualSizeBytes: source.virtualSizeBytes }), { store: new FileReplicaStore(join(dir, `state-${index}`)), key: `job${index}` });
        outputBytes += result.bytesSent;
        await rm(out, { force: true });
      }
    } finally {
      await source.close();
    }
  };
  await mkdir(dir, { recursive: true });
  await Promise.all(Array.from({ length: jobs }, (_, index) => withJobSlot(() => job(index))));
  clearInterval(sample);
  await rm(dir, { recursive: true, force: true });
  return {
    phase: kind,
    jobs,
    limit: Number(process.env[MAX_PARALLEL_JOBS_ENV] ?? DEFAULT_MAX_PARALLEL_JOBS),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    maxRunning,
    outputBytes,
  };
}

function child(kind: PhaseKind, jobs: number, limit: number | undefined, image: string, dir: string): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, UV_THREADPOOL_SIZE: UV_THREADS };
    if (limit === undefined) delete env[MAX_PARALLEL_JOBS_ENV];
    else env[MAX_PARALLEL_JOBS_ENV] = String(limit);
    const phaseDir = join(dir, `${kind}-${jobs}-${limit ?? "default"}`);
    const proc = spawn(process.execPath, [import.meta.filename, "--phase", kind, "--jobs", String(jobs), "--image", image, "--dir", phaseDir], { env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
    proc.once("error", reject);
    proc.once("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0) reject(new Error(`phase ${kind} × ${jobs} exited ${code}: ${out}`));
      else resolve(JSON.parse(line) as PhaseResult);
    });
  });
}

const { values } = parseArgs({ options: { phase: { type: "string" }, jobs: { type: "string" }, image: { type: "string" }, dir: { type: "string" } } });
if (values.phase !== undefined) {
  const result = await runPhase(values.phase as PhaseKind, Number(values.jobs), values.image!, values.dir!);
  console.log(JSON.stringify(result));
} else {
  const imageBytes = Number(process.env.PW_BENCH_PARALLEL_MIB ?? 1024) * MiB;
  const dir = join(process.env.PW_BENCH_DIR ?? tmpdir(), `pw-bench-parallel-${process.pid}`);
  await mkdir(dir, { recursive: true });
  try {
    const raw = join(dir, "mixed.raw");
    const image = join(dir, "mixed.qcow2");
    const dataBytes = await buildMixedImage(raw, imageBytes);
    await promisify(execFile)(TOOLS.qemuImg, ["convert", "-f", "raw", "-O", "qcow2", raw, image]);
    await rm(raw);
    const results: PhaseResult[] = [];
    for (const kind of ["convert", "replicate"] as const) {
      for (const [jobs, limit] of [[1, undefined], [JOBS, JOBS], [JOBS, undefined]] as const) {
        const result = await child(kind, jobs, limit, image, dir);
        results.push(result);
        console.error(`${kind} × ${jobs} (limit ${result.limit}): peak RSS ${result.peakRssMiB} MiB, ${result.seconds} s, at most ${result.maxRunning} running`);
      }
    }
    console.log(`\n${(imageBytes / MiB).toFixed(0)} MiB qcow2 image, ${(dataBytes / MiB).toFixed(0)} MiB of data; ${JOBS} jobs; default ${MAX_PARALLEL_JOBS_ENV}=${DEFAULT_MAX_PARALLEL_JOBS}`);
    console.log(`${"phase".padEnd(10)} ${"jobs".padStart(4)} ${"limit".padStart(5)} ${"running".padStart(7)} ${"peak RSS".padStart(9)} ${"seconds".padStart(8)}`);
    for (const r of results) {
      console.log(`${r.phase.padEnd(10)} ${String(r.jobs).padStart(4)} ${String(r.limit).padStart(5)} ${String(r.maxRunning).padStart(7)} ${`${r.peakRssMiB} MiB`.padStart(9)} ${String(r.seconds).padStart(8)}`);
    }
    const withinLimit = results.every((r) => r.maxRunning <= r.limit);
    const checks = results.map((r) => {
      const boundMiB = SINGLE_JOB_MiB + (Math.min(r.jobs, r.limit) - 1) * PER_EXTRA_JOB_MiB;
      return { phase: r.phase, jobs: r.jobs, limit: r.limit, peakRssMiB: r.peakRssMiB, boundMiB, ok: r.peakRssMiB <= boundMiB };
    });
    for (const c of checks) console.log(`${c.phase} × ${c.jobs} at limit ${c.limit}: peak RSS ${c.peakRssMiB} MiB, bound ${c.boundMiB} MiB: ${c.ok ? "ok" : "EXCEEDED"}`);
    console.log(`running never above the limit: ${withinLimit}`);
    const peakDefault = Math.max(...results.filter((r) => r.jobs === JOBS && r.limit === DEFAULT_MAX_PARALLEL_JOBS).map((r) => r.peakRssMiB));
    console.log(JSON.stringify({
      bench: "parallel",
      imageMiB: imageBytes / MiB,
      dataMiB: Math.round(dataBytes / MiB),
      jobs: JOBS,
      defaultLimit: DEFAULT_MAX_PARALLEL_JOBS,
      boundMiBDefaultLimit: SINGLE_JOB_MiB + (DEFAULT_MAX_PARALLEL_JOBS - 1) * PER_EXTRA_JOB_MiB,
      peakRssMiBDefaultLimit: peakDefault,
      checks,
      withinLimit,
      phases: results,
    }));
    if (!withinLimit || checks.some((c) => !c.ok)) process.exitCode = 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
