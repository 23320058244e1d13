// Test helpers for OVF/OVA: the shared govmomi vector, and a raw tar builder that can write
// what tar-stream refuses to (absolute names, links, lying sizes), for the hostile cases.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "../harness/tools.ts";

const run = promisify(execFile);

export const GOVMOMI_VECTORS = join(REPO_ROOT, "..", "shared", "vectors", "govmomi");
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
