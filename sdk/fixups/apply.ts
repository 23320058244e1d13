// Applies guest fixups (spec/fixups.ts) to a copy-on-write view of a source disk: a qcow2
// overlay whose backing file is the source, opened read-only (a local image directly, any other
// source through a read-only NBD export). libguestfs writes only the
// overlay; the pipe then reads the overlay (the source's blocks plus the changed clusters), so
// the source is never written and the changes travel with the copy.
//
// Each fixup runs with the guest's own tools inside the appliance (update-initramfs or dracut,
// dpkg or rpm, systemctl), the way virt-v2v does it, and reports what it changed.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, posix, resolve } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import type { DiskSource } from "../disk/types.ts";
import type { Fixup } from "../spec/fixups.ts";
import { exportDisk } from "./nbd-export.ts";
import { describeFixup } from "./derive.ts";
import { FixupError, GuestfsSession, requireGuestfish } from "./guestfs.ts";

const exec = promisify(execFile);

/** Config files we rewrite are small; past this a hostile one is refused. */
const MAX_CONFIG_BYTES = 1024 * 1024;
const MARK = "added by portable-workload (fixups)";

export interface FixupOutcome {
  readonly kind: Fixup["kind"];
  /** The plan's line for it. */
  readonly line: string;
  /** What it changed, e.g. "initramfs-tools: rebuilt 1 kernel(s) with virtio_blk". */
  readonly detail: string;
  readonly seconds: number;
}

export interface FixedView {
  /** The qcow2 overlay carrying the changes (its backing file is the source). */
  readonly overlay: string;
  readonly outcomes: readonly FixupOutcome[];
  /** The whole application, appliance start included. */
  readonly seconds: number;
  /** Deletes the overlay. */
  release(): Promise<void>;
}

export interface ApplyFixupsOptions {
  /**
   * The source disk: a local image file QEMU opens read-only as the overlay's backing file, or
   * any DiskSource, which QEMU then reads through a read-only NBD export of ours (nbd-export.ts).
   */
  readonly image: string | DiskSource;
  /** A file image's QEMU format name (raw, qcow2, vmdk, vpc, vhdx); a DiskSource is exported raw. */
  readonly format?: string;
  readonly fixups: readonly Fixup[];
  /** Where the overlay is made (a folder of its own; removed on release). */
  readonly workDir: string;
  readonly onFixup?: (outcome: FixupOutcome) => void;
}

/** Makes the overlay and applies every fixup to it. On failure nothing is left behind. */
export async function applyFixups(options: ApplyFixupsOptions): Promise<FixedView> {
  const started = performance.now();
  // No fixup (a test boot alone) needs only the overlay, not libguestfs.
  if (options.fixups.length > 0) requireGuestfish();
  await mkdir(options.workDir, { recursive: true });
  const overlay = join(options.workDir, "fixups.qcow2");
  // A Unix socket path must stay under 108 bytes: in the temp folder, not the work folder.
  const exported = typeof options.image === "string" ? undefined : await exportDisk(options.image, join(tmpdir(), `pw-nbd-${process.pid}-${randomBytes(4).toString("hex")}.sock`));
  const release = async (): Promise<void> => {
    await exported?.close();
    await rm(options.workDir, { recursive: true, force: true });
  };
  const backing = exported === undefined ? { file: resolve(options.image as string), format: options.format ?? "raw" } : { file: exported.url, format: "raw" };
  try {
    await exec("qemu-img", ["create", "-q", "-f", "qcow2", "-F", backing.format, "-b", backing.file, overlay]).catch((error: { stderr?: string }) => {
      throw new FixupError("FIXUP_OVERLAY_FAILED", `qemu-img could not put an overlay on ${backing.file}: ${(error.stderr ?? String(error)).trim()}`);
    });
    const outcomes: FixupOutcome[] = [];
    if (options.fixups.length === 0) return { overlay, outcomes, seconds: (performance.now() - started) / 1000, release };
    const session = await GuestfsSession.open(overlay, "qcow2", join(options.workDir, "guestfish.log"));
    try {
      await requireLinux(session);
      await requireWritable(session, options.workDir);
      for (const fixup of options.fixups) {
        const t0 = performance.now();
        const detail = await applyOne(session, fixup, options.workDir);
        const outcome: FixupOutcome = { kind: fixup.kind, line: describeFixup(fixup), detail, seconds: (performance.now() - t0) / 1000 };
        outcomes.push(outcome);
        options.onFixup?.(outcome);
      }
      await session.close();
    } catch (error) {
      await session.abort();
      throw error;
    }
    return { overlay, outcomes, seconds: (performance.now() - started) / 1000, release };
  } catch (error) {
    await release();
    throw error;
  }
}

async function requireLinux(session: GuestfsSession): Promise<void> {
  const roots = (await session.call("inspect-get-roots")).split("\n").filter(Boolean);
  const root = roots[0];
  if (root === undefined) throw new FixupError("FIXUP_NO_OS", "libguestfs found no operating system root on the disk");
  const type = await session.call("inspect-get-type", root);
  if (type !== "linux") throw new FixupError("FIXUP_OS_UNSUPPORTED", `fixups handle Linux guests; this one is ${type} (Windows driver injection is not built)`);
}

/** A probe write: a read-only root fails here with FIXUP_READ_ONLY, before any change. */
async function requireWritable(session: GuestfsSession, workDir: string): Promise<void> {
  const probe = join(workDir, "probe");
  await writeFile(probe, "");
  await session.call("upload", probe, "/.portable-fixups-probe");
  await session.call("rm", "/.portable-fixups-probe");
}

async function readGuestFile(session: GuestfsSession, path: string, workDir: string): Promise<string | undefined> {
  if (!(await session.isFile(path))) return undefined;
  const size = Number(await session.call("filesize", path));
  if (size > MAX_CONFIG_BYTES) throw new FixupError("FIXUP_CONFIG_TOO_LARGE", `${path} in the guest is ${size} bytes (over ${MAX_CONFIG_BYTES}): not rewritten`);
  const local = join(workDir, "download");
  await session.call("download", path, local);
  try {
    return await readFile(local, "utf8");
  } finally {
    await rm(local, { force: true });
  }
}

async function writeGuestFile(session: GuestfsSession, path: string, content: string, workDir: string, mode?: number): Promise<void> {
  const local = join(workDir, "upload");
  await writeFile(local, content);
  try {
    await session.call("upload", local, path);
    if (mode !== undefined) await session.call("chmod", `0${mode.toString(8)}`, path);
  } finally {
    await rm(local, { force: true });
  }
}

function applyOne(session: GuestfsSession, fixup: Fixup, workDir: string): Promise<string> {
  switch (fixup.kind) {
    case "initramfs-drivers":
      return addInitramfsDrivers(session, fixup.drivers, workDir);
    case "device-names":
      return deviceNamesToUuid(session, workDir);
    case "serial-console":
      return serialConsole(session, fixup.device, fixup.baud, workDir);
    case "remove-packages":
      return removePackages(session, fixup.packages);
    case "disable-services":
      return disableServices(session, fixup.services);
    case "write-file":
      return writeFileFixup(session, fixup.path, fixup.content, fixup.mode, workDir);
  }
}

async function firstFile(session: GuestfsSession, paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) if (await session.isFile(path)) return path;
  return undefined;
}

async function addInitramfsDrivers(session: GuestfsSession, drivers: readonly string[], workDir: string): Promise<string> {
  const updateInitramfs = await firstFile(session, ["/usr/sbin/update-initramfs", "/sbin/update-initramfs"]);
  const dracut = updateInitramfs === undefined ? await firstFile(session, ["/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut"]) : undefined;
  if (updateInitramfs === undefined && dracut === undefined) {
    throw new FixupError("FIXUP_NO_INITRAMFS_TOOL", "the guest has no initramfs tool (update-initramfs or dracut): drivers cannot be added to its initramfs");
  }
  const kernels = (await session.call("ls", "/lib/modules")).split("\n").filter((k) => /^[A-Za-z0-9._+-]+$/.test(k));
  if (kernels.length === 0) throw new FixupError("FIXUP_NO_KERNEL", "the guest has no kernel under /lib/modules");
  // Each driver must exist for some kernel (a module file or built in), or the rebuild cannot add it.
  for (const driver of drivers) {
    const found = await session.sh(kernels.map((k) => `modinfo -k '${k}' -F filename '${driver}' >/dev/null 2>&1`).join(" || "));
    if (found.code !== 0) throw new FixupError("FIXUP_DRIVER_NOT_IN_KERNEL", `no kernel of the guest (${kernels.join(", ")}) has the module ${driver}: install a kernel that has it`);
  }
  if (updateInitramfs !== undefined) {
    const listPath = "/etc/initramfs-tools/modules";
    const current = (await readGuestFile(session, listPath, workDir)) ?? "";
    const listed = new Set(current.split("\n").map((l) => l.trim().split(/\s+/)[0]).filter(Boolean));
    const add = drivers.filter((d) => !listed.has(d));
    if (add.length > 0) await writeGuestFile(session, listPath, `${current}${current === "" || current.endsWith("\n") ? "" : "\n"}# ${MARK}\n${add.join("\n")}\n`, workDir);
    const rebuilt = await session.sh("update-initramfs -u -k all");
    if (rebuilt.code !== 0) throw new FixupError("FIXUP_INITRAMFS_REBUILD_FAILED", `update-initramfs failed (${rebuilt.code}): ${rebuilt.output.slice(-1500)}`);
    return `initramfs-tools: ${add.length === 0 ? "already listed" : `listed ${add.join(", ")} in ${listPath}`}; rebuilt for ${kernels.join(", ")}`;
  }
  const confPath = "/etc/dracut.conf.d/90-portable-workload.conf";
  if (!(await session.isDir("/etc/dracut.conf.d"))) await session.call("mkdir-p", "/etc/dracut.conf.d");
  await writeGuestFile(session, confPath, `# ${MARK}\nadd_drivers+=" ${drivers.join(" ")} "\n`, workDir);
  const rebuilt = await session.sh("dracut -f --regenerate-all");
  if (rebuilt.code !== 0) throw new FixupError("FIXUP_INITRAMFS_REBUILD_FAILED", `dracut failed (${rebuilt.code}): ${rebuilt.output.slice(-1500)}`);
  return `dracut: add_drivers ${drivers.join(", ")} in ${confPath}; regenerated for ${kernels.join(", ")}`;
}

/** /dev/sda2, /dev/vda2, /dev/xvda2, /dev/hda2, /dev/nvme0n1p2: partition 2 of the first disk. */
const FIRST_DISK_PARTITION = /^\/dev\/(?:(?:sd|vd|xvd|hd)a(\d+)|nvme0n1p(\d+))$/;

async function uuidOf(session: GuestfsSession, name: string, cache: Map<string, string | undefined>): Promise<string | undefined> {
  const match = FIRST_DISK_PARTITION.exec(name);
  const number = match?.[1] ?? match?.[2];
  if (number === undefined) return undefined;
  if (!cache.has(number)) {
    // The appliance sees the one disk it was given as /dev/sda.
    const devices = (await session.call("list-partitions")).split("\n");
    const device = `/dev/sda${number}`;
    cache.set(number, devices.includes(device) ? (await session.call("vfs-uuid", device)) || undefined : undefined);
  }
  return cache.get(number);
}

async function deviceNamesToUuid(session: GuestfsSession, workDir: string): Promise<string> {
  const cache = new Map<string, string | undefined>();
  const changed: string[] = [];
  const fstab = await readGuestFile(session, "/etc/fstab", workDir);
  if (fstab !== undefined) {
    const lines: string[] = [];
    for (const line of fstab.split("\n")) {
      const fields = line.trim().split(/\s+/);
      const spec = fields[0];
      const uuid = spec === undefined || line.trim().startsWith("#") ? undefined : await uuidOf(session, spec, cache);
      if (uuid !== undefined && spec !== undefined) {
        lines.push(line.replace(spec, `UUID=${uuid}`));
        changed.push(`fstab ${spec} → UUID=${uuid}`);
      } else lines.push(line);
    }
    if (lines.join("\n") !== fstab) await writeGuestFile(session, "/etc/fstab", lines.join("\n"), workDir);
  }
  for (const path of ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/etc/default/grub"]) {
    const text = await readGuestFile(session, path, workDir);
    if (text === undefined) continue;
    let out = text;
    for (const match of new Set([...text.matchAll(/\broot=(\/dev\/[A-Za-z0-9]+)/g)].map((m) => m[1]!))) {
      const uuid = await uuidOf(session, match, cache);
      if (uuid === undefined) continue;
      out = out.replaceAll(`root=${match}`, `root=UUID=${uuid}`);
      changed.push(`${posix.basename(path)} root=${match} → root=UUID=${uuid}`);
    }
    if (out !== text) await writeGuestFile(session, path, out, workDir);
  }
  return changed.length === 0 ? "no device names to rewrite" : changed.join("; ");
}

async function serialConsole(session: GuestfsSession, device: string, baud: number, workDir: string): Promise<string> {
  const argument = `console=${device},${baud}`;
  const changed: string[] = [];
  for (const path of ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"]) {
    const text = await readGuestFile(session, path, workDir);
    if (text === undefined) continue;
    const out = text.replace(/^(\s*linux(?:efi|16)?\s+\S+[^\n]*)$/gm, (line) => (line.includes(`console=${device}`) ? line : `${line} ${argument}`));
    if (out !== text) {
      await writeGuestFile(session, path, out, workDir);
      changed.push(path);
    }
  }
  const defaults = await readGuestFile(session, "/etc/default/grub", workDir);
  if (defaults !== undefined && !defaults.includes(`console=${device}`)) {
    const out = /^GRUB_CMDLINE_LINUX="/m.test(defaults)
      ? defaults.replace(/^GRUB_CMDLINE_LINUX="([^"]*)"/m, (_m, args: string) => `GRUB_CMDLINE_LINUX="${`${args} ${argument}`.trim()}"`)
      : `${defaults}${defaults.endsWith("\n") ? "" : "\n"}GRUB_CMDLINE_LINUX="${argument}"\n`;
    await writeGuestFile(session, "/etc/default/grub", out, workDir);
    changed.push("/etc/default/grub");
  }
  return changed.length === 0 ? `${argument} already set (or no GRUB configuration)` : `${argument} in ${changed.join(", ")}`;
}

async function removePackages(session: GuestfsSession, packages: readonly string[]): Promise<string> {
  const dpkg = await session.isFile("/var/lib/dpkg/status");
  const rpm = !dpkg && (await firstFile(session, ["/usr/bin/rpm", "/bin/rpm"])) !== undefined;
  if (!dpkg && !rpm) throw new FixupError("FIXUP_NO_PACKAGE_MANAGER", "the guest has neither dpkg nor rpm: packages cannot be removed");
  const removed: string[] = [];
  const absent: string[] = [];
  for (const name of packages) {
    const installed = await session.sh(dpkg ? `dpkg-query -W -f='\${Status}' '${name}' | grep -q 'install ok installed'` : `rpm -q '${name}'`);
    if (installed.code !== 0) {
      absent.push(name);
      continue;
    }
    const result = await session.sh(dpkg ? `DEBIAN_FRONTEND=noninteractive dpkg --purge '${name}'` : `rpm -e '${name}'`);
    if (result.code !== 0) throw new FixupError("FIXUP_PACKAGE_REMOVAL_FAILED", `${dpkg ? "dpkg --purge" : "rpm -e"} ${name} failed (${result.code}): ${result.output.slice(-1500)}`);
    removed.push(name);
  }
  return `removed ${removed.length === 0 ? "nothing" : removed.join(", ")}${absent.length === 0 ? "" : `; not installed: ${absent.join(", ")}`}`;
}

async function disableServices(session: GuestfsSession, services: readonly string[]): Promise<string> {
  const systemctl = await firstFile(session, ["/usr/bin/systemctl", "/bin/systemctl"]);
  const done: string[] = [];
  for (const service of services) {
    const unit = service.includes(".") ? service : `${service}.service`;
    // Offline, systemctl disable only removes the enablement links; without systemd, so do we.
    const result = systemctl === undefined
      ? await session.sh(`rm -f /etc/systemd/system/*.wants/'${unit}'`)
      : await session.sh(`systemctl disable '${unit}' || test ! -e /lib/systemd/system/'${unit}' -a ! -e /etc/systemd/system/'${unit}'`);
    if (result.code !== 0) throw new FixupError("FIXUP_SERVICE_DISABLE_FAILED", `disabling ${unit} failed (${result.code}): ${result.output.slice(-1500)}`);
    done.push(unit);
  }
  return `disabled ${done.join(", ")}`;
}

async function writeFileFixup(session: GuestfsSession, path: string, content: string, mode: number, workDir: string): Promise<string> {
  const parent = dirname(path);
  if (!(await session.isDir(parent))) throw new FixupError("FIXUP_WRITE_FILE_PARENT", `write-file ${path}: the folder ${parent} does not exist in the guest`);
  await writeGuestFile(session, path, content, workDir, mode);
  return `wrote ${path} (${Buffer.byteLength(content)} bytes, mode ${mode.toString(8)})`;
}
