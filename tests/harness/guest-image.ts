// Builds guest disk images for the readiness inspection tests (sdk/inspect): a Linux root on
// ext4 with os-release, fstab, grub.cfg and a /lib/modules tree taken from Debian's kernel
// package, in BIOS (MBR) and UEFI (GPT + ESP) layouts, and an NTFS volume holding
// Windows/System32. Nothing is mounted except the NTFS volume (through ntfs-3g's FUSE driver,
// the only way to make directories on NTFS here); filesystems are built from directories with
// mke2fs -d, mkfs.vfat + mtools, and placed with sfdisk. The images need not boot.
//
// Deterministic: fixed UUIDs, hash seeds, serials, file times, and SOURCE_DATE_EPOCH /
// E2FSPROGS_FAKE_TIME, so the same spec gives the same ext4 bytes. The kernel comes from
// `.tools/cache/linux-image-*-amd64_*.deb` (downloaded with `apt-get download` when missing).
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, open, readdir, readFile, rm, symlink, truncate, utimes, lutimes, writeFile, copyFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "./tools.ts";

const run = promisify(execFile);
/** Every external tool here finishes in seconds; a minute means it hangs. */
const TOOL_TIMEOUT_MS = 60_000;
/** 2023-11-14T22:13:20Z: the time every file and filesystem in the images carries. */
export const GUEST_EPOCH = 1_700_000_000;
const MiB = 1024 * 1024;
const SECTOR = 512;
const KERNEL_CACHE = join(REPO_ROOT, ".tools", "cache");

const TOOL_ENV = { ...process.env, SOURCE_DATE_EPOCH: String(GUEST_EPOCH), E2FSPROGS_FAKE_TIME: String(GUEST_EPOCH), E2FSCK_TIME: String(GUEST_EPOCH), TZ: "UTC", LC_ALL: "C" };

async function tool(command: string, args: readonly string[], options: { input?: string; okCodes?: readonly number[] } = {}): Promise<string> {
  if (options.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, { env: TOOL_ENV, stdio: ["pipe", "pipe", "pipe"], timeout: TOOL_TIMEOUT_MS });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.once("error", reject);
      child.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(" ")} exited ${code}: ${err}`))));
      child.stdin.end(options.input);
    });
  }
  try {
    const { stdout } = await run(command, args, { env: TOOL_ENV, timeout: TOOL_TIMEOUT_MS, maxBuffer: 16 * MiB });
    return stdout;
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (typeof code === "number" && options.okCodes?.includes(code)) return (err as { stdout?: string }).stdout ?? "";
    throw err;
  }
}

/** Debian 12's /usr/lib/os-release (base-files 12.4+deb12u*), verbatim. */
export const DEBIAN_12_OS_RELEASE = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`;

export interface DebianKernel {
  readonly version: string;
  /** The extracted lib/modules/<version> directory. */
  readonly modulesDir: string;
  /** Module file (basename without .ko, e.g. `nvme-core`) → path relative to modulesDir. */
  readonly moduleFiles: ReadonlyMap<string, string>;
}

/** Modules the tests ship: every readiness driver, plus dependencies and bus drivers. */
export const TEST_MODULES = [
  "nvme",
  "nvme-core",
  "ena",
  "hv_vmbus",
  "hv_storvsc",
  "hv_netvsc",
  "virtio_pci",
  "virtio_blk",
  "virtio_scsi",
  "virtio_net",
  "vmw_pvscsi",
  "vmxnet3",
  "ahci",
  "ata_piix",
  "mptspi",
  "e1000",
  "e1000e",
] as const;

async function kernelDeb(): Promise<string> {
  await mkdir(KERNEL_CACHE, { recursive: true });
  const find = async (): Promise<string | undefined> => (await readdir(KERNEL_CACHE)).filter((f) => /^linux-image-\d.*-amd64_.*_amd64\.deb$/.test(f)).sort().at(-1);
  let deb = await find();
  if (deb === undefined) {
    // The versioned package linux-image-amd64 depends on, as the local target's boot images use.
    const depends = await tool("apt-cache", ["depends", "linux-image-amd64"]);
    const name = /Depends:\s+(linux-image-\d\S*-amd64)\b/.exec(depends)?.[1];
    if (name === undefined) throw new Error("apt-cache cannot name the Debian kernel package (run apt-get update)");
    await run("apt-get", ["download", name], { cwd: KERNEL_CACHE, timeout: 10 * TOOL_TIMEOUT_MS });
    deb = await find();
    if (deb === undefined) throw new Error(`apt-get download ${name} left no .deb in ${KERNEL_CACHE}`);
  }
  return join(KERNEL_CACHE, deb);
}

/** Extracts modules.builtin and the TEST_MODULES files from Debian's kernel package into `dir`. */
export async function extractDebianKernel(dir: string): Promise<DebianKernel> {
  const deb = await kernelDeb();
  const patterns = ["./lib/modules/*/modules.builtin", ...TEST_MODULES.map((m) => `./lib/modules/*/${m}.ko`)];
  await run("bash", ["-c", `dpkg-deb --fsys-tarfile "$0" | tar -x -C "$1" --wildcards "\${@:2}"`, deb, dir, ...patterns], { timeout: TOOL_TIMEOUT_MS, maxBuffer: 16 * MiB });
  const [version] = await readdir(join(dir, "lib", "modules"));
  if (version === undefined) throw new Error(`${deb} holds no lib/modules`);
  const modulesDir = join(dir, "lib", "modules", version);
  const moduleFiles = new Map<string, string>();
  for (const rel of await readdir(join(modulesDir, "kernel"), { recursive: true })) {
    const m = /([^/]+)\.ko$/.exec(rel);
    if (m?.[1] !== undefined) moduleFiles.set(m[1], join("kernel", rel));
  }
  for (const m of TEST_MODULES) if (!moduleFiles.has(m)) throw new Error(`${deb} has no ${m}.ko`);
  return { version, modulesDir, moduleFiles };
}

export interface GuestImageSpec {
  readonly firmware: "bios" | "uefi";
  /** Module files to ship (names from TEST_MODULES). */
  readonly modules: readonly string[];
  /** Ship these modules compressed, as newer distributions do. */
  readonly compress?: Readonly<Record<string, "xz" | "zst">>;
  /** Module names added to modules.builtin (a kernel with these drivers built in). */
  readonly extraBuiltin?: readonly string[];
  /** fstab names filesystems by UUID, or by kernel device names (/dev/sda1, /dev/xvdb1). */
  readonly fstab: "uuid" | "device";
  /** /boot on its own ext2 partition (1 KiB blocks, so grub.cfg uses indirect blocks). */
  readonly separateBoot?: boolean;
}

export interface GuestImage {
  readonly path: string;
  readonly kernelVersion: string;
  readonly rootUuid: string;
  readonly rootPartition: number;
  readonly bootUuid?: string;
  readonly espSerial?: string;
}

/** Fixed identities, so images are reproducible and tests can name them. */
export const ROOT_UUID = "6a1f3c2e-4b5d-4e6f-8a7b-9c0d1e2f3a4b";
export const BOOT_UUID = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
export const ESP_SERIAL = "1234-ABCD";
const HASH_SEED = "11111111-2222-4333-8444-555555555555";
const DISK_GUID = "0F0E0D0C-0B0A-4908-8706-050403020100";
const PART_GUIDS = ["A0000000-0000-4000-8000-000000000001", "A0000000-0000-4000-8000-000000000002", "A0000000-0000-4000-8000-000000000003"];
/** cli; hlt; jmp $-1: a stand-in BIOS boot loader, so the MBR carries boot code as grub's would. */
export const BOOT_CODE_STUB = Buffer.from([0xfa, 0xf4, 0xeb, 0xfd]);
/** Files added to /usr/lib so its directory grows past one block and e2fsck -D indexes it (htree). */
const FILLER_FILES = 400;

async function setTimes(dir: string): Promise<void> {
  for (const rel of await readdir(dir, { recursive: true })) await lutimes(join(dir, rel), GUEST_EPOCH, GUEST_EPOCH);
  await utimes(dir, GUEST_EPOCH, GUEST_EPOCH);
}

async function writeTree(root: string, files: Readonly<Record<string, string | Buffer>>, links: Readonly<Record<string, string>>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
  for (const [path, target] of Object.entries(links)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await symlink(target, join(root, path));
  }
  await setTimes(root);
}

async function mkext(image: string, staging: string, options: { type: "ext4" | "ext2"; uuid: string; label: string; sizeBytes: number; blockBytes: number }): Promise<void> {
  await tool("mke2fs", ["-q", "-F", "-t", options.type, "-b", String(options.blockBytes), "-U", options.uuid, "-L", options.label, "-E", `hash_seed=${HASH_SEED},root_owner=0:0`, "-d", staging, image, `${options.sizeBytes / 1024}k`]);
  // mke2fs -d copies each file's ctime and atime (reading a file moves its atime), which
  // no one can set: pin every inode's times with debugfs so the bytes depend on the spec only.
  const paths = ["/", "/lost+found", ...(await readdir(staging, { recursive: true })).map((p) => `/${p}`)];
  const fields = ["atime", "ctime", "mtime", "crtime"].flatMap((f) => [[f, `@${GUEST_EPOCH}`], [`${f}_extra`, "0"]]);
  const commands = paths.flatMap((p) => fields.map(([field, value]) => `sif "${p}" ${field} ${value}`)).join("\n");
  const commandFile = `${image}.debugfs`;
  await writeFile(commandFile, `${commands}\n`);
  await tool("debugfs", ["-w", "-f", commandFile, image]);
  // -D rebuilds directories, indexing the large ones (htree); exit 1 means "changed".
  await tool("e2fsck", ["-fyD", image], { okCodes: [1] });
}

/** Copies a filesystem image into the disk at `offsetBytes`, skipping zero chunks (sparse). */
async function place(disk: string, image: string, offsetBytes: number): Promise<void> {
  const data = await readFile(image);
  const fh = await open(disk, "r+");
  try {
    const chunk = 64 * 1024;
    for (let o = 0; o < data.length; o += chunk) {
      const part = data.subarray(o, Math.min(data.length, o + chunk));
      if (part.some((b) => b !== 0)) await fh.write(part, 0, part.length, offsetBytes + o);
    }
  } finally {
    await fh.close();
  }
}

async function partitionTable(disk: string, scheme: "dos" | "gpt", parts: readonly { startSector: number; sizeSectors: number; type: string; bootable?: boolean }[]): Promise<void> {
  const lines = [`label: ${scheme}`, scheme === "dos" ? "label-id: 0x5eed1234" : `label-id: ${DISK_GUID}`, "unit: sectors", ""];
  parts.forEach((p, i) => {
    const uuid = scheme === "gpt" ? `, uuid=${PART_GUIDS[i]}` : "";
    lines.push(`start=${p.startSector}, size=${p.sizeSectors}, type=${p.type}${uuid}${p.bootable === true ? ", bootable" : ""}`);
  });
  await tool("sfdisk", ["--no-reread", "--no-tell-kernel", "-q", disk], { input: `${lines.join("\n")}\n` });
}

async function writeBootCode(disk: string): Promise<void> {
  const fh = await open(disk, "r+");
  try {
    await fh.write(BOOT_CODE_STUB, 0, BOOT_CODE_STUB.length, 0);
  } finally {
    await fh.close();
  }
}

function grubConfig(version: string, rootSpec: string, prefix: string): string {
  // Padded with comments, as update-grub's output is long: with 1 KiB blocks this needs an
  // indirect block, which exercises the ext2 block map reader.
  const padding = Array.from({ length: 300 }, (_, i) => `### padding line ${i.toString().padStart(3, "0")}: grub.cfg is generated by update-grub, do not edit ###`).join("\n");
  return `# generated for a portable-workload test image
set default="0"
set timeout=5
${padding}
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os {
\tinsmod ext2
\tlinux\t${prefix}/vmlinuz-${version} root=${rootSpec} ro quiet
\tinitrd\t${prefix}/initrd.img-${version}
}
menuentry 'Debian GNU/Linux, with Linux ${version} (recovery mode)' {
\tlinux\t${prefix}/vmlinuz-${version} root=${rootSpec} ro single
}
`;
}

/** Builds a raw guest disk image in `dir` named `<name>.raw`. */
export async function buildGuestImage(dir: string, kernel: DebianKernel, spec: GuestImageSpec, name: string): Promise<GuestImage> {
  const work = await mkdtemp(join(dir, `${name}-work-`));
  try {
    const uefi = spec.firmware === "uefi";
    const separateBoot = spec.separateBoot === true;
    const rootPartition = (uefi ? 2 : 1) + (separateBoot ? 1 : 0);
    const rootSpec = spec.fstab === "uuid" ? `UUID=${ROOT_UUID}` : `/dev/sda${rootPartition}`;
    const fstab = [
      "# /etc/fstab: static file system information.",
      "# <file system> <mount point>   <type>  <options>       <dump>  <pass>",
      `${rootSpec} /               ext4    errors=remount-ro 0       1`,
      ...(separateBoot ? [`${spec.fstab === "uuid" ? `UUID=${BOOT_UUID}` : `/dev/sda${rootPartition - 1}`} /boot           ext2    defaults        0       2`] : []),
      ...(uefi ? [`${spec.fstab === "uuid" ? `UUID=${ESP_SERIAL}` : "/dev/sda1"}  /boot/efi       vfat    umask=0077      0       1`] : []),
      ...(spec.fstab === "device" ? ["/dev/xvdb1      /srv            ext4    defaults,nofail 0       2"] : []),
      "",
    ].join("\n");

    const moduleRoot = `usr/lib/modules/${kernel.version}`;
    const files: Record<string, string | Buffer> = {
      "usr/lib/os-release": DEBIAN_12_OS_RELEASE,
      "etc/fstab": fstab,
      "etc/hostname": "guest\n",
      "usr/bin/busybox": await readFile("/usr/bin/busybox"),
    };
    const links: Record<string, string> = {
      "etc/os-release": "../usr/lib/os-release",
      lib: "usr/lib",
      bin: "usr/bin",
      "usr/bin/sh": "busybox",
      // Longer than 60 bytes: a "slow" symlink stored in a data block.
      "etc/long-link": "/usr/lib/../lib/../lib/../lib/../lib/../lib/../lib/../lib/../lib/os-release",
    };
    for (let i = 0; i < FILLER_FILES; i++) files[`usr/lib/filler-${i.toString().padStart(4, "0")}.conf`] = `# filler ${i}\n`;
    const builtin = await readFile(join(kernel.modulesDir, "modules.builtin"), "utf8");
    files[`${moduleRoot}/modules.builtin`] = builtin + (spec.extraBuiltin ?? []).map((m) => `kernel/drivers/builtin-test/${m}.ko\n`).join("");
    for (const module of spec.modules) {
      const rel = kernel.moduleFiles.get(module);
      if (rel === undefined) throw new Error(`no module ${module} extracted`);
      const data = await readFile(join(kernel.modulesDir, rel));
      const compression = spec.compress?.[module];
      if (compression === undefined) files[`${moduleRoot}/${rel}`] = data;
      else {
        const raw = join(work, `${module}.ko`);
        await writeFile(raw, data);
        await tool(compression === "xz" ? "xz" : "zstd", compression === "xz" ? ["-k", "-q", "-T1", raw] : ["-q", "-k", "--no-progress", raw]);
        files[`${moduleRoot}/${rel}.${compression}`] = await readFile(`${raw}.${compression}`);
      }
    }
    const grub = grubConfig(kernel.version, rootSpec, separateBoot ? "" : "/boot");
    if (!separateBoot) files["boot/grub/grub.cfg"] = grub;
    else files["boot/.keep"] = "";

    const rootStaging = join(work, "root");
    await writeTree(rootStaging, files, links);
    const rootBytes = 40 * MiB;
    const rootImage = join(work, "root.img");
    await mkext(rootImage, rootStaging, { type: "ext4", uuid: ROOT_UUID, label: "root", sizeBytes: rootBytes, blockBytes: 4096 });

    const layout: { startSector: number; sizeSectors: number; type: string; image: string; bootable?: boolean }[] = [];
    let next = MiB / SECTOR;
    if (uefi) {
      const espBytes = 8 * MiB;
      const esp = join(work, "esp.img");
      await writeFile(esp, "");
      await truncate(esp, espBytes);
      await tool("mkfs.vfat", ["--invariant", "-F", "16", "-s", "2", "-i", ESP_SERIAL.replace("-", ""), "-n", "ESP", esp]);
      const loader = join(work, "BOOTX64.EFI");
      await writeFile(loader, Buffer.concat([Buffer.from("MZ"), Buffer.alloc(510)]));
      await utimes(loader, GUEST_EPOCH, GUEST_EPOCH);
      await tool("mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"]);
      await tool("mcopy", ["-m", "-i", esp, loader, "::/EFI/BOOT/BOOTX64.EFI"]);
      layout.push({ startSector: next, sizeSectors: espBytes / SECTOR, type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", image: esp });
      next += espBytes / SECTOR;
    }
    if (separateBoot) {
      const bootStaging = join(work, "boot");
      await writeTree(bootStaging, { "grub/grub.cfg": grub, [`config-${kernel.version}`]: "CONFIG_NVME=m\n" }, {});
      const bootBytes = 8 * MiB;
      const bootImage = join(work, "boot.img");
      await mkext(bootImage, bootStaging, { type: "ext2", uuid: BOOT_UUID, label: "boot", sizeBytes: bootBytes, blockBytes: 1024 });
      layout.push({ startSector: next, sizeSectors: bootBytes / SECTOR, type: uefi ? "0FC63DAF-8483-4772-8E79-3D69D8477DE4" : "83", image: bootImage });
      next += bootBytes / SECTOR;
    }
    layout.push({ startSector: next, sizeSectors: rootBytes / SECTOR, type: uefi ? "0FC63DAF-8483-4772-8E79-3D69D8477DE4" : "83", image: rootImage, bootable: !uefi });
    next += rootBytes / SECTOR;

    const disk = join(dir, `${name}.raw`);
    await rm(disk, { force: true });
    await writeFile(disk, "");
    // One spare MiB at the end holds the backup GPT.
    await truncate(disk, next * SECTOR + MiB);
    await partitionTable(disk, uefi ? "gpt" : "dos", layout);
    for (const p of layout) await place(disk, p.image, p.startSector * SECTOR);
    if (!uefi) await writeBootCode(disk);
    return {
      path: disk,
      kernelVersion: kernel.version,
      rootUuid: ROOT_UUID,
      rootPartition,
      ...(separateBoot ? { bootUuid: BOOT_UUID } : {}),
      ...(uefi ? { espSerial: ESP_SERIAL } : {}),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** How long to wait for the FUSE mount to appear, and for ntfs-3g to exit after unmounting. */
const FUSE_WAIT_MS = 20_000;

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + FUSE_WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface WindowsImageSpec {
  /** File names created in Windows/System32/drivers, e.g. `netvsc.sys`. */
  readonly drivers: readonly string[];
}

/**
 * Builds an MBR disk with one NTFS partition holding Windows/System32/drivers. System32 and
 * drivers get enough files that their indexes spill into $INDEX_ALLOCATION blocks.
 */
export async function buildWindowsImage(dir: string, spec: WindowsImageSpec, name: string): Promise<string> {
  const work = await mkdtemp(join(dir, `${name}-work-`));
  const mnt = join(work, "mnt");
  await mkdir(mnt);
  try {
    const ntfsBytes = 24 * MiB;
    const ntfs = join(work, "ntfs.img");
    await writeFile(ntfs, "");
    await truncate(ntfs, ntfsBytes);
    await tool("mkntfs", ["-F", "-q", "-Q", "-s", "512", "-c", "4096", "-p", "2048", "-H", "255", "-S", "63", "-L", "Windows", ntfs]);
    const fuse = spawn("ntfs-3g", ["-o", "no_detach,big_writes", ntfs, mnt], { stdio: "ignore" });
    const exited = new Promise<void>((resolve) => fuse.once("exit", () => resolve()));
    try {
      const mounted = async (): Promise<boolean> => (await readFile("/proc/mounts", "utf8")).split("\n").some((l) => l.split(" ")[1] === mnt);
      await waitFor(mounted, `ntfs-3g to mount ${mnt}`);
      const drivers = join(mnt, "Windows", "System32", "drivers");
      await mkdir(drivers, { recursive: true });
      await mkdir(join(mnt, "Windows", "System32", "config"));
      await writeFile(join(mnt, "Windows", "System32", "ntoskrnl.exe"), "MZ");
      for (let i = 0; i < 120; i++) await writeFile(join(mnt, "Windows", "System32", `library-with-a-long-name-${i.toString().padStart(3, "0")}.dll`), "MZ");
      for (let i = 0; i < 60; i++) await writeFile(join(drivers, `filler-driver-${i.toString().padStart(3, "0")}.sys`), "MZ");
      for (const driver of spec.drivers) await writeFile(join(drivers, driver), "MZ");
      await mkdir(join(mnt, "Program Files"));
    } finally {
      await tool("fusermount", ["-u", mnt], { okCodes: [1] });
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([exited, new Promise<void>((_r, reject) => (timer = setTimeout(() => reject(new Error("ntfs-3g did not exit after unmount")), FUSE_WAIT_MS)))]);
      } finally {
        clearTimeout(timer);
      }
    }
    const disk = join(dir, `${name}.raw`);
    await rm(disk, { force: true });
    await writeFile(disk, "");
    await truncate(disk, ntfsBytes + 2 * MiB);
    await partitionTable(disk, "dos", [{ startSector: 2048, sizeSectors: ntfsBytes / SECTOR, type: "7", bootable: true }]);
    await place(disk, ntfs, 2048 * SECTOR);
    await writeBootCode(disk);
    return disk;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A copy of an image to damage in a hostile test. */
export async function copyImage(source: string, target: string): Promise<string> {
  await copyFile(source, target);
  return target;
}
