// npm run bench:convert — our engine against qemu-img, in the same run, on the same input.
//
// Builds a deterministic 4 GiB mixed raw image (zeros, random, text) in /dev/shm (no disk
// flushes, no paging of cold memory), converts it into each format with both tools in 5
// interleaved rounds (which tool goes first alternates; both write one path), checks every
// output of ours with `qemu-img compare`, and prints median wall time ratios (ours / qemu-img),
// output sizes and peak RSS. Beside the command's wall time it prints the engine's own
// (`convert --json`: the same run without Node's start-up, which is what a provider process
// pays), Node's start-up on its own (`portable --help`), and, for reference, the kernel copying
// the same data into the same path (copy_file_range). Then a scale
// check: a 1 TiB virtual disk holding 64 MiB converts in time that follows the data, not the
// virtual size. The last line is one JSON object with every figure, for scripts.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileHoles } from "../sdk/disk/file-holes.ts";
import { libc } from "../sdk/disk/libc.ts";
import { REPO_ROOT, TOOLS } from "../tests/harness/tools.ts";
import { buildMixedImage } from "./mixed-image.ts";

const run = promisify(execFile);
const MiB = 1024 * 1024;
const IMAGE_BYTES = Number(process.env.PW_BENCH_IMAGE_MIB ?? 4096) * MiB;
const SCALE_VIRTUAL_BYTES = 1024 * 1024 * MiB;
const SCALE_DATA_BYTES = 64 * MiB;
const PEAK_RSS_LIMIT_MIB = 256;
/** The CLI as it ships (built JavaScript), which starts in about half the time of the TS sources. */
const CLI = join(REPO_ROOT, "dist", "sdk", "cli", "portable.js");
/** Every file in memory where the machine has a tmpfs at /dev/shm (4 GiB image, 24 GiB RAM here). */
const dir = process.env.PW_BENCH_DIR ?? join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "pw-bench");
/** For profiling: PW_BENCH_ONLY=vhd (a regular expression) runs only matching pairs; PW_BENCH_KEEP=1 keeps the images. */
const only = process.env.PW_BENCH_ONLY;
const keep = process.env.PW_BENCH_KEEP === "1";
const REPEATS = Number(process.env.PW_BENCH_REPEATS ?? 5);

interface Timed {
  readonly seconds: number;
  readonly peakRssMiB: number;
  readonly stdout: string;
}

/**
 * Runs a command under GNU time for wall seconds and peak RSS. A `sync` first, so the previous
 * run's dirty pages are not written back on this one's clock.
 */
async function timed(command: string, args: readonly string[]): Promise<Timed> {
  await run("sync");
  const { stdout, stderr } = await run("/usr/bin/time", ["-f", "PWTIME %e %M", command, ...args], { maxBuffer: 64 * MiB });
  const match = /PWTIME ([\d.]+) (\d+)/.exec(stderr);
  if (match === null) throw new Error(`no timing from ${command}: ${stderr}`);
  return { seconds: Number(match[1]), peakRssMiB: Math.round(Number(match[2]) / 1024), stdout };
}


async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

interface Case {
  readonly name: string;
  readonly input: string;
  readonly inputFormat: string;
  readonly outputFormat: string;
  readonly qemuOptions: readonly string[];
  readonly ourOptions: readonly string[];
  /** Target for ours / qemu-img wall time. */
  readonly target: number;
}

interface Row {
  readonly name: string;
  /**
   * A reference, not a bound: the kernel copying the mixed image's data (2.6 GB) into the same
   * path (kernelCopyOnly), in the same round. It shows what storing those bytes costs here; a
   * tool that overlaps reading and writing on two threads can come in below it.
   */
  readonly kernelCopySeconds: number;
  readonly qemuSeconds: number;
  readonly oursSeconds: number;
  readonly ratio: number;
  /** Our engine's own seconds (`convert --json`): the command without Node's start-up. */
  readonly engineSeconds: number;
  readonly engineRatio: number;
  readonly target: number;
  readonly qemuOutputBytes: number;
  readonly oursOutputBytes: number;
  readonly sizeRatio: number;
  readonly oursPeakRssMiB: number;
  readonly identical: boolean;
  /** Ratio within the target, peak RSS within the limit, and (for compressed output) size ≤ 1.05×. */
  readonly meetsTarget: boolean;
}

async function runCase(c: Case): Promise<Row> {
  // Both tools write the same path, removed just before each run. This VM's memory is backed
  // lazily by its host: a file that reuses the pages another file just freed writes about twice
  // as fast as one that gets pages the host has taken back (measured: the same command into two
  // alternating paths took 1.4 s into one and 2.4 s into the other, every round). With one path
  // per tool, each tool kept recycling its own pages and the ratio said which tool had drawn the
  // better pages, not which was faster (docs/decisions/0012-engine-throughput.md).
  const out = join(dir, `out.${c.outputFormat}`);
  await rm(out, { force: true });
  const qemuFlags = c.qemuOptions.length > 0 ? ["-o", c.qemuOptions.join(",")] : [];
  const qemuFormat = c.outputFormat === "vhd" ? "vpc" : c.outputFormat;
  const qemuInFormat = c.inputFormat === "vhd" ? "vpc" : c.inputFormat;
  const ourFlags = c.ourOptions.flatMap((o) => ["-o", o]);
  // REPEATS (5) interleaved rounds, each tool first in every other one, and the medians: these
  // VMs have noisy neighbours, and the median is the figure that one disturbed run cannot move.
  const qemuRuns: number[] = [];
  const oursRuns: number[] = [];
  const engineRuns: number[] = [];
  let peakRssMiB = 0;
  let qemuOutputBytes = 0;
  let oursOutputBytes = 0;
  let identical = true;
  const runQemu = async (): Promise<void> => {
    await rm(out, { force: true });
    qemuRuns.push((await timed(TOOLS.qemuImg, ["convert", "-f", qemuInFormat, "-O", qemuFormat, ...qemuFlags, c.input, out])).seconds);
    qemuOutputBytes = await allocatedBytes(out);
  };
  const kernelCopyRuns: number[] = [];
  const runKernelCopy = async (): Promise<void> => {
    await rm(out, { force: true });
    await run("sync");
    kernelCopyRuns.push(await kernelCopyOnly(join(dir, "mixed.raw"), out));
  };
  const runOurs = async (): Promise<void> => {
    await rm(out, { force: true });
    const o = await timed(process.execPath, [CLI, "convert", c.input, out, "-O", c.outputFormat, ...ourFlags, "--json"]);
    oursRuns.push(o.seconds);
    peakRssMiB = Math.max(peakRssMiB, o.peakRssMiB);
    engineRuns.push((JSON.parse(o.stdout) as { seconds: number }).seconds);
    oursOutputBytes = await allocatedBytes(out);
    // Every output of ours is checked, not only the last one.
    const same = await run(TOOLS.qemuImg, ["compare", "-q", "-f", "raw", "-F", qemuFormat, join(dir, "mixed.raw"), out]).then(
      () => true,
      () => false,
    );
    identical &&= same;
  };
  for (let i = 0; i < REPEATS; i++) {
    if (i % 2 === 0) {
      await runQemu();
      await runOurs();
    } else {
      await runOurs();
      await runQemu();
    }
    await runKernelCopy();
  }
  await rm(out, { force: true });
  const engineSeconds = median(engineRuns);
  const qemuSeconds = median(qemuRuns);
  const oursSeconds = median(oursRuns);
  const ratio = round(oursSeconds / Math.max(qemuSeconds, 0.01));
  const sizeRatio = round(oursOutputBytes / Math.max(qemuOutputBytes, 1));
  const meetsTarget = ratio <= c.target && peakRssMiB <= PEAK_RSS_LIMIT_MIB && (c.outputFormat === "raw" || sizeRatio <= 1.05);
  return {
    name: c.name,
    kernelCopySeconds: round(median(kernelCopyRuns)),
    qemuSeconds,
    oursSeconds,
    ratio,
    engineSeconds: round(engineSeconds),
    engineRatio: round(engineSeconds / Math.max(qemuSeconds, 0.01)),
    target: c.target,
    qemuOutputBytes,
    oursOutputBytes,
    sizeRatio,
    oursPeakRssMiB: peakRssMiB,
    identical,
    meetsTarget,
  };
}

/**
 * The kernel's copy (Row.kernelCopySeconds): seconds for copy_file_range to copy `input`'s data
 * extents into `output`, 8 MiB at a time on the thread pool, with nothing else to do.
 */
async function kernelCopyOnly(input: string, output: string): Promise<number> {
  const c = libc();
  const holes = fileHoles();
  if (c === undefined || holes === undefined) return NaN;
  const from = await open(input, "r");
  const to = await open(output, "wx");
  try {
    const { size } = await from.stat();
    const started = performance.now();
    await to.truncate(size);
    for (const extent of holes.extents(from.fd, size)) {
      if (extent.kind !== "data") continue;
      for (let done = 0; done < extent.lengthBytes; ) {
        const at = extent.offsetBytes + done;
        const [copied] = await c.copyFileRangeAsync(from.fd, at, to.fd, at, Math.min(8 * MiB, extent.lengthBytes - done));
        if (copied <= 0) throw new Error(`kernel copy failed at ${at}`);
        done += copied;
      }
    }
    return (performance.now() - started) / 1000;
  } finally {
    await from.close();
    await to.close();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

async function scaleCheck(): Promise<Record<string, number>> {
  // Same 64 MiB of data (64 runs of 1 MiB, spread out) in a 1 GiB and a 1 TiB virtual disk.
  const figures: Record<string, number> = {};
  for (const [label, virtualBytes] of [["1GiB", 1024 * MiB], ["1TiB", SCALE_VIRTUAL_BYTES]] as const) {
    const image = join(dir, `scale-${label}.qcow2`);
    const out = join(dir, `scale-${label}.out.qcow2`);
    await rm(image, { force: true });
    await rm(out, { force: true });
    await run(TOOLS.qemuImg, ["create", "-q", "-f", "qcow2", image, String(virtualBytes)]);
    const stride = Math.floor(virtualBytes / (SCALE_DATA_BYTES / MiB) / MiB) * MiB;
    const writes = Array.from({ length: SCALE_DATA_BYTES / MiB }, (_, i) => ["-c", `write -P ${(i % 250) + 1} ${i * stride} 1M`]).flat();
    await run(TOOLS.qemuImg.replace(/qemu-img$/, "qemu-io"), ["-f", "qcow2", ...writes, image], { maxBuffer: 64 * MiB });
    const ours = await timed(process.execPath, [CLI, "convert", image, out, "-O", "qcow2"]);
    await run(TOOLS.qemuImg, ["compare", "-f", "qcow2", "-F", "qcow2", image, out]);
    figures[`scale${label}Seconds`] = ours.seconds;
    figures[`scale${label}PeakRssMiB`] = ours.peakRssMiB;
    await rm(image, { force: true });
    await rm(out, { force: true });
  }
  return figures;
}

async function main(): Promise<void> {
  console.log("building dist/ (npm run build) ...");
  await run(join(REPO_ROOT, "node_modules", ".bin", "tsc"), ["-p", join(REPO_ROOT, "tsconfig.build.json")]);
  await mkdir(dir, { recursive: true });
  const mixed = join(dir, "mixed.raw");
  const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);
  if (!keep || !(await exists(mixed))) {
    console.log(`building ${IMAGE_BYTES / MiB} MiB mixed image in ${dir} ...`);
    await buildMixedImage(mixed, IMAGE_BYTES);
  }
  // Inputs in other formats, made by qemu-img so our reader is measured on foreign images.
  const qcow2In = join(dir, "in.qcow2");
  const streamIn = join(dir, "in-stream.vmdk");
  if (!keep || !(await exists(qcow2In))) await run(TOOLS.qemuImg, ["convert", "-O", "qcow2", mixed, qcow2In]);
  if (!keep || !(await exists(streamIn))) {
    await run(TOOLS.qemuImg, ["convert", "-O", "vmdk", "-o", "subformat=streamOptimized", mixed, streamIn]);
  }

  const raw = { input: mixed, inputFormat: "raw" };
  const cases: Case[] = [
    { name: "raw→qcow2", ...raw, outputFormat: "qcow2", qemuOptions: [], ourOptions: [], target: 1 },
    { name: "raw→vhd dynamic", ...raw, outputFormat: "vhd", qemuOptions: ["subformat=dynamic"], ourOptions: ["subformat=dynamic"], target: 1 },
    { name: "raw→vhd fixed", ...raw, outputFormat: "vhd", qemuOptions: ["subformat=fixed"], ourOptions: ["subformat=fixed"], target: 1 },
    { name: "raw→vhdx", ...raw, outputFormat: "vhdx", qemuOptions: [], ourOptions: [], target: 1 },
    { name: "raw→vmdk sparse", ...raw, outputFormat: "vmdk", qemuOptions: [], ourOptions: [], target: 1 },
    { name: "raw→vmdk streamOptimized", ...raw, outputFormat: "vmdk", qemuOptions: ["subformat=streamOptimized"], ourOptions: ["subformat=streamOptimized"], target: 0.25 },
    { name: "qcow2→raw", input: qcow2In, inputFormat: "qcow2", outputFormat: "raw", qemuOptions: [], ourOptions: [], target: 1 },
    { name: "streamOptimized→raw", input: streamIn, inputFormat: "vmdk", outputFormat: "raw", qemuOptions: [], ourOptions: [], target: 0.7 },
  ];
  let startupSeconds = Infinity;
  for (let i = 0; i < REPEATS; i++) startupSeconds = Math.min(startupSeconds, (await timed(process.execPath, [CLI, "--help"])).seconds);
  console.log(`node start-up (portable --help, best of ${REPEATS}): ${startupSeconds.toFixed(2)} s; ${IMAGE_BYTES / MiB} MiB image in ${dir}; medians of ${REPEATS} interleaved rounds`);
  const rows: Row[] = [];
  for (const c of cases.filter((c) => only === undefined || new RegExp(only).test(c.name))) {
    const row = await runCase(c);
    rows.push(row);
    console.log(
      `${row.name.padEnd(26)} kernel copy ${row.kernelCopySeconds.toFixed(2)} s  qemu-img ${row.qemuSeconds.toFixed(2).padStart(6)} s  ours ${row.oursSeconds.toFixed(2).padStart(6)} s  ` +
        `ratio ${row.ratio.toFixed(2).padStart(5)} (target ≤ ${c.target})  engine ${row.engineSeconds.toFixed(2).padStart(6)} s ratio ${row.engineRatio.toFixed(2).padStart(5)}  ` +
        `size ×${row.sizeRatio.toFixed(2)}  ` +
        `peak RSS ${String(row.oursPeakRssMiB).padStart(4)} MiB  ${row.identical ? "identical" : "DIFFERENT"}  ${row.meetsTarget ? "meets target" : "MISSES TARGET"}`,
    );
  }
  const scale = only === undefined ? await scaleCheck() : {};
  console.log(
    `scale: 64 MiB of data in 1 GiB virtual ${scale.scale1GiBSeconds} s, in 1 TiB virtual ${scale.scale1TiBSeconds} s; ` +
      `peak RSS ${scale.scale1TiBPeakRssMiB} MiB (limit ${PEAK_RSS_LIMIT_MIB})`,
  );
  if (!keep) await rm(dir, { recursive: true, force: true });
  const failures = rows.filter((r) => !r.identical).map((r) => r.name);
  console.log(JSON.stringify({ bench: "convert", imageBytes: IMAGE_BYTES, startupSeconds, rows, ...scale, failures }));
  if (failures.length > 0) process.exitCode = 1;
}

await main();
