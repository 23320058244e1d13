import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createWriteStream } from "node:fs";
import { open, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { FormatError, InvalidArgsError, NotCapableError } from "../../sdk/errors.ts";
import { vmdkFormat } from "../../sdk/disk/formats/vmdk/index.ts";
import { vmdkGeometry } from "../../sdk/disk/formats/vmdk/descriptor.ts";
import { bufferSource, createFileTarget, openFileSource, streamTarget } from "../../sdk/disk/io.ts";
import type { DiskSink, DiskSource, Extent } from "../../sdk/disk/types.ts";
import { fileSha256, qemuImg, qemuInfo, qemuIo, qemuRawSha256, sourceSha256, withTempDir } from "../harness/disk.ts";
import { VECTORS_DIR } from "../harness/tools.ts";

const run = promisify(execFile);
const VECTORS = join(VECTORS_DIR, "qemu-iotests");
const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

async function openVmdkFile(path: string): Promise<DiskSource> {
  const source = await openFileSource(path);
  try {
    return await vmdkFormat.open(source, { openRelative: (name) => openFileSource(join(dirname(path), name)) });
  } catch (err) {
    await source.close();
    throw err;
  }
}

async function decompressVector(name: string, dir: string): Promise<string> {
  const out = join(dir, name);
  const { stdout } = await run("bzip2", ["-dc", join(VECTORS, `${name}.bz2`)], { encoding: "buffer", maxBuffer: 64 * MIB });
  await writeFile(out, stdout);
  return out;
}

async function collect(source: DiskSource): Promise<Extent[]> {
  const extents: Extent[] = [];
  for await (const extent of source.extents()) extents.push(extent);
  return extents;
}

/** qemu-io writes: data at the start, a partial grain, a zeroed range, data crossing `crossAt`, the last sector. */
function patternCommands(virtualSizeBytes: number, crossAt = 33 * MIB): string[] {
  return [
    "write -P 0xab 0 64k",
    "write -P 0x5a 1048576 100k",
    "write -P 0x11 3145728 4k",
    "write -z 1069056 8k",
    `write -P 0xc3 ${crossAt - 96 * KIB} 160k`,
    `write -P 0xef ${virtualSizeBytes - 512} 512`,
  ];
}

/** Compares spans read through our source, at odd offsets crossing grains, with the peer's raw bytes. */
async function assertSpansMatch(source: DiskSource, rawPath: string, spans: readonly [number, number][]): Promise<void> {
  const raw = await open(rawPath, "r");
  try {
    for (const [offsetBytes, lengthBytes] of spans) {
      const expected = Buffer.alloc(lengthBytes);
      await raw.read(expected, 0, lengthBytes, offsetBytes);
      assert.ok((await source.read(offsetBytes, lengthBytes)).equals(expected), `span ${offsetBytes}+${lengthBytes} differs`);
    }
  } finally {
    await raw.close();
  }
}

describe("vmdk reader conformance against qemu-img", () => {
  const sparseSizes = [
    { label: "not a grain multiple", bytes: 40 * MIB + 3 * 512 },
    { label: "spanning three grain tables", bytes: 70 * MIB },
  ];
  for (const subformat of ["monolithicSparse", "monolithicFlat"]) {
    for (const size of sparseSizes) {
      it(`GIVEN a ${subformat} image ${size.label} with holes and data in the last sector WHEN hashed THEN it matches qemu-img's raw`, () =>
        withTempDir(async (dir) => {
          const image = join(dir, "disk.vmdk");
          await qemuImg("create", "-f", "vmdk", "-o", `subformat=${subformat}`, image, String(size.bytes));
          await qemuIo("vmdk", image, patternCommands(size.bytes));
          const source = await openVmdkFile(image);
          try {
            assert.equal(source.subformat, subformat);
            assert.equal(source.virtualSizeBytes, size.bytes);
            assert.equal(await sourceSha256(source), await qemuRawSha256(image));
            const raw = join(dir, "peer.raw");
            await qemuImg("convert", "-O", "raw", image, raw);
            await assertSpansMatch(source, raw, [
              [0, size.bytes],
              [65536 - 512, 1024],
              [1048576 + 1536, 200 * KIB + 512],
              [size.bytes - 4096, 4096],
            ]);
            if (subformat === "monolithicSparse") {
              const extents = await collect(source);
              const at = (offset: number) => extents.find((e) => e.offsetBytes <= offset && offset < e.offsetBytes + e.lengthBytes)?.kind;
              assert.equal(at(0), "data");
              assert.equal(at(10 * MIB), "zero", "an untouched region is reported as a hole");
              assert.equal(at(size.bytes - 1), "data");
            }
          } finally {
            await source.close();
          }
        }));
    }
  }

  for (const subformat of ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]) {
    it(`GIVEN a ${subformat} image of two extents with data across the extent boundary WHEN hashed THEN it matches qemu-img's raw`, () =>
      withTempDir(async (dir) => {
        const image = join(dir, "split.vmdk");
        const sizeBytes = 2 * GIB + 3 * MIB + 512;
        await qemuImg("create", "-f", "vmdk", "-o", `subformat=${subformat}`, image, String(sizeBytes));
        await qemuIo("vmdk", image, patternCommands(sizeBytes, 2 * GIB));
        const descriptor = await readFile(image, "utf8");
        assert.equal(descriptor.match(/^RW /gm)?.length, 2, "qemu-img split the disk into two extents");
        const source = await openVmdkFile(image);
        try {
          assert.equal(source.subformat, subformat);
          assert.equal(source.virtualSizeBytes, sizeBytes);
          assert.equal(await sourceSha256(source), await qemuRawSha256(image));
          const crossing = await source.read(2 * GIB - 96 * KIB, 160 * KIB);
          assert.ok(crossing.every((byte) => byte === 0xc3), "a read across the extent boundary joins both files");
        } finally {
          await source.close();
        }
      }));
  }

  for (const size of sparseSizes) {
    it(`GIVEN a streamOptimized image from qemu-img convert, ${size.label} WHEN hashed THEN it matches qemu-img's raw`, () =>
      withTempDir(async (dir) => {
        const raw = join(dir, "src.raw");
        const image = join(dir, "stream.vmdk");
        await qemuImg("create", "-f", "raw", raw, String(size.bytes));
        await qemuIo("raw", raw, patternCommands(size.bytes));
        await qemuImg("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, image);
        const source = await openVmdkFile(image);
        try {
          assert.equal(source.subformat, "streamOptimized");
          assert.equal(await sourceSha256(source), await fileSha256(raw));
          await assertSpansMatch(source, raw, [
            [512, 130 * KIB],
            [1048576 + 99 * KIB, 4 * KIB],
            [size.bytes - 1024, 1024],
          ]);
        } finally {
          await source.close();
        }
      }));
  }

  it("GIVEN a monolithicSparse image whose primary grain directory is damaged WHEN read THEN the redundant directory is used", () =>
    withTempDir(async (dir) => {
      const image = join(dir, "rgd.vmdk");
      await qemuImg("create", "-f", "vmdk", "-o", "subformat=monolithicSparse", image, String(8 * MIB));
      await qemuIo("vmdk", image, ["write -P 0x77 0 128k"]);
      const expected = await qemuRawSha256(image);
      const file = await open(image, "r+");
      const headerBuf = Buffer.alloc(512);
      await file.read(headerBuf, 0, 512, 0);
      // Point the primary directory (header offset 56) past end of file.
      headerBuf.writeBigUInt64LE(0xfffffffn, 56);
      await file.write(headerBuf, 0, 512, 0);
      await file.close();
      const source = await openVmdkFile(image);
      try {
        assert.equal(await sourceSha256(source), expected);
      } finally {
        await source.close();
      }
    }));
});

/**
 * A monolithicSparse file built by hand with any grain size, because qemu-img only creates 64 KiB
 * grains. qemu-img reads it independently, so the peer still decides what the bytes are.
 */
function craftSparse(grainSectors: number, capacitySectors: number, grains: ReadonlyMap<number, Buffer>): Buffer {
  const grainBytes = grainSectors * 512;
  const gdEntries = Math.ceil(capacitySectors / (grainSectors * 512));
  const gdSectors = Math.ceil((gdEntries * 4) / 512);
  const gtStartSector = 2 + gdSectors;
  const overHeadSectors = Math.ceil((gtStartSector + gdEntries * 4) / grainSectors) * grainSectors;
  const file = Buffer.alloc((overHeadSectors + grains.size * grainSectors) * 512);
  file.write("KDMV", 0, "latin1");
  file.writeUInt32LE(1, 4);
  file.writeUInt32LE(1, 8);
  file.writeBigUInt64LE(BigInt(capacitySectors), 12);
  file.writeBigUInt64LE(BigInt(grainSectors), 20);
  file.writeBigUInt64LE(1n, 28);
  file.writeBigUInt64LE(1n, 36);
  file.writeUInt32LE(512, 44);
  file.writeBigUInt64LE(2n, 56);
  file.writeBigUInt64LE(BigInt(overHeadSectors), 64);
  file.set([0x0a, 0x20, 0x0d, 0x0a], 73);
  file.write(`# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicSparse"\nRW ${capacitySectors} SPARSE "c.vmdk"\n`, 512, "latin1");
  for (let i = 0; i < gdEntries; i++) file.writeUInt32LE(gtStartSector + i * 4, 1024 + i * 4);
  let nextSector = overHeadSectors;
  for (const [grainIndex, data] of [...grains].sort((a, b) => a[0] - b[0])) {
    assert.equal(data.length, grainBytes);
    file.writeUInt32LE(nextSector, (gtStartSector + Math.floor(grainIndex / 512) * 4) * 512 + (grainIndex % 512) * 4);
    data.copy(file, nextSector * 512);
    nextSector += grainSectors;
  }
  return file;
}

describe("vmdk reader with grain sizes qemu-img cannot create", () => {
  // 4 KiB grains across three grain tables; 1 MiB grains within one table (20 MiB in all).
  for (const { grainSectors, wholeGrains, middle } of [
    { grainSectors: 8, wholeGrains: 3 * 512 + 7, middle: 513 },
    { grainSectors: 2048, wholeGrains: 20, middle: 5 },
  ]) {
    it(`GIVEN a hand-built monolithicSparse file with ${grainSectors * 512}-byte grains WHEN hashed THEN it matches qemu-img's raw`, () =>
      withTempDir(async (dir) => {
        // Three sectors past the last whole grain: the final grain is cut by the capacity.
        const capacitySectors = wholeGrains * grainSectors + 3;
        const lastGrain = Math.floor((capacitySectors - 1) / grainSectors);
        const grains = new Map<number, Buffer>([
          [0, patternBytes(grainSectors * 512, 11)],
          [middle, patternBytes(grainSectors * 512, 12)],
          [middle + 1, patternBytes(grainSectors * 512, 13)],
          [lastGrain, patternBytes(grainSectors * 512, 14)],
        ]);
        const image = join(dir, "c.vmdk");
        await writeFile(image, craftSparse(grainSectors, capacitySectors, grains));
        const source = await openVmdkFile(image);
        try {
          assert.equal(source.virtualSizeBytes, capacitySectors * 512);
          assert.equal(await sourceSha256(source), await qemuRawSha256(image, "vmdk"));
          const extents = await collect(source);
          assert.equal(extents.filter((e) => e.kind === "data").length, 3, "the first, the two middle and the last grains are data");
        } finally {
          await source.close();
        }
      }));
  }
});

describe("vmdk delta disks", () => {
  it("GIVEN a qemu-img delta over a vmdk parent WHEN opened with and without backing THEN it reads through to the parent, or is refused", () =>
    withTempDir(async (dir) => {
      const base = join(dir, "base.vmdk");
      const delta = join(dir, "delta.vmdk");
      const sizeBytes = 40 * MIB + 512;
      await qemuImg("create", "-f", "vmdk", base, String(sizeBytes));
      await qemuIo("vmdk", base, ["write -P 0x11 0 4M", "write -P 0x12 34M 1M", `write -P 0x13 ${sizeBytes - 512} 512`]);
      await qemuImg("create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", delta);
      await qemuIo("vmdk", delta, ["write -P 0x22 1M 64k", "write -P 0x23 34M 4k", "write -z 2M 64k"]);
      await assert.rejects(openVmdkFile(delta), (err: unknown) => {
        assert.ok(err instanceof NotCapableError);
        assert.equal(err.code, "VMDK_DIFFERENCING");
        return true;
      });
      const parent = await openVmdkFile(base);
      const deltaFile = await openFileSource(delta);
      const child = await vmdkFormat.open(deltaFile, { backing: parent });
      try {
        assert.equal(await sourceSha256(child), await qemuRawSha256(delta));
        const mixed = await child.read(34 * MIB, 8 * KIB);
        assert.ok(mixed.subarray(0, 4 * KIB).every((b) => b === 0x23) && mixed.subarray(4 * KIB).every((b) => b === 0x12));
      } finally {
        await child.close();
        await parent.close();
      }
    }));
});

describe("vmdk published vectors", () => {
  it("GIVEN iotest-version3.vmdk (a VMware streamOptimized disk with its directory in the footer) WHEN hashed THEN it gives the README's raw sha256", () =>
    withTempDir(async (dir) => {
      const source = await openVmdkFile(await decompressVector("iotest-version3.vmdk", dir));
      try {
        assert.equal(source.subformat, "streamOptimized");
        assert.equal(source.virtualSizeBytes, 17179869184);
        assert.equal(await sourceSha256(source), "0859bb3397bc1d30fa979c80a289ce98bfd6c1141a64594d6f3cc8cd68218faf");
      } finally {
        await source.close();
      }
    }));

  for (const name of ["afl9-skyport.vmdk", "afl9-trinity.vmdk"]) {
    it(`GIVEN the fuzzed ${name} WHEN opened THEN it is refused because the grain directory is too big`, () =>
      withTempDir(async (dir) => {
        const path = await decompressVector(name, dir);
        await assert.rejects(openVmdkFile(path), { name: "FormatError", code: "VMDK_GD_TOO_LARGE" });
      }));
  }
});

interface Piece {
  readonly offsetBytes: number;
  readonly data: Buffer;
}

/** Deterministic bytes that deflate about as well as a filesystem does (runs plus noise). */
function patternBytes(lengthBytes: number, seed: number): Buffer {
  const buf = Buffer.alloc(lengthBytes);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < lengthBytes; i += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const value = state >>> 0;
    // Three quarters of each 4 KiB page repeats one word, the rest is noise.
    buf.writeUInt32LE(i % 4096 < 3072 ? 0x01020304 * ((i >> 12) % 7) : value, i);
  }
  return buf;
}

/**
 * Writes that honour the DiskSink contract: increasing, no grain crossed unless whole grains,
 * holes skipped. Includes pieces of one grain, an explicit all-zero write, data in three grain
 * tables, and the last (short) grain.
 */
function samplePieces(virtualSizeBytes: number): Piece[] {
  const grain = 64 * KIB;
  return [
    { offsetBytes: 0, data: patternBytes(MIB, 1) },
    { offsetBytes: 2 * MIB + 4 * KIB, data: patternBytes(8 * KIB, 2) },
    { offsetBytes: 2 * MIB + 20 * KIB, data: patternBytes(4 * KIB, 3) },
    { offsetBytes: 3 * MIB, data: Buffer.alloc(4 * grain) },
    { offsetBytes: 3 * MIB + 4 * grain, data: patternBytes(grain, 4) },
    { offsetBytes: 33 * MIB, data: patternBytes(2 * MIB, 5) },
    { offsetBytes: 66 * MIB - grain, data: patternBytes(3 * grain, 6) },
    { offsetBytes: virtualSizeBytes - 1536, data: patternBytes(1536, 7) },
  ];
}

async function writePieces(sink: DiskSink, pieces: readonly Piece[]): Promise<void> {
  for (const piece of pieces) await sink.write(piece.offsetBytes, piece.data);
}

async function writeRaw(path: string, virtualSizeBytes: number, pieces: readonly Piece[]): Promise<void> {
  const file = await open(path, "w");
  try {
    await file.truncate(virtualSizeBytes);
    for (const piece of pieces) await file.write(piece.data, 0, piece.data.length, piece.offsetBytes);
  } finally {
    await file.close();
  }
}

async function writeStreamOptimized(path: string, virtualSizeBytes: number, pieces: readonly Piece[], extra: Record<string, unknown> = {}) {
  const target = streamTarget(path, createWriteStream(path));
  const sink = await vmdkFormat.createWriter(target, { virtualSizeBytes, subformat: "streamOptimized", ...extra });
  await writePieces(sink, pieces);
  return sink.finish();
}

describe("vmdk writer", () => {
  // 70 MiB + 1 KiB: three grain tables and a final grain that is not whole.
  const virtualSizeBytes = 70 * MIB + 1024;
  const pieces = samplePieces(virtualSizeBytes);

  for (const subformat of ["monolithicSparse", "streamOptimized"] as const) {
    it(`GIVEN a pattern written through the ${subformat} sink WHEN qemu-img checks, compares and inspects it THEN it is clean, identical and ${subformat}`, () =>
      withTempDir(async (dir) => {
        const raw = join(dir, "src.raw");
        const out = join(dir, "out.vmdk");
        await writeRaw(raw, virtualSizeBytes, pieces);
        const result =
          subformat === "streamOptimized"
            ? await writeStreamOptimized(out, virtualSizeBytes, pieces)
            : await (async () => {
                const sink = await vmdkFormat.createWriter(await createFileTarget(out), { virtualSizeBytes, subformat });
                assert.equal(sink.blockSizeBytes, 64 * KIB);
                await writePieces(sink, pieces);
                return sink.finish();
              })();
        assert.equal(result.location, out);
        assert.equal(result.dataBytesWritten, pieces.reduce((sum, piece) => sum + piece.data.length, 0));
        assert.equal(result.details?.subformat, subformat);
        // qemu-img check exits non-zero (and qemuImg throws) on any inconsistency.
        await qemuImg("check", "-f", "vmdk", out);
        assert.match(await qemuImg("compare", "-f", "raw", "-F", "vmdk", raw, out), /Images are identical/);
        const info = await qemuInfo(out, "vmdk");
        assert.equal(info["virtual-size"], virtualSizeBytes);
        assert.equal(info["format-specific"]?.data["create-type"], subformat);
        const source = await openVmdkFile(out);
        try {
          assert.equal(source.subformat, subformat);
          assert.equal(await sourceSha256(source), await fileSha256(raw));
        } finally {
          await source.close();
        }
        const text = (await readFile(out)).subarray(512, 4096).toString("latin1");
        assert.match(text, /ddb\.adapterType = "lsilogic"/);
        assert.match(text, /ddb\.geometry\.heads = "255"/);
        assert.match(text, /ddb\.virtualHWVersion = "4"/);
        assert.match(text, /parentCID=ffffffff/);
        assert.match(text, new RegExp(`RW ${Math.ceil(virtualSizeBytes / 512)} SPARSE "out\\.vmdk"`));
      }));
  }

  it("GIVEN the same data WHEN written as streamOptimized by us and by qemu-img THEN ours is at most 1.05x qemu-img's size and follows VMware's stream layout", () =>
    withTempDir(async (dir) => {
      const raw = join(dir, "src.raw");
      const ours = join(dir, "ours.vmdk");
      const theirs = join(dir, "theirs.vmdk");
      await writeRaw(raw, virtualSizeBytes, pieces);
      await writeStreamOptimized(ours, virtualSizeBytes, pieces);
      await qemuImg("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, theirs);
      const [oursBytes, theirsBytes] = [(await stat(ours)).size, (await stat(theirs)).size];
      assert.ok(oursBytes <= 1.05 * theirsBytes, `ours ${oursBytes} bytes vs qemu-img ${theirsBytes}`);
      const file = await readFile(ours);
      assert.equal(file.readUInt32LE(4), 3, "version 3");
      assert.equal(file.readUInt32LE(8), 0x30001, "newline test, compressed and markers flags");
      assert.equal(file.readBigUInt64LE(56), 0xffffffffffffffffn, "gdOffset is GD_AT_END");
      assert.equal(file.readUInt16LE(77), 1, "deflate");
      const end = file.length;
      assert.equal(file.readUInt32LE(end - 1536 + 12), 3, "footer marker");
      assert.equal(file.readUInt32LE(end - 1024), 0x564d444b, "footer is a header copy");
      assert.ok(file.subarray(end - 512).equals(Buffer.alloc(512)), "end-of-stream marker");
      // The first grain marker sits at sector 128 with the LBA of grain 0 and zlib data.
      assert.equal(file.readBigUInt64LE(128 * 512), 0n);
      assert.equal(file[128 * 512 + 12], 0x78, "zlib header");
    }));

  it("GIVEN only zero writes WHEN written as streamOptimized THEN no grain is emitted and the disk reads as zeros", () =>
    withTempDir(async (dir) => {
      const out = join(dir, "zero.vmdk");
      const result = await writeStreamOptimized(out, 4 * MIB, [{ offsetBytes: 0, data: Buffer.alloc(MIB) }]);
      assert.equal(result.details?.grainsWritten, 0);
      const source = await openVmdkFile(out);
      try {
        const extents = await collect(source);
        assert.deepEqual(extents, [{ offsetBytes: 0, lengthBytes: 4 * MIB, kind: "zero" }]);
      } finally {
        await source.close();
      }
      await qemuImg("check", "-f", "vmdk", out);
    }));

  it("GIVEN options as CLI strings WHEN creating a writer THEN they are coerced; ide geometry uses 16 heads", () =>
    withTempDir(async (dir) => {
      const out = join(dir, "ide.vmdk");
      const sink = await vmdkFormat.createWriter(await createFileTarget(out), {
        virtualSizeBytes: String(16 * MIB) as unknown as number,
        adapterType: "ide",
        hwVersion: "7",
      });
      await sink.write(0, patternBytes(64 * KIB, 9));
      await sink.finish();
      const text = (await readFile(out)).subarray(512, 4096).toString("latin1");
      assert.match(text, /ddb\.adapterType = "ide"/);
      assert.match(text, /ddb\.geometry\.heads = "16"/);
      assert.match(text, /ddb\.virtualHWVersion = "7"/);
      assert.equal((await qemuInfo(out))["virtual-size"], 16 * MIB);
    }));

  it("GIVEN bad writer options WHEN creating a writer THEN InvalidArgsError reports every issue", async () => {
    const target = streamTarget("x.vmdk", createWriteStream("/dev/null"));
    await assert.rejects(
      vmdkFormat.createWriter(target, { virtualSizeBytes: -1, subformat: "monolithicFlat", adapterType: "scsi", hwVersion: "x" }),
      (err: unknown) => {
        assert.ok(err instanceof InvalidArgsError);
        assert.equal(err.code, "INVALID_WRITER_OPTIONS");
        for (const key of ["virtualSizeBytes", "subformat", "adapterType", "hwVersion"]) assert.match(err.message, new RegExp(key));
        return true;
      },
    );
    await target.close();
  });

  it("GIVEN a sequential target WHEN asking for monolithicSparse THEN NotCapableError", async () => {
    const target = streamTarget("x.vmdk", createWriteStream("/dev/null"));
    await assert.rejects(vmdkFormat.createWriter(target, { virtualSizeBytes: MIB }), (err: unknown) => {
      assert.ok(err instanceof NotCapableError);
      assert.equal(err.code, "VMDK_SEQUENTIAL_TARGET");
      return true;
    });
    await target.close();
  });

  it("GIVEN a write behind an earlier one WHEN written THEN InvalidArgsError and the sink stays failed", () =>
    withTempDir(async (dir) => {
      const sink = await vmdkFormat.createWriter(await createFileTarget(join(dir, "o.vmdk")), { virtualSizeBytes: 4 * MIB });
      await sink.write(MIB, Buffer.alloc(512, 1));
      await assert.rejects(sink.write(0, Buffer.alloc(512, 1)), { code: "SINK_WRITE_ORDER" });
      await assert.rejects(sink.finish(), { code: "SINK_WRITE_ORDER" });
      await sink.abort();
    }));

  for (const subformat of ["monolithicSparse", "streamOptimized"] as const) {
    it(`GIVEN a ${subformat} sink aborted after some writes WHEN its output is opened THEN it is not a valid VMDK`, () =>
      withTempDir(async (dir) => {
        const out = join(dir, "aborted.vmdk");
        const target = subformat === "streamOptimized" ? streamTarget(out, createWriteStream(out)) : await createFileTarget(out);
        const sink = await vmdkFormat.createWriter(target, { virtualSizeBytes: 8 * MIB, subformat });
        await sink.write(0, patternBytes(2 * MIB, 21));
        await sink.abort();
        await assert.rejects(openVmdkFile(out), (err: unknown) => err instanceof FormatError);
      }));
  }

  it("GIVEN capacities WHEN computing geometry THEN VMware's IDE and SCSI rules apply", () => {
    assert.deepEqual(vmdkGeometry(33554432, "lsilogic"), { cylinders: 2088, heads: 255, sectors: 63 });
    assert.deepEqual(vmdkGeometry(33554432, "ide"), { cylinders: 16383, heads: 16, sectors: 63 });
    assert.deepEqual(vmdkGeometry(2048, "ide"), { cylinders: 2, heads: 16, sectors: 63 });
    assert.deepEqual(vmdkGeometry(8, "pvscsi"), { cylinders: 1, heads: 255, sectors: 63 });
  });

  it("GIVEN probe input WHEN probing THEN sparse, descriptor and foreign heads are told apart", () => {
    const sparse = Buffer.alloc(512);
    sparse.write("KDMV", 0, "latin1");
    assert.equal(vmdkFormat.probe(sparse, Buffer.alloc(0), 512), true);
    assert.equal(vmdkFormat.probe(Buffer.from('# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n'), Buffer.alloc(0), 60), true);
    assert.equal(vmdkFormat.probe(Buffer.from("QFI\xfb\0\0\0\x03", "latin1"), Buffer.alloc(0), 8), false);
    assert.equal(vmdkFormat.probe(Buffer.alloc(512), Buffer.alloc(0), 512), false);
  });

  it("GIVEN a descriptor in memory with a ZERO extent WHEN opened THEN it reads as zeros without opening files", async () => {
    const text = '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="custom"\nRW 2048 ZERO\n';
    const source = await vmdkFormat.open(bufferSource("z.vmdk", Buffer.from(text)));
    assert.equal(source.virtualSizeBytes, MIB);
    assert.deepEqual(await collect(source), [{ offsetBytes: 0, lengthBytes: MIB, kind: "zero" }]);
    assert.ok((await source.read(1000, 5000)).equals(Buffer.alloc(5000)));
    await source.close();
  });
});
