// Test helpers for OVF/OVA: the shared govmomi vector, a raw tar builder that can write what
// tar-stream refuses to (absolute names, links, lying sizes) for the hostile cases, and a small
// OVA built the way appliances ship (descriptor, streamOptimized VMDK from qemu-img, manifest).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { qemuImg, qemuIo } from "../harness/disk.ts";
import { REPO_ROOT, VECTORS_DIR } from "../harness/tools.ts";

const run = promisify(execFile);

export const GOVMOMI_VECTORS = join(VECTORS_DIR, "govmomi");
export const FIXTURES = join(REPO_ROOT, "tests", "fixtures", "ovf");

/** Decompresses the ttylinux OVA into `dir` (never committed) and returns its path. */
export async function ttylinuxOva(dir: string): Promise<string> {
  const { stdout } = await run("bzip2", ["-dc", join(GOVMOMI_VECTORS, "ttylinux-pc_i486-16.1.ova.bz2")], { encoding: "buffer", maxBuffer: 16 * 1024 * 1024 });
  const path = join(dir, "ttylinux-pc_i486-16.1.ova");
  await writeFile(path, stdout);
  return path;
}

export interface RawEntry {
  readonly name: string;
  readonly data?: Buffer;
  /** ustar typeflag: "0" file, "1" hard link, "2" symlink, "5" directory, "x" pax. */
  readonly type?: string;
  readonly linkName?: string;
  /** Overrides the size field (to lie about it). */
  readonly sizeField?: number;
}

/** One 512-byte ustar header with a correct checksum. */
export function tarHeader(entry: RawEntry): Buffer {
  const header = Buffer.alloc(512);
  header.write(entry.name, 0, 100, "utf8");
  header.write("0000644\0", 100, "latin1");
  header.write("0000000\0", 108, "latin1");
  header.write("0000000\0", 116, "latin1");
  header.write(`${(entry.sizeField ?? entry.data?.length ?? 0).toString(8).padStart(11, "0")}\0`, 124, "latin1");
  header.write("00000000000\0", 136, "latin1");
  header.write(entry.type ?? "0", 156, "latin1");
  if (entry.linkName !== undefined) header.write(entry.linkName, 157, 100, "utf8");
  header.write("ustar\0", 257, "latin1");
  header.write("00", 263, "latin1");
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return header;
}

/** A whole archive: each header, its data padded to 512, and the two zero blocks. */
export function rawTar(entries: readonly RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    parts.push(tarHeader(entry));
    const data = entry.data ?? Buffer.alloc(0);
    parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A pax extended header record set ("<len> key=value\n"). */
export function paxRecords(records: Readonly<Record<string, string>>): Buffer {
  return Buffer.from(
    Object.entries(records)
      .map(([key, value]) => {
        const body = ` ${key}=${value}\n`;
        let length = body.length + 1;
        while (`${length}${body}`.length !== length) length = `${length}${body}`.length;
        return `${length}${body}`;
      })
      .join(""),
    "utf8",
  );
}

export const MINIMAL_OVF = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References/>
  <VirtualSystem ovf:id="tiny">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="101"><Info>os</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>64</rasd:VirtualQuantity></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;

/** MINIMAL_OVF with one disk d1 stored in `href`, attached to an IDE controller. */
export function ovfWithDisk(disk: { readonly href: string; readonly fileSizeBytes: number; readonly capacityBytes: number }): string {
  return MINIMAL_OVF.replace(
    "<References/>",
    `<References><File ovf:href="${disk.href}" ovf:id="f1" ovf:size="${disk.fileSizeBytes}"/></References><DiskSection><Info>d</Info><Disk ovf:capacity="${disk.capacityBytes}" ovf:diskId="d1" ovf:fileRef="f1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>`,
  ).replace(
    "</VirtualHardwareSection>",
    "<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item><Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection>",
  );
}

export interface BuiltOva {
  readonly ova: string;
  /** The tar entry of the disk, and its `<ova>!<entry>` location. */
  readonly entry: string;
  readonly location: string;
  /** The raw image the disk was made from (the expected bytes), and its VMDK outside the OVA. */
  readonly raw: string;
  readonly vmdk: string;
  readonly virtualSizeBytes: number;
}

/**
 * `appliance.ova` in `dir`: appliance.ovf, disk1.vmdk (qemu-img's streamOptimized VMDK of a
 * raw image with data at the start, the middle and the last sector) and appliance.mf (SHA-256),
 * in that order, as DSP0243 §5.3 wants. `extra` entries go after the manifest; `raw` replaces
 * the made-up image with a given one.
 */
export async function buildOva(dir: string, options: { readonly sizeBytes?: number; readonly extra?: readonly RawEntry[]; readonly raw?: string } = {}): Promise<BuiltOva> {
  let sizeBytes = options.sizeBytes ?? 8 * 2 ** 20;
  let raw = join(dir, "appliance-disk.raw");
  if (options.raw === undefined) {
    await qemuImg("create", "-q", "-f", "raw", raw, String(sizeBytes));
    await qemuIo("raw", raw, ["write -P 0x5a 0 64k", `write -P 0x33 ${sizeBytes / 2} 1M`, `write -P 0x7e ${sizeBytes - 512} 512`]);
  } else {
    // A given raw image (a bootable guest, say) becomes the appliance's disk as it is.
    raw = options.raw;
    sizeBytes = (await stat(raw)).size;
  }
  const vmdkPath = join(dir, "appliance-disk.vmdk");
  await qemuImg("convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdkPath);
  const vmdk = await readFile(vmdkPath);
  const entry = "disk1.vmdk";
  const ovf = Buffer.from(ovfWithDisk({ href: entry, fileSizeBytes: vmdk.length, capacityBytes: sizeBytes }));
  const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");
  const mf = Buffer.from(`SHA256(appliance.ovf)= ${sha256(ovf)}\nSHA256(${entry})= ${sha256(vmdk)}\n`);
  const ova = join(dir, "appliance.ova");
  await writeFile(ova, rawTar([{ name: "appliance.ovf", data: ovf }, { name: entry, data: vmdk }, { name: "appliance.mf", data: mf }, ...(options.extra ?? [])]));
  return { ova, entry, location: `${ova}!${entry}`, raw, vmdk: vmdkPath, virtualSizeBytes: sizeBytes };
}
