// A real Debian 12 guest as a VMware host leaves it, for the guest fixups (issue 21): built with
// mmdebstrap from Debian's packages, cached under .tools/cache/guests/ by `npm run setup`.
//
// What makes it a VMware guest that will not boot elsewhere:
// - its initramfs (initramfs-tools, MODULES=list) carries only the drivers of VMware's
//   controllers (ahci, ata_piix, mptspi, vmw_pvscsi, sd_mod): no virtio, no NVMe, no Hyper-V,
//   although /lib/modules has them all;
// - /etc/fstab and the kernel command line name the root as /dev/sda1, which is /dev/vda1 on
//   virtio and /dev/nvme0n1p1 on NVMe.
//
// It has no init system: /sbin/init is a script that checks /etc/fstab (every source must
// resolve), mounts it, prints the marker alone on a line on the console (ttyS0) and powers off.
// `rootdelay=10` on the command line makes a missing root fail in seconds instead of minutes;
// the guest's own initramfs prints "Gave up waiting for root file system device" either way.
// GRUB (BIOS) is written by hand as in boot-image.ts; the root is ext4 built with mke2fs -d.
//
// Determinism: mmdebstrap runs with boot-image.ts's SOURCE_DATE_EPOCH (its tool environment), the
// ext4 times are pinned as there, and the cache key covers the builder,
// the package list and the versions apt resolves them to. The image is shared: copy it first.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assembleBiosDisk, CACHE_DIR, tool } from "./boot-image.ts";

export const DEBIAN_GUEST_MARKER = "PORTABLE-GUEST-UP";
export const DEBIAN_GUEST_ROOT_UUID = "5a7e5a7e-0d1b-4c2d-9e3f-a0b1c2d3e4f5";
/** Bump when the guest changes, so cached images are rebuilt. */
const BUILDER_VERSION = 2;
const SIZE_BYTES = 1024 * 1024 * 1024;
/** Debian's own redirector; the registry this machine reaches. */
const DEBIAN_MIRROR = process.env.PORTABLE_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
/** GRUB's tools are in the guest as on any installed Debian (virt-v2v refuses a guest without grub-mkconfig). */
const PACKAGES = ["linux-image-amd64", "initramfs-tools", "kmod", "udev", "util-linux", "grub-pc-bin", "grub2-common"];
/** The controllers of a VMware VM: what a guest's host-only initramfs carries there. */
export const VMWARE_INITRAMFS_MODULES = ["ahci", "ata_piix", "sd_mod", "mptspi", "vmw_pvscsi", "ext4"];
/** Module trees no boot of this guest needs: left out of the image to keep it small. */
const EXCLUDED_MODULE_TREES = [
  "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband", "drivers/staging", "drivers/usb",
  "drivers/iio", "drivers/isdn", "drivers/bluetooth", "drivers/mtd", "drivers/video", "drivers/comedi", "drivers/hwmon",
  "drivers/input", "drivers/hid", "drivers/mmc", "drivers/power", "drivers/platform", "drivers/thermal", "drivers/leds",
  "drivers/net/can", "drivers/net/usb", "drivers/net/ethernet/mellanox", "drivers/net/ethernet/intel", "drivers/net/ethernet/broadcom",
  "drivers/net/ethernet/chelsio", "drivers/net/ethernet/qlogic", "drivers/net/ethernet/marvell", "drivers/net/ethernet/sfc",
  "sound", "net/wireless", "net/mac80211", "net/bluetooth", "drivers/scsi/lpfc", "drivers/scsi/qla2xxx", "drivers/scsi/mpt3sas",
  "drivers/scsi/be2iscsi", "drivers/scsi/bfa", "drivers/scsi/csiostor", "drivers/scsi/megaraid", "drivers/scsi/aacraid",
  "fs/btrfs", "fs/xfs", "fs/ocfs2", "fs/gfs2", "fs/nfs", "fs/nfsd", "fs/ceph", "fs/smb", "fs/f2fs", "fs/ntfs3", "fs/bcachefs",
];

export interface DebianGuest {
  /** A raw BIOS disk in the cache: copy it before changing it. */
  readonly path: string;
  readonly marker: string;
  readonly kernelVersion: string;
  readonly rootUuid: string;
  readonly sizeBytes: number;
}

const INIT = `#!/bin/sh
# portable-workload test guest: up once every fstab source resolves and mounts.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -o remount,rw / 2>/dev/null
if findmnt --verify --tab-file /etc/fstab && mount -a; then
  echo
  echo ${DEBIAN_GUEST_MARKER}
else
  echo "portable-guest: /etc/fstab does not mount"
fi
sync
echo o > /proc/sysrq-trigger
sleep 10
`;

function customizeHooks(): string[] {
  const modules = VMWARE_INITRAMFS_MODULES.join("\\n");
  return [
    `sed -i 's/^MODULES=.*/MODULES=list/' "$1/etc/initramfs-tools/initramfs.conf"`,
    `printf '${modules}\\n' >> "$1/etc/initramfs-tools/modules"`,
    `printf '/dev/sda1 / ext4 errors=remount-ro 0 1\\n' > "$1/etc/fstab"`,
    `echo portable-guest > "$1/etc/hostname"`,
    // What grub-mkconfig (update-grub) regenerates grub.cfg from, as the installer leaves it.
    `printf 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=Debian\nGRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="console=ttyS0,115200 rootdelay=10"\nGRUB_TERMINAL="serial console"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n' > "$1/etc/default/grub"`,
    // grub-install's copy of the BIOS modules, which a regenerated grub.cfg loads.
    `mkdir -p "$1/boot/grub" && cp -r "$1/usr/lib/grub/i386-pc" "$1/boot/grub/"`,
    `chroot "$1" update-initramfs -u -k all`,
    `rm -f "$1"/boot/*.old "$1"/initrd.img.old "$1"/vmlinuz.old`,
    `rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*`,
  ];
}

async function resolvedVersions(): Promise<string> {
  // What apt would install now: the key changes when Debian's packages do.
  return tool("apt-cache", ["policy", ...PACKAGES]);
}

/** Builds (or finds in the cache) the guest. Needs root (mmdebstrap) and Debian's apt sources. */
export async function buildDebianGuest(): Promise<DebianGuest> {
  const key = createHash("sha256").update(JSON.stringify({ BUILDER_VERSION, PACKAGES, VMWARE_INITRAMFS_MODULES, EXCLUDED_MODULE_TREES, INIT, hooks: customizeHooks(), apt: await resolvedVersions() })).digest("hex").slice(0, 16);
  const dir = join(CACHE_DIR, "guests");
  const path = join(dir, `debian12-vmware-${key}.raw`);
  const metaPath = `${path}.json`;
  if (existsSync(path) && existsSync(metaPath)) return JSON.parse(await readFile(metaPath, "utf8")) as DebianGuest;
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), "pw-guest-"));
  try {
    const root = join(work, "root");
    await tool("mmdebstrap", [
      "--variant=minbase",
      "--quiet",
      `--include=${PACKAGES.join(",")}`,
      "--dpkgopt=path-exclude=/usr/share/doc/*",
      "--dpkgopt=path-exclude=/usr/share/man/*",
      "--dpkgopt=path-exclude=/usr/share/locale/*",
      ...EXCLUDED_MODULE_TREES.map((tree) => `--dpkgopt=path-exclude=/lib/modules/*/kernel/${tree}/*`),
      ...customizeHooks().map((hook) => `--customize-hook=${hook}`),
      "bookworm",
      root,
      DEBIAN_MIRROR,
    ]);
    const kernelVersion = (await readdir(join(root, "lib", "modules")))[0];
    if (kernelVersion === undefined) throw new Error("debian-guest: mmdebstrap installed no kernel");
    await writeFile(join(root, "sbin", "init"), INIT);
    await chmod(join(root, "sbin", "init"), 0o755);
    await mkdir(join(root, "boot", "grub"), { recursive: true });
    await writeFile(
      join(root, "boot", "grub", "grub.cfg"),
      [
        "set timeout=0",
        "set default=0",
        `menuentry "Debian GNU/Linux, with Linux ${kernelVersion}" {`,
        `  linux /boot/vmlinuz-${kernelVersion} root=/dev/sda1 ro console=ttyS0,115200 rootdelay=10`,
        `  initrd /boot/initrd.img-${kernelVersion}`,
        "}",
        "",
      ].join("\n"),
    );
    const partial = join(work, "disk.raw");
    await assembleBiosDisk(work, partial, SIZE_BYTES, root, DEBIAN_GUEST_ROOT_UUID);
    const guest: DebianGuest = { path, marker: DEBIAN_GUEST_MARKER, kernelVersion, rootUuid: DEBIAN_GUEST_ROOT_UUID, sizeBytes: SIZE_BYTES };
    const staged = `${path}.partial-${process.pid}`;
    await copyFile(partial, staged);
    await rename(staged, path);
    await writeFile(metaPath, JSON.stringify(guest));
    // Earlier builds of the guest are dead weight (1 GiB each).
    for (const stale of (await readdir(dir)).filter((f) => f.startsWith("debian12-vmware-") && !f.startsWith(`debian12-vmware-${key}.`))) await rm(join(dir, stale), { force: true });
    return guest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const started = performance.now();
  const guest = await buildDebianGuest();
  process.stdout.write(`debian guest: ${guest.path} (kernel ${guest.kernelVersion}, ${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
}
