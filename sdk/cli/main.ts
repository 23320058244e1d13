// The `portable` command's body (the entry is portable.ts): a thin face over sdk/disk. Every
// decision lives in the sdk; this file parses arguments, shows progress and maps errors to exit
// codes. Commands outside the disk engine are imported when used, so `convert` starts fast.
// Usage text and `--help` live in usage.ts.
import { rm } from "node:fs/promises";
import { parseArgs } from "node:util";
import { isPortableError } from "../errors.ts";
import { cloudOutputFor, type CloudOutput } from "../clouds/registry.ts";
import { compareDisks } from "../disk/compare.ts";
import { convert } from "../disk/convert.ts";
import { formatByName } from "../disk/formats/index.ts";
import { createFileTarget, streamTarget } from "../disk/io.ts";
import { summarize } from "../disk/summary.ts";
import { displayName } from "../clouds/azure/url.ts";
import { isOvaFile } from "../ovf/ova-location.ts";
import { helpFor, USAGE } from "./usage.ts";
import { EXIT_DIFFERENT, EXIT_ERROR, formatBytes, progressReporter, setUsage, usageError, withDisk, writerOptions } from "./common.ts";

setUsage(USAGE);

async function inspectCommand(args: string[]): Promise<number> {
  if (args.some((a) => a === "--guest" || a.startsWith("--guest="))) return (await import("./inspect-guest.ts")).inspectGuestCommand(args);
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, f: { type: "string" } } });
  const [path] = positionals;
  if (path === undefined || positionals.length > 1) usageError("inspect takes one image");
  if (values.f === undefined && (await isOvaFile(path))) return inspectOva(path, values.json === true);
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

/** `inspect file.ova`: an archive, not a disk; its disks and the locations that open them. */
async function inspectOva(path: string, json: boolean): Promise<number> {
  const summary = await (await import("../ovf/describe.ts")).summarizeOva(path);
  if (json) {
    console.log(JSON.stringify({ image: path, ...summary }, null, 2));
    return 0;
  }
  console.log(`image: ${path}`);
  console.log(`kind: ova (tar archive), descriptor ${summary.descriptor}`);
  if (summary.disks.length === 0) console.log("disks: none");
  for (const disk of summary.disks) {
    console.log(`disk ${disk.entry}: ${disk.format}${disk.subformat === undefined ? "" : ` (${disk.subformat})`}, virtual size ${formatBytes(disk.virtualSizeBytes)} (${disk.virtualSizeBytes} bytes)`);
    console.log(`  location: ${disk.location}`);
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

/** `convert <in> <cloud output>`: the registry's cloud does the work; this face shows progress and prints what it made. */
async function convertToCloud(cloud: CloudOutput, input: string, format: string | undefined, overwrite: boolean, concurrency: number | undefined): Promise<number> {
  return withDisk(input, format, async (source) => {
    const started = Date.now();
    const progress = progressReporter(`convert ${source.format} → ${cloud.label}`);
    try {
      const result = await cloud.write(source, { overwrite, progress: (p) => progress.update(p), ...(concurrency === undefined ? {} : { concurrency }) });
      progress.stop();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stderr.write(`converted ${displayName(input)} (${source.format}, ${formatBytes(source.virtualSizeBytes)}) → ${result.location}: ${formatBytes(result.dataBytesWritten)} of data in ${seconds} s\n`);
      console.log(result.printed);
      return 0;
    } catch (err) {
      progress.stop();
      throw err;
    }
  });
}

async function convertCommand(args: string[]): Promise<number> {
  const started = performance.now();
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      O: { type: "string" },
      f: { type: "string" },
      o: { type: "string", multiple: true },
      overwrite: { type: "boolean" },
      concurrency: { type: "string" },
      json: { type: "boolean" },
    },
  });
  const [input, output] = positionals;
  if (input === undefined || output === undefined || positionals.length > 2) usageError("convert takes <in> <out>");
  const json = values.json === true;
  const cloud = cloudOutputFor(output);
  if (json && (output === "-" || cloud !== undefined)) usageError("--json reports a conversion to a file; it cannot be used with '-', ebs:// or Azure outputs");
  if (cloud !== undefined) {
    if ((values.O !== undefined && formatByName(values.O).name !== cloud.format) || values.o !== undefined) usageError(`${cloud.label} holds ${cloud.format === "vhd" ? "fixed VHDs" : "raw blocks"}: give no -O other than ${cloud.format}, and no -o`);
    return convertToCloud(cloud, input, values.f, values.overwrite === true, values.concurrency === undefined ? undefined : Number(values.concurrency));
  }
  if (values.O === undefined) usageError("convert needs -O <format>");
  const outFormat = formatByName(values.O);
  const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
  const toStdout = output === "-";
  const options = writerOptions(values.o ?? []);

  return withDisk(input, values.f, async (source) => {
    const target = toStdout
      ? streamTarget("stdout", process.stdout)
      : await createFileTarget(output, { overwrite: values.overwrite === true });
    const progress = progressReporter(`convert ${source.format} → ${outFormat.name}`);
    try {
      const sink = await outFormat.createWriter(target, { ...options, virtualSizeBytes: source.virtualSizeBytes });
      const result = await convert(source, sink, { progress: (p) => progress.update(p), ...(concurrency === undefined ? {} : { concurrency }) });
      progress.stop();
      const elapsed = (performance.now() - started) / 1000;
      if (json) {
        // Seconds from the command's start (Node and the modules loaded) to the closed output:
        // the engine's time, which is what a provider process, already running, pays.
        const report = {
          input: displayName(input),
          output: result.location,
          sourceFormat: source.format,
          ...(source.subformat === undefined ? {} : { sourceSubformat: source.subformat }),
          format: outFormat.name,
          virtualSizeBytes: source.virtualSizeBytes,
          dataBytesWritten: result.dataBytesWritten,
          bytesRead: result.bytesRead,
          zeroBytesDetected: result.zeroBytesDetected,
          seconds: Number(elapsed.toFixed(3)),
        };
        console.log(JSON.stringify(report));
        return 0;
      }
      const seconds = elapsed.toFixed(1);
      process.stderr.write(
        `converted ${displayName(input)} (${source.format}${source.subformat === undefined ? "" : ` ${source.subformat}`}, ${formatBytes(source.virtualSizeBytes)}) → ` +
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

async function ovfCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: "boolean" }, "no-verify": { type: "boolean" } } });
  const [path] = positionals;
  if (path === undefined || positionals.length > 1) usageError("ovf takes one .ovf, .ova or .vmx file, or - for an OVA on stdin");
  const { describeOvaStream, describePackage } = await import("../ovf/describe.ts");
  const report = path === "-" ? await describeOvaStream(process.stdin, "stdin") : await describePackage(path, { verify: values["no-verify"] !== true });
  const failed = report.manifest?.ok === false || report.systems.some((s) => s.workload === undefined);
  if (values.json === true) {
    console.log(JSON.stringify(report, null, 2));
    return failed ? EXIT_DIFFERENT : 0;
  }
  console.log(`${report.kind}: ${report.path}${report.ovfVersion === undefined ? "" : ` (OVF ${report.ovfVersion})`}`);
  for (const system of report.systems) {
    const w = system.workload;
    console.log(`\nsystem ${system.id}`);
    if (w === undefined) console.log("  (no valid workload; see problems)");
    else {
      console.log(`  name: ${w.name}`);
      console.log(`  cpu: ${w.cpu.sockets * w.cpu.coresPerSocket} (${w.cpu.sockets} socket(s) × ${w.cpu.coresPerSocket} core(s))`);
      console.log(`  memory: ${formatBytes(w.memoryMiB * 2 ** 20)}`);
      console.log(`  firmware: ${w.firmware.type}${w.firmware.secureBoot ? ", secure boot" : ""}${w.firmware.vtpm ? ", vTPM" : ""}`);
      const os = w.guestOs;
      console.log(`  guest: ${os.family}${os.distribution === undefined ? "" : ` ${os.distribution}`}${os.version === undefined ? "" : ` ${os.version}`} (${os.architecture})`);
      for (const disk of w.disks) {
        const ref = system.disks.find((d) => d.id === disk.id);
        console.log(`  disk ${disk.id}: ${formatBytes(disk.sizeBytes)} on ${disk.bus}${disk.bootOrder === undefined ? "" : `, boot ${disk.bootOrder}`} ← ${ref?.location ?? "(blank)"}${ref?.compression === undefined ? "" : ` (${ref.compression})`}`);
      }
      for (const nic of w.nics) {
        console.log(`  nic: ${nic.network}${nic.model === undefined ? "" : ` (${nic.model})`}, MAC ${nic.macPolicy.kind === "static" ? nic.macPolicy.address : "generated"}, ${nic.addressing.kind}`);
      }
      for (const [key, value] of Object.entries(w.tags)) console.log(`  tag ${key}: ${value}`);
    }
  }
  if (report.manifest !== undefined) {
    console.log(`\nmanifest: ${report.manifest.ok ? "verified" : "FAILED"}`);
    for (const check of report.manifest.checks) {
      console.log(`  ${check.ok ? "ok  " : "BAD "} ${check.algorithm} ${check.file}${check.actual === undefined ? " (missing)" : check.ok ? "" : ` (expected ${check.expected}, got ${check.actual})`}`);
    }
    for (const file of report.manifest.unlisted) console.log(`  BAD  ${file} is not listed`);
  } else if (report.kind !== "vmx") console.log("\nmanifest: none");
  if (report.problems.length > 0) {
    console.log(`\nproblems:`);
    for (const problem of report.problems) console.log(`  ${problem.code} at ${problem.path}: ${problem.message}`);
  }
  return failed ? EXIT_DIFFERENT : 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  inspect: inspectCommand,
  map: mapCommand,
  convert: convertCommand,
  compare: compareCommand,
  ovf: ovfCommand,
  // Loaded on use: they pull in the migration layer, Markdown rendering, the SOAP client.
  replicate: async (args) => (await import("./replicate.ts")).replicateCommand(args),
  plan: async (args) => (await import("./replicate.ts")).planCommand(args),
  "plan-comment": async (args) => (await import("./plan-comment.ts")).planCommentCommand(args),
  vsphere: async (args) => (await import("./vsphere.ts")).runVsphereCommand(args),
  "test-boot": async (args) => (await import("./test-boot.ts")).testBootCommand(args),
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return command === undefined ? EXIT_ERROR : 0;
  }
  // `portable <command> … --help` for every command, before its own parsing can refuse the flag.
  const help = helpFor(command, rest);
  if (help !== undefined) {
    console.log(help);
    return 0;
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

