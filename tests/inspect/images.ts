// The guest images the inspection tests share, built once per test file into a temp dir
// (tests/harness/guest-image.ts builds them deterministically from Debian's kernel package).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildGuestImage, buildWindowsImage, extractDebianKernel, TEST_MODULES, type DebianKernel, type GuestImage, type GuestImageSpec } from "../harness/guest-image.ts";

/** Every readiness driver as a module file; two of them compressed as newer distributions ship them. */
export const UEFI_ALL: GuestImageSpec = { firmware: "uefi", modules: [...TEST_MODULES], fstab: "uuid", compress: { ena: "xz", hv_netvsc: "zst" } };
/** BIOS, only ahci and e1000, fstab and grub by /dev names. */
export const BIOS_NONE: GuestImageSpec = { firmware: "bios", modules: ["ahci", "e1000"], fstab: "device" };
/** UEFI with /boot on ext2, virtio built into the kernel (modules.builtin), no virtio module files. */
export const UEFI_BUILTIN_VIRTIO: GuestImageSpec = { firmware: "uefi", modules: ["ahci"], fstab: "uuid", separateBoot: true, extraBuiltin: ["virtio_pci", "virtio_blk", "virtio_net"] };
/** Azure drivers present as Windows files. */
export const WINDOWS_DRIVERS = ["vmbus.sys", "storvsc.sys", "netvsc.sys"];

export interface Images {
  readonly dir: string;
  readonly kernel: DebianKernel;
  build(spec: GuestImageSpec, name: string): Promise<GuestImage>;
  windows(name: string): Promise<string>;
  cleanup(): Promise<void>;
}

export async function prepareImages(): Promise<Images> {
  const dir = await mkdtemp(join(tmpdir(), "pw-inspect-"));
  const kernel = await extractDebianKernel(dir);
  const cache = new Map<string, Promise<GuestImage>>();
  return {
    dir,
    kernel,
    build(spec, name) {
      let image = cache.get(name);
      if (image === undefined) {
        image = buildGuestImage(dir, kernel, spec, name);
        cache.set(name, image);
      }
      return image;
    },
    windows: (name) => buildWindowsImage(dir, { drivers: WINDOWS_DRIVERS }, name),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
