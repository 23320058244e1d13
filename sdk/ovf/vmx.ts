// VMX (VMware's per-VM configuration file) → Workload.
//
// A VMX is `key = "value"` lines (keys case-insensitive; "|22"-style escapes for characters
// such as quotes, as VMware writes them). Hand-written: no package parses it, and the format is
// a line grammar. Keys read, from VMware's documented configuration parameters (KB 1714,
// "Virtual machine configuration file .vmx" and the vSphere VirtualMachineConfigSpec mapping):
// displayName, numvcpus, cpuid.coresPerSocket, memsize, firmware, uefi.secureBoot.enabled,
// vtpm.present, guestOS, <bus><n>.present/virtualDev, <bus><n>:<m>.present/fileName/deviceType,
// ethernet<n>.present/networkName/addressType/address/generatedAddress/virtualDev,
// bios.hddOrder. A VMX holds no disk sizes: the caller supplies them (the CLI opens each VMDK).
import { FormatError } from "../errors.ts";
import { guestOsFromVmwareId } from "../spec/mappings/guest-os.ts";
import { safeParseWorkload, type DiskBus, type Workload, type WorkloadInput } from "../spec/workload.ts";
import type { OvfProblem } from "./ovf-reader.ts";

/** A VMX is a few KiB; 1 MiB bounds a hostile one. */
export const VMX_MAX_BYTES = 1024 * 1024;

export interface VmxDisk {
  /** The Workload disk id, e.g. "scsi0-0". */
  readonly id: string;
  /** The device key, e.g. "scsi0:0". */
  readonly device: string;
  readonly bus: DiskBus;
  /** The VMDK named by the VMX, as written (relative to the VMX's folder). */
  readonly fileName: string;
}

export interface VmxResult {
  readonly entries: ReadonlyMap<string, string>;
  /** Undefined when the VMX could not be made into a valid Workload; see `problems`. */
  readonly workload?: Workload;
  readonly disks: readonly VmxDisk[];
  readonly problems: readonly OvfProblem[];
}

/** Parses the lines; keys come back lower-cased. FormatError VMX_SYNTAX for a line that is not `key = value`. */
export function parseVmxEntries(text: string, name = "vmx"): Map<string, string> {
  if (text.length > VMX_MAX_BYTES) throw new FormatError("VMX_TOO_LARGE", `vmx: ${name} is over ${VMX_MAX_BYTES} bytes`, { context: { name } });
  const entries = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(".encoding")) return;
    const match = /^([A-Za-z0-9_.:\-[\]]+)\s*=\s*(?:"(.*)"|(\S*))\s*$/.exec(line);
    if (match === null) {
      throw new FormatError("VMX_SYNTAX", `vmx: ${name} line ${index + 1} is not key = "value": ${JSON.stringify(line.slice(0, 120))}`, { context: { name, line: index + 1 } });
    }
    // VMware escapes special characters in values as "|XX" (two hex digits), e.g. "|22" for '"'.
    const value = (match[2] ?? match[3] ?? "").replace(/\|([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    entries.set((match[1] as string).toLowerCase(), value);
  });
  return entries;
}

const BUS_OF_PREFIX: Readonly<Record<string, DiskBus>> = { scsi: "scsi", sata: "sata", nvme: "nvme", ide: "ide" };
/** deviceType values that are disks; CD-ROMs and floppies are not part of the Workload. */
const DISK_DEVICE_TYPES = new Set(["disk", "scsi-harddisk", "ata-harddisk", "plainDisk".toLowerCase(), "rawdisk", "scsi-passthru-disk"]);

/**
 * Reads a VMX. `diskSizeBytes` gives each disk's virtual size (by its fileName); a disk it
 * cannot size is reported and left out.
 */
export function readVmx(text: string, diskSizeBytes: ReadonlyMap<string, number>, name = "vmx"): VmxResult {
  const entries = parseVmxEntries(text, name);
  const problems: OvfProblem[] = [];
  const get = (key: string): string | undefined => entries.get(key.toLowerCase());
  const truthy = (key: string): boolean => (get(key) ?? "").toLowerCase() === "true";
  const int = (key: string): number | undefined => {
    const value = get(key);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value)) {
      problems.push({ code: "VMX_VALUE_INVALID", path: key, message: `"${value}" is not a whole number` });
      return undefined;
    }
    return Number(value);
  };

  const vcpus = int("numvcpus") ?? 1;
  let coresPerSocket = int("cpuid.coresPerSocket") ?? 1;
  if (coresPerSocket < 1 || vcpus % coresPerSocket !== 0) {
    problems.push({ code: "VMX_CORES_PER_SOCKET_INVALID", path: "cpuid.coresPerSocket", message: `${vcpus} vCPUs do not divide into sockets of ${coresPerSocket}; read as 1 core per socket` });
    coresPerSocket = 1;
  }
  const memoryMiB = int("memsize");
  if (memoryMiB === undefined) problems.push({ code: "VMX_MEMORY_MISSING", path: "memsize", message: "no memsize" });

  const disks: VmxDisk[] = [];
  const deviceKeys = [...entries.keys()].filter((k) => /^(scsi|sata|nvme|ide)\d+:\d+\.present$/.test(k));
  for (const presentKey of deviceKeys) {
    const device = presentKey.slice(0, -".present".length);
    if (!truthy(presentKey)) continue;
    const prefix = /^[a-z]+/.exec(device)?.[0] as string;
    const controller = device.split(":")[0] as string;
    if (get(`${controller}.present`) !== undefined && !truthy(`${controller}.present`)) {
      problems.push({ code: "VMX_CONTROLLER_ABSENT", path: `${controller}.present`, message: `${device} sits on controller ${controller}, which is not present; skipped` });
      continue;
    }
    const fileName = get(`${device}.fileName`);
    const deviceType = (get(`${device}.deviceType`) ?? "disk").toLowerCase();
    if (fileName === undefined || !DISK_DEVICE_TYPES.has(deviceType) || !/\.vmdk$/i.test(fileName)) continue;
    disks.push({ id: device.replace(":", "-"), device, bus: BUS_OF_PREFIX[prefix] as DiskBus, fileName });
  }
  // bios.hddOrder names the boot disk first ("scsi0:0,scsi0:1"); without it, the first disk in
  // device order boots, as ESXi picks it.
  const order = (get("bios.hddOrder") ?? "").toLowerCase().split(",").map((s) => s.trim()).filter((s) => s !== "");
  disks.sort((a, b) => {
    const ia = order.indexOf(a.device);
    const ib = order.indexOf(b.device);
    if (ia !== ib) return (ia < 0 ? Infinity : ia) - (ib < 0 ? Infinity : ib);
    return a.device.localeCompare(b.device, "en", { numeric: true });
  });
  const workloadDisks = disks.flatMap((disk, index) => {
    const size = diskSizeBytes.get(disk.fileName);
    if (size === undefined) {
      problems.push({ code: "VMX_DISK_SIZE_UNKNOWN", path: `${disk.device}.fileName`, message: `cannot size "${disk.fileName}"; left out of the workload` });
      return [];
    }
    return [{ id: disk.id, sizeBytes: size, bus: disk.bus, source: { kind: "file" as const, path: disk.fileName }, ...(index === 0 ? { bootOrder: 0 } : {}) }];
  });

  const nics: NonNullable<WorkloadInput["nics"]> = [];
  const nicKeys = [...entries.keys()].filter((k) => /^ethernet\d+\.present$/.test(k)).sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  for (const presentKey of nicKeys) {
    if (!truthy(presentKey)) continue;
    const nic = presentKey.slice(0, -".present".length);
    const addressType = (get(`${nic}.addressType`) ?? "generated").toLowerCase();
    const mac = addressType === "static" ? get(`${nic}.address`) : undefined;
    const model = get(`${nic}.virtualDev`);
    nics.push({
      network: get(`${nic}.networkName`) ?? get(`${nic}.connectionType`) ?? "none",
      macPolicy: mac === undefined ? { kind: "generated" } : { kind: "static", address: mac.toLowerCase() },
      addressing: { kind: "dhcp" },
      ...(model === undefined ? {} : { model }),
    });
  }

  const guestId = get("guestOS");
  let guestOs = guestId === undefined ? undefined : guestOsFromVmwareId(guestId);
  if (guestOs === undefined) {
    problems.push({ code: "VMX_GUEST_OS_UNKNOWN", path: "guestOS", message: `guest OS "${guestId ?? "absent"}" not recognised; read as family "other"` });
    guestOs = { family: "other", architecture: "x86_64" };
  }
  const uefi = (get("firmware") ?? "bios").toLowerCase() === "efi";
  const input: WorkloadInput = {
    name: (get("displayName") ?? name).slice(0, 255) || name,
    cpu: { sockets: vcpus / coresPerSocket, coresPerSocket },
    memoryMiB: memoryMiB ?? 0,
    firmware: { type: uefi ? "uefi" : "bios", secureBoot: uefi && truthy("uefi.secureBoot.enabled"), vtpm: uefi && truthy("vtpm.present") },
    disks: workloadDisks,
    nics,
    guestOs,
    tags: get("virtualHW.version") === undefined ? {} : { "vmx.virtualHW.version": get("virtualHW.version") as string },
  };
  const parsed = safeParseWorkload(input);
  if (!parsed.success) for (const issue of parsed.issues) problems.push({ code: "VMX_WORKLOAD_INVALID", path: `workload${issue.path === "" ? "" : `.${issue.path}`}`, message: issue.message });
  return { entries, ...(parsed.success ? { workload: parsed.workload } : {}), disks, problems };
}
