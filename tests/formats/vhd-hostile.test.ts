// Malformed VHD images, made by patching bytes of small valid ones that qemu-img writes. Each
// must be refused quickly with a stable code, never hang or allocate what a header claims.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { FormatError, isPortableError, NotCapableError } from "../../sdk/errors.ts";
import { vhdFormat } from "../../sdk/disk/formats/vhd/index.ts";
import { bufferSource } from "../../sdk/disk/io.ts";
import { sourceSha256, qemuImg, qemuIo } from "../harness/disk.ts";
import { VECTORS_DIR } from "../harness/tools.ts";

const run = promisify(execFile);
const MIB = 1024 * 1024;
/** Far more than any refusal needs; a hang or a table walk of billions of entries would exceed it. */
const REFUSAL_BUDGET_MS = 2000;

// Field offsets from the spec's tables (footer: Table 1; dynamic header: Table 2).
const FOOTER = { cookie: 0, dataOffset: 16, creatorApp: 28, currentSize: 48, cylinders: 56, diskType: 60, checksum: 64 };
const HEADER = { cookie: 0, tableOffset: 16, maxTableEntries: 28, blockSize: 32, checksum: 36 };
const HEADER_AT = 512;
const BAT_AT = 1536;

function checksum(buf: Buffer, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < checksumOffset || i >= checksumOffset + 4) sum += buf[i] as number;
  return ~sum >>> 0;
}

/** Applies `patch` to the footer copy at the head (if any) and the footer at the tail, then re-checksums both. */
function patchFooters(image: Buffer, patch: (footer: Buffer) => void, fixChecksum = true): Buffer {
  const out = Buffer.from(image);
  const places = out.subarray(0, 8).toString("latin1") === "conectix" ? [0, out.length - 512] : [out.length - 512];
  for (const at of places) {
    const footer = out.subarray(at, at + 512);
    patch(footer);
    if (fixChecksum) footer.writeUInt32BE(checksum(footer, FOOTER.checksum), FOOTER.checksum);
  }
  return out;
}

function patchHeader(image: Buffer, patch: (header: Buffer) => void, fixChecksum = true): Buffer {
  const out = Buffer.from(image);
  const header = out.subarray(HEADER_AT, HEADER_AT + 1024);
  patch(header);
  if (fixChecksum) header.writeUInt32BE(checksum(header, HEADER.checksum), HEADER.checksum);
  return out;
}

async function refusal(image: Buffer, name: string): Promise<unknown> {
  const started = performance.now();
  try {
    const source = await vhdFormat.open(bufferSource(name, image));
    // Some damage shows only when the data is walked; walking must fail, not succeed.
    await sourceSha256(source);
    return undefined;
  } catch (err) {
    assert.ok(performance.now() - started < REFUSAL_BUDGET_MS, `${name}: refusal took too long`);
    return err;
  }
}

async function assertRefused(image: Buffer, name: string, code: string, kind: typeof FormatError | typeof NotCapableError = FormatError): Promise<void> {
  const err = await refusal(image, name);
  assert.ok(err !== undefined, `${name}: was accepted`);
  assert.ok(isPortableError(err), `${name}: threw a non-portable error ${String(err)}`);
  assert.ok(err instanceof kind, `${name}: ${err.name} is not a ${kind.name}`);
  assert.equal(err.code, code, `${name}: ${err.message}`);
}

describe("VHD hostile input", () => {
  let dir: string;
  /** qemu-img dynamic, 4 MiB (two 2 MiB blocks), block 0 allocated: footer copy, header at 512, BAT at 1536, block at 2048. */
  let dynamic: Buffer;
  /** qemu-img fixed, 1 MiB, then the footer. */
  let fixed: Buffer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pw-vhd-hostile-"));
    const dynamicPath = join(dir, "dynamic.vhd");
    await qemuImg("create", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", dynamicPath, String(4 * MIB));
    await qemuIo("vpc", dynamicPath, ["write -P 0x3c 0 64k"]);
    dynamic = await readFile(dynamicPath);
    const fixedPath = join(dir, "fixed.vhd");
    await qemuImg("create", "-f", "vpc", "-o", "subformat=fixed,force_size=on", fixedPath, String(MIB));
    await qemuIo("vpc", fixedPath, ["write -P 0x3c 0 64k"]);
    fixed = await readFile(fixedPath);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("GIVEN the unpatched base images THEN both open and read (so every refusal below is caused by its patch)", async () => {
    for (const [name, image] of [["dynamic", dynamic], ["fixed", fixed]] as const) {
      assert.equal(await refusal(image, name), undefined);
    }
    assert.equal(dynamic.readUInt32BE(BAT_AT), 2048 / 512, "block 0 sits right after the BAT sector");
  });

  it("GIVEN a footer checksum that does not match (both copies) THEN VHD_FOOTER_CHECKSUM", async () => {
    const image = patchFooters(dynamic, (f) => f.writeUInt32BE((f.readUInt32BE(FOOTER.checksum) ^ 1) >>> 0, FOOTER.checksum), false);
    await assertRefused(image, "footer-checksum", "VHD_FOOTER_CHECKSUM");
    await assertRefused(patchFooters(fixed, (f) => (f[100] = 1), false), "fixed-footer-checksum", "VHD_FOOTER_CHECKSUM");
  });

  it("GIVEN only the tail footer damaged THEN the head copy is used and the disk still reads", async () => {
    const image = Buffer.from(dynamic);
    image[image.length - 512 + 100] = 1;
    assert.equal(await refusal(image, "tail-damaged"), undefined);
  });

  it("GIVEN no conectix cookie anywhere THEN VHD_BAD_COOKIE", async () => {
    await assertRefused(patchFooters(dynamic, (f) => f.write("connectx", 0, "latin1")), "cookie", "VHD_BAD_COOKIE");
    // A fixed footer found only in sector 0 is disk data, not this image's footer.
    const headOnly = Buffer.concat([fixed.subarray(fixed.length - 512), Buffer.alloc(4096)]);
    await assertRefused(headOnly, "fixed-head-only", "VHD_BAD_COOKIE");
  });

  it("GIVEN files shorter than their structures THEN TRUNCATED or a range error, never a read past the end", async () => {
    await assertRefused(dynamic.subarray(0, 300), "tiny", "TRUNCATED");
    // Cut inside the allocated block: its BAT entry now points past the end.
    await assertRefused(dynamic.subarray(0, 100 * 1024), "cut-block", "VHD_BLOCK_OUT_OF_RANGE");
    // A fixed disk whose footer claims more data than the file holds.
    const shortFixed = Buffer.concat([fixed.subarray(0, 64 * 1024), fixed.subarray(fixed.length - 512)]);
    await assertRefused(shortFixed, "short-fixed", "TRUNCATED");
    // The dynamic header itself cut off by the end of the file.
    await assertRefused(Buffer.from(dynamic.subarray(0, 1000)), "cut-header", "VHD_BAT_OUT_OF_RANGE");
  });

  it("GIVEN a BAT offset past end of file or at 2^63 THEN VHD_BAT_OUT_OF_RANGE", async () => {
    for (const offset of [1n << 40n, (1n << 63n) - 512n, BigInt(dynamic.length)]) {
      const image = patchHeader(dynamic, (h) => h.writeBigUInt64BE(offset, HEADER.tableOffset));
      await assertRefused(image, `bat-offset-${offset}`, "VHD_BAT_OUT_OF_RANGE");
    }
  });

  it("GIVEN a BAT that overlaps the footer copy or the dynamic header THEN VHD_BAT_OVERLAP", async () => {
    for (const offset of [0n, 512n, 1024n]) {
      const image = patchHeader(dynamic, (h) => h.writeBigUInt64BE(offset, HEADER.tableOffset));
      await assertRefused(image, `bat-at-${offset}`, "VHD_BAT_OVERLAP");
    }
  });

  it("GIVEN a BAT entry past end of file THEN VHD_BLOCK_OUT_OF_RANGE", async () => {
    for (const entry of [dynamic.length / 512, 0xfffffffe]) {
      const image = Buffer.from(dynamic);
      image.writeUInt32BE(entry, BAT_AT + 4);
      await assertRefused(image, `bat-entry-${entry}`, "VHD_BLOCK_OUT_OF_RANGE");
    }
  });

  it("GIVEN a BAT entry whose block overlaps the footer copy, header or BAT THEN VHD_BLOCK_OVERLAP", async () => {
    for (const entry of [0, 1, 3]) {
      const image = Buffer.from(dynamic);
      image.writeUInt32BE(entry, BAT_AT + 4);
      await assertRefused(image, `bat-entry-${entry}`, "VHD_BLOCK_OVERLAP");
    }
  });

  it("GIVEN the afl5.img vector (Max Table Entries 0x40000001 in a 1 KiB file) THEN VHD_BAT_TOO_LARGE", async () => {
    const { stdout } = await run("bzip2", ["-dc", join(VECTORS_DIR, "qemu-iotests", "afl5.img.bz2")], {
      encoding: "buffer",
    });
    await assertRefused(stdout, "afl5", "VHD_BAT_TOO_LARGE");
  });

  it("GIVEN Max Table Entries of 2^32-1 THEN VHD_BAT_TOO_LARGE without allocating the table", async () => {
    const image = patchHeader(dynamic, (h) => h.writeUInt32BE(0xffffffff, HEADER.maxTableEntries));
    const rssBefore = process.memoryUsage().rss;
    await assertRefused(image, "mte-max", "VHD_BAT_TOO_LARGE");
    assert.ok(process.memoryUsage().rss - rssBefore < 256 * MIB);
  });

  it("GIVEN Max Table Entries too few to map the disk THEN VHD_BAT_TOO_SMALL", async () => {
    await assertRefused(patchHeader(dynamic, (h) => h.writeUInt32BE(1, HEADER.maxTableEntries)), "mte-1", "VHD_BAT_TOO_SMALL");
  });

  it("GIVEN a block size of 0, 3000, 256 bytes or 2 GiB THEN VHD_BAD_BLOCK_SIZE", async () => {
    for (const size of [0, 3000, 256, 0x80000000]) {
      await assertRefused(patchHeader(dynamic, (h) => h.writeUInt32BE(size, HEADER.blockSize)), `block-${size}`, "VHD_BAD_BLOCK_SIZE");
    }
  });

  it("GIVEN a data offset that loops back onto the footer copy THEN VHD_HEADER_OVERLAP", async () => {
    for (const offset of [0n, 256n]) {
      const image = patchFooters(dynamic, (f) => f.writeBigUInt64BE(offset, FOOTER.dataOffset));
      await assertRefused(image, `data-offset-${offset}`, "VHD_HEADER_OVERLAP");
    }
  });

  it("GIVEN a data offset past end of file or at 2^64-1 THEN VHD_HEADER_OUT_OF_RANGE", async () => {
    for (const offset of [BigInt(dynamic.length), 0xffffffffffffffffn]) {
      const image = patchFooters(dynamic, (f) => f.writeBigUInt64BE(offset, FOOTER.dataOffset));
      await assertRefused(image, `data-offset-${offset}`, "VHD_HEADER_OUT_OF_RANGE");
    }
  });

  it("GIVEN a Current Size near 2^63 THEN VHD_TOO_LARGE", async () => {
    for (const size of [(1n << 63n) - 512n, 0xfffffffffffffe00n, 2041n << 30n]) {
      const image = patchFooters(dynamic, (f) => f.writeBigUInt64BE(size, FOOTER.currentSize));
      await assertRefused(image, `size-${size}`, "VHD_TOO_LARGE");
      await assertRefused(patchFooters(fixed, (f) => f.writeBigUInt64BE(size, FOOTER.currentSize)), `fixed-size-${size}`, "VHD_TOO_LARGE");
    }
  });

  it("GIVEN a dynamic header whose checksum does not match THEN VHD_DYNAMIC_HEADER_CHECKSUM", async () => {
    const image = patchHeader(dynamic, (h) => (h[700] = 0x55), false);
    await assertRefused(image, "header-checksum", "VHD_DYNAMIC_HEADER_CHECKSUM");
  });

  it("GIVEN a dynamic header without its cxsparse cookie THEN VHD_BAD_DYNAMIC_COOKIE", async () => {
    await assertRefused(patchHeader(dynamic, (h) => h.write("cxsparsf", 0, "latin1")), "header-cookie", "VHD_BAD_DYNAMIC_COOKIE");
  });

  it("GIVEN an unknown disk type THEN VHD_BAD_DISK_TYPE; GIVEN a differencing disk THEN NotCapableError VHD_DIFFERENCING", async () => {
    await assertRefused(patchFooters(dynamic, (f) => f.writeUInt32BE(7, FOOTER.diskType)), "type-7", "VHD_BAD_DISK_TYPE");
    await assertRefused(patchFooters(dynamic, (f) => f.writeUInt32BE(4, FOOTER.diskType)), "differencing", "VHD_DIFFERENCING", NotCapableError);
  });

  it("GIVEN a patched image on disk with a BAT entry past end of file THEN qemu-img refuses it too", async () => {
    // Spot check against the peer: a BAT entry past end of file is an error for qemu-img too.
    const image = Buffer.from(dynamic);
    image.writeUInt32BE(0xfffffffe, BAT_AT + 4);
    const path = join(dir, "peer.vhd");
    await writeFile(path, image);
    await assert.rejects(qemuImg("info", "-f", "vpc", path));
  });
});
