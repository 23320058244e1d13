// VHD conformance: our reader against qemu-img on images qemu writes, the shared vectors, our
// writer checked by qemu-img, and the CHS geometry arithmetic.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { InvalidArgsError, isPortableError, NotCapableError } from "../../sdk/errors.ts";
import { vhdFormat } from "../../sdk/disk/formats/vhd/index.ts";
import {
  chsGeometryCovering,
  chsGeometryFor,
  chsTotalSectors,
  VHD_CHS_MAX_TOTAL_SECTORS,
  VHD_FOOTER_BYTES,
  VhdFooter,
} from "../../sdk/disk/formats/vhd/layout.ts";
import { planVhdSize } from "../../sdk/disk/formats/vhd/writer.ts";
import { createFileTarget, openFileSource, streamTarget } from "../../sdk/disk/io.ts";
import type { DiskSink, DiskSource } from "../../sdk/disk/types.ts";
import { fileSha256, qemuImg, qemuInfo, qemuIo, qemuRawSha256, sourceSha256, withTempDir } from "../harness/disk.ts";
import { VECTORS_DIR } from "../harness/tools.ts";

const run = promisify(execFile);
const MIB = 1024 * 1024;
const VECTORS = join(VECTORS_DIR, "qemu-iotests");

async function openVhdFile(path: string): Promise<DiskSource> {
  return vhdFormat.open(await openFileSource(path));
}

async function ourSha256(path: string): Promise<string> {
  const source = await openVhdFile(path);
  try {
    return await sourceSha256(source);
  } finally {
    await source.close();
  }
}

async function decompress(dir: string, name: string): Promise<string> {
  const out = join(dir, name);
  const { stdout } = await run("bzip2", ["-dc", join(VECTORS, `${name}.bz2`)], {
    encoding: "buffer",
    maxBuffer: 512 * MIB,
  });
  await writeFile(out, stdout);
  return out;
}

describe("VHD CHS geometry (spec Appendix: CHS calculation)", () => {
  // A deterministic spread of sizes: every count up to 70000 sectors, then a multiplicative
  // walk with an odd step to the CHS maximum and past it.
  function* sectorCounts(): Generator<number> {
    for (let n = 0; n <= 70_000; n++) yield n;
    for (let n = 70_001; n < VHD_CHS_MAX_TOTAL_SECTORS * 2; n = Math.floor(n * 1.0007) + 13) yield n;
    yield VHD_CHS_MAX_TOTAL_SECTORS - 1;
    yield VHD_CHS_MAX_TOTAL_SECTORS;
  }

  it("GIVEN many sizes WHEN the geometry is computed THEN C<=65535, H<=16, S<=255 and C*H*S never exceeds the capped size", () => {
    let checked = 0;
    for (const sectors of sectorCounts()) {
      const g = chsGeometryFor(sectors);
      const capped = Math.min(sectors, VHD_CHS_MAX_TOTAL_SECTORS);
      assert.ok(g.cylinders <= 65535 && g.heads <= 16 && g.sectorsPerTrack <= 255, `bounds at ${sectors}`);
      assert.ok([17, 31, 63, 255].includes(g.sectorsPerTrack), `spt at ${sectors}`);
      assert.ok(chsTotalSectors(g) <= capped, `C*H*S above size at ${sectors}`);
      // It rounds down by less than one cylinder plus one track.
      assert.ok(capped - chsTotalSectors(g) < g.sectorsPerTrack * (g.heads + 1), `loss at ${sectors}`);
      checked++;
    }
    assert.ok(checked > 80_000);
  });

  it("GIVEN many sizes WHEN the covering geometry is computed THEN it is the smallest spec geometry at or above the size", () => {
    for (const sectors of sectorCounts()) {
      if (sectors > 200_000 && sectors % 7 !== 0) continue;
      const g = chsGeometryCovering(sectors);
      const total = chsTotalSectors(g);
      if (sectors >= VHD_CHS_MAX_TOTAL_SECTORS) {
        assert.equal(total, VHD_CHS_MAX_TOTAL_SECTORS);
        continue;
      }
      assert.ok(total >= sectors, `covering below size at ${sectors}`);
      assert.ok(total - sectors < 255 * 17, `covering overshoots at ${sectors}`);
    }
  });

  it("GIVEN the Virtual PC vector's Current Size WHEN the geometry is computed THEN it is the 65278/16/255 that Virtual PC wrote", () => {
    assert.deepEqual(chsGeometryFor(136365211648 / 512), { cylinders: 65278, heads: 16, sectorsPerTrack: 255 });
  });

  it("GIVEN sizes qemu-img rounds WHEN planned without forceSize THEN our size equals the size qemu-img creates", async () => {
    await withTempDir(async (dir) => {
      for (const requested of [10 * MIB, 33 * MIB + 512, 100 * MIB + 7 * 512, 1000 * MIB]) {
        const image = join(dir, `r${requested}.vhd`);
        await qemuImg("create", "-f", "vpc", "-o", "subformat=dynamic", image, String(requested));
        const info = await qemuInfo(image, "vpc");
        assert.equal(planVhdSize(requested, false, false).virtualSizeBytes, info["virtual-size"], `size ${requested}`);
      }
    });
  });
});

/** Writes qemu-io patterns: data at the start, across a block boundary, and in the last sector. */
function patternCommands(virtualSizeBytes: number): string[] {
  const lastSector = Math.floor(virtualSizeBytes / 512) * 512 - 512;
  const commands = ["write -P 0xab 0 64k", `write -P 0xcd ${2 * MIB - 4096} 8k`];
  if (virtualSizeBytes > 6 * MIB) commands.push(`write -P 0x11 ${5 * MIB + 512} 3584`);
  commands.push(`write -P 0xef ${lastSector} 512`);
  return commands;
}

interface HandBlock {
  readonly data: Buffer;
  /** The sector bitmap; all ones when omitted. */
  readonly bitmap?: Buffer;
}

/**
 * Builds a dynamic (3) or differencing (4) VHD by hand from the spec's tables, for layouts
 * qemu-img cannot write: other block sizes, differencing disks. Creator "win ", so it is sized
 * by Current Size.
 */
function buildDynamicVhd(spec: { sizeBytes: number; blockBytes: number; diskType: number; blocks: ReadonlyMap<number, HandBlock> }): Buffer {
  const entries = Math.ceil(spec.sizeBytes / spec.blockBytes);
  const bitmapBytes = Math.ceil(spec.blockBytes / 512 / 8 / 512) * 512;
  const batOffset = 1536;
  const batBytes = Math.ceil((entries * 4) / 512) * 512;
  const dataStart = batOffset + batBytes;
  const file = Buffer.alloc(dataStart + spec.blocks.size * (bitmapBytes + spec.blockBytes) + 512);
  const sum = (b: Buffer): number => ~[...b].reduce((a, x) => a + x, 0) >>> 0;
  const footer = Buffer.alloc(512);
  VhdFooter.put(footer, 0, {
    cookie: "conectix", features: 2, fileFormatVersion: 0x10000, dataOffset: 512n, timestamp: 0,
    creatorApplication: Buffer.from("win "), creatorVersion: 0x60003, creatorHostOs: Buffer.from("Wi2k"),
    originalSize: BigInt(spec.sizeBytes), currentSize: BigInt(spec.sizeBytes), cylinders: 96, heads: 4, sectorsPerTrack: 17,
    diskType: spec.diskType, checksum: 0, uniqueId: Buffer.alloc(16, 7), savedState: 0,
  });
  footer.writeUInt32BE(sum(footer), 64);
  footer.copy(file, 0);
  footer.copy(file, file.length - 512);
  const header = file.subarray(512, 1536);
  header.write("cxsparse", 0, "latin1");
  header.writeBigUInt64BE(0xffffffffffffffffn, 8);
  header.writeBigUInt64BE(BigInt(batOffset), 16);
  header.writeUInt32BE(0x10000, 24);
  header.writeUInt32BE(entries, 28);
  header.writeUInt32BE(spec.blockBytes, 32);
  header.writeUInt32BE(sum(header), 36);
  file.fill(0xff, batOffset, dataStart);
  let at = dataStart;
  for (const [index, block] of [...spec.blocks].sort((a, b) => a[0] - b[0])) {
    file.writeUInt32BE(at / 512, batOffset + index * 4);
    if (block.bitmap === undefined) file.fill(0xff, at, at + bitmapBytes);
    else block.bitmap.copy(file, at);
    block.data.copy(file, at + bitmapBytes);
    at += bitmapBytes + spec.blockBytes;
  }
  return file;
}

describe("VHD reader against qemu-img", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pw-vhd-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const cases = [
    { subformat: "dynamic", forceSize: false, sizeBytes: 10 * MIB },
    { subformat: "dynamic", forceSize: true, sizeBytes: 9 * MIB + 3 * 512 },
    { subformat: "dynamic", forceSize: true, sizeBytes: 4 * MIB },
    { subformat: "fixed", forceSize: false, sizeBytes: 7 * MIB + 512 },
    { subformat: "fixed", forceSize: true, sizeBytes: 6 * MIB + 5 * 512 },
  ] as const;

  for (const c of cases) {
    it(`GIVEN qemu-img made a ${c.subformat} VHD (force_size=${c.forceSize ? "on" : "off"}, ${c.sizeBytes} bytes) with holes and a written last sector WHEN we read it THEN size and bytes match qemu-img`, async () => {
      const image = join(dir, `${c.subformat}-${c.forceSize}-${c.sizeBytes}.vhd`);
      await qemuImg("create", "-f", "vpc", "-o", `subformat=${c.subformat},force_size=${c.forceSize ? "on" : "off"}`, image, String(c.sizeBytes));
      const info = await qemuInfo(image, "vpc");
      await qemuIo("vpc", image, patternCommands(info["virtual-size"]));
      const source = await openVhdFile(image);
      try {
        assert.equal(source.virtualSizeBytes, info["virtual-size"]);
        assert.equal(source.subformat, c.subformat);
        const extents = [];
        for await (const e of source.extents()) extents.push(e);
        if (c.subformat === "dynamic" && c.sizeBytes > 4 * MIB) {
          assert.ok(extents.some((e) => e.kind === "zero"), "a dynamic image with holes reports zero extents");
        }
        assert.equal(await sourceSha256(source), await qemuRawSha256(image, "vpc"));
        if (info["virtual-size"] > 2 * MIB + 4096) {
          // A read that crosses a block boundary.
          const across = await source.read(2 * MIB - 4096, 8192);
          assert.ok(across.every((b) => b === 0xcd));
        }
        const last = await source.read(info["virtual-size"] - 512, 512);
        assert.ok(last.every((b) => b === 0xef));
      } finally {
        await source.close();
      }
    });
  }

  it("GIVEN a dynamic VHD with 512 KiB blocks (Hyper-V's small block size, built by hand) WHEN we read it THEN bytes match qemu-img", async () => {
    // qemu-img only writes 2 MiB blocks, so build a 3 MiB disk of 512 KiB blocks by hand, with
    // blocks 0 and 5 (the last) allocated.
    const image = join(dir, "small-blocks.vhd");
    const blockBytes = 512 * 1024;
    const first = Buffer.alloc(blockBytes);
    first.fill(0x5a, 1000, 9000);
    const last = Buffer.alloc(blockBytes);
    last.fill(0xa5, blockBytes - 512);
    await writeFile(image, buildDynamicVhd({ sizeBytes: 3 * MIB, blockBytes, diskType: 3, blocks: new Map([[0, { data: first }], [5, { data: last }]]) }));

    const source = await openVhdFile(image);
    try {
      assert.equal(source.virtualSizeBytes, 3 * MIB);
      const extents = [];
      for await (const e of source.extents()) extents.push(e);
      assert.deepEqual(extents, [
        { offsetBytes: 0, lengthBytes: blockBytes, kind: "data" },
        { offsetBytes: blockBytes, lengthBytes: 4 * blockBytes, kind: "zero" },
        { offsetBytes: 5 * blockBytes, lengthBytes: blockBytes, kind: "data" },
      ]);
      // One read spanning all six blocks: allocated, holes, allocated.
      const all = await source.read(0, 3 * MIB);
      assert.equal(all[1000], 0x5a);
      assert.equal(all[3 * MIB - 1], 0xa5);
      assert.equal(await sourceSha256(source), await qemuRawSha256(image, "vpc"));
    } finally {
      await source.close();
    }
  });

  it("GIVEN 4 KiB blocks over 4.5 GiB (1.2 million BAT entries, more than the BAT cache holds) WHEN walked and read THEN extents and bytes are right after pages are evicted", async () => {
    // 4 KiB, not 512 bytes: for blocks under 4 KiB qemu sizes the sector bitmap as 0 bytes
    // where the spec pads one bit per sector to a whole sector, so qemu could not be the peer.
    const image = join(dir, "tiny-blocks.vhd");
    const sizeBytes = 4608 * MIB;
    const blockBytes = 4096;
    const lastBlock = sizeBytes / blockBytes - 1;
    const first = Buffer.alloc(blockBytes);
    first.fill(0x31, 0, 512);
    const last = Buffer.alloc(blockBytes);
    last.fill(0x32, blockBytes - 512);
    await writeFile(image, buildDynamicVhd({
      sizeBytes, blockBytes, diskType: 3,
      blocks: new Map([[0, { data: first }], [lastBlock, { data: last }]]),
    }));
    const source = await openVhdFile(image);
    try {
      const extents = [];
      for await (const e of source.extents()) extents.push(e);
      assert.deepEqual(extents, [
        { offsetBytes: 0, lengthBytes: blockBytes, kind: "data" },
        { offsetBytes: blockBytes, lengthBytes: sizeBytes - 2 * blockBytes, kind: "zero" },
        { offsetBytes: sizeBytes - blockBytes, lengthBytes: blockBytes, kind: "data" },
      ]);
      // The walk evicted page 0; reading it again reloads it.
      assert.ok((await source.read(0, 2 * blockBytes)).equals(Buffer.concat([first, Buffer.alloc(blockBytes)])));
      assert.ok((await source.read(sizeBytes - 2 * blockBytes, 2 * blockBytes)).equals(Buffer.concat([Buffer.alloc(blockBytes), last])));
    } finally {
      await source.close();
    }
    // qemu reads the same bytes at both ends.
    await qemuIo("vpc", image, ["read -P 0x31 0 512", `read -P 0x32 ${sizeBytes - 512} 512`, "read -P 0 512 3584", `read -P 0 ${sizeBytes - blockBytes} 3584`]);
  });

  it("GIVEN a differencing VHD (built by hand) over a qemu-made parent WHEN read with the parent as backing THEN set bitmap bits read from the child and the rest from the parent", async () => {
    const parentPath = join(dir, "parent.vhd");
    await qemuImg("create", "-f", "vpc", "-o", "subformat=dynamic,force_size=on", parentPath, String(8 * MIB));
    await qemuIo("vpc", parentPath, ["write -P 0x11 0 1M", `write -P 0x22 ${4 * MIB} 64k`]);
    const block = 2 * MIB;
    // Block 0: only sectors 8..15 are the child's (bitmap byte 1 all ones); the rest of its
    // data is junk that must not show. Block 1: wholly the child's. Blocks 2 and 3: the parent's.
    const junk = Buffer.alloc(block, 0xee);
    junk.fill(0xc1, 8 * 512, 16 * 512);
    const bitmap = Buffer.alloc(512);
    bitmap[1] = 0xff;
    const second = Buffer.alloc(block);
    second.fill(0xc2, 0, 4096);
    const childPath = join(dir, "child.vhd");
    await writeFile(childPath, buildDynamicVhd({
      sizeBytes: 8 * MIB, blockBytes: block, diskType: 4,
      blocks: new Map([[0, { data: junk, bitmap }], [1, { data: second }]]),
    }));

    const expected = Buffer.alloc(8 * MIB);
    expected.fill(0x11, 0, MIB);
    expected.fill(0xc1, 8 * 512, 16 * 512);
    expected.fill(0xc2, block, block + 4096);
    expected.fill(0x22, 4 * MIB, 4 * MIB + 65536);

    const bytes = await openFileSource(childPath);
    await assert.rejects(vhdFormat.open(bytes), (err) => err instanceof NotCapableError && err.code === "VHD_DIFFERENCING");
    const parent = await openVhdFile(parentPath);
    const child = await vhdFormat.open(bytes, { backing: parent });
    try {
      assert.equal(child.subformat, "differencing");
      const extents = [];
      for await (const e of child.extents()) extents.push(e);
      assert.deepEqual(extents, [
        { offsetBytes: 0, lengthBytes: 6 * MIB, kind: "data" },
        { offsetBytes: 6 * MIB, lengthBytes: 2 * MIB, kind: "zero" },
      ]);
      assert.equal(await sourceSha256(child), createHash("sha256").update(expected).digest("hex"));
      // An unaligned read across the bitmap's edges and into the next block.
      const across = await child.read(8 * 512 - 100, block);
      assert.ok(across.equals(expected.subarray(8 * 512 - 100, 8 * 512 - 100 + block)));
    } finally {
      await child.close();
      await parent.close();
    }
  });
});

describe("VHD shared vectors (qemu-iotests sample images)", () => {
  it("GIVEN d2v-zerofilled.vhd (CHS at max) THEN it is 263454720 bytes and hashes to the README's all-zero hash", async () => {
    await withTempDir(async (dir) => {
      const source = await openVhdFile(await decompress(dir, "d2v-zerofilled.vhd"));
      try {
        assert.equal(source.virtualSizeBytes, 263454720);
        assert.equal(await sourceSha256(source), "1ba076be94a8a64541c25aae8d5a5f8b0da758c3797af597e03acb431ff8d143");
      } finally {
        await source.close();
      }
    });
  });

  for (const [name, size] of [["virtualpc-dynamic.vhd", 136363130880], ["hyperv2012r2-dynamic.vhd", 136365211648]] as const) {
    it(`GIVEN ${name} THEN its size is ${size} bytes and it is one unallocated zero extent that reads as zeros`, async () => {
      await withTempDir(async (dir) => {
        const source = await openVhdFile(await decompress(dir, name));
        try {
          assert.equal(source.virtualSizeBytes, size);
          const extents = [];
          for await (const e of source.extents()) extents.push(e);
          assert.deepEqual(extents, [{ offsetBytes: 0, lengthBytes: size, kind: "zero" }]);
          // Hashing 127 GiB of zeros would take minutes; sample the start, a middle and the end.
          for (const at of [0, Math.floor(size / 2 / 512) * 512, size - 4 * MIB]) {
            assert.ok((await source.read(at, 4 * MIB)).every((b) => b === 0));
          }
        } finally {
          await source.close();
        }
      });
    });
  }

  it("GIVEN afl5.img (fuzzed) THEN it is refused with VHD_BAT_TOO_LARGE (Max Table Entries far too large)", async () => {
    await withTempDir(async (dir) => {
      const bytes = await openFileSource(await decompress(dir, "afl5.img"));
      try {
        await assert.rejects(vhdFormat.open(bytes), (err) => isPortableError(err) && err.code === "VHD_BAT_TOO_LARGE");
      } finally {
        await bytes.close();
      }
    });
  });
});

/** A deterministic test disk: data at the start, a patch across a block boundary, one in the last sector, zeros elsewhere. */
function makePattern(sizeBytes: number): Buffer {
  const disk = Buffer.alloc(sizeBytes);
  for (let i = 0; i < 96 * 1024; i++) disk[i] = (i * 31 + 7) & 0xff;
  disk.fill(0x42, 2 * MIB - 8192, 2 * MIB + 8192);
  if (sizeBytes > 7 * MIB) disk.fill(0x99, 6 * MIB + 512, 6 * MIB + 4096);
  const lastSector = Math.floor((sizeBytes - 1) / 512) * 512;
  disk.fill(0xe7, lastSector, sizeBytes);
  return disk;
}

/**
 * Feeds a disk to a sink the way convert() does: increasing offsets, block-aligned pieces of
 * at most one block, and zero pieces skipped.
 */
async function feed(sink: DiskSink, disk: Buffer): Promise<void> {
  const unit = sink.blockSizeBytes;
  for (let at = 0; at < disk.length; at += unit) {
    const piece = disk.subarray(at, Math.min(disk.length, at + unit));
    // Skip zero 64 KiB runs within the piece, as convert()'s zero detection does.
    for (let run = 0; run < piece.length; run += 64 * 1024) {
      const chunk = piece.subarray(run, Math.min(piece.length, run + 64 * 1024));
      if (chunk.every((b) => b === 0)) continue;
      await sink.write(at + run, chunk);
    }
  }
}

describe("VHD writer checked by qemu-img", () => {
  const cases = [
    { subformat: "dynamic", forceSize: true, roundToMiB: false, sizeBytes: 9 * MIB + 3 * 512 },
    { subformat: "dynamic", forceSize: false, roundToMiB: false, sizeBytes: 9 * MIB + 3 * 512 },
    { subformat: "dynamic", forceSize: true, roundToMiB: true, sizeBytes: 9 * MIB + 3 * 512 },
    { subformat: "fixed", forceSize: true, roundToMiB: false, sizeBytes: 7 * MIB + 512 },
    { subformat: "fixed", forceSize: false, roundToMiB: false, sizeBytes: 7 * MIB + 512 },
    { subformat: "fixed", forceSize: true, roundToMiB: true, sizeBytes: 7 * MIB + 512 },
  ] as const;

  for (const c of cases) {
    it(`GIVEN a patterned disk WHEN written as ${c.subformat} (forceSize=${c.forceSize}, roundToMiB=${c.roundToMiB}) THEN qemu-img compare says identical, info gives the planned size, and our reader round-trips it`, async () => {
      await withTempDir(async (dir) => {
        const disk = makePattern(c.sizeBytes);
        const raw = join(dir, "src.raw");
        const out = join(dir, "out.vhd");
        await writeFile(raw, disk);
        // Strings, as the CLI's -o key=value passes them.
        const sink = await vhdFormat.createWriter(await createFileTarget(out), {
          virtualSizeBytes: c.sizeBytes,
          subformat: c.subformat,
          forceSize: String(c.forceSize),
          roundToMiB: c.roundToMiB ? "on" : "off",
        });
        let expectedSize = c.roundToMiB ? Math.ceil(c.sizeBytes / MIB) * MIB : c.sizeBytes;
        if (!c.forceSize) {
          expectedSize = planVhdSize(c.sizeBytes, false, false).virtualSizeBytes;
          assert.ok(expectedSize > c.sizeBytes, "this size is not CHS-expressible, so it rounds up");
        }
        assert.equal(sink.virtualSizeBytes, expectedSize);
        await feed(sink, disk);
        const result = await sink.finish();
        assert.equal(result.location, out);
        assert.ok(result.dataBytesWritten > 0 && result.dataBytesWritten < c.sizeBytes);
        assert.equal(result.details?.subformat, c.subformat);

        const info = await qemuInfo(out, "vpc");
        assert.equal(info["virtual-size"], expectedSize);
        // qemu-img has no check for vpc (it exits 63), so compare is the peer's verdict.
        const compared = await qemuImg("compare", "-f", "raw", "-F", "vpc", raw, out);
        assert.match(compared, /Images are identical/);

        const padded = Buffer.alloc(expectedSize);
        disk.copy(padded);
        const source = await openVhdFile(out);
        try {
          assert.equal(source.virtualSizeBytes, expectedSize);
          assert.equal(await sourceSha256(source), createHash("sha256").update(padded).digest("hex"));
          if (c.subformat === "dynamic") {
            const extents = [];
            for await (const e of source.extents()) extents.push(e);
            assert.ok(extents.some((e) => e.kind === "zero"), "blocks of zeros were not allocated");
          }
        } finally {
          await source.close();
        }
      });
    });
  }

  it("GIVEN a fixed VHD written to a sequential stream WHEN finished THEN the file equals the random-access one except footer time and id, and qemu-img agrees", async () => {
    await withTempDir(async (dir) => {
      const sizeBytes = 5 * MIB + 512;
      const disk = makePattern(sizeBytes);
      const raw = join(dir, "src.raw");
      await writeFile(raw, disk);
      const out = join(dir, "seq.vhd");
      const target = streamTarget(out, createWriteStream(out));
      const sink = await vhdFormat.createWriter(target, { virtualSizeBytes: sizeBytes, subformat: "fixed" });
      await feed(sink, disk);
      await sink.finish();
      const bytes = await readFile(out);
      assert.equal(bytes.length, sizeBytes + VHD_FOOTER_BYTES);
      assert.ok(bytes.subarray(0, sizeBytes).equals(disk));
      assert.match(await qemuImg("compare", "-f", "raw", "-F", "vpc", raw, out), /Images are identical/);
      assert.equal(await ourSha256(out), await fileSha256(raw));
    });
  });

  it("GIVEN a sequential target WHEN a dynamic VHD is asked for THEN NotCapableError VHD_SEQUENTIAL_DYNAMIC", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "seq.vhd");
      const target = streamTarget(out, createWriteStream(out));
      await assert.rejects(
        vhdFormat.createWriter(target, { virtualSizeBytes: 4 * MIB }),
        (err) => err instanceof NotCapableError && err.code === "VHD_SEQUENTIAL_DYNAMIC",
      );
      await target.close();
    });
  });

  it("GIVEN bad options WHEN a writer is created THEN one InvalidArgsError names every issue", async () => {
    await withTempDir(async (dir) => {
      const target = await createFileTarget(join(dir, "bad.vhd"));
      await assert.rejects(
        vhdFormat.createWriter(target, { virtualSizeBytes: 4 * MIB, subformat: "sparse", forceSize: "maybe", colour: "blue" }),
        (err) =>
          err instanceof InvalidArgsError && err.code === "INVALID_WRITER_OPTIONS" &&
          /subformat/.test(err.message) && /forceSize/.test(err.message) && /colour/.test(err.message),
      );
      await assert.rejects(
        vhdFormat.createWriter(target, { virtualSizeBytes: 2041 * 1024 * 1024 * 1024 }),
        (err) => err instanceof InvalidArgsError && err.code === "VHD_SIZE_TOO_LARGE",
      );
      await target.close();
    });
  });

  it("GIVEN a dynamic sink WHEN a write goes backwards THEN SINK_WRITE_ORDER, and abort closes the target without a footer", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "order.vhd");
      const sink = await vhdFormat.createWriter(await createFileTarget(out), { virtualSizeBytes: 8 * MIB });
      await sink.write(4 * MIB, Buffer.alloc(512, 1));
      await assert.rejects(sink.write(0, Buffer.alloc(512, 1)), (err) => isPortableError(err) && err.code === "SINK_WRITE_ORDER");
      await sink.abort();
      const handle = await open(out, "r");
      const head = Buffer.alloc(8);
      await handle.read(head, 0, 8, 0);
      await handle.close();
      assert.notEqual(head.toString("latin1"), "conectix", "an aborted image must not look complete");
    });
  });

  it("GIVEN a 2040 GiB dynamic VHD with one sector written WHEN finished THEN the file is small and qemu-img reads the size", async () => {
    await withTempDir(async (dir) => {
      const sizeBytes = 2040 * 1024 * MIB;
      const out = join(dir, "huge.vhd");
      const sink = await vhdFormat.createWriter(await createFileTarget(out), { virtualSizeBytes: sizeBytes });
      await sink.write(sizeBytes - 512, Buffer.alloc(512, 0x77));
      const result = await sink.finish();
      assert.equal(result.details?.blocksAllocated, 1);
      assert.equal((await qemuInfo(out, "vpc"))["virtual-size"], sizeBytes);
      const source = await openVhdFile(out);
      try {
        const extents = [];
        for await (const e of source.extents()) extents.push(e);
        assert.deepEqual(extents, [
          { offsetBytes: 0, lengthBytes: sizeBytes - 2 * MIB, kind: "zero" },
          { offsetBytes: sizeBytes - 2 * MIB, lengthBytes: 2 * MIB, kind: "data" },
        ]);
        assert.ok((await source.read(sizeBytes - 512, 512)).every((b) => b === 0x77));
      } finally {
        await source.close();
      }
    });
  });
});

describe("VHD probe", () => {
  it("GIVEN a footer at the tail or a copy at the head THEN probe claims it, and not otherwise", () => {
    const footer = Buffer.alloc(512);
    footer.write("conectix", 0, "latin1");
    const empty = Buffer.alloc(512);
    assert.equal(vhdFormat.probe(footer, empty, 4096), true);
    assert.equal(vhdFormat.probe(empty, footer, 4096), true);
    assert.equal(vhdFormat.probe(empty, empty, 4096), false);
  });
});
