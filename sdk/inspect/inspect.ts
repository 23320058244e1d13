// inspectGuest(): will this disk boot on that target? Reads the partition table, identifies
// each filesystem, reads the Linux root (os-release, fstab, grub.cfg, /lib/modules) or the
// Windows volume (Windows/System32/drivers), and applies the readiness rules (rules.ts).
//
// Guest content never makes this throw: a malformed table or filesystem becomes an error
// finding carrying the reader's code, so a preview still shows everything else. Errors of the
// DiskSource itself (I/O, a truncated image file) do throw.
import { isPortableError } from "../errors.ts";
import type { DiskSource } from "../disk/types.ts";
import type { Architecture, DiskBus, FirmwareType } from "../spec/workload.ts";
import { Ext4Reader } from "./ext4.ts";
import { identifyFilesystem } from "./filesystems.ts";
import { compareKernelVersions, isUnstableDeviceName, moduleName, parseFstab, parseGrubConfig, parseModulesBuiltin, parseOsRelease, type FstabEntry, type GrubEntry } from "./guest-config.ts";
import { listInitramfs, type InitramfsListing } from "./initramfs.ts";
import { NtfsReader } from "./ntfs.ts";
import { readPartitionTable, type PartitionTable } from "./partitions.ts";
import { READINESS_MODULES, driverFixHint, firmwareFindings, linuxRequirements, windowsRequirements, type DriverRequirement } from "./rules.ts";
import { INSPECT_TARGETS, type BootMode, type FilesystemInfo, type Finding, type InspectTarget, type KernelInfo, type OsInfo, type PartitionInfo, type ReadinessReport, type TargetReadiness } from "./types.ts";
import { subVolume } from "./volume.ts";

export interface InspectOptions {
  /** Targets to judge readiness for; all of them by default. */
  readonly targets?: readonly InspectTarget[];
  /** The Workload's firmware: checked against the disk's boot mode. */
  readonly firmware?: FirmwareType;
  readonly architecture?: Architecture;
  /** The boot disk's bus in the Workload, which picks the vSphere controller. Default scsi. */
  readonly diskBus?: DiskBus;
}

/** Config files (os-release, fstab, grub.cfg) are small; 1 MiB bounds a hostile one. */
const MAX_CONFIG_BYTES = 1024 * 1024;
/** modules.builtin lists a few thousand lines; 4 MiB is far beyond any real one. */
const MAX_MODULES_BUILTIN_BYTES = 4 * 1024 * 1024;
/** A distribution kernel ships about 6,000 module files; 50,000 bounds the listing. */
const MAX_MODULE_FILES = 50_000;
/** kernel/drivers/net/ethernet/<vendor>/<family>/x.ko is six deep; 12 leaves room. */
const MAX_MODULE_DEPTH = 12;
/** Kernels examined per root; distributions keep two or three. */
const MAX_KERNELS = 16;
/** An initramfs is 30–100 MiB; past this it is not read (a warning says so). */
const MAX_INITRAMFS_BYTES = 256 * 1024 * 1024;
/** Partitions examined for filesystems. */
const MAX_FILESYSTEMS = 128;

const EXTENDED = new Set(["extended"]);

function errorFinding(err: unknown, evidencePath: string, fixHint?: string): Finding {
  if (!isPortableError(err)) throw err;
  return { severity: "error", code: err.code, message: err.message, evidencePath, ...(fixHint === undefined ? {} : { fixHint }) };
}

function bootModeOf(table: PartitionTable, partitions: readonly PartitionInfo[]): BootMode {
  const esp = partitions.some((p) => p.typeName === "efi-system");
  const bios = table.scheme === "gpt" ? partitions.some((p) => p.typeName === "bios-boot") : table.mbrBootCode;
  if (esp && bios) return "hybrid";
  if (esp) return "uefi";
  if (bios) return "bios";
  return "unknown";
}

interface LinuxRoot {
  readonly partition: number;
  readonly fs: Ext4Reader;
}

interface KernelScan {
  readonly info: Omit<KernelInfo, "default">;
  readonly present: ReadonlySet<string>;
  readonly builtin: ReadonlySet<string>;
}

async function scanKernel(fs: Ext4Reader, evidence: string, version: string, findings: Finding[]): Promise<KernelScan> {
  const dir = `/lib/modules/${version}`;
  const builtinText = await fs.readFile(`${dir}/modules.builtin`, MAX_MODULES_BUILTIN_BYTES);
  const builtin = builtinText === undefined ? new Set<string>() : parseModulesBuiltin(builtinText.toString("utf8"));
  if (builtinText === undefined) {
    findings.push({ severity: "warning", code: "INSPECT_NO_MODULES_BUILTIN", message: `kernel ${version} has no modules.builtin; drivers built into the kernel cannot be seen`, evidencePath: `${evidence}:${dir}/modules.builtin`, fixHint: "reinstall the kernel package so modules.builtin is present" });
  }
  const tree = await fs.listTree(`${dir}/kernel`, { maxFiles: MAX_MODULE_FILES, maxDepth: MAX_MODULE_DEPTH });
  const modules = new Set<string>();
  let moduleFileCount = 0;
  for (const file of tree?.files ?? []) {
    const name = moduleName(file);
    if (name === undefined) continue;
    modules.add(name);
    moduleFileCount++;
  }
  // Out-of-tree drivers (DKMS, vendor packages) live under updates/ and extra/.
  for (const sub of ["updates", "extra"]) {
    const extra = await fs.listTree(`${dir}/${sub}`, { maxFiles: MAX_MODULE_FILES, maxDepth: MAX_MODULE_DEPTH });
    for (const file of extra?.files ?? []) {
      const name = moduleName(file);
      if (name !== undefined) {
        modules.add(name);
        moduleFileCount++;
      }
    }
  }
  if (tree?.truncated === true) {
    findings.push({ severity: "warning", code: "INSPECT_MODULES_TRUNCATED", message: `the module listing of kernel ${version} stopped at ${MAX_MODULE_FILES} files or depth ${MAX_MODULE_DEPTH}`, evidencePath: `${evidence}:${dir}/kernel` });
  }
  const drivers: Record<string, "builtin" | "module"> = {};
  for (const name of READINESS_MODULES) {
    if (builtin.has(name)) drivers[name] = "builtin";
    else if (modules.has(name)) drivers[name] = "module";
  }
  return {
    info: { version, modulesPath: `${evidence}:${dir}`, builtinCount: builtin.size, moduleFileCount, drivers },
    present: new Set([...builtin, ...modules]),
    builtin,
  };
}

function missingOf(requirements: readonly DriverRequirement[], present: (name: string) => boolean): DriverRequirement[] {
  return requirements.filter((r) => !r.anyOf.some(present));
}

function readinessFindings(
  target: InspectTarget,
  family: "linux" | "windows",
  requirements: readonly DriverRequirement[],
  present: (name: string) => boolean,
  evidencePath: string,
  where: string,
): { readiness: TargetReadiness; findings: Finding[] } {
  const missing = missingOf(requirements, present);
  const findings = missing.map(
    (r): Finding => ({
      severity: r.severity,
      code: "INSPECT_DRIVER_MISSING",
      message: `${target}: no ${r.role} driver ${r.anyOf.join(" or ")} in ${where}`,
      evidencePath,
      fixHint: driverFixHint(target, family),
      target,
    }),
  );
  return { readiness: { target, ready: !missing.some((r) => r.severity === "error"), missingDrivers: missing.map((r) => r.anyOf.join("|")) }, findings };
}

function fstabFindings(entries: readonly FstabEntry[], evidence: string, filesystems: readonly FilesystemInfo[]): Finding[] {
  const findings: Finding[] = [];
  const uuids = new Set(filesystems.flatMap((f) => (f.uuid === undefined ? [] : [f.uuid.toLowerCase()])));
  for (const entry of entries) {
    const path = `${evidence}:/etc/fstab:${entry.line}`;
    if (isUnstableDeviceName(entry.spec)) {
      // The first disk's partition N (sda2, xvda2, vda2, nvme0n1p2) is partition N of this
      // disk: suggest the UUID found there. Other disks (sdb1) are not this one.
      const number = /^\/dev\/(?:(?:sd|xvd|vd|hd)a|nvme0n1p)(\d+)$/.exec(entry.spec)?.[1];
      const fs = number === undefined ? undefined : filesystems.find((f) => f.partition === Number(number));
      findings.push({
        severity: "warning",
        code: "INSPECT_FSTAB_DEVICE_NAME",
        message: `fstab mounts ${entry.mountPoint} from ${entry.spec}, a device name that changes between hypervisors (sdX on vSphere, nvmeXnY on AWS Nitro, vdX on KVM)`,
        evidencePath: path,
        fixHint: fs?.uuid === undefined ? "name the filesystem by UUID= or LABEL= (blkid shows them)" : `replace ${entry.spec} with UUID=${fs.uuid}`,
      });
    }
    const uuid = /^UUID=(.+)$/.exec(entry.spec)?.[1];
    if (uuid !== undefined && !uuids.has(uuid.replace(/^"|"$/g, "").toLowerCase()) && !entry.options.split(",").includes("nofail")) {
      findings.push({ severity: "warning", code: "INSPECT_FSTAB_UNKNOWN_UUID", message: `fstab mounts ${entry.mountPoint} from UUID=${uuid}, which no filesystem on this disk has (another disk must come along, or boot stops)`, evidencePath: path, fixHint: "migrate the disk that holds it too, or mark the entry nofail" });
    }
  }
  return findings;
}

/**
 * Inspects a guest disk. The report lists partitions, filesystems, the OS, kernels and their
 * readiness drivers, and findings; see ReadinessReport.
 */
export async function inspectGuest(disk: DiskSource, options: InspectOptions = {}): Promise<ReadinessReport> {
  const targets = options.targets ?? INSPECT_TARGETS;
  const findings: Finding[] = [];
  let table: PartitionTable;
  try {
    table = await readPartitionTable(disk);
  } catch (err) {
    findings.push(errorFinding(err, "disk", "repair the partition table (gdisk, fdisk) on the source before migrating"));
    return {
      os: { family: "unknown" },
      bootMode: "unknown",
      partitionScheme: "none",
      partitions: [],
      filesystems: [],
      kernels: [],
      readiness: targets.map((target) => ({ target, ready: false, missingDrivers: [] })),
      findings,
    };
  }
  findings.push(...table.findings);
  const partitions = table.partitions;
  const bootMode = bootModeOf(table, partitions);

  const filesystems: FilesystemInfo[] = [];
  const ext4: { partition: number; fs: Ext4Reader }[] = [];
  let windows: { partition: number; drivers: Set<string> } | undefined;
  for (const part of partitions.filter((p) => !EXTENDED.has(p.typeName)).slice(0, MAX_FILESYSTEMS)) {
    const evidence = `p${part.number}`;
    try {
      const volume = subVolume(disk, part.startBytes, part.lengthBytes, evidence);
      const id = await identifyFilesystem(volume);
      let role: FilesystemInfo["role"] = part.typeName === "efi-system" ? "esp" : id.type === "swap" ? "swap" : undefined;
      if (id.type === "ext2" || id.type === "ext3" || id.type === "ext4") {
        try {
          const fs = await Ext4Reader.open(volume);
          findings.push(...fs.findings);
          ext4.push({ partition: part.number, fs });
        } catch (err) {
          findings.push(errorFinding(err, evidence, "run e2fsck on the source filesystem"));
        }
      } else if (id.type === "ntfs" && windows === undefined) {
        try {
          const ntfs = await NtfsReader.open(volume);
          const system32 = await ntfs.resolve("Windows/System32");
          if (system32 !== undefined) {
            role = "windows";
            const driversDir = await ntfs.resolve("Windows/System32/drivers");
            const names = driversDir === undefined ? [] : await ntfs.listDirectory(driversDir);
            windows = { partition: part.number, drivers: new Set(names.map((n) => n.name.toLowerCase())) };
          }
        } catch (err) {
          findings.push(errorFinding(err, evidence, "run chkdsk on the source volume"));
        }
      }
      filesystems.push({ partition: part.number, type: id.type, ...(id.uuid === undefined ? {} : { uuid: id.uuid }), ...(id.label === undefined ? {} : { label: id.label }), ...(role === undefined ? {} : { role }) });
    } catch (err) {
      findings.push(errorFinding(err, evidence));
    }
  }

  // The Linux root is the ext filesystem with an os-release; /boot may be another one.
  let root: LinuxRoot | undefined;
  let osRelease: Record<string, string> | undefined;
  let bootFs: LinuxRoot | undefined;
  for (const candidate of ext4) {
    const evidence = `p${candidate.partition}`;
    try {
      if (root === undefined) {
        const text = (await candidate.fs.readFile("/etc/os-release", MAX_CONFIG_BYTES)) ?? (await candidate.fs.readFile("/usr/lib/os-release", MAX_CONFIG_BYTES));
        if (text !== undefined) {
          root = candidate;
          osRelease = parseOsRelease(text.toString("utf8"));
          continue;
        }
      }
      if (bootFs === undefined && ((await candidate.fs.resolve("/grub/grub.cfg")) !== undefined || (await candidate.fs.resolve("/grub2/grub.cfg")) !== undefined)) bootFs = candidate;
    } catch (err) {
      findings.push(errorFinding(err, evidence, "run e2fsck on the source filesystem"));
    }
  }
  const setRole = (partition: number, role: FilesystemInfo["role"]): void => {
    const i = filesystems.findIndex((f) => f.partition === partition);
    const fs = filesystems[i];
    if (fs !== undefined && role !== undefined) filesystems[i] = { ...fs, role };
  };

  let os: OsInfo = { family: "unknown" };
  const kernels: KernelInfo[] = [];
  const readiness: TargetReadiness[] = [];
  if (root !== undefined && osRelease !== undefined) {
    const evidence = `p${root.partition}`;
    setRole(root.partition, "root");
    if (bootFs !== undefined) setRole(bootFs.partition, "boot");
    os = {
      family: "linux",
      ...(osRelease.ID === undefined ? {} : { distro: osRelease.ID }),
      ...(osRelease.VERSION_ID === undefined ? {} : { version: osRelease.VERSION_ID }),
      ...(osRelease.PRETTY_NAME === undefined ? {} : { prettyName: osRelease.PRETTY_NAME }),
    };
    let defaultKernel: string | undefined;
    try {
      const fstab = await root.fs.readFile("/etc/fstab", MAX_CONFIG_BYTES);
      if (fstab === undefined) findings.push({ severity: "warning", code: "INSPECT_NO_FSTAB", message: "the root filesystem has no /etc/fstab", evidencePath: `${evidence}:/etc/fstab` });
      else findings.push(...fstabFindings(parseFstab(fstab.toString("utf8")), evidence, filesystems));

      const grub = await readGrub(root, bootFs);
      if (grub === undefined) {
        findings.push({ severity: "info", code: "INSPECT_NO_GRUB_CONFIG", message: "no grub.cfg in /boot/grub, /boot/grub2 or a separate /boot; the default kernel is taken to be the newest", evidencePath: `${evidence}:/boot/grub/grub.cfg` });
      } else {
        const entry: GrubEntry | undefined = grub.config.entries[grub.config.defaultIndex];
        defaultKernel = entry?.kernelVersion;
        for (const e of grub.config.entries) {
          if (e.root !== undefined && isUnstableDeviceName(e.root)) {
            findings.push({ severity: "warning", code: "INSPECT_GRUB_DEVICE_NAME", message: `boot entry "${e.title}" passes root=${e.root}, a device name that changes between hypervisors`, evidencePath: grub.path, fixHint: "regenerate grub.cfg with root=UUID=… (update-grub / grub2-mkconfig)" });
          }
        }
      }

      const versions = ((await root.fs.listDir("/lib/modules")) ?? []).filter((e) => e.name !== "." && e.name !== ".." && e.kind !== "file").map((e) => e.name);
      versions.sort(compareKernelVersions);
      const chosen = defaultKernel !== undefined && versions.includes(defaultKernel) ? defaultKernel : versions.at(-1);
      const scans: KernelScan[] = [];
      for (const version of versions.slice(-MAX_KERNELS)) scans.push(await scanKernel(root.fs, evidence, version, findings));
      for (const scan of scans) kernels.push({ ...scan.info, default: scan.info.version === chosen });
      const boot = scans.find((s) => s.info.version === chosen);
      if (boot === undefined) {
        findings.push({ severity: "error", code: "INSPECT_NO_KERNEL", message: "no kernel modules directory under /lib/modules: drivers cannot be checked", evidencePath: `${evidence}:/lib/modules`, fixHint: "install a distribution kernel package" });
        for (const target of targets) readiness.push({ target, ready: false, missingDrivers: linuxRequirements(target, options.diskBus).map((r) => r.anyOf.join("|")) });
      } else {
        const initramfs = await readInitramfs(root, bootFs, boot.info.version, findings);
        for (const target of targets) {
          const requirements = linuxRequirements(target, options.diskBus);
          const result = readinessFindings(target, "linux", requirements, (n) => boot.present.has(n), boot.info.modulesPath, `kernel ${boot.info.version} (modules.builtin or a module file)`);
          const early = initramfs === undefined ? [] : initramfsFindings(target, requirements, boot, initramfs);
          readiness.push(early.length === 0 ? result.readiness : { ...result.readiness, ready: false });
          findings.push(...result.findings, ...early);
        }
      }
    } catch (err) {
      findings.push(errorFinding(err, evidence, "run e2fsck on the source filesystem"));
      for (const target of targets) if (!readiness.some((r) => r.target === target)) readiness.push({ target, ready: false, missingDrivers: [] });
    }
  } else if (windows !== undefined) {
    const evidence = `p${windows.partition}:/Windows/System32/drivers`;
    os = { family: "windows", distro: "windows", prettyName: "Microsoft Windows" };
    for (const target of targets) {
      const result = readinessFindings(target, "windows", windowsRequirements(target, options.diskBus), (n) => windows.drivers.has(n), evidence, "Windows/System32/drivers");
      readiness.push(result.readiness);
      findings.push(...result.findings);
    }
  } else {
    const unread = filesystems.filter((f) => f.type === "xfs" || f.type === "btrfs" || f.type === "lvm2-pv");
    findings.push({
      severity: "error",
      code: "INSPECT_OS_UNKNOWN",
      message:
        unread.length > 0
          ? `no Linux root on an ext2/3/4 filesystem and no Windows volume; the root may be on ${[...new Set(unread.map((f) => f.type))].join(", ")}, which this inspection identifies but does not read`
          : "no Linux root (an ext2/3/4 filesystem with /etc/os-release) and no Windows volume (NTFS with Windows/System32) found",
      evidencePath: "disk",
      fixHint: "check the disk is the boot disk; readiness cannot be judged",
    });
    for (const target of targets) readiness.push({ target, ready: false, missingDrivers: [] });
  }

  findings.push(...firmwareFindings(bootMode, `disk:${table.scheme}`, { targets, ...(options.firmware === undefined ? {} : { firmware: options.firmware }), ...(options.architecture === undefined ? {} : { architecture: options.architecture }) }));
  return { os, bootMode, partitionScheme: table.scheme, partitions, filesystems, kernels, readiness, findings };
}

async function readGrub(root: LinuxRoot, bootFs: LinuxRoot | undefined): Promise<{ config: ReturnType<typeof parseGrubConfig>; path: string } | undefined> {
  const places: [LinuxRoot, string][] = [
    [root, "/boot/grub/grub.cfg"],
    [root, "/boot/grub2/grub.cfg"],
    ...(bootFs === undefined ? [] : ([[bootFs, "/grub/grub.cfg"], [bootFs, "/grub2/grub.cfg"]] as [LinuxRoot, string][])),
  ];
  for (const [fs, path] of places) {
    const text = await fs.fs.readFile(path, MAX_CONFIG_BYTES);
    if (text !== undefined) return { config: parseGrubConfig(text.toString("utf8")), path: `p${fs.partition}:${path}` };
  }
  return undefined;
}

/** The initramfs of `version` (Debian's initrd.img-V, dracut's initramfs-V.img), on the root's /boot or a separate /boot. */
async function readInitramfs(root: LinuxRoot, bootFs: LinuxRoot | undefined, version: string, findings: Finding[]): Promise<{ listing: InitramfsListing; path: string } | undefined> {
  const names = [`initrd.img-${version}`, `initramfs-${version}.img`];
  const places: [LinuxRoot, string][] = [...names.map((n): [LinuxRoot, string] => [root, `/boot/${n}`]), ...(bootFs === undefined ? [] : names.map((n): [LinuxRoot, string] => [bootFs, `/${n}`]))];
  for (const [fs, path] of places) {
    const evidence = `p${fs.partition}:${path}`;
    const inode = await fs.fs.resolve(path);
    if (inode === undefined) continue;
    if (inode.sizeBytes > MAX_INITRAMFS_BYTES) {
      findings.push({ severity: "warning", code: "INSPECT_INITRAMFS_TOO_LARGE", message: `the initramfs is ${inode.sizeBytes} bytes, more than the ${MAX_INITRAMFS_BYTES} read; its drivers are not checked`, evidencePath: evidence });
      return undefined;
    }
    try {
      const image = await fs.fs.readFile(path, MAX_INITRAMFS_BYTES);
      if (image === undefined) continue;
      const listing = await listInitramfs(image);
      if (listing.modules.size === 0) {
        // Not a module-loading initramfs (a custom /init, or drivers built in): nothing to judge.
        findings.push({ severity: "info", code: "INSPECT_INITRAMFS_NO_MODULES", message: `the initramfs carries no kernel module (${listing.members} files): its boot drivers are not checked`, evidencePath: evidence });
        return undefined;
      }
      return { listing, path: evidence };
    } catch (err) {
      findings.push({ ...errorFinding(err, evidence), severity: "warning" });
      return undefined;
    }
  }
  findings.push({ severity: "info", code: "INSPECT_NO_INITRAMFS", message: `no initramfs for kernel ${version} in /boot: the drivers it carries are not checked`, evidencePath: `p${root.partition}:/boot` });
  return undefined;
}

/**
 * The boot drivers (disk and bus) the kernel has as modules but the initramfs lacks: the root
 * disk stays invisible until the initramfs is rebuilt with them (a fixup does it).
 */
function initramfsFindings(target: InspectTarget, requirements: readonly DriverRequirement[], boot: KernelScan, initramfs: { listing: InitramfsListing; path: string }): Finding[] {
  const missing: string[] = [];
  const storage = requirements.filter((r) => r.role === "storage").flatMap((r) => r.anyOf);
  // A bus driver matters at boot only under the disk's driver (virtio_pci under virtio_scsi, hv_vmbus under hv_storvsc).
  const underDisk = (r: DriverRequirement): boolean => r.role === "storage" || (r.role === "bus" && r.anyOf.some((bus) => storage.some((s) => s.split("_")[0] === bus.split("_")[0])));
  for (const requirement of requirements.filter((r) => r.severity === "error" && underDisk(r))) {
    const available = requirement.anyOf.filter((name) => boot.present.has(name));
    // Built into the kernel, or no module to add (INSPECT_DRIVER_MISSING says so): nothing to say here.
    if (available.length === 0 || available.some((name) => boot.builtin.has(name) || initramfs.listing.modules.has(name))) continue;
    missing.push(...available);
  }
  if (missing.length === 0) return [];
  return [{
    severity: "error",
    code: "INSPECT_INITRAMFS_DRIVER_MISSING",
    message: `${target}: the initramfs of kernel ${boot.info.version} lacks ${missing.join(", ")} (the kernel has ${missing.length === 1 ? "it as a module" : "them as modules"}), so the root disk is not found at boot`,
    evidencePath: initramfs.path,
    fixHint: `fixups: "auto" adds ${missing.join(", ")} to the initramfs and rebuilds it with the guest's own tool`,
    target,
    drivers: missing,
  }];
}
