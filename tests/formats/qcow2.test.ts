// qcow2 conformance: images written at test time by qemu-img / qemu-io must read back exactly as
// qemu-img reads them, and images from our writer must pass qemu-img check and compare.
// The shared vectors (tests/fixtures/vectors) hold no qcow2 image, so every image here is generated.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { isPortableError } from "../../sdk/errors.ts";
import { bufferSource, createFileTarget, openFileSource, streamTarget } from "../../sdk/disk/io.ts";
import type { ByteTarget, DiskSink, DiskSource, Extent } from "../../sdk/disk/types.ts";
import { qcow2Format, type Qcow2Source } from "../../sdk/disk/formats/qcow2/index.ts";
import { fileSha256, qemuImg, qemuInfo, qemuIo, qemuRawSha256, sourceSha256, withTempDir } from "../harness/disk.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

async function openImage(path: string, backing?: DiskSource): Promise<Qcow2Source> {
  const bytes = await openFileSource(path);
  try {
    return (await qcow2Format.open(bytes, backing === undefined ? {} : { backing })) as Qcow2Source;
  } catch (err) {
    await bytes.close();
    throw err;
  }
}

async function ourSha256(path: string, backing?: DiskSource): Promise<string> {
  const source = await openImage(path, backing);
  try {
    return await sourceSha256(source);
  } finally {
    await source.close();
  }
}

async function collectExtents(source: DiskSource): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const extent of source.extents()) out.push(extent);
  return out;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Deterministic bytes: a xorshift stream, optionally made compressible by repeating a short period. */
function patternBytes(length: number, seed: number, periodBytes = 0): Buffer {
  const out = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    if (periodBytes > 0 && i >= periodBytes) {
      out[i] = out[i - periodBytes] ?? 0;
      continue;
    }
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = state & 0xff;
  }
  return out;
}

interface GeneratedCase {
  readonly name: string;
  readonly createOptions: string;
  readonly sizeBytes: number;
  readonly io: (sizeBytes: number) => string[];
  readonly subformat: "v2" | "v3";
}

const GENERATED: readonly GeneratedCase[] = [
  {
    name: "v2 (compat=0.10), 64 KiB clusters, holes, data in the last sector, size 10 MiB + 512",
    createOptions: "compat=0.10",
    sizeBytes: 10 * MIB + 512,
    io: (size) => ["write -P 0xab 0 64k", "write -P 0x11 1M 300k", `write -P 0xcd ${size - 512} 512`],
    subformat: "v2",
  },
  {
    name: "v2 (compat=0.10), 512-byte clusters, odd size",
    createOptions: "compat=0.10,cluster_size=512",
    sizeBytes: 3 * MIB + 1536,
    io: (size) => ["write -P 0x21 0 4k", "write -P 0x22 40k 100k", `write -P 0x23 ${size - 1024} 1024`],
    subformat: "v2",
  },
  {
    name: "v3 (compat=1.1), 512-byte clusters, zero clusters with and without an allocation",
    createOptions: "compat=1.1,cluster_size=512",
    sizeBytes: 3 * MIB + 1536,
    io: (size) => [
      "write -P 0x31 0 256k",
      "write -z 64k 16k",
      "write -z -u 128k 16k",
      "write -z 1M 64k",
      `write -P 0x32 ${size - 512} 512`,
    ],
    subformat: "v3",
  },
  {
    name: "v3, 2 MiB clusters, size not a multiple of the cluster",
    createOptions: "compat=1.1,cluster_size=2M",
    sizeBytes: 5 * MIB + 512,
    io: (size) => ["write -P 0x41 1M 1536k", "write -z 2M 64k", `write -P 0x42 ${size - 4096} 4096`],
    subformat: "v3",
  },
  {
    name: "v3, extended L2 (subclusters), allocated, zero and unallocated subclusters",
    createOptions: "compat=1.1,extended_l2=on",
    sizeBytes: 4 * MIB + 512,
    io: (size) => [
      "write -P 0x51 4k 2k",
      "write -P 0x52 70k 6k",
      "write -z 66k 2k",
      "write -P 0x53 200k 300k",
      "write -z -u 256k 64k",
      "write -z 300k 8k",
      `write -P 0x54 ${size - 512} 512`,
    ],
    subformat: "v3",
  },
];

describe("qcow2 reader: images written by qemu-img and qemu-io", () => {
  for (const c of GENERATED) {
    it(`GIVEN ${c.name} WHEN our reader hashes it THEN it matches qemu-img's raw output`, () =>
      withTempDir(async (dir) => {
        const image = join(dir, "img.qcow2");
        await qemuImg("create", "-q", "-f", "qcow2", "-o", c.createOptions, image, String(c.sizeBytes));
        await qemuIo("qcow2", image, c.io(c.sizeBytes));
        const expected = await qemuRawSha256(image);
        const source = await openImage(image);
        try {
          assert.equal(source.subformat, c.subformat);
          assert.equal(source.virtualSizeBytes, c.sizeBytes);
          assert.equal(await sourceSha256(source), expected);
        } finally {
          await source.close();
        }
        // The same bytes from memory rather than a file: the reader must not depend on the input mode.
        const fromMemory = await qcow2Format.open(bufferSource("img.qcow2", await readFile(image)));
        assert.equal(await sourceSha256(fromMemory), expected);
      }));
  }

  it("GIVEN an image with an internal snapshot and later writes WHEN hashed THEN the active layer matches qemu-img", () =>
    withTempDir(async (dir) => {
      const image = join(dir, "snap.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", image, String(4 * MIB));
      await qemuIo("qcow2", image, ["write -P 0xc1 0 1M"]);
      await qemuImg("snapshot", "-c", "before", image);
      await qemuIo("qcow2", image, ["write -P 0xc2 512k 64k", "write -z 768k 64k"]);
      assert.equal(await ourSha256(image), await qemuRawSha256(image));
    }));

  for (const preallocation of ["metadata", "falloc"]) {
    it(`GIVEN preallocation=${preallocation} WHEN hashed THEN it matches qemu-img`, () =>
      withTempDir(async (dir) => {
        const image = join(dir, "prealloc.qcow2");
        await qemuImg("create", "-q", "-f", "qcow2", "-o", `preallocation=${preallocation}`, image, String(3 * MIB + 512));
        await qemuIo("qcow2", image, ["write -P 0xd1 64k 4k", `write -P 0xd2 ${3 * MIB} 512`]);
        assert.equal(await ourSha256(image), await qemuRawSha256(image));
      }));
  }

  it("GIVEN zero clusters WHEN extents are listed THEN zero and unallocated ranges are 'zero' and the rest 'data'", () =>
    withTempDir(async (dir) => {
      const image = join(dir, "z.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", image, String(4 * MIB));
      await qemuIo("qcow2", image, ["write -P 0x61 0 256k", "write -z 64k 64k", "write -P 0x62 1M 64k"]);
      const source = await openImage(image);
      try {
        const extents = await collectExtents(source);
        assert.deepEqual(extents, [
          { offsetBytes: 0, lengthBytes: 64 * KIB, kind: "data" },
          { offsetBytes: 64 * KIB, lengthBytes: 64 * KIB, kind: "zero" },
          { offsetBytes: 128 * KIB, lengthBytes: 128 * KIB, kind: "data" },
          { offsetBytes: 256 * KIB, lengthBytes: 768 * KIB, kind: "zero" },
          { offsetBytes: 1 * MIB, lengthBytes: 64 * KIB, kind: "data" },
          { offsetBytes: 1 * MIB + 64 * KIB, lengthBytes: 3 * MIB - 64 * KIB, kind: "zero" },
        ]);
      } finally {
        await source.close();
      }
    }));

  for (const [label, options] of [
    ["zlib, v3, 4 KiB clusters", ["-o", "cluster_size=4096"]],
    ["zlib, v2", ["-o", "compat=0.10"]],
    ["zstd", ["-o", "compression_type=zstd"]],
    ["zlib, extended L2", ["-o", "extended_l2=on"]],
  ] as const) {
    it(`GIVEN qemu-img convert -c (${label}) WHEN our reader hashes it THEN it matches qemu-img`, () =>
      withTempDir(async (dir) => {
        const raw = join(dir, "src.raw");
        const image = join(dir, "c.qcow2");
        // Compressible text-like data, incompressible noise (stored uncompressed) and holes.
        const data = Buffer.alloc(3 * MIB + 512);
        patternBytes(MIB, 7, 251).copy(data, 0);
        patternBytes(256 * KIB, 9).copy(data, 1536 * KIB);
        patternBytes(64 * KIB + 512, 11, 97).copy(data, data.length - 64 * KIB - 512);
        await writeFile(raw, data);
        await qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", ...options, raw, image);
        const map = await qemuImg("map", "--output=json", image);
        assert.ok(map.includes('"offset"'), "qemu-img map lists the uncompressed clusters");
        assert.equal(await ourSha256(image), sha256(data));
        assert.equal(await ourSha256(image), await qemuRawSha256(image));
      }));
  }

  it("GIVEN a compressed image WHEN random spans are read THEN each equals the same span of the raw data", () =>
    withTempDir(async (dir) => {
      const raw = join(dir, "src.raw");
      const image = join(dir, "c.qcow2");
      const data = Buffer.alloc(2 * MIB);
      patternBytes(768 * KIB, 3, 509).copy(data, 0);
      patternBytes(512 * KIB, 5).copy(data, 1 * MIB);
      await writeFile(raw, data);
      await qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "extended_l2=on,cluster_size=32k", raw, image);
      const source = await openImage(image);
      try {
        let seed = 12345;
        const next = (limit: number): number => {
          seed = (seed * 1103515245 + 12345) % 2 ** 31;
          return seed % limit;
        };
        for (let i = 0; i < 60; i++) {
          const offset = next(data.length);
          const length = next(Math.min(300 * KIB, data.length - offset)) + 1;
          assert.deepEqual(await source.read(offset, length), data.subarray(offset, offset + length), `span ${offset}+${length}`);
        }
        await assert.rejects(source.read(data.length - 10, 11), (err) => isPortableError(err) && err.code === "READ_OUT_OF_RANGE");
      } finally {
        await source.close();
      }
    }));

  it("GIVEN an overlay with a backing file WHEN opened without and with the backing disk THEN it refuses, then matches qemu-img", () =>
    withTempDir(async (dir) => {
      const base = join(dir, "base.qcow2");
      const overlay = join(dir, "overlay.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", base, String(4 * MIB));
      await qemuIo("qcow2", base, ["write -P 0x71 0 1M", "write -P 0x72 3M 1M"]);
      // The overlay is larger than its base: past the base's end it reads zeros.
      await qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", overlay, String(6 * MIB));
      await qemuIo("qcow2", overlay, ["write -P 0x73 512k 64k", "write -z 3M 64k", "write -P 0x74 5M 4k"]);

      await assert.rejects(openImage(overlay), (err) => {
        assert.ok(isPortableError(err));
        assert.equal(err.code, "QCOW2_BACKING_FILE");
        assert.equal(err.context.backingFile, "base.qcow2");
        assert.equal(err.context.backingFormat, "qcow2");
        return true;
      });
      const backing = await openImage(base);
      try {
        assert.equal(await ourSha256(overlay, backing), await qemuRawSha256(overlay));
        const source = await openImage(overlay, backing);
        const extents = await collectExtents(source);
        await source.close();
        const last = extents[extents.length - 1];
        assert.deepEqual(last, { offsetBytes: 5 * MIB + 64 * KIB, lengthBytes: MIB - 64 * KIB, kind: "zero" });
      } finally {
        await backing.close();
      }
    }));

  it("GIVEN a 1 TiB image with two clusters written WHEN extents are listed THEN they are few and exact", () =>
    withTempDir(async (dir) => {
      const image = join(dir, "big.qcow2");
      const sizeBytes = 1024 * 1024 * MIB;
      await qemuImg("create", "-q", "-f", "qcow2", image, String(sizeBytes));
      await qemuIo("qcow2", image, ["write -P 0x81 0 64k", `write -P 0x82 ${sizeBytes - 512} 512`]);
      const source = await openImage(image);
      try {
        const extents = await collectExtents(source);
        assert.deepEqual(extents, [
          { offsetBytes: 0, lengthBytes: 64 * KIB, kind: "data" },
          { offsetBytes: 64 * KIB, lengthBytes: sizeBytes - 128 * KIB, kind: "zero" },
          { offsetBytes: sizeBytes - 64 * KIB, lengthBytes: 64 * KIB, kind: "data" },
        ]);
        const tail = await source.read(sizeBytes - 1024, 1024);
        assert.deepEqual(tail, Buffer.concat([Buffer.alloc(512), Buffer.alloc(512, 0x82)]));
      } finally {
        await source.close();
      }
    }));

  it("GIVEN the dirty bit is set WHEN opened THEN it reads normally and reports dirty", () =>
    withTempDir(async (dir) => {
      const image = join(dir, "dirty.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", image, String(MIB));
      await qemuIo("qcow2", image, ["write -P 0x91 0 64k"]);
      const expected = await qemuRawSha256(image);
      const bytes = await readFile(image);
      bytes.writeBigUInt64BE(bytes.readBigUInt64BE(72) | 1n, 72);
      await writeFile(image, bytes);
      const source = await openImage(image);
      try {
        assert.equal(source.dirty, true);
        assert.equal(await sourceSha256(source), expected);
      } finally {
        await source.close();
      }
    }));

  it("GIVEN qcow2, qcow (version 1) and raw heads WHEN probed THEN only qcow2 is claimed", () => {
    const head = Buffer.alloc(512);
    head.writeUInt32BE(0x514649fb, 0);
    head.writeUInt32BE(3, 4);
    assert.equal(qcow2Format.probe(head, Buffer.alloc(512), MIB), true);
    head.writeUInt32BE(1, 4);
    assert.equal(qcow2Format.probe(head, Buffer.alloc(512), MIB), false);
    assert.equal(qcow2Format.probe(Buffer.alloc(512), Buffer.alloc(512), MIB), false);
  });
});

describe("qcow2 reader: backing chains through openRelative", () => {
  const opener = (dir: string) => (name: string) => openFileSource(join(dir, name));

  it("GIVEN overlay -> middle (qcow2) -> base (raw) WHEN opened with openRelative THEN it matches qemu-img and close() closes the chain", () =>
    withTempDir(async (dir) => {
      await writeFile(join(dir, "base.raw"), patternBytes(4 * MIB, 31, 1021));
      await qemuImg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", join(dir, "middle.qcow2"), String(4 * MIB));
      await qemuIo("qcow2", join(dir, "middle.qcow2"), ["write -P 0xb1 1M 128k", "write -z 2M 64k"]);
      await qemuImg("create", "-q", "-f", "qcow2", "-b", "middle.qcow2", "-F", "qcow2", join(dir, "top.qcow2"), String(4 * MIB));
      await qemuIo("qcow2", join(dir, "top.qcow2"), ["write -P 0xb2 1088k 4k", `write -P 0xb3 ${4 * MIB - 512} 512`]);
      const bytes = await openFileSource(join(dir, "top.qcow2"));
      const source = await qcow2Format.open(bytes, { openRelative: opener(dir) });
      assert.equal(await sourceSha256(source), await qemuRawSha256(join(dir, "top.qcow2")));
      await source.close();
    }));

  it("GIVEN an image whose backing file is itself WHEN opened THEN QCOW2_BACKING_CHAIN_TOO_DEEP", () =>
    withTempDir(async (dir) => {
      const loop = join(dir, "loop.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", join(dir, "base.qcow2"), String(MIB));
      await qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", loop, String(MIB));
      const bytes = await readFile(loop);
      const nameAt = bytes.indexOf("base.qcow2", 0, "latin1");
      assert.ok(nameAt > 0);
      bytes.write("loop.qcow2", nameAt, "latin1");
      await writeFile(loop, bytes);
      const file = await openFileSource(loop);
      await assert.rejects(qcow2Format.open(file, { openRelative: opener(dir) }), { code: "QCOW2_BACKING_CHAIN_TOO_DEEP" });
      await file.close();
    }));

  it("GIVEN a vmdk backing file WHEN opened with openRelative THEN QCOW2_BACKING_FORMAT asks for options.backing", () =>
    withTempDir(async (dir) => {
      await qemuImg("create", "-q", "-f", "vmdk", join(dir, "base.vmdk"), String(MIB));
      await qemuImg("create", "-q", "-f", "qcow2", "-b", "base.vmdk", "-F", "vmdk", join(dir, "top.qcow2"), String(MIB));
      const file = await openFileSource(join(dir, "top.qcow2"));
      await assert.rejects(qcow2Format.open(file, { openRelative: opener(dir) }), { code: "QCOW2_BACKING_FORMAT" });
      await file.close();
    }));
});

/** A raw disk with holes, sub-cluster data, data across L2 ranges and in the last sector. */
function writerPattern(sizeBytes: number): Buffer {
  const data = Buffer.alloc(sizeBytes);
  patternBytes(200 * KIB, 21).copy(data, 0);
  patternBytes(512, 22).copy(data, 1 * MIB + 4096);
  patternBytes(1536, 23).copy(data, 1 * MIB + 40 * KIB);
  patternBytes(3 * MIB, 24, 4099).copy(data, 2 * MIB + 512);
  patternBytes(512, 25).copy(data, sizeBytes - 512);
  return data;
}

/**
 * Feeds `data` to a sink the way convert() does: increasing offsets, all-zero runs skipped, and no
 * write crossing a block boundary unless it starts on one and covers whole blocks. Inside a block,
 * data is cut into 512-byte-multiple pieces so partly written clusters are exercised too.
 */
async function feed(sink: DiskSink, data: Buffer, chunkBytes: number): Promise<void> {
  const block = sink.blockSizeBytes;
  let offset = 0;
  while (offset < data.length) {
    const blockEnd = Math.min(data.length, (Math.floor(offset / block) + 1) * block);
    let end: number;
    if (offset % block === 0 && blockEnd - offset === block) {
      end = Math.min(data.length, offset + Math.max(block, Math.floor(chunkBytes / block) * block));
    } else {
      end = blockEnd;
    }
    // Within the span, write only the 512-byte sectors that hold data, as runs.
    let runStart = -1;
    for (let sector = offset; sector < end; sector += 512) {
      const sectorEnd = Math.min(end, sector + 512);
      const isZero = data.subarray(sector, sectorEnd).every((b) => b === 0);
      if (!isZero && runStart < 0) runStart = sector;
      if (isZero && runStart >= 0) {
        await sink.write(runStart, data.subarray(runStart, sector));
        runStart = -1;
      }
    }
    if (runStart >= 0) await sink.write(runStart, data.subarray(runStart, end));
    offset = end;
  }
}

describe("qcow2 writer", () => {
  const CONFIGS = [
    { label: "v3, default 64 KiB clusters", options: {}, compat: "1.1", chunkBytes: 4 * MIB },
    { label: "v3, 512-byte clusters (many L2 tables per write)", options: { clusterSize: "512" }, compat: "1.1", chunkBytes: 4 * MIB },
    { label: "v3, 2 MiB clusters", options: { clusterSize: 2 * MIB }, compat: "1.1", chunkBytes: 2 * MIB },
    { label: "v2, 4 KiB clusters", options: { clusterSize: 4096, subformat: "v2" }, compat: "0.10", chunkBytes: 64 * KIB },
  ] as const;
  for (const config of CONFIGS) {
    it(`GIVEN a patterned disk WHEN written through our sink (${config.label}) THEN qemu-img check, compare and info agree and our reader round-trips`, () =>
      withTempDir(async (dir) => {
        const sizeBytes = 12 * MIB + 512;
        const data = writerPattern(sizeBytes);
        const raw = join(dir, "src.raw");
        const out = join(dir, "out.qcow2");
        await writeFile(raw, data);
        const sink = await qcow2Format.createWriter(await createFileTarget(out), { virtualSizeBytes: sizeBytes, ...config.options });
        await feed(sink, data, config.chunkBytes);
        const result = await sink.finish();
        assert.equal(result.location, out);
        assert.ok(result.dataBytesWritten > 0 && result.dataBytesWritten < sizeBytes);

        assert.match(await qemuImg("check", "-f", "qcow2", out), /No errors were found on the image/);
        assert.match(await qemuImg("compare", "-f", "raw", "-F", "qcow2", raw, out), /Images are identical/);
        const info = await qemuInfo(out, "qcow2");
        assert.equal(info["virtual-size"], sizeBytes);
        assert.equal(info["format-specific"]?.data.compat, config.compat);
        assert.equal(await ourSha256(out), await fileSha256(raw));
      }));
  }

  it("GIVEN a sparse 1 TiB disk WHEN only the first cluster and last sector are written THEN the file is small and qemu-img agrees", () =>
    withTempDir(async (dir) => {
      const sizeBytes = 1024 * 1024 * MIB;
      const out = join(dir, "big.qcow2");
      const sink = await qcow2Format.createWriter(await createFileTarget(out), { virtualSizeBytes: sizeBytes, clusterSize: "65536" });
      await sink.write(0, Buffer.alloc(64 * KIB, 0xa1));
      await sink.write(sizeBytes - 512, Buffer.alloc(512, 0xa2));
      const result = await sink.finish();
      assert.ok(Number(result.details?.fileSizeBytes) < 2 * MIB);
      assert.match(await qemuImg("check", "-f", "qcow2", out), /No errors were found on the image/);
      await qemuIo("qcow2", out, ["read -P 0xa1 0 64k", "read -P 0 64k 64k", `read -P 0xa2 ${sizeBytes - 512} 512`]);
      const source = await openImage(out);
      try {
        assert.equal((await collectExtents(source)).length, 3);
      } finally {
        await source.close();
      }
    }));

  for (const sizeBytes of [8 * MIB, 0]) {
    it(`GIVEN an empty ${sizeBytes}-byte disk WHEN finished with only a zero-length write THEN qemu-img sees a clean, all-zero image`, () =>
      withTempDir(async (dir) => {
        const out = join(dir, "empty.qcow2");
        const sink = await qcow2Format.createWriter(await createFileTarget(out), { virtualSizeBytes: sizeBytes });
        await sink.write(sizeBytes / 2, Buffer.alloc(0));
        const result = await sink.finish();
        assert.equal(result.dataBytesWritten, 0);
        assert.equal(result.details?.dataClusters, 0);
        assert.match(await qemuImg("check", "-f", "qcow2", out), /No errors were found on the image/);
        assert.equal((await qemuInfo(out, "qcow2"))["virtual-size"], sizeBytes);
        assert.equal(await ourSha256(out), sha256(Buffer.alloc(sizeBytes)));
      }));
  }

  it("GIVEN bad options WHEN a writer is created THEN one InvalidArgsError lists every issue", () =>
    withTempDir(async (dir) => {
      const target = await createFileTarget(join(dir, "bad.qcow2"));
      try {
        await assert.rejects(
          qcow2Format.createWriter(target, { virtualSizeBytes: 1000, clusterSize: "3000", subformat: "v4", cluster_size: 1 }),
          (err) => {
            assert.ok(isPortableError(err));
            assert.equal(err.code, "INVALID_WRITER_OPTIONS");
            for (const key of ["virtualSizeBytes", "clusterSize", "subformat", "cluster_size"]) assert.match(err.message, new RegExp(key));
            return true;
          },
        );
        await assert.rejects(qcow2Format.createWriter(target, { virtualSizeBytes: MIB, clusterSize: 4 * MIB }), { code: "INVALID_WRITER_OPTIONS" });
        // 512-byte clusters map 32 KiB per L1 entry: 1 PiB would need a 256 MiB L1 table.
        await assert.rejects(qcow2Format.createWriter(target, { virtualSizeBytes: 2 ** 50, clusterSize: 512 }), (err) => {
          assert.ok(isPortableError(err));
          assert.match(err.message, /L1 table/);
          return true;
        });
      } finally {
        await target.close();
      }
    }));

  it("GIVEN a target whose third write fails WHEN writing on THEN the failure surfaces by the next call or finish()", async () => {
    let writes = 0;
    let closed = false;
    const failing: ByteTarget = {
      name: "failing",
      sequential: false,
      write: async () => {
        writes++;
        if (writes === 3) throw new Error("disk full");
      },
      truncate: async () => {},
      close: async () => {
        closed = true;
      },
    };
    const sink = await qcow2Format.createWriter(failing, { virtualSizeBytes: 64 * MIB });
    const written = async (): Promise<void> => {
      for (let i = 0; i < 8; i++) await sink.write(i * MIB, Buffer.alloc(MIB, 1));
      await sink.finish();
    };
    await assert.rejects(written(), /disk full/);
    await sink.abort();
    assert.equal(closed, true);
  });

  it("GIVEN a sequential target WHEN a writer is created THEN it refuses with QCOW2_SEQUENTIAL_TARGET", async () => {
    const target = streamTarget("pipe", new PassThrough());
    await assert.rejects(qcow2Format.createWriter(target, { virtualSizeBytes: MIB }), { code: "QCOW2_SEQUENTIAL_TARGET" });
  });

  it("GIVEN writes that break the order contract WHEN written THEN they are refused, and abort leaves no valid image", () =>
    withTempDir(async (dir) => {
      const out = join(dir, "aborted.qcow2");
      const sink = await qcow2Format.createWriter(await createFileTarget(out), { virtualSizeBytes: 4 * MIB });
      await sink.write(MIB, Buffer.alloc(4096, 1));
      await assert.rejects(sink.write(0, Buffer.alloc(512, 1)), { code: "SINK_WRITE_ORDER" });
      await assert.rejects(sink.write(2 * MIB + 100, Buffer.alloc(512, 1)), { code: "SINK_WRITE_UNALIGNED" });
      await assert.rejects(sink.write(4 * MIB - 512, Buffer.alloc(1024, 1)), { code: "SINK_WRITE_RANGE" });
      await sink.abort();
      await assert.rejects(sink.write(3 * MIB, Buffer.alloc(512, 1)), { code: "SINK_CLOSED" });
      const head = await readFile(out);
      assert.equal(qcow2Format.probe(head, Buffer.alloc(0), head.length), false);
    }));
});
