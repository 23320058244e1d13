// Builds small bootable test disks from Debian packages, byte for byte the same on every run.
//
// The guest is Debian's own kernel (`linux-image-<abi>-amd64`, fetched once with `apt-get download`
// into .tools/cache/ and unpacked there, never installed) and a busybox initramfs whose /init
// prints a marker on ttyS0 and powers off (or stays up). GRUB loads both from an ext4 root filesystem that
// also carries what later readiness checks inspect: /etc/os-release, /etc/fstab,
// /boot/grub/grub.cfg and /lib/modules/<kver>/ with modules.builtin, modules.dep and a few
// storage drivers.
//
// - bios: an MBR disk, one bootable Linux partition; GRUB's boot.img in the MBR and its core.img
//   in the gap after it (sectors 1..2047), which is what grub-install does, done by hand so that
//   nothing is mounted and no loop device is needed.
// - uefi: a GPT disk with an ESP (FAT16, \EFI\BOOT\BOOTX64.EFI, the removable-media path every
//   firmware tries) and the same ext4 root as partition 2.
//
// Determinism: fixed UUIDs, disk identifiers, volume serial and hash seed; every timestamp is
// SOURCE_DATE_EPOCH (mke2fs copies atime and ctime from the host files, so debugfs rewrites
// them); the cpio archive is sorted and `--reproducible`. The result is cached under a key of
// every input (options, package files and tool versions), so later runs cost nothing.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { chmod, copyFile, lstat, lutimes, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./tools.ts";

export type BootFirmware = "bios" | "uefi";

export interface BootImageOptions {
  readonly firmware: BootFirmware;
  /** Printed alone on a line on ttyS0 by the guest's /init. @default "PORTABLE-BOOT-OK" */
  readonly marker?: string;
  /** Virtual size of the disk in MiB. @default 64 */
  readonly sizeMiB?: number;
  /**
   * What /init does after the marker: power off (a boot check), or stay up until QEMU is stopped
   * (a running source for a cutover; it ignores ACPI, so a graceful stop times out). @default "poweroff"
   */
  readonly afterMarker?: "poweroff" | "stay";
}

export interface BootImagePartition {
  readonly index: number;
  readonly startBytes: number;
  readonly sizeBytes: number;
  /** "linux" or "esp". */
  readonly role: "linux" | "esp";
}

export interface BootImage {
  /** A raw image in the cache: copy it before changing it. */
  readonly path: string;
  readonly firmware: BootFirmware;
  readonly marker: string;
  readonly kernelVersion: string;
  readonly rootUuid: string;
  readonly sizeBytes: number;
  readonly partitions: readonly BootImagePartition[];
}

export const DEFAULT_BOOT_MARKER = "PORTABLE-BOOT-OK";
/** Bump when the layout or contents change, so cached images are rebuilt. */
const BUILDER_VERSION = 2;
/** 2023-11-14T22:13:20Z: every timestamp inside the images. */
const SOURCE_DATE_EPOCH = 1_700_000_000;
export const BOOT_IMAGE_ROOT_UUID = "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0";
/** FAT volume serial of the ESP, written as the fstab UUID "5057-4C32". */
const ESP_SERIAL = "50574c32";
const MBR_DISK_ID = "0x50574c31";
const GPT_DISK_GUID = "50574c30-0000-4000-8000-000000000001";
const GPT_ESP_GUID = "50574c30-0000-4000-8000-000000000002";
const GPT_ROOT_GUID = "50574c30-0000-4000-8000-000000000003";
const SECTOR_BYTES = 512;
/** Partitions start at 1 MiB, as every partitioner aligns them; the MBR gap holds core.img. */
const FIRST_PARTITION_SECTOR = 2048;
/** 16 MiB of FAT16 (8192 clusters of 2 KiB): over FAT16's 4085-cluster minimum, room for GRUB. */
const ESP_SECTORS = 32768;
/** The backup GPT: 32 sectors of entries and its header. */
const GPT_BACKUP_SECTORS = 33;

export const CACHE_DIR = join(REPO_ROOT, ".tools", "cache");
const IMAGE_CACHE_DIR = join(CACHE_DIR, "boot-images");

/**
 * Storage drivers, and virtio_net (the local target's NIC), copied into /lib/modules with the
 * dependencies modules.dep records.
 */
const MODULES: Readonly<Record<string, readonly string[]>> = {
  "kernel/drivers/virtio/virtio.ko": [],
  "kernel/drivers/virtio/virtio_ring.ko": [],
  "kernel/drivers/virtio/virtio_pci_modern_dev.ko": [],
  "kernel/drivers/virtio/virtio_pci_legacy_dev.ko": [],
  "kernel/drivers/virtio/virtio_pci.ko": [
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
  ],
  "kernel/drivers/block/virtio_blk.ko": ["kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"],
  "kernel/drivers/scsi/virtio_scsi.ko": ["kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"],
  "kernel/net/core/failover.ko": [],
  "kernel/drivers/net/net_failover.ko": ["kernel/net/core/failover.ko"],
  "kernel/drivers/net/virtio_net.ko": ["kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko", "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko"],
  "kernel/drivers/nvme/host/nvme-core.ko": [],
  "kernel/drivers/nvme/host/nvme.ko": ["kernel/drivers/nvme/host/nvme-core.ko"],
  "kernel/drivers/ata/libahci.ko": [],
  "kernel/drivers/ata/ahci.ko": ["kernel/drivers/ata/libahci.ko"],
};

const GRUB_BIOS_MODULES = ["biosdisk", "part_msdos", "ext2", "search", "search_fs_uuid", "normal", "linux", "configfile", "echo", "test", "serial", "terminal"];
const GRUB_EFI_MODULES = ["part_gpt", "fat", "ext2", "search", "search_fs_uuid", "normal", "linux", "configfile", "echo", "test"];

interface Kernel {
  readonly deb: string;
  readonly version: string;
  /** The unpacked package root (boot/, lib/modules/). */
  readonly root: string;
}

const TOOL_ENV: NodeJS.ProcessEnv = {
  PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ""}`,
  LC_ALL: "C",
  TZ: "UTC",
  SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH),
  E2FSPROGS_FAKE_TIME: String(SOURCE_DATE_EPOCH),
  MTOOLS_SKIP_CHECK: "1",
};

/** Runs a tool; stdin from `input`, stdout into `stdoutPath` or returned. Throws with stderr on failure. */
export function tool(command: string, args: readonly string[], options: { cwd?: string; input?: string; stdoutPath?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { cwd: options.cwd, env: TOOL_ENV, stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    const sink = options.stdoutPath === undefined ? undefined : createWriteStream(options.stdoutPath);
    if (sink !== undefined) child.stdout?.pipe(sink);
    else child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-8192)));
    child.once("error", reject);
    if (options.input !== undefined) {
      // A tool that exits without reading all of its input reports its own error below.
      child.stdin?.once("error", () => {});
      child.stdin?.end(options.input);
    }
    child.once("close", (code) => {
      const done = (): void => {
        if (code === 0) resolve(stdout);
        else reject(new Error(`boot-image: ${command} ${args.join(" ")} exited with ${code}: ${stderr.trim()}`));
      };
      if (sink === undefined) done();
      else if (sink.writableFinished) done();
      else sink.once("finish", done);
    });
  });
}

export async function packageVersion(name: string): Promise<string> {
  return (await tool("dpkg-query", ["-W", "-f", "${Version}", name])).trim();
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(path, "r");
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  } finally {
    await handle.close().catch(() => {});
  }
  return hash.digest("hex");
}

/**
 * The Debian kernel package: the one already in .tools/cache, or the one linux-image-amd64
 * depends on, fetched with `apt-get download` (a Debian package, by its ordinary client).
 */
export async function kernelPackage(): Promise<string> {
  await mkdir(CACHE_DIR, { recursive: true });
  const cached = (await readdir(CACHE_DIR)).filter((name) => /^linux-image-\d[^_]*-amd64_.*_amd64\.deb$/.test(name))
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  const newest = cached.at(-1);
  if (newest !== undefined) return join(CACHE_DIR, newest);
  const depends = await tool("apt-cache", ["depends", "linux-image-amd64"]);
  const name = /Depends:\s+(linux-image-\d\S*-amd64)\b/.exec(depends)?.[1];
  if (name === undefined) throw new Error(`boot-image: apt-cache names no kernel for linux-image-amd64 (run apt-get update):\n${depends}`);
  await tool("apt-get", ["download", "-q", name], { cwd: CACHE_DIR });
  const fetched = (await readdir(CACHE_DIR)).find((file) => file.startsWith(`${name}_`) && file.endsWith(".deb"));
  if (fetched === undefined) throw new Error(`boot-image: apt-get download ${name} left no .deb in ${CACHE_DIR}`);
  return join(CACHE_DIR, fetched);
}

async function unpackKernel(deb: string): Promise<Kernel> {
  const version = /linux-image-([^_]+)_/.exec(deb)?.[1];
  if (version === undefined) throw new Error(`boot-image: cannot read the kernel version from ${deb}`);
  const root = join(CACHE_DIR, `kernel-${version}`);
  const stamp = join(root, ".unpacked");
  // The stamp names the package and the modules taken from it: a new module unpacks again.
  const stamped = `${deb}\n${Object.keys(MODULES).join("\n")}\n`;
  if (!existsSync(stamp) || (await readFile(stamp, "utf8")) !== stamped) {
    const partial = `${root}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    const members = [
      `./boot/vmlinuz-${version}`,
      ...["modules.builtin", "modules.builtin.modinfo", "modules.order"].map((f) => `./lib/modules/${version}/${f}`),
      ...Object.keys(MODULES).map((m) => `./lib/modules/${version}/${m}`),
    ];
    const tar = join(partial, "fs.tar");
    await tool("dpkg-deb", ["--fsys-tarfile", deb], { stdoutPath: tar });
    await tool("tar", ["-x", "-f", tar, "-C", partial, ...members]);
    await rm(tar);
    await writeFile(join(partial, ".unpacked"), stamped);
    await rm(root, { recursive: true, force: true });
    await rename(partial, root).catch(async (err: unknown) => {
      // Another test process unpacked it first: theirs is as good as ours.
      if (!existsSync(stamp)) throw err;
      await rm(partial, { recursive: true, force: true });
    });
  }
  return { deb, version, root };
}

/** Sets every timestamp under `dir` (deepest first, so directory times stay put) to the epoch. */
export async function pinTimes(dir: string): Promise<string[]> {
  const paths: string[] = [];
  async function walk(rel: string): Promise<void> {
    const entries = (await readdir(join(dir, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const child = rel === "" ? entry.name : `${rel}/${entry.name}`;
      paths.push(child);
      if (entry.isDirectory()) await walk(child);
    }
  }
  await walk("");
  for (const rel of [...paths].reverse()) {
    const full = join(dir, rel);
    if ((await lstat(full)).isSymbolicLink()) await lutimes(full, SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH);
    else await utimes(full, SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH);
  }
  await utimes(dir, SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH);
  return paths;
}

async function buildInitramfs(work: string, marker: string, afterMarker: "poweroff" | "stay", out: string): Promise<void> {
  const dir = join(work, "initramfs");
  for (const sub of ["bin", "dev", "proc", "sys"]) await mkdir(join(dir, sub), { recursive: true });
  await copyFile("/usr/bin/busybox", join(dir, "bin", "busybox"));
  await chmod(join(dir, "bin", "busybox"), 0o755);
  await symlink("busybox", join(dir, "bin", "sh"));
  // The kernel's console is ttyS0 (console=ttyS0), so /init's stdout is the serial port.
  await writeFile(
    join(dir, "init"),
    ["#!/bin/sh", "/bin/busybox mount -t proc proc /proc", `/bin/busybox echo ${marker}`, afterMarker === "stay" ? "while :; do /bin/busybox sleep 3600; done" : "/bin/busybox poweroff -f", ""].join("\n"),
    { mode: 0o755 },
  );
  const paths = await pinTimes(dir);
  await tool("cpio", ["-o", "-H", "newc", "-R", "0:0", "--reproducible", "--quiet"], { cwd: dir, input: `.\n${paths.map((p) => `./${p}`).join("\n")}\n`, stdoutPath: out });
}

async function buildRootTree(work: string, kernel: Kernel, firmware: BootFirmware, marker: string, afterMarker: "poweroff" | "stay"): Promise<string> {
  const root = join(work, "root");
  const kv = kernel.version;
  const modulesDir = join(root, "lib", "modules", kv);
  for (const sub of ["boot/grub", "etc", "dev", "proc", "sys", "tmp", "root"]) await mkdir(join(root, sub), { recursive: true });
  await copyFile(join(kernel.root, "boot", `vmlinuz-${kv}`), join(root, "boot", `vmlinuz-${kv}`));
  await buildInitramfs(work, marker, afterMarker, join(root, "boot", `initrd.img-${kv}`));
  for (const file of ["modules.builtin", "modules.builtin.modinfo", "modules.order"]) {
    await mkdir(modulesDir, { recursive: true });
    await copyFile(join(kernel.root, "lib", "modules", kv, file), join(modulesDir, file));
  }
  for (const module of Object.keys(MODULES)) {
    await mkdir(join(modulesDir, module, ".."), { recursive: true });
    await copyFile(join(kernel.root, "lib", "modules", kv, module), join(modulesDir, module));
  }
  // modules.dep in depmod's format, for the modules shipped here (kmod is not installed to run depmod).
  await writeFile(join(modulesDir, "modules.dep"), Object.entries(MODULES).map(([m, deps]) => `${m}:${deps.map((d) => ` ${d}`).join("")}\n`).join(""));
  await writeFile(
    join(root, "etc", "os-release"),
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
  );
  await writeFile(join(root, "etc", "hostname"), "portable-test\n");
  const espLine = firmware === "uefi" ? `UUID=${ESP_SERIAL.slice(0, 4).toUpperCase()}-${ESP_SERIAL.slice(4).toUpperCase()} /boot/efi vfat umask=0077 0 1\n` : "";
  await writeFile(join(root, "etc", "fstab"), `UUID=${BOOT_IMAGE_ROOT_UUID} / ext4 errors=remount-ro 0 1\n${espLine}`);
  if (firmware === "uefi") await mkdir(join(root, "boot", "efi"), { recursive: true });
  await writeFile(
    join(root, "boot", "grub", "grub.cfg"),
    [
      "set timeout=0",
      "set default=0",
      `menuentry "Debian GNU/Linux, with Linux ${kv}" {`,
      `  linux /boot/vmlinuz-${kv} root=UUID=${BOOT_IMAGE_ROOT_UUID} ro console=ttyS0,115200 quiet panic=-1`,
      `  initrd /boot/initrd.img-${kv}`,
      "}",
      "",
    ].join("\n"),
  );
  return root;
}

/** An ext4 image of `dir`, sized `sizeBytes`, with every inode time pinned. */
export async function buildExt4(dir: string, image: string, sizeBytes: number, work: string, uuid = BOOT_IMAGE_ROOT_UUID): Promise<void> {
  const handle = await open(image, "w");
  await handle.truncate(sizeBytes);
  await handle.close();
  const paths = await pinTimes(dir);
  await tool("mke2fs", ["-q", "-F", "-t", "ext4", "-L", "root", "-U", uuid, "-E", `hash_seed=${uuid},root_owner=0:0`, "-d", dir, image]);
  // mke2fs -d copies atime and ctime from the host files, which differ run to run.
  const commands = ["/", ...paths.map((p) => `/${p}`)].flatMap((p) => ["atime", "ctime", "mtime", "crtime"].map((field) => `sif "${p}" ${field} @${SOURCE_DATE_EPOCH}`));
  const script = join(work, "debugfs.cmds");
  await writeFile(script, `${commands.join("\n")}\n`);
  await tool("debugfs", ["-w", "-f", script, image]);
  await tool("e2fsck", ["-f", "-n", image]);
}

async function grubEarlyConfig(work: string, bios: boolean, rootUuid = BOOT_IMAGE_ROOT_UUID): Promise<string> {
  const path = join(work, "early.cfg");
  // OVMF already mirrors its console on the serial port; SeaBIOS does not, so GRUB drives it itself.
  const serial = bios ? ["serial --unit=0 --speed=115200", "terminal_input serial console", "terminal_output serial console"] : [];
  await writeFile(path, [...serial, `search --no-floppy --fs-uuid --set=root ${rootUuid}`, "set prefix=($root)/boot/grub", ""].join("\n"));
  return path;
}

export async function writeAt(image: string, offsetBytes: number, source: string | Buffer): Promise<void> {
  const data = typeof source === "string" ? await readFile(source) : source;
  const handle = await open(image, "r+");
  try {
    await handle.write(data, 0, data.length, offsetBytes);
  } finally {
    await handle.close();
  }
}

/**
 * An MBR disk with one bootable Linux partition at 1 MiB holding an ext4 filesystem of `tree`
 * (UUID `rootUuid`), and GRUB in the MBR and the gap after it, reading /boot/grub/grub.cfg from
 * that filesystem. `image` is created at `sizeBytes`.
 */
export async function assembleBiosDisk(work: string, image: string, sizeBytes: number, tree: string, rootUuid: string, earlyConfig?: string): Promise<BootImagePartition[]> {
  const handle = await open(image, "w");
  await handle.truncate(sizeBytes);
  await handle.close();
  const early = earlyConfig ?? (await grubEarlyConfig(work, true, rootUuid));
  await tool("sfdisk", ["-q", "--no-reread", "--no-tell-kernel", image], {
    input: `label: dos\nlabel-id: ${MBR_DISK_ID}\nunit: sectors\n\nstart=${FIRST_PARTITION_SECTOR}, type=83, bootable\n`,
  });
  const core = join(work, "core.img");
  await tool("grub-mkimage", ["-O", "i386-pc", "-o", core, "-c", early, "-p", "/boot/grub", ...GRUB_BIOS_MODULES]);
  const coreBytes = (await stat(core)).size;
  if (coreBytes > (FIRST_PARTITION_SECTOR - 1) * SECTOR_BYTES) throw new Error(`boot-image: core.img (${coreBytes} bytes) does not fit before the first partition`);
  // boot.img's code ends at byte 440, where the disk signature and partition table begin. Its
  // kernel-sector field already says 1 and diskboot.img's blocklist already says "from sector
  // 2", so core.img at sector 1 needs no patching (grub-setup patches only other placements).
  const bootImg = (await readFile("/usr/lib/grub/i386-pc/boot.img")).subarray(0, 440);
  await writeAt(image, 0, bootImg);
  await writeAt(image, SECTOR_BYTES, core);
  const rootStart = FIRST_PARTITION_SECTOR * SECTOR_BYTES;
  const rootImage = join(work, "root.ext4");
  await buildExt4(tree, rootImage, sizeBytes - rootStart, work, rootUuid);
  await writeAt(image, rootStart, rootImage);
  await rm(rootImage);
  return [{ index: 1, startBytes: rootStart, sizeBytes: sizeBytes - rootStart, role: "linux" }];
}

async function assemble(work: string, image: string, kernel: Kernel, options: Required<BootImageOptions>): Promise<BootImagePartition[]> {
  const sizeBytes = options.sizeMiB * 1024 * 1024;
  const sectors = sizeBytes / SECTOR_BYTES;
  const handle = await open(image, "w");
  await handle.truncate(sizeBytes);
  await handle.close();
  const tree = await buildRootTree(work, kernel, options.firmware, options.marker, options.afterMarker);
  const early = await grubEarlyConfig(work, options.firmware === "bios");
  if (options.firmware === "bios") return assembleBiosDisk(work, image, sizeBytes, tree, BOOT_IMAGE_ROOT_UUID, early);
  const espFirst = FIRST_PARTITION_SECTOR;
  const rootFirst = espFirst + ESP_SECTORS;
  const rootLast = sectors - GPT_BACKUP_SECTORS - 1;
  await tool("sgdisk", [
    "-o",
    "-U", GPT_DISK_GUID,
    "-n", `1:${espFirst}:${rootFirst - 1}`, "-t", "1:ef00", "-c", "1:EFI System", "-u", `1:${GPT_ESP_GUID}`,
    "-n", `2:${rootFirst}:${rootLast}`, "-t", "2:8300", "-c", "2:root", "-u", `2:${GPT_ROOT_GUID}`,
    image,
  ]);
  const efi = join(work, "BOOTX64.EFI");
  await tool("grub-mkimage", ["-O", "x86_64-efi", "-o", efi, "-c", early, "-p", "/boot/grub", ...GRUB_EFI_MODULES]);
  await utimes(efi, SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH);
  const esp = join(work, "esp.fat");
  await tool("mkfs.fat", ["-C", "--invariant", "-F", "16", "-n", "ESP", "-i", ESP_SERIAL, esp, String(ESP_SECTORS / 2)]);
  await tool("mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT"]);
  await tool("mcopy", ["-m", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI"]);
  await writeAt(image, espFirst * SECTOR_BYTES, esp);
  const rootImage = join(work, "root.ext4");
  const rootBytes = (rootLast - rootFirst + 1) * SECTOR_BYTES;
  await buildExt4(tree, rootImage, rootBytes, work);
  await writeAt(image, rootFirst * SECTOR_BYTES, rootImage);
  return [
    { index: 1, startBytes: espFirst * SECTOR_BYTES, sizeBytes: ESP_SECTORS * SECTOR_BYTES, role: "esp" },
    { index: 2, startBytes: rootFirst * SECTOR_BYTES, sizeBytes: rootBytes, role: "linux" },
  ];
}

/**
 * Builds (or finds in the cache) a bootable raw disk. Same options and same Debian packages give
 * the same bytes; the returned path is shared, so callers copy it before changing it.
 */
export async function buildBootImage(options: BootImageOptions): Promise<BootImage> {
  const full: Required<BootImageOptions> = { marker: DEFAULT_BOOT_MARKER, sizeMiB: 64, afterMarker: "poweroff", ...options };
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(full.marker)) throw new Error(`boot-image: marker must be 1-64 letters, digits, '.', '_' or '-'`);
  if (!Number.isInteger(full.sizeMiB) || full.sizeMiB < 48 || full.sizeMiB > 4096) throw new Error("boot-image: sizeMiB must be 48..4096");
  const deb = await kernelPackage();
  const kernel = await unpackKernel(deb);
  const inputs = {
    builder: BUILDER_VERSION,
    options: full,
    kernel: { deb: deb.slice(deb.lastIndexOf("/") + 1), sizeBytes: (await stat(deb)).size },
    busybox: await fileSha256("/usr/bin/busybox"),
    tools: Object.fromEntries(
      await Promise.all(["grub-pc-bin", "grub-efi-amd64-bin", "grub-common", "e2fsprogs", "dosfstools", "mtools", "fdisk", "gdisk", "cpio"].map(async (p) => [p, await packageVersion(p)])),
    ),
  };
  const key = createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 16);
  const path = join(IMAGE_CACHE_DIR, `${full.firmware}-${key}.raw`);
  const sizeBytes = full.sizeMiB * 1024 * 1024;
  const meta = { path, firmware: full.firmware, marker: full.marker, kernelVersion: kernel.version, rootUuid: BOOT_IMAGE_ROOT_UUID, sizeBytes };
  const layoutPath = `${path}.json`;
  if (existsSync(path) && existsSync(layoutPath)) {
    const partitions = JSON.parse(await readFile(layoutPath, "utf8")) as BootImagePartition[];
    return { ...meta, partitions };
  }
  await mkdir(IMAGE_CACHE_DIR, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), "pw-bootimg-"));
  try {
    const partial = join(work, "disk.raw");
    const partitions = await assemble(work, partial, kernel, full);
    await writeFile(layoutPath, JSON.stringify(partitions));
    // A rename within one filesystem is atomic; copy first when the temp dir lives elsewhere.
    const staged = `${path}.partial-${process.pid}`;
    await copyFile(partial, staged);
    await rename(staged, path);
    return { ...meta, partitions };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Copies a boot image with its boot structures zeroed: what "a zeroed boot sector" means for
 * each firmware.
 * - bios: sector 0, the MBR, which holds both the boot code and the partition table.
 * - uefi: the firmware boots from an ESP found through the GPT, and reads the backup GPT when
 *   the primary is damaged, so both copies go (sectors 0..33 and the last 33): no partition,
 *   so no ESP and no \EFI\BOOT\BOOTX64.EFI to load. The partitions' bytes are untouched.
 */
export async function copyWithBootSectorZeroed(image: BootImage, to: string): Promise<void> {
  await copyFile(image.path, to);
  if (image.firmware === "bios") {
    await writeAt(to, 0, Buffer.alloc(SECTOR_BYTES));
    return;
  }
  await writeAt(to, 0, Buffer.alloc((1 + GPT_BACKUP_SECTORS) * SECTOR_BYTES));
  await writeAt(to, image.sizeBytes - GPT_BACKUP_SECTORS * SECTOR_BYTES, Buffer.alloc(GPT_BACKUP_SECTORS * SECTOR_BYTES));
}
