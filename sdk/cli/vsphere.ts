// `portable vsphere …`: list VMs and copy a VM's disk to a local image. A thin face over
// sdk/clouds/vsphere; every decision lives there. The password comes from an environment
// variable only, so it never shows in a process list, a shell history or our output.
import { readFile, rm } from "node:fs/promises";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { VsphereClient } from "../clouds/vsphere/client.ts";
import { openDatastoreDisk, parseDatastorePath } from "../clouds/vsphere/datastore.ts";
import { findVm, listVms } from "../clouds/vsphere/inventory.ts";
import { datacenterOf, pickDisk, powerState, readVmConfig, withSnapshot, type VmDisk } from "../clouds/vsphere/vm.ts";
import { convert } from "../disk/convert.ts";
import { formatByName } from "../disk/formats/index.ts";
import { createFileTarget } from "../disk/io.ts";
import { InvalidArgsError, isPortableError } from "../errors.ts";
import { formatBytes, progressReporter, writerOptions } from "./common.ts";
import { VSPHERE_USAGE } from "./usage.ts";

export interface VsphereIo {
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
}

const EXIT_ERROR = 2;

const CONNECTION_OPTIONS = {
  url: { type: "string" },
  username: { type: "string" },
  "password-env": { type: "string" },
  "ca-file": { type: "string" },
  thumbprint: { type: "string" },
  insecure: { type: "boolean" },
} as const;

function usageError(message: string): never {
  throw new InvalidArgsError("USAGE", `${message}\n\n${VSPHERE_USAGE}`);
}


interface ConnectionValues {
  readonly url?: string | undefined;
  readonly username?: string | undefined;
  readonly "password-env"?: string | undefined;
  readonly "ca-file"?: string | undefined;
  readonly thumbprint?: string | undefined;
  readonly insecure?: boolean | undefined;
}

async function connectFrom(values: ConnectionValues, env: NodeJS.ProcessEnv): Promise<VsphereClient> {
  const url = values.url ?? env.VSPHERE_URL;
  const username = values.username ?? env.VSPHERE_USERNAME;
  const passwordVar = values["password-env"] ?? "VSPHERE_PASSWORD";
  const password = env[passwordVar];
  if (url === undefined) usageError("give --url or set VSPHERE_URL");
  if (username === undefined) usageError("give --username or set VSPHERE_USERNAME");
  if (password === undefined) usageError(`set the password in ${passwordVar}`);
  const caFile = values["ca-file"] ?? env.VSPHERE_CA_FILE;
  const thumbprint = values.thumbprint ?? env.VSPHERE_THUMBPRINT;
  const insecure = values.insecure === true || env.VSPHERE_INSECURE === "1" || env.VSPHERE_INSECURE === "true";
  return VsphereClient.connect({
    url,
    username,
    password,
    insecure,
    ...(caFile === undefined ? {} : { caPem: await readFile(caFile, "utf8") }),
    ...(thumbprint === undefined ? {} : { thumbprint }),
  });
}


async function withClient<T>(values: ConnectionValues, env: NodeJS.ProcessEnv, fn: (client: VsphereClient) => Promise<T>): Promise<T> {
  const client = await connectFrom(values, env);
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => {});
  }
}

async function lsCommand(args: string[], io: VsphereIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...CONNECTION_OPTIONS, json: { type: "boolean" } } });
  if (positionals.length > 0) usageError("ls takes no arguments");
  const vms = await withClient(values, io.env, (client) => listVms(client));
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify(vms.map((vm) => ({ name: vm.name, id: vm.ref.value, powerState: vm.powerState, cpus: vm.numCpu, memoryMiB: vm.memoryMiB, guestId: vm.guestId, template: vm.template })), null, 2)}\n`);
    return 0;
  }
  const width = Math.max(4, ...vms.map((vm) => vm.name.length));
  io.stdout.write(`${"NAME".padEnd(width)}  ${"POWER".padEnd(10)}  CPUS  ${"MEMORY".padStart(9)}  GUEST\n`);
  for (const vm of vms) {
    io.stdout.write(
      `${vm.name.padEnd(width)}  ${vm.powerState.padEnd(10)}  ${String(vm.numCpu ?? "-").padStart(4)}  ${(vm.memoryMiB === undefined ? "-" : formatBytes(vm.memoryMiB * 2 ** 20)).padStart(9)}  ${vm.guestId ?? "-"}${vm.template ? " (template)" : ""}\n`,
    );
  }
  return 0;
}


async function copyDiskCommand(args: string[], io: VsphereIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...CONNECTION_OPTIONS, O: { type: "string" }, o: { type: "string", multiple: true }, overwrite: { type: "boolean" }, "no-snapshot": { type: "boolean" } },
  });
  const [vmName, which, output] = positionals;
  if (vmName === undefined || which === undefined || output === undefined || positionals.length > 3) usageError("copy-disk takes <vm> <diskIndex|label> <out>");
  const outFormat = formatByName(values.O ?? "raw");
  const options = writerOptions(values.o ?? []);
  return withClient(values, io.env, async (client) => {
    const vm = await findVm(client, vmName);
    const dcPath = await datacenterOf(client, vm);
    const copy = async (disk: VmDisk): Promise<number> => {
      const source = await openDatastoreDisk(client, parseDatastorePath(disk.fileName, dcPath));
      const target = await createFileTarget(output, { overwrite: values.overwrite === true });
      const progress = progressReporter(`copy ${vmName} ${disk.label} → ${outFormat.name}`, io.stderr);
      const started = Date.now();
      try {
        const sink = await outFormat.createWriter(target, { ...options, virtualSizeBytes: source.virtualSizeBytes });
        const result = await convert(source, sink, { progress: (p) => progress.update(p) });
        progress.stop();
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        io.stderr.write(`copied ${vmName} ${disk.label} (${disk.fileName}, ${formatBytes(source.virtualSizeBytes)}) → ${output} (${outFormat.name}): ${formatBytes(result.dataBytesWritten)} of data in ${seconds} s\n`);
        return 0;
      } catch (err) {
        progress.stop();
        await target.close().catch(() => {});
        // A half-written image must not look like a finished one.
        await rm(output, { force: true });
        throw err;
      } finally {
        await source.close();
      }
    };
    const config = await readVmConfig(client, vm);
    const disk = pickDisk(config, which);
    if (values["no-snapshot"] === true || (await powerState(client, vm)) === "poweredOff") return copy(disk);
    // A running VM keeps writing; a snapshot freezes the files we read.
    return withSnapshot(client, vm, `portable-copy-${Date.now()}`, async (disks) => copy(disks.find((d) => d.key === disk.key) ?? pickDisk({ ...config, disks }, which)));
  });
}

const COMMANDS: Record<string, (args: string[], io: VsphereIo) => Promise<number>> = {
  ls: lsCommand,
  "copy-disk": copyDiskCommand,
};

/** Runs `portable vsphere <argv…>`; returns the exit code (0 ok, 2 error) and never throws. */
export async function runVsphereCommand(argv: string[], io: VsphereIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    io.stdout.write(`${VSPHERE_USAGE}\n`);
    return command === undefined ? EXIT_ERROR : 0;
  }
  try {
    const run = COMMANDS[command];
    if (run === undefined) usageError(`unknown vsphere command "${command}"`);
    return await run(rest, io);
  } catch (err) {
    if (isPortableError(err)) io.stderr.write(`portable: ${err.code}: ${err.message}\n`);
    else if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) io.stderr.write(`portable: USAGE: ${err.message}\n\n${VSPHERE_USAGE}\n`);
    else io.stderr.write(`portable: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_ERROR;
  }
}
