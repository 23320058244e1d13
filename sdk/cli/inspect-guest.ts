// `portable inspect --guest <disk> [--target aws|azure|vsphere|local|kvm]... [--json]`: the
// guest readiness report (sdk/inspect) for a disk image. A thin face: it parses arguments,
// opens the disk, prints the report, and exits 1 when the report holds an error finding.
import { parseArgs } from "node:util";
import { InvalidArgsError } from "../errors.ts";
import { inspectGuest, type InspectOptions } from "../inspect/inspect.ts";
import { INSPECT_TARGETS, type InspectTarget, type ReadinessReport } from "../inspect/types.ts";
import { openSource } from "../clouds/registry.ts";
import { ARCHITECTURES, DISK_BUSES, FIRMWARE_TYPES, type Architecture, type DiskBus, type FirmwareType } from "../spec/workload.ts";
import { INSPECT_GUEST_USAGE } from "./usage.ts";
import { oneOf } from "./common.ts";


/** Exit code when the report holds at least one error finding (as `compare` uses 1 for "different"). */
const EXIT_NOT_READY = 1;


/** Renders the report for people: a summary, the drivers per target, then the findings. */
export function renderReport(image: string, report: ReadinessReport): string {
  const lines: string[] = [`guest: ${image}`];
  const os = report.os;
  lines.push(`os: ${os.prettyName ?? os.family}${os.distro === undefined ? "" : ` (${os.distro}${os.version === undefined ? "" : ` ${os.version}`})`}`);
  lines.push(`boot mode: ${report.bootMode} (${report.partitionScheme} partition table)`);
  for (const p of report.partitions) {
    const fs = report.filesystems.find((f) => f.partition === p.number);
    const fsText = fs === undefined ? "" : ` ${fs.type}${fs.uuid === undefined ? "" : ` ${fs.uuid}`}${fs.role === undefined ? "" : ` [${fs.role}]`}`;
    lines.push(`  p${p.number}: ${p.typeName} at ${p.startBytes}, ${p.lengthBytes} bytes${fsText}`);
  }
  for (const k of report.kernels) {
    const drivers = Object.entries(k.drivers).map(([name, how]) => `${name}${how === "builtin" ? "*" : ""}`);
    lines.push(`kernel ${k.version}${k.default ? " (default)" : ""}: ${k.moduleFileCount} module files, ${k.builtinCount} built in; drivers: ${drivers.join(" ") || "none"} (* built in)`);
  }
  for (const r of report.readiness) lines.push(`${r.target.padEnd(8)} ${r.ready ? "ready" : "NOT READY"}${r.missingDrivers.length === 0 ? "" : `, missing ${r.missingDrivers.join(", ")}`}`);
  if (report.findings.length > 0) lines.push("", "findings:");
  for (const f of report.findings) {
    lines.push(`  ${f.severity.toUpperCase().padEnd(7)} ${f.code}${f.evidencePath === undefined ? "" : ` at ${f.evidencePath}`}: ${f.message}`);
    if (f.fixHint !== undefined) lines.push(`          fix: ${f.fixHint}`);
  }
  return lines.join("\n");
}

export async function inspectGuestCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      guest: { type: "string" },
      target: { type: "string", multiple: true },
      firmware: { type: "string" },
      arch: { type: "string" },
      bus: { type: "string" },
      json: { type: "boolean" },
      f: { type: "string" },
    },
  });
  if (values.guest === undefined || positionals.length > 0) throw new InvalidArgsError("USAGE", `inspect --guest takes one image and no other arguments\n\nusage: portable ${INSPECT_GUEST_USAGE}`);
  const targets = values.target?.flatMap((t) => t.split(",")).map((t) => oneOf<InspectTarget>(t, INSPECT_TARGETS, "--target", INSPECT_GUEST_USAGE) as InspectTarget);
  const firmware = oneOf<FirmwareType>(values.firmware, FIRMWARE_TYPES, "--firmware", INSPECT_GUEST_USAGE);
  const architecture = oneOf<Architecture>(values.arch, ARCHITECTURES, "--arch", INSPECT_GUEST_USAGE);
  const diskBus = oneOf<DiskBus>(values.bus, DISK_BUSES, "--bus", INSPECT_GUEST_USAGE);
  const options: InspectOptions = {
    ...(targets === undefined ? {} : { targets }),
    ...(firmware === undefined ? {} : { firmware }),
    ...(architecture === undefined ? {} : { architecture }),
    ...(diskBus === undefined ? {} : { diskBus }),
  };
  const disk = await openSource(values.guest, values.f);
  let report: ReadinessReport;
  try {
    report = await inspectGuest(disk, options);
  } finally {
    await disk.close();
  }
  console.log(values.json === true ? JSON.stringify({ image: values.guest, ...report }, null, 2) : renderReport(values.guest, report));
  return report.findings.some((f) => f.severity === "error") ? EXIT_NOT_READY : 0;
}
