// Malformed VHDX input: each case patches bytes of a small valid image (made by qemu-img at test
// time, or the shared dirty-log vector) and must end in a FormatError or NotCapableError with a
// stable code, quickly and without large allocations.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { promisify } from "node:util";
import { FormatError, NotCapableError } from "../../sdk/errors.ts";
import { crc32cWithZeroedField } from "../../sdk/disk/formats/vhdx/crc32c.ts";
import { vhdxFormat } from "../../sdk/disk/formats/vhdx/index.ts";
import {
  BAT_REGION_GUID,
  FILE_PARAMETERS_GUID,
  guid,
  LOGICAL_SECTOR_SIZE_GUID,
  METADATA_REGION_GUID,
  VIRTUAL_DISK_SIZE_GUID,
} from "../../sdk/disk/formats/vhdx/layout.ts";
import { bufferSource } from "../../sdk/disk/io.ts";
import { qemuImg, qemuIo, sourceSha256, withTempDir } from "../harness/disk.ts";
import { VECTORS_DIR } from "../harness/tools.ts";

const run = promisify(execFile);
const KIB = 1024;
const MIB = 1024 * KIB;
const HEADER_OFFSETS = [64 * KIB, 128 * KIB];
const REGION_TABLE_OFFSETS = [192 * KIB, 256 * KIB];
/** Each refusal must come well within this; a hang or a giant allocation would blow it. */
const MAX_REFUSAL_MS = 5000;

type ErrorClass = typeof FormatError | typeof NotCapableError;

/** Opens the image, walks its extents and reads every data extent's start: all paths that parse. */
async function readAll(image: Buffer): Promise<string> {
  const disk = await vhdxFormat.open(bufferSource("hostile.vhdx", image));
  try {
    return await sourceSha256(disk);
  } finally {
    await disk.close();
  }
}

async function expectRefused(image: Buffer, code: string, errorClass: ErrorClass = FormatError): Promise<void> {
  const started = Date.now();
  await assert.rejects(readAll(image), (err: unknown) => {
    assert.ok(err instanceof errorClass, `expected ${errorClass.name}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, /vhdx/);
    return true;
  });
  assert.ok(Date.now() - started < MAX_REFUSAL_MS, `refusal took ${Date.now() - started} ms`);
}

function fixHeaders(image: Buffer): void {
  for (const at of HEADER_OFFSETS) image.writeUInt32LE(crc32cWithZeroedField(image.subarray(at, at + 4 * KIB), 4), at + 4);
}

function fixRegionTables(image: Buffer): void {
  for (const at of REGION_TABLE_OFFSETS) image.writeUInt32LE(crc32cWithZeroedField(image.subarray(at, at + 64 * KIB), 4), at + 4);
}

/** Offset (within a region table) of the entry for `regionGuid`. */
function regionEntry(image: Buffer, regionGuid: Buffer): number {
  const table = REGION_TABLE_OFFSETS[0]!;
  const count = image.readUInt32LE(table + 8);
  for (let index = 0; index < count; index++) {
    const at = 16 + index * 32;
    if (image.subarray(table + at, table + at + 16).equals(regionGuid)) return at;
  }
  throw new Error("region not found");
}

function regionOffset(image: Buffer, regionGuid: Buffer): number {
  return Number(image.readBigUInt64LE(REGION_TABLE_OFFSETS[0]! + regionEntry(image, regionGuid) + 16));
}

/** Applies `patch` to both region table copies, then fixes their checksums. */
function patchRegionTables(image: Buffer, patch: (table: number) => void): void {
  for (const table of REGION_TABLE_OFFSETS) patch(table);
  fixRegionTables(image);
}

/** File offset of the metadata table entry for `itemGuid`. */
function metadataEntry(image: Buffer, itemGuid: Buffer): number {
  const table = regionOffset(image, METADATA_REGION_GUID);
  const count = image.readUInt16LE(table + 10);
  for (let index = 0; index < count; index++) {
    const at = table + 32 + index * 32;
    if (image.subarray(at, at + 16).equals(itemGuid)) return at;
  }
  throw new Error("metadata item not found");
}

function metadataItem(image: Buffer, itemGuid: Buffer): number {
  return regionOffset(image, METADATA_REGION_GUID) + image.readUInt32LE(metadataEntry(image, itemGuid) + 16);
}

function batEntry(image: Buffer, batIndex: number): number {
  return regionOffset(image, BAT_REGION_GUID) + batIndex * 8;
}

describe("vhdx hostile input", () => {
  let base: Buffer;
  let baseSha: string;
  let dirtyLog: Buffer;

  before(async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "base.vhdx");
      await qemuImg("create", "-q", "-f", "vhdx", "-o", "block_size=1M,subformat=dynamic", image, "8M");
      await qemuIo("vhdx", image, ["write -P 0x5a 0 1M", "write -P 0x11 3M 512", `write -P 0x22 ${8 * MIB - 512} 512`]);
      base = await readFile(image);
    });
    baseSha = await readAll(base);
    const vector = join(VECTORS_DIR, "qemu-iotests", "iotest-dirtylog-10G-4M.vhdx.bz2");
    dirtyLog = (await run("bzip2", ["-dc", vector], { encoding: "buffer", maxBuffer: 64 * MIB })).stdout;
  });

  const copy = (): Buffer => Buffer.from(base);

  it("GIVEN a file cut inside its header section WHEN opened THEN TRUNCATED", async () => {
    await expectRefused(base.subarray(0, 100 * KIB), "TRUNCATED");
  });

  it("GIVEN a file cut before its last data block ends WHEN read THEN VHDX_BAT_OUT_OF_RANGE", async () => {
    await expectRefused(base.subarray(0, base.length - 512 * KIB), "VHDX_BAT_OUT_OF_RANGE");
  });

  it("GIVEN a file without the vhdxfile identifier WHEN opened THEN VHDX_BAD_MAGIC", async () => {
    const image = copy();
    image.write("vhdXfile", 0, "latin1");
    await expectRefused(image, "VHDX_BAD_MAGIC");
  });

  it("GIVEN one header with a bad CRC WHEN opened THEN the other header is used and the data is the same", async () => {
    const image = copy();
    image[HEADER_OFFSETS[0]! + 100]! ^= 0xff;
    assert.equal(await readAll(image), baseSha);
  });

  it("GIVEN both headers with bad CRCs WHEN opened THEN VHDX_BAD_HEADER", async () => {
    const image = copy();
    for (const at of HEADER_OFFSETS) image[at + 100]! ^= 0xff;
    await expectRefused(image, "VHDX_BAD_HEADER");
  });

  it("GIVEN headers of version 2 with valid CRCs WHEN opened THEN VHDX_UNSUPPORTED_VERSION", async () => {
    const image = copy();
    for (const at of HEADER_OFFSETS) image.writeUInt16LE(2, at + 66);
    fixHeaders(image);
    await expectRefused(image, "VHDX_UNSUPPORTED_VERSION", NotCapableError);
  });

  it("GIVEN both region tables with bad CRCs WHEN opened THEN VHDX_BAD_REGION_TABLE", async () => {
    const image = copy();
    for (const at of REGION_TABLE_OFFSETS) image[at + 40]! ^= 0x01;
    await expectRefused(image, "VHDX_BAD_REGION_TABLE");
  });

  it("GIVEN a region table claiming 100000 entries WHEN opened THEN VHDX_BAD_REGION_TABLE", async () => {
    const image = copy();
    patchRegionTables(image, (table) => image.writeUInt32LE(100000, table + 8));
    await expectRefused(image, "VHDX_BAD_REGION_TABLE");
  });

  it("GIVEN a BAT region placed at 1 TiB in a 10 MiB file WHEN opened THEN VHDX_REGION_OUT_OF_RANGE", async () => {
    const image = copy();
    const entry = regionEntry(image, BAT_REGION_GUID);
    patchRegionTables(image, (table) => image.writeBigUInt64LE(1n << 40n, table + entry + 16));
    await expectRefused(image, "VHDX_REGION_OUT_OF_RANGE");
  });

  it("GIVEN a metadata region on top of the BAT region WHEN opened THEN VHDX_REGION_OVERLAP", async () => {
    const image = copy();
    const batOffset = regionOffset(image, BAT_REGION_GUID);
    const entry = regionEntry(image, METADATA_REGION_GUID);
    patchRegionTables(image, (table) => image.writeBigUInt64LE(BigInt(batOffset), table + entry + 16));
    await expectRefused(image, "VHDX_REGION_OVERLAP");
  });

  it("GIVEN an unknown region marked required WHEN opened THEN VHDX_UNKNOWN_REQUIRED_REGION; unmarked, it is ignored", async () => {
    for (const required of [true, false]) {
      const image = copy();
      patchRegionTables(image, (table) => {
        const count = image.readUInt32LE(table + 8);
        const at = table + 16 + count * 32;
        guid("0F0E0D0C-0B0A-0908-0706-050403020100").copy(image, at);
        image.writeBigUInt64LE(BigInt(9 * MIB), at + 16);
        image.writeUInt32LE(MIB, at + 24);
        image.writeUInt32LE(required ? 1 : 0, at + 28);
        image.writeUInt32LE(count + 1, table + 8);
      });
      if (required) await expectRefused(image, "VHDX_UNKNOWN_REQUIRED_REGION", NotCapableError);
      else assert.equal(await readAll(image), baseSha);
    }
  });

  it("GIVEN a BAT entry pointing at 2^43 MiB WHEN read THEN VHDX_BAT_OUT_OF_RANGE", async () => {
    const image = copy();
    image.writeBigUInt64LE(((1n << 43n) << 20n) | 6n, batEntry(image, 0));
    await expectRefused(image, "VHDX_BAT_OUT_OF_RANGE");
  });

  it("GIVEN BAT entries placing a block over the headers or over the BAT itself WHEN read THEN VHDX_BAT_ENTRY_OVERLAP", async () => {
    for (const fileOffsetMib of [0n, BigInt(regionOffset(base, BAT_REGION_GUID) / MIB)]) {
      const image = copy();
      image.writeBigUInt64LE((fileOffsetMib << 20n) | 6n, batEntry(image, 0));
      await expectRefused(image, "VHDX_BAT_ENTRY_OVERLAP");
    }
  });

  it("GIVEN a BAT entry with the undefined state 5 WHEN read THEN VHDX_BAD_BAT_ENTRY", async () => {
    const image = copy();
    image.writeBigUInt64LE(5n, batEntry(image, 1));
    await expectRefused(image, "VHDX_BAD_BAT_ENTRY");
  });

  it("GIVEN a PARTIALLY_PRESENT block or the has-parent flag WHEN read THEN VHDX_DIFFERENCING", async () => {
    const partial = copy();
    partial.writeBigUInt64LE((BigInt(regionOffset(base, BAT_REGION_GUID) / MIB + 8) << 20n) | 7n, batEntry(partial, 1));
    await expectRefused(partial, "VHDX_DIFFERENCING", NotCapableError);
    const parent = copy();
    parent.writeUInt32LE(2, metadataItem(parent, FILE_PARAMETERS_GUID) + 4);
    await expectRefused(parent, "VHDX_DIFFERENCING", NotCapableError);
  });

  it("GIVEN block sizes 0, 3 MiB and 512 MiB WHEN opened THEN VHDX_BAD_BLOCK_SIZE", async () => {
    for (const blockSizeBytes of [0, 3 * MIB, 512 * MIB]) {
      const image = copy();
      image.writeUInt32LE(blockSizeBytes, metadataItem(image, FILE_PARAMETERS_GUID));
      await expectRefused(image, "VHDX_BAD_BLOCK_SIZE");
    }
  });

  it("GIVEN virtual sizes 2^63 - 512, 0 and 1000 bytes WHEN opened THEN VHDX_BAD_VIRTUAL_SIZE", async () => {
    for (const sizeBytes of [(1n << 63n) - 512n, 0n, 1000n]) {
      const image = copy();
      image.writeBigUInt64LE(sizeBytes, metadataItem(image, VIRTUAL_DISK_SIZE_GUID));
      await expectRefused(image, "VHDX_BAD_VIRTUAL_SIZE");
    }
  });

  it("GIVEN a 64 TiB virtual size with 1 MiB blocks (64 Mi BAT entries) in a 1 MiB BAT region WHEN opened THEN VHDX_BAT_TOO_SMALL", async () => {
    const image = copy();
    image.writeBigUInt64LE(64n << 40n, metadataItem(image, VIRTUAL_DISK_SIZE_GUID));
    const before = process.memoryUsage().rss;
    await expectRefused(image, "VHDX_BAT_TOO_SMALL");
    assert.ok(process.memoryUsage().rss - before < 128 * MIB, "no allocation sized by the claimed BAT");
  });

  it("GIVEN a logical sector size of 1000 WHEN opened THEN VHDX_BAD_SECTOR_SIZE", async () => {
    const image = copy();
    image.writeUInt32LE(1000, metadataItem(image, LOGICAL_SECTOR_SIZE_GUID));
    await expectRefused(image, "VHDX_BAD_SECTOR_SIZE");
  });

  it("GIVEN the virtual disk size item renamed to an unknown optional item WHEN opened THEN VHDX_MISSING_METADATA", async () => {
    const image = copy();
    const entry = metadataEntry(image, VIRTUAL_DISK_SIZE_GUID);
    guid("11111111-2222-3333-4444-555555555555").copy(image, entry);
    image.writeUInt32LE(0, entry + 24);
    await expectRefused(image, "VHDX_MISSING_METADATA");
  });

  it("GIVEN an unknown metadata item marked required WHEN opened THEN VHDX_UNKNOWN_REQUIRED_METADATA", async () => {
    const image = copy();
    const table = regionOffset(image, METADATA_REGION_GUID);
    const count = image.readUInt16LE(table + 10);
    const at = table + 32 + count * 32;
    guid("11111111-2222-3333-4444-555555555555").copy(image, at);
    image.writeUInt32LE(64 * KIB, at + 16);
    image.writeUInt32LE(8, at + 20);
    image.writeUInt32LE(4, at + 24);
    image.writeUInt16LE(count + 1, table + 10);
    await expectRefused(image, "VHDX_UNKNOWN_REQUIRED_METADATA", NotCapableError);
  });

  it("GIVEN a metadata item past its region or a table without its signature WHEN opened THEN VHDX_BAD_METADATA", async () => {
    const outside = copy();
    outside.writeUInt32LE(0xfffff000, metadataEntry(outside, FILE_PARAMETERS_GUID) + 16);
    await expectRefused(outside, "VHDX_BAD_METADATA");
    const unsigned = copy();
    unsigned.write("METADATA", regionOffset(unsigned, METADATA_REGION_GUID), "latin1");
    await expectRefused(unsigned, "VHDX_BAD_METADATA");
  });

  it("GIVEN a header naming a log GUID but an empty log WHEN opened THEN VHDX_LOG_CORRUPT (log needs replay)", async () => {
    const image = copy();
    for (const at of HEADER_OFFSETS) guid("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE").copy(image, at + 48);
    fixHeaders(image);
    await assert.rejects(readAll(image), /log needs replay/);
    await expectRefused(image, "VHDX_LOG_CORRUPT");
  });

  it("GIVEN a log to replay whose region lies past the end of the file WHEN opened THEN VHDX_BAD_LOG_REGION", async () => {
    const image = Buffer.from(dirtyLog);
    for (const at of HEADER_OFFSETS) image.writeBigUInt64LE(1n << 40n, at + 72);
    fixHeaders(image);
    await expectRefused(image, "VHDX_BAD_LOG_REGION");
  });

  /** File offset of the dirty vector's active log entry: the one carrying the header's LogGuid. */
  function activeLogEntry(image: Buffer): number {
    const header = HEADER_OFFSETS.map((at) => ({ at, sequence: image.readBigUInt64LE(at + 8) })).sort((a, b) => (a.sequence > b.sequence ? -1 : 1))[0]!.at;
    const logGuid = image.subarray(header + 48, header + 64);
    const logOffset = Number(image.readBigUInt64LE(header + 72));
    for (let at = logOffset; at < logOffset + image.readUInt32LE(header + 68); at += 4 * KIB) {
      if (image.readUInt32LE(at) === 0x65676f6c && image.subarray(at + 32, at + 48).equals(logGuid)) return at;
    }
    throw new Error("no active log entry");
  }

  it("GIVEN the dirty-log vector with its active entry's checksum broken WHEN opened THEN VHDX_LOG_CORRUPT", async () => {
    const image = Buffer.from(dirtyLog);
    image[activeLogEntry(image) + 4]! ^= 0xff;
    await expectRefused(image, "VHDX_LOG_CORRUPT");
  });

  it("GIVEN the dirty-log vector whose entry (re-checksummed) logs a write into the header section WHEN opened THEN VHDX_LOG_CORRUPT", async () => {
    const image = Buffer.from(dirtyLog);
    const entry = activeLogEntry(image);
    image.writeBigUInt64LE(64n * 1024n, entry + 64 + 16);
    const entryLength = image.readUInt32LE(entry + 8);
    image.writeUInt32LE(crc32cWithZeroedField(image.subarray(entry, entry + entryLength), 4), entry + 4);
    await expectRefused(image, "VHDX_LOG_CORRUPT");
  });

  it("GIVEN the dirty-log vector whose data sector lost its signature (re-checksummed) WHEN opened THEN VHDX_LOG_CORRUPT", async () => {
    const image = Buffer.from(dirtyLog);
    const entry = activeLogEntry(image);
    // One descriptor: the header and descriptor fill the first 4 KiB sector, the data sector follows.
    image.write("xxxx", entry + 4 * KIB, "latin1");
    const entryLength = image.readUInt32LE(entry + 8);
    image.writeUInt32LE(crc32cWithZeroedField(image.subarray(entry, entry + entryLength), 4), entry + 4);
    await expectRefused(image, "VHDX_LOG_CORRUPT");
  });
});
