// Through any format: the same guest image wrapped in VMDK, VHD, VHDX and qcow2 (by qemu-img,
// the peer) gives the same report through openDisk as the raw image does.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { qemuImg } from "../harness/disk.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { inspectGuest } from "../../sdk/inspect/inspect.ts";
import type { ReadinessReport } from "../../sdk/inspect/types.ts";
import { BIOS_NONE, prepareImages, UEFI_ALL, type Images } from "./images.ts";

const WRAPPINGS = [
  { format: "vmdk", qemuFormat: "vmdk", options: ["-o", "subformat=monolithicSparse"] },
  { format: "vmdk", qemuFormat: "vmdk", options: ["-o", "subformat=streamOptimized"] },
  { format: "vhd", qemuFormat: "vpc", options: ["-o", "subformat=dynamic"] },
  { format: "vhd", qemuFormat: "vpc", options: ["-o", "subformat=fixed"] },
  { format: "vhdx", qemuFormat: "vhdx", options: [] },
  { format: "qcow2", qemuFormat: "qcow2", options: [] },
] as const;

async function inspectFile(path: string): Promise<{ format: string; report: ReadinessReport }> {
  const disk = await openDisk(path);
  try {
    return { format: disk.format, report: await inspectGuest(disk) };
  } finally {
    await disk.close();
  }
}

describe("guest readiness through every disk format", () => {
  let images: Images;
  before(async () => {
    images = await prepareImages();
  });
  after(async () => {
    await images?.cleanup();
  });

  for (const [spec, name] of [
    [UEFI_ALL, "uefi-all"],
    [BIOS_NONE, "bios-none"],
  ] as const) {
    it(`GIVEN the ${name} image in each format WHEN inspected through openDisk THEN every report equals the raw image's`, async () => {
      const image = await images.build(spec, name);
      const raw = await inspectFile(image.path);
      assert.equal(raw.format, "raw");
      assert.equal(raw.report.os.distro, "debian", "the raw report is a real one");
      for (const [i, w] of WRAPPINGS.entries()) {
        const wrapped = join(images.dir, `${name}-${i}.${w.format}`);
        await qemuImg("convert", "-q", "-f", "raw", "-O", w.qemuFormat, ...w.options, image.path, wrapped);
        const result = await inspectFile(wrapped);
        assert.equal(result.format, w.format, `openDisk detected ${w.format} (${w.options.join(" ")})`);
        // A fixed VHD or a VMDK may round the virtual size up; partitions and findings do not move.
        assert.deepEqual(result.report, raw.report, `${w.format} ${w.options.join(" ")}`);
      }
    });
  }
});
