// VHDX conformance: our reader agrees with qemu-img on images qemu-img writes and on the shared
// vectors; our writer's images pass qemu-img check / compare / info and read back through us.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { copyFile, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { InvalidArgsError, NotCapableError } from "../../sdk/errors.ts";
import { PROBE_HEAD_BYTES } from "../../sdk/disk/format.ts";
import { crc32c, crc32cWithZeroedField } from "../../sdk/disk/formats/vhdx/crc32c.ts";
import { batEntryCount, batIndexOfBlock, guid, putBatEntry } from "../../sdk/disk/formats/vhdx/layout.ts";
import { vhdxFormat } from "../../sdk/disk/formats/vhdx/index.ts";
import { createFileTarget, openFileSource, streamTarget } from "../../sdk/disk/io.ts";
import type { DiskSink, DiskSource, Extent } from "../../sdk/disk/types.ts";
import { fileSha256, qemuImg, qemuInfo, qemuIo, qemuRawSha256, sourceSha256, withTempDir } from "../harness/disk.ts";
import { VECTORS_DIR } from "../harness/tools.ts";
import { PassThrough } from "node:stream";

const run = promisify(execFile);
const KIB = 1024;
const MIB = 1024 * KIB;
const VECTORS = join(VECTORS_DIR, "qemu-iotests");

async function openImage(path: string): Promise<DiskSource> {
  return vhdxFormat.open(await openFileSource(path));
}

async function collectExtents(source: DiskSource): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const extent of source.extents()) out.push(extent);
  return out;
}

async function decompressVector(name: string, dir: string): Promise<string> {
  const out = join(dir, name);
  const { stdout } = await run("bzip2", ["-dc", join(VECTORS, `${name}.bz2`)], { encoding: "buffer", maxBuffer: 512 * MIB });
  await writeFile(out, stdout);
  return out;
}

describe("vhdx CRC-32C", () => {
  it("GIVEN the standard check string WHEN checksummed THEN it gives the published CRC-32C 0xE3069283", () => {
    assert.equal(crc32c(Buffer.from("123456789", "latin1")), 0xe3069283);
  });

  it("GIVEN the RFC 3720 vectors (32 zero bytes, 32 0xFF bytes) WHEN checksummed THEN they match", () => {
    assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa);
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
  });

  it("GIVEN data checksummed in pieces or with a zeroed field WHEN compared THEN it equals the one-shot CRC", () => {
    const data = Buffer.from("portable-workload vhdx crc pieces", "latin1");
    assert.equal(crc32c(data.subarray(10), crc32c(data.subarray(0, 10))), crc32c(data));
    const zeroed = Buffer.from(data);
    zeroed.fill(0, 4, 8);
    assert.equal(crc32cWithZeroedField(data, 4), crc32c(zeroed));
  });
});

describe("vhdx BAT arithmetic", () => {
  it("GIVEN states and 1 MiB-aligned offsets up to 2^52 WHEN BAT entries are encoded THEN they equal State | FileOffsetMB << 20", () => {
    const buf = Buffer.alloc(8);
    for (const state of [0, 2, 6, 7]) {
      for (const fileOffsetMib of [0, 1, 3, 4095, 4096, 4097, 0xabcdef, 2 ** 32 - 1, 2 ** 32 + 5, 2 ** 32 - 1]) {
        putBatEntry(buf, 0, state, fileOffsetMib * MIB);
        assert.equal(buf.readBigUInt64LE(0), (BigInt(fileOffsetMib) << 20n) | BigInt(state), `${state} @ ${fileOffsetMib} MiB`);
      }
    }
  });

  it("GIVEN a chunk ratio of 4 WHEN blocks are placed THEN a sector bitmap entry follows every 4 payload entries but not the last", () => {
    assert.deepEqual([0, 1, 3, 4, 7, 8].map((block) => batIndexOfBlock(block, 4)), [0, 1, 3, 5, 8, 10]);
    assert.equal(batEntryCount(4, 4), 4);
    assert.equal(batEntryCount(5, 4), 6);
    assert.equal(batEntryCount(0, 4), 0);
  });
});

describe("vhdx probe", () => {
  it("GIVEN a qemu-img vhdx and a qcow2 WHEN probed THEN only the vhdx is recognised", async () => {
    await withTempDir(async (dir) => {
      const vhdx = join(dir, "a.vhdx");
      const qcow2 = join(dir, "a.qcow2");
      await qemuImg("create", "-q", "-f", "vhdx", vhdx, "8M");
      await qemuImg("create", "-q", "-f", "qcow2", qcow2, "8M");
      for (const [path, expected] of [[vhdx, true], [qcow2, false]] as const) {
        const head = (await readFile(path)).subarray(0, PROBE_HEAD_BYTES);
        assert.equal(vhdxFormat.probe(head, Buffer.alloc(0), head.length), expected, path);
      }
    });
  });
});

interface QemuCase {
  readonly subformat: "dynamic" | "fixed";
  readonly blockSize: string;
  readonly blockSizeBytes: number;
  readonly extra?: string;
}

const QEMU_CASES: readonly QemuCase[] = [
  { subformat: "dynamic", blockSize: "1M", blockSizeBytes: MIB },
  { subformat: "dynamic", blockSize: "32M", blockSizeBytes: 32 * MIB },
  { subformat: "dynamic", blockSize: "256M", blockSizeBytes: 256 * MIB },
  { subformat: "dynamic", blockSize: "1M", blockSizeBytes: MIB, extra: "block_state_zero=off" },
  { subformat: "fixed", blockSize: "1M", blockSizeBytes: MIB },
  { subformat: "fixed", blockSize: "32M", blockSizeBytes: 32 * MIB },
];

describe("vhdx reader against qemu-img images", () => {
  for (const testCase of QEMU_CASES) {
    const label = `${testCase.subformat} block_size=${testCase.blockSize}${testCase.extra === undefined ? "" : ` ${testCase.extra}`}`;
    it(`GIVEN a ${label} image with holes, zeroed data and data in the last sector WHEN read THEN its hash equals qemu-img's`, async () => {
      await withTempDir(async (dir) => {
        const image = join(dir, "disk.vhdx");
        // 40 MiB + 7 sectors: not a multiple of any block size, but of the 512-byte sector.
        const virtualSizeBytes = 40 * MIB + 7 * 512;
        const lastSector = virtualSizeBytes - 512;
        const opts = [`subformat=${testCase.subformat}`, `block_size=${testCase.blockSize}`, ...(testCase.extra === undefined ? [] : [testCase.extra])];
        await qemuImg("create", "-q", "-f", "vhdx", "-o", opts.join(","), image, String(virtualSizeBytes));
        await qemuIo("vhdx", image, [
          "write -P 0xab 0 64k",
          // Crosses the 1 MiB block boundary.
          `write -P 0xcd ${MIB - 4 * KIB} 8k`,
          "write -P 0x11 5M 3M",
          // Zeros over written data must read back as zeros.
          "write -z 6M 512k",
          `write -P 0x77 ${33 * MIB} 1M`,
          `write -P 0xee ${lastSector} 512`,
        ]);
        const source = await openImage(image);
        try {
          assert.equal(source.virtualSizeBytes, virtualSizeBytes);
          assert.equal(source.subformat, testCase.subformat);
          const extents = await collectExtents(source);
          assert.equal(extents.at(-1)?.kind, "data", "the last sector holds data");
          if (testCase.subformat === "dynamic" && testCase.blockSizeBytes < 32 * MIB) {
            assert.ok(extents.some((extent) => extent.kind === "zero"), "holes appear as zero extents");
          }
          assert.equal(await sourceSha256(source), await qemuRawSha256(image, "vhdx"));
          const last = await source.read(lastSector, 512);
          assert.ok(last.every((byte) => byte === 0xee));
        } finally {
          await source.close();
        }
      });
    });
  }

  it("GIVEN a written image WHEN unaligned spans crossing blocks and holes are read THEN they match qemu-img's raw bytes", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "disk.vhdx");
      const raw = join(dir, "disk.raw");
      await qemuImg("create", "-q", "-f", "vhdx", "-o", "block_size=1M", image, "12M");
      await qemuIo("vhdx", image, ["write -P 0x21 0 1536k", "write -P 0x42 2M 2M", `write -P 0x63 ${5 * MIB + 512} 4k`]);
      await qemuImg("convert", "-f", "vhdx", "-O", "raw", image, raw);
      const expected = await readFile(raw);
      const source = await openImage(image);
      try {
        const spans = [
          [0, 1],
          [MIB - 3, 7],
          [MIB + 100, 3 * MIB],
          [1536 * KIB - 1, MIB + 2],
          [5 * MIB, 8 * KIB],
          [0, 12 * MIB],
          [12 * MIB - 1, 1],
        ] as const;
        for (const [offsetBytes, lengthBytes] of spans) {
          const got = await source.read(offsetBytes, lengthBytes);
          assert.ok(got.equals(expected.subarray(offsetBytes, offsetBytes + lengthBytes)), `span ${offsetBytes}+${lengthBytes}`);
        }
        await assert.rejects(source.read(12 * MIB - 1, 2), (err: unknown) => err instanceof InvalidArgsError && err.code === "READ_OUT_OF_RANGE");
      } finally {
        await source.close();
      }
    });
  });

  it("GIVEN a 1 TiB sparse image with 1 MiB blocks WHEN its extents are walked THEN they come lazily and quickly", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "huge.vhdx");
      const virtualSizeBytes = 1024 * 1024 * MIB;
      await qemuImg("create", "-q", "-f", "vhdx", "-o", "block_size=1M", image, String(virtualSizeBytes));
      await qemuIo("vhdx", image, [`write -P 0x99 ${virtualSizeBytes - 4096} 4k`]);
      const started = Date.now();
      const source = await openImage(image);
      try {
        const extents = await collectExtents(source);
        assert.deepEqual(extents, [
          { offsetBytes: 0, lengthBytes: virtualSizeBytes - MIB, kind: "zero" },
          { offsetBytes: virtualSizeBytes - MIB, lengthBytes: MIB, kind: "data" },
        ]);
        const tail = await source.read(virtualSizeBytes - 4096, 4096);
        assert.ok(tail.every((byte) => byte === 0x99));
        assert.ok(Date.now() - started < 20_000, `walk took ${Date.now() - started} ms`);
      } finally {
        await source.close();
      }
    });
  });
});

describe("vhdx shared vectors", () => {
  const expected = {
    "iotest-dynamic-1G.vhdx": { virtualSizeBytes: 1073741824, sha256: "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478" },
    "test-disk2vhd.vhdx": { virtualSizeBytes: 268435456, sha256: "96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a" },
    // Read with its log replayed in memory; the README's hash is qemu's after `check -r all`.
    "iotest-dirtylog-10G-4M.vhdx": { virtualSizeBytes: 10737418240, sha256: "179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f" },
  } as const;
  for (const [name, want] of Object.entries(expected)) {
    it(`GIVEN the vector ${name} WHEN read THEN its size and raw sha256 match the README, and the file is unchanged`, async () => {
      await withTempDir(async (dir) => {
        const image = await decompressVector(name, dir);
        const before = await fileSha256(image);
        const source = await openImage(image);
        try {
          assert.equal(source.virtualSizeBytes, want.virtualSizeBytes);
          assert.equal(await sourceSha256(source), want.sha256);
        } finally {
          await source.close();
        }
        assert.equal(await fileSha256(image), before);
      });
    });
  }
});

type LogDescriptor = { readonly kind: "data"; readonly fileOffsetBytes: number; readonly sector: Buffer } | { readonly kind: "zero"; readonly fileOffsetBytes: number; readonly lengthBytes: number };

/** Encodes one log entry ([MS-VHDX] §2.3.1) with its descriptors and data sectors. */
function logEntry(options: { sequence: bigint; tailBytes: number; logGuid: Buffer; fileSizeBytes: number; descriptors: readonly LogDescriptor[] }): Buffer {
  const sector = 4 * KIB;
  const dataSectors = options.descriptors.filter((d) => d.kind === "data");
  const descriptorArea = Math.ceil((64 + 32 * options.descriptors.length) / sector) * sector;
  const entry = Buffer.alloc(descriptorArea + dataSectors.length * sector);
  entry.write("loge", 0, "latin1");
  entry.writeUInt32LE(entry.length, 8);
  entry.writeUInt32LE(options.tailBytes, 12);
  entry.writeBigUInt64LE(options.sequence, 16);
  entry.writeUInt32LE(options.descriptors.length, 24);
  options.logGuid.copy(entry, 32);
  entry.writeBigUInt64LE(BigInt(options.fileSizeBytes), 48);
  entry.writeBigUInt64LE(BigInt(options.fileSizeBytes), 56);
  let dataAt = descriptorArea;
  options.descriptors.forEach((descriptor, index) => {
    const at = 64 + index * 32;
    entry.writeBigUInt64LE(BigInt(descriptor.fileOffsetBytes), at + 16);
    entry.writeBigUInt64LE(options.sequence, at + 24);
    if (descriptor.kind === "zero") {
      entry.write("zero", at, "latin1");
      entry.writeBigUInt64LE(BigInt(descriptor.lengthBytes), at + 8);
      return;
    }
    entry.write("desc", at, "latin1");
    descriptor.sector.copy(entry, at + 4, sector - 4, sector);
    descriptor.sector.copy(entry, at + 8, 0, 8);
    descriptor.sector.copy(entry, dataAt);
    entry.write("data", dataAt, "latin1");
    entry.writeUInt32LE(Number(options.sequence >> 32n), dataAt + 4);
    entry.writeUInt32LE(Number(options.sequence & 0xffffffffn), dataAt + sector - 4);
    dataAt += sector;
  });
  entry.writeUInt32LE(crc32cWithZeroedField(entry, 4), 4);
  return entry;
}

describe("vhdx log replay", () => {
  it("GIVEN a log of two entries (data, zeros, data over zeros) and a stale older entry WHEN read THEN we match qemu-img's replay without touching the file", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "dirty.vhdx");
      const replayed = join(dir, "replayed.vhdx");
      await qemuImg("create", "-q", "-f", "vhdx", "-o", "block_size=1M", image, "8M");
      await qemuIo("vhdx", image, ["write -P 0x11 0 2M"]);
      const cleanSha = await qemuRawSha256(image, "vhdx");
      const file = await readFile(image);
      // Region table 1 at 192 KiB: find the BAT, then block 0's file offset (FileOffsetMB, bits 20-63).
      const batRegion = [0, 1].map((i) => 192 * KIB + 16 + i * 32).find((at) => file.readUInt32LE(at) === 0x2dc27766)!;
      const batOffset = Number(file.readBigUInt64LE(batRegion + 16));
      const block0 = Number(file.readBigUInt64LE(batOffset) >> 20n) * MIB;
      const header = 64 * KIB;
      const logOffset = Number(file.readBigUInt64LE(header + 72));
      const logGuid = guid(randomUUID());
      const fileSizeBytes = file.length;
      const first = logEntry({
        sequence: 10n,
        tailBytes: 0,
        logGuid,
        fileSizeBytes,
        descriptors: [
          { kind: "data", fileOffsetBytes: block0 + 4 * KIB, sector: Buffer.alloc(4 * KIB, 0xa1) },
          { kind: "zero", fileOffsetBytes: block0 + 8 * KIB, lengthBytes: 16 * KIB },
        ],
      });
      const second = logEntry({
        sequence: 11n,
        tailBytes: 0,
        logGuid,
        fileSizeBytes,
        descriptors: [{ kind: "data", fileOffsetBytes: block0 + 12 * KIB, sector: Buffer.alloc(4 * KIB, 0xb2) }],
      });
      // A stale entry from an earlier pass: a whole sequence on its own, but with a lower number.
      const stale = logEntry({
        sequence: 3n,
        tailBytes: 64 * KIB,
        logGuid,
        fileSizeBytes,
        descriptors: [{ kind: "data", fileOffsetBytes: block0, sector: Buffer.alloc(4 * KIB, 0xff) }],
      });
      first.copy(file, logOffset);
      second.copy(file, logOffset + first.length);
      stale.copy(file, logOffset + 64 * KIB);
      for (const at of [64 * KIB, 128 * KIB]) {
        logGuid.copy(file, at + 48);
        file.writeUInt32LE(crc32cWithZeroedField(file.subarray(at, at + 4 * KIB), 4), at + 4);
      }
      await writeFile(image, file);
      await copyFile(image, replayed);
      await qemuImg("check", "-r", "all", "-f", "vhdx", replayed);
      const expected = await qemuRawSha256(replayed, "vhdx");
      assert.notEqual(expected, cleanSha, "the log changes the disk");

      const before = await fileSha256(image);
      const source = await openImage(image);
      try {
        assert.equal(await sourceSha256(source), expected);
        const head = await source.read(0, 20 * KIB);
        assert.ok(head.subarray(0, 4 * KIB).every((byte) => byte === 0x11), "the stale entry is not replayed");
        assert.ok(head.subarray(4 * KIB, 8 * KIB).every((byte) => byte === 0xa1));
        assert.ok(head.subarray(8 * KIB, 12 * KIB).every((byte) => byte === 0));
        assert.ok(head.subarray(12 * KIB, 16 * KIB).every((byte) => byte === 0xb2), "a later data sector wins over earlier zeros");
        assert.ok(head.subarray(16 * KIB, 20 * KIB).every((byte) => byte === 0));
      } finally {
        await source.close();
      }
      assert.equal(await fileSha256(image), before);
    });
  });
});

/** A deterministic test pattern: a few data ranges with holes between them, and the raw image. */
function pattern(virtualSizeBytes: number, blockSizeBytes: number): { ranges: [number, Buffer][]; raw: Buffer } {
  const raw = Buffer.alloc(virtualSizeBytes);
  const spans: [number, number][] = [
    [0, 64 * KIB],
    // A range crossing a block boundary, which the feeder must split.
    [blockSizeBytes - 8 * KIB, 16 * KIB],
    // Two whole blocks, written as one call where the contract allows it.
    [2 * blockSizeBytes, 2 * blockSizeBytes],
    [virtualSizeBytes - 512, 512],
  ];
  let seed = 0x2545f491;
  const ranges: [number, Buffer][] = [];
  for (const [offsetBytes, lengthBytes] of spans) {
    const data = Buffer.alloc(lengthBytes);
    for (let i = 0; i < lengthBytes; i += 4) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      data.writeUInt32LE(seed, i);
    }
    data.copy(raw, offsetBytes);
    ranges.push([offsetBytes, data]);
  }
  return { ranges, raw };
}

/** Feeds data ranges to a sink honouring the DiskSink contract: increasing, split at block boundaries. */
async function feed(sink: DiskSink, ranges: readonly [number, Buffer][]): Promise<void> {
  const block = sink.blockSizeBytes;
  for (const [offsetBytes, data] of ranges) {
    let position = 0;
    while (position < data.length) {
      const at = offsetBytes + position;
      const wholeBlocks = at % block === 0 ? Math.floor((data.length - position) / block) : 0;
      const lengthBytes = wholeBlocks > 0 ? wholeBlocks * block : Math.min(block - (at % block), data.length - position);
      await sink.write(at, data.subarray(position, position + lengthBytes));
      position += lengthBytes;
    }
  }
}

describe("vhdx writer", () => {
  const cases = [
    { subformat: "dynamic", blockSize: MIB },
    { subformat: "dynamic", blockSize: 32 * MIB },
    { subformat: "fixed", blockSize: MIB },
    { subformat: "fixed", blockSize: 8 * MIB },
  ] as const;
  for (const { subformat, blockSize } of cases) {
    it(`GIVEN a ${subformat} sink with ${blockSize / MIB} MiB blocks WHEN a pattern is written THEN qemu-img check, compare and info agree and we read it back`, async () => {
      await withTempDir(async (dir) => {
        const out = join(dir, "out.vhdx");
        const rawPath = join(dir, "src.raw");
        const virtualSizeBytes = 4 * blockSize + 3 * MIB + 512 * 5;
        const { ranges, raw } = pattern(virtualSizeBytes, blockSize);
        await writeFile(rawPath, raw);
        const sink = await vhdxFormat.createWriter(await createFileTarget(out), { virtualSizeBytes, subformat, blockSize });
        assert.equal(sink.blockSizeBytes, blockSize);
        await feed(sink, ranges);
        const result = await sink.finish();
        assert.equal(result.location, out);
        assert.equal(result.dataBytesWritten, ranges.reduce((sum, [, data]) => sum + data.length, 0));
        assert.equal(result.details?.subformat, subformat);

        await qemuImg("check", "-f", "vhdx", out);
        const compare = await qemuImg("compare", "-f", "raw", "-F", "vhdx", rawPath, out);
        assert.match(compare, /Images are identical/);
        const info = await qemuInfo(out, "vhdx");
        assert.equal(info.format, "vhdx");
        assert.equal(info["virtual-size"], virtualSizeBytes);

        const expectedSha = createHash("sha256").update(raw).digest("hex");
        const source = await openImage(out);
        try {
          assert.equal(source.subformat, subformat);
          assert.equal(await sourceSha256(source), expectedSha);
        } finally {
          await source.close();
        }
        if (subformat === "dynamic") {
          // Unwritten blocks are not stored: blocks 0, 1, 2, 3 and the last are the only ones.
          assert.equal(result.details?.allocatedBlocks, 5);
        }
      });
    });
  }

  it("GIVEN a 1 TiB dynamic sink WHEN only the last sector is written THEN the file stays small and qemu-img reads it", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "big.vhdx");
      const virtualSizeBytes = 1024 * 1024 * MIB;
      const sink = await vhdxFormat.createWriter(await createFileTarget(out), { virtualSizeBytes, blockSize: "1M" });
      const last = Buffer.alloc(512, 0x5c);
      await sink.write(virtualSizeBytes - 512, last);
      await sink.finish();
      const { blocks } = await stat(out);
      assert.ok(blocks * 512 < 32 * MIB, `allocated ${blocks * 512} bytes`);
      await qemuImg("check", "-f", "vhdx", out);
      const info = await qemuInfo(out, "vhdx");
      assert.equal(info["virtual-size"], virtualSizeBytes);
      // qemu-io exits non-zero when a pattern check fails.
      await qemuIo("vhdx", out, [`read -P 0x5c ${virtualSizeBytes - 512} 512`, `read -P 0 ${virtualSizeBytes - MIB} ${MIB - 512}`]);
      const source = await openImage(out);
      try {
        const extents = await collectExtents(source);
        assert.equal(extents.length, 2);
        assert.ok((await source.read(virtualSizeBytes - 512, 512)).equals(last));
      } finally {
        await source.close();
      }
    });
  });

  it("GIVEN a 5 GiB fixed sink with 1 MiB blocks WHEN blocks past the first sector bitmap entry are written THEN qemu reads them in place", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "fixed5g.vhdx");
      const virtualSizeBytes = 5 * 1024 * MIB;
      // With 512-byte sectors and 1 MiB blocks a chunk is 4096 blocks, so block 4096 sits after
      // the first interleaved sector bitmap entry in the BAT ([MS-VHDX] §2.5).
      const afterBitmapBytes = 4096 * MIB;
      const sink = await vhdxFormat.createWriter(await createFileTarget(out), { virtualSizeBytes, subformat: "fixed", blockSize: MIB });
      await sink.write(afterBitmapBytes - MIB, Buffer.alloc(MIB, 0x41));
      await sink.write(afterBitmapBytes, Buffer.alloc(MIB, 0x42));
      await sink.write(virtualSizeBytes - 512, Buffer.alloc(512, 0x43));
      await sink.finish();
      await qemuImg("check", "-f", "vhdx", out);
      await qemuIo("vhdx", out, [
        `read -P 0x41 ${afterBitmapBytes - MIB} 1M`,
        `read -P 0x42 ${afterBitmapBytes} 1M`,
        `read -P 0 ${afterBitmapBytes + MIB} 1M`,
        `read -P 0x43 ${virtualSizeBytes - 512} 512`,
      ]);
      const source = await openImage(out);
      try {
        assert.ok((await source.read(afterBitmapBytes - 512, 1024)).equals(Buffer.concat([Buffer.alloc(512, 0x41), Buffer.alloc(512, 0x42)])));
        assert.ok((await source.read(virtualSizeBytes - 1024, 1024)).equals(Buffer.concat([Buffer.alloc(512, 0), Buffer.alloc(512, 0x43)])));
      } finally {
        await source.close();
      }
    });
  });

  it("GIVEN options as CLI strings WHEN a writer is made THEN they are coerced", async () => {
    await withTempDir(async (dir) => {
      const sink = await vhdxFormat.createWriter(await createFileTarget(join(dir, "s.vhdx")), {
        virtualSizeBytes: 8 * MIB,
        subformat: "fixed",
        // qemu-img's spelling of the option, as a user of `-o block_size=2M` would pass it.
        block_size: "2M",
      });
      assert.equal(sink.blockSizeBytes, 2 * MIB);
      const result = await sink.finish();
      assert.equal(result.details?.subformat, "fixed");
      assert.equal((await qemuInfo(join(dir, "s.vhdx"), "vhdx"))["virtual-size"], 8 * MIB);
    });
  });

  it("GIVEN no block size WHEN a writer is made THEN it uses the documented 32 MiB default", async () => {
    await withTempDir(async (dir) => {
      const sink = await vhdxFormat.createWriter(await createFileTarget(join(dir, "d.vhdx")), { virtualSizeBytes: 64 * MIB });
      assert.equal(sink.blockSizeBytes, 32 * MIB);
      await sink.abort();
    });
  });

  it("GIVEN bad options WHEN a writer is made THEN one InvalidArgsError lists every issue", async () => {
    await withTempDir(async (dir) => {
      const target = await createFileTarget(join(dir, "bad.vhdx"));
      try {
        await assert.rejects(
          vhdxFormat.createWriter(target, { virtualSizeBytes: -5, subformat: "differencing", blockSize: "3M", clusterSize: 4 }),
          (err: unknown) => {
            assert.ok(err instanceof InvalidArgsError);
            assert.equal(err.code, "INVALID_WRITER_OPTIONS");
            for (const path of ["virtualSizeBytes", "subformat", "blockSize"]) assert.match(err.message, new RegExp(path));
            assert.match(err.message, /clusterSize/);
            return true;
          },
        );
      } finally {
        await target.close();
      }
    });
  });

  it("GIVEN a 64 TiB + 1 sector size or a 512 MiB block WHEN a writer is made THEN it is refused", async () => {
    await withTempDir(async (dir) => {
      const target = await createFileTarget(join(dir, "bad.vhdx"));
      try {
        for (const options of [{ virtualSizeBytes: 64 * 1024 * 1024 * MIB + 512 }, { virtualSizeBytes: MIB, blockSize: 512 * MIB }]) {
          await assert.rejects(vhdxFormat.createWriter(target, options), (err: unknown) => err instanceof InvalidArgsError && err.code === "INVALID_WRITER_OPTIONS");
        }
      } finally {
        await target.close();
      }
    });
  });

  it("GIVEN a sequential target WHEN a writer is made THEN it is refused as not capable", async () => {
    const target = streamTarget("pipe", new PassThrough());
    await assert.rejects(vhdxFormat.createWriter(target, { virtualSizeBytes: 8 * MIB }), (err: unknown) => err instanceof NotCapableError && err.code === "VHDX_SEQUENTIAL_TARGET");
  });

  it("GIVEN a sink WHEN writes go backwards, past the end or unaligned THEN each is refused with its code", async () => {
    await withTempDir(async (dir) => {
      const sink = await vhdxFormat.createWriter(await createFileTarget(join(dir, "o.vhdx")), { virtualSizeBytes: 8 * MIB, blockSize: MIB });
      await sink.write(2 * MIB, Buffer.alloc(4096, 1));
      const expectCode = (code: string) => (err: unknown) => err instanceof InvalidArgsError && err.code === code;
      await assert.rejects(sink.write(MIB, Buffer.alloc(512, 1)), expectCode("SINK_WRITE_ORDER"));
      await assert.rejects(sink.write(2 * MIB + 1024, Buffer.alloc(512, 1)), expectCode("SINK_WRITE_ORDER"));
      await assert.rejects(sink.write(8 * MIB - 512, Buffer.alloc(1024, 1)), expectCode("SINK_WRITE_RANGE"));
      await assert.rejects(sink.write(3 * MIB + 100, Buffer.alloc(512, 1)), expectCode("SINK_WRITE_UNALIGNED"));
      await sink.finish();
      await assert.rejects(sink.write(7 * MIB, Buffer.alloc(512, 1)), expectCode("SINK_CLOSED"));
    });
  });

  it("GIVEN a sink that is aborted WHEN the file is opened THEN it is not a valid VHDX", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "aborted.vhdx");
      const sink = await vhdxFormat.createWriter(await createFileTarget(out), { virtualSizeBytes: 8 * MIB, blockSize: MIB });
      await sink.write(0, Buffer.alloc(MIB, 3));
      await sink.abort();
      await assert.rejects(openImage(out), (err: unknown) => (err as { code?: string }).code === "VHDX_BAD_MAGIC" || (err as { code?: string }).code === "TRUNCATED");
    });
  });

  it("GIVEN a size that is not a sector multiple WHEN written THEN the disk is rounded up to whole sectors", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "odd.vhdx");
      const sink = await vhdxFormat.createWriter(await createFileTarget(out), { virtualSizeBytes: 4 * MIB + 100, blockSize: MIB });
      assert.equal(sink.virtualSizeBytes, 4 * MIB + 512);
      await sink.write(4 * MIB, Buffer.alloc(100, 9));
      const result = await sink.finish();
      assert.equal(result.details?.roundedUpToSector, true);
      assert.equal((await qemuInfo(out, "vhdx"))["virtual-size"], 4 * MIB + 512);
      await qemuIo("vhdx", out, [`read -P 9 ${4 * MIB} 100`, `read -P 0 ${4 * MIB + 100} 412`]);
    });
  });
});
