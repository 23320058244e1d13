#!/usr/bin/env node
// The `portable` command: a thin face over sdk/disk. Every decision lives in the sdk; this file
// parses arguments, shows progress and maps errors to exit codes.

// File reads and writes run on libuv's thread pool, 4 threads by default, which a conversion
// with reads ahead and writes behind saturates: 16 halved qcow2→raw wall time in
// bench:convert. It must be set before the pool first starts; the imports below start nothing.
process.env.UV_THREADPOOL_SIZE ??= "16";
import { rm } from "node:fs/promises";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { InvalidArgsError, isPortableError } from "../errors.ts";
import { compareDisks } from "../disk/compare.ts";
import { convert, type ConvertProgress } from "../disk/convert.ts";
import { formatByName } from "../disk/formats/index.ts";
import { createFileTarget, streamTarget } from "../disk/io.ts";
import { openDisk } from "../disk/open.ts";
import { summarize } from "../disk/summary.ts";
import type { DiskSource } from "../disk/types.ts";

const USAGE = `usage: portable <command> [options]

  inspect <image> [--json] [-f fmt]        format, virtual size, allocated bytes, extents
  convert <in> <out> -O <fmt> [-f fmt] [-o key=value]... [--overwrite] [--concurrency N]
                                           stream any format into another ('-' writes to stdout)
  compare <a> <b> [--json]                 exit 0 if the guest sees the same bytes, 1 if not
  map <image> [--json]                     the extent map (data / zero ranges)

formats: raw, vmdk, vhd (alias vpc), vhdx, qcow2`;

/** Exit codes, as qemu-img compare uses them: 0 same, 1 different, 2 error. */
const EXIT_DIFFERENT = 1;
const EXIT_ERROR = 2;
/** Without a TTY, one progress line per this interval keeps CI logs readable. */
const PROGRESS_LINE_INTERVAL_MS = 5_000;

function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function usageError(message: string): never {
  throw new InvalidArgsError("USAGE", `${message}\n\n${USAGE}`);
}

async function withDisk<T>(path: string, format: string | undefined, fn: (disk: DiskSource) => Promise<T>): Promise<T> {
  const disk = await openDisk(path, format === undefined ? {} : { format: formatByName(format).name });
  try {
    return await fn(disk);
  } finally {
    await disk.close();
  }
}

function writerOptions(pairs: readonly string[]): Record<string, string> {
  const options: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) usageError(`-o expects key=value, got "${pair}"`);
    options[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return options;
}

function progressReporter(label: string): { update(p: ConvertProgress): void; stop(): void } {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% | {done} of {total} | {written} written`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const payload = { done: formatBytes(p.doneBytes), total: formatBytes(p.totalBytes), written: formatBytes(p.dataBytesWritten) };
        if (!started) bar.start(p.totalBytes, 0, payload);
        started = true;
        bar.update(p.doneBytes, payload);
      },
      stop: () => started && bar.stop(),
    };
  }
  let last = 0;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < PROGRESS_LINE_INTERVAL_MS && p.doneBytes < p.totalBytes) return;
      last = now;
      const percent = p.totalBytes === 0 ? 100 : Math.floor((p.doneBytes / p.totalBytes) * 100);
      process.stderr.write(
        `${label}: ${percent}% (${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}), ${formatBytes(p.dataBytesWritten)} written\n`,
      );
    },
    stop: () => {},
  };
}

async function inspectCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, f: { type: "string" } } });
  const [path] = positionals;
  if (path === undefined || positionals.length > 1) usageError("inspect takes one image");
  const summary = await withDisk(path, values.f, summarize);
  if (values.json === true) {
    console.log(JSON.stringify({ image: path, ...summary }, null, 2));
  } else {
    console.log(`image: ${path}`);
    console.log(`format: ${summary.format}${summary.subformat === undefined ? "" : ` (${summary.subformat})`}`);
    console.log(`virtual size: ${formatBytes(summary.virtualSizeBytes)} (${summary.virtualSizeBytes} bytes)`);
    console.log(`allocated: ${formatBytes(summary.allocatedBytes)} (${summary.allocatedBytes} bytes)`);
    console.log(`extents: ${summary.dataExtents} data, ${summary.zeroExtents} zero`);
  }
  return 0;
}

async function mapCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, f: { type: "string" } } });
  const [path] = positionals;
  if (path === undefined || positionals.length > 1) usageError("map takes one image");
  await withDisk(path, values.f, async (disk) => {
    // Streamed line by line so a map with millions of extents never sits in memory.
    let first = true;
    if (values.json === true) process.stdout.write("[");
    for await (const e of disk.extents()) {
      if (values.json === true) {
        process.stdout.write(`${first ? "" : ","}\n  ${JSON.stringify({ offset: e.offsetBytes, length: e.lengthBytes, kind: e.kind })}`);
      } else {
        process.stdout.write(`${e.offsetBytes.toString().padStart(16)} ${e.lengthBytes.toString().padStart(16)}  ${e.kind}\n`);
      }
      first = false;
    }
    if (values.json === true) process.stdout.write("\n]\n");
  });
  return 0;
}

async function convertCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      O: { type: "string" },
      f: { type: "string" },
      o: { type: "string", multiple: true },
      overwrite: { type: "boolean" },
      concurrency: { type: "string" },
    },
  });
  const [input, output] = positionals;
  if (input === undefined || output === undefined || positionals.length > 2) usageError("convert takes <in> <out>");
  if (values.O === undefined) usageError("convert needs -O <format>");
  const outFormat = formatByName(values.O);
  const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
  const toStdout = output === "-";
  const options = writerOptions(values.o ?? []);

  return withDisk(input, values.f, async (source) => {
    const target = toStdout
      ? streamTarget("stdout", process.stdout)
      : await createFileTarget(output, { overwrite: values.overwrite === true });
    const started = Date.now();
    const progress = progressReporter(`convert ${source.format} → ${outFormat.name}`);
    try {
      const sink = await outFormat.createWriter(target, { ...options, virtualSizeBytes: source.virtualSizeBytes });
      const result = await convert(source, sink, { progress: (p) => progress.update(p), ...(concurrency === undefined ? {} : { concurrency }) });
      progress.stop();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stderr.write(
        `converted ${input} (${source.format}${source.subformat === undefined ? "" : ` ${source.subformat}`}, ${formatBytes(source.virtualSizeBytes)}) → ` +
          `${result.location} (${outFormat.name}): ${formatBytes(result.dataBytesWritten)} of data in ${seconds} s\n`,
      );
      return 0;
    } catch (err) {
      progress.stop();
      await target.close().catch(() => {});
      // A half-written image must not look like a finished one.
      if (!toStdout) await rm(output, { force: true });
      throw err;
    }
  });
}

async function compareCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" } } });
  const [a, b] = positionals;
  if (a === undefined || b === undefined || positionals.length > 2) usageError("compare takes two images");
  const result = await withDisk(a, undefined, (da) => withDisk(b, undefined, (db) => compareDisks(da, db)));
  if (values.json === true) console.log(JSON.stringify(result));
  else if (result.identical) console.log("Images are identical.");
  else console.log(`Content mismatch at offset ${result.firstDifferenceOffsetBytes}!`);
  return result.identical ? 0 : EXIT_DIFFERENT;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  inspect: inspectCommand,
  map: mapCommand,
  convert: convertCommand,
  compare: compareCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return command === undefined ? EXIT_ERROR : 0;
  }
  const run = COMMANDS[command];
  try {
    if (run === undefined) usageError(`unknown command "${command}"`);
    return await run(rest);
  } catch (err) {
    if (isPortableError(err)) console.error(`portable: ${err.code}: ${err.message}`);
    else if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) {
      console.error(`portable: USAGE: ${err.message}\n\n${USAGE}`);
    } else console.error(`portable: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_ERROR;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
