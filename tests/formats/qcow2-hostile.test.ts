// Malformed qcow2 input: every case patches bytes of a small valid image that qemu-img made, and
// must end quickly in a FormatError or NotCapableError with a stable code, never a hang, a huge
// allocation or a plain exception.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { deflateRawSync, zstdCompressSync } from "node:zlib";
import { FormatError, NotCapableError, isPortableError } from "../../sdk/errors.ts";
import { bufferSource } from "../../sdk/disk/io.ts";
import { qcow2Format } from "../../sdk/disk/formats/qcow2/index.ts";
import { qemuImg, qemuIo, sourceSha256, withTempDir } from "../harness/disk.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
/** Generous for a 2-core machine shared with other jobs; a hang or a big allocation takes far longer. */
const QUICK_MS = 3000;

// Header field offsets (qcow2 spec §"Header").
const VERSION_AT = 4;
const BACKING_OFFSET_AT = 8;
const BACKING_SIZE_AT = 16;
const CLUSTER_BITS_AT = 20;
const SIZE_AT = 24;
const CRYPT_METHOD_AT = 32;
const L1_SIZE_AT = 36;
const L1_OFFSET_AT = 40;
const INCOMPATIBLE_AT = 72;
const REFCOUNT_ORDER_AT = 96;
const HEADER_LENGTH_AT = 100;
const COMPRESSION_TYPE_AT = 104;
const ENTRY_OFFSET_MASK = 0x00fffffffffffe00n;
const COPIED = 1n << 63n;

interface Images {
  /** v3, 64 KiB clusters, 2 MiB, data in clusters 0-1 and 16. */
  readonly plain: Buffer;
  /** `qemu-img convert -c`, 64 KiB clusters; cluster 0 compressed. */
  readonly compressed: Buffer;
  /** The same with `-o compression_type=zstd`. */
  readonly zstd: Buffer;
  /** v3 with extended L2 entries; data in cluster 0. */
  readonly extended: Buffer;
}

function l1Offset(image: Buffer): number {
  return Number(image.readBigUInt64BE(L1_OFFSET_AT));
}

function l2Offset(image: Buffer, l1Index = 0): number {
  return Number(image.readBigUInt64BE(l1Offset(image) + l1Index * 8) & ENTRY_OFFSET_MASK);
}

function patched(image: Buffer, patch: (copy: Buffer) => void): Buffer {
  const copy = Buffer.from(image);
  patch(copy);
  return copy;
}

/** One cluster of varied bytes, so its zstd frame has several blocks' worth of content. */
function patternBytesForZstd(): Buffer {
  const out = Buffer.alloc(64 * KIB);
  for (let i = 0; i < out.length; i++) out[i] = (i * 31 + (i >> 7) * 17) & 0xff;
  return out;
}

type Action = "open" | "extents" | "read" | "readHead";

/**
 * Opens the image and, per `action`, walks its extents, reads all of it or reads only its first
 * 4 KiB; returns the error.
 */
async function failure(image: Buffer, action: Action): Promise<unknown> {
  const started = performance.now();
  try {
    const source = await qcow2Format.open(bufferSource("hostile.qcow2", image));
    if (action === "extents") {
      for await (const extent of source.extents()) assert.ok(extent.lengthBytes > 0);
    }
    if (action === "read") await sourceSha256(source);
    if (action === "readHead") await source.read(0, 4 * KIB);
  } catch (err) {
    const elapsedMs = performance.now() - started;
    assert.ok(elapsedMs < QUICK_MS, `took ${elapsedMs} ms`);
    return err;
  }
  assert.fail(`expected ${action} to fail`);
}

async function assertRefused(
  image: Buffer,
  action: Action,
  code: string,
  kind: typeof FormatError | typeof NotCapableError = FormatError,
): Promise<void> {
  const err = await failure(image, action);
  assert.ok(isPortableError(err), `not a PortableError: ${String(err)}`);
  assert.ok(err instanceof kind, `${err.name} is not a ${kind.name}: ${err.message}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, /^qcow2: /);
}

describe("qcow2 reader: hostile images", () => {
  let images: Images;
  before(() =>
    withTempDir(async (dir) => {
      const plain = join(dir, "plain.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", plain, String(2 * MIB));
      await qemuIo("qcow2", plain, ["write -P 0x5a 0 128k", "write -P 0x5b 1M 4k"]);

      const raw = join(dir, "src.raw");
      const text = Buffer.alloc(MIB);
      for (let i = 0; i < text.length; i++) text[i] = (i * 7 + (i >> 9)) % 251;
      await writeFile(raw, text);
      const compressed = join(dir, "compressed.qcow2");
      await qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", raw, compressed);

      const zstd = join(dir, "zstd.qcow2");
      await qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zstd", raw, zstd);

      const extended = join(dir, "extended.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", extended, String(2 * MIB));
      await qemuIo("qcow2", extended, ["write -P 0x5c 0 64k"]);

      images = {
        plain: await readFile(plain),
        compressed: await readFile(compressed),
        zstd: await readFile(zstd),
        extended: await readFile(extended),
      };
      // The untouched images must read, so every failure below comes from its patch.
      for (const image of Object.values(images)) await sourceSha256(await qcow2Format.open(bufferSource("valid.qcow2", image)));
    }));

  it("GIVEN a file shorter than the header WHEN opened THEN TRUNCATED", async () => {
    await assertRefused(images.plain.subarray(0, 50), "open", "TRUNCATED");
    await assertRefused(images.plain.subarray(0, 90), "open", "TRUNCATED");
  });

  it("GIVEN a bad magic or version WHEN opened THEN QCOW2_BAD_MAGIC / QCOW2_BAD_VERSION", async () => {
    await assertRefused(patched(images.plain, (b) => b.write("QFI\0", 0, "latin1")), "open", "QCOW2_BAD_MAGIC");
    await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(4, VERSION_AT)), "open", "QCOW2_BAD_VERSION", NotCapableError);
  });

  it("GIVEN cluster_bits 0, 8, 31 or 2^32-1 WHEN opened THEN QCOW2_BAD_CLUSTER_BITS", async () => {
    for (const bits of [0, 8, 22, 31, 0xffffffff]) {
      await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(bits, CLUSTER_BITS_AT)), "open", "QCOW2_BAD_CLUSTER_BITS");
    }
  });

  it("GIVEN extended L2 with 4 KiB clusters (subclusters under 512 bytes) WHEN opened THEN QCOW2_BAD_CLUSTER_BITS", async () => {
    await assertRefused(patched(images.extended, (b) => b.writeUInt32BE(12, CLUSTER_BITS_AT)), "open", "QCOW2_BAD_CLUSTER_BITS");
  });

  it("GIVEN a virtual size near 2^63 WHEN opened THEN QCOW2_SIZE_TOO_LARGE", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE((1n << 63n) - 512n, SIZE_AT)), "open", "QCOW2_SIZE_TOO_LARGE");
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(0xffffffffffffffffn, SIZE_AT)), "open", "QCOW2_SIZE_TOO_LARGE");
  });

  it("GIVEN a 4 PiB virtual size with the original one-entry L1 WHEN opened THEN QCOW2_L1_TOO_SMALL", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(1n << 52n, SIZE_AT)), "open", "QCOW2_L1_TOO_SMALL");
  });

  it("GIVEN l1_size of 2^32-1 entries (32 GiB) WHEN opened THEN QCOW2_L1_TOO_LARGE before any allocation", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(0xffffffff, L1_SIZE_AT)), "open", "QCOW2_L1_TOO_LARGE");
  });

  it("GIVEN an L1 table larger than the file, or placed past EOF WHEN opened THEN QCOW2_L1_PAST_EOF", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(1 << 20, L1_SIZE_AT)), "open", "QCOW2_L1_PAST_EOF");
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(0x7fff0000n, L1_OFFSET_AT)), "open", "QCOW2_L1_PAST_EOF");
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(1n << 62n, L1_OFFSET_AT)), "open", "QCOW2_L1_PAST_EOF");
  });

  it("GIVEN an L1 table overlapping the header or unaligned WHEN opened THEN QCOW2_L1_OVERLAPS_HEADER / QCOW2_UNALIGNED_OFFSET", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(0n, L1_OFFSET_AT)), "open", "QCOW2_L1_OVERLAPS_HEADER");
    await assertRefused(
      patched(images.plain, (b) => b.writeBigUInt64BE(BigInt(l1Offset(b) + 512), L1_OFFSET_AT)),
      "open",
      "QCOW2_UNALIGNED_OFFSET",
    );
  });

  it("GIVEN an L1 entry pointing past EOF WHEN extents are listed THEN QCOW2_L2_PAST_EOF", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(COPIED | (1n << 40n), l1Offset(b))), "extents", "QCOW2_L2_PAST_EOF");
  });

  it("GIVEN an L1 entry pointing at the L1 table itself or the header WHEN read THEN QCOW2_L2_OVERLAPS_METADATA", async () => {
    await assertRefused(
      patched(images.plain, (b) => b.writeBigUInt64BE(COPIED | BigInt(l1Offset(b)), l1Offset(b))),
      "read",
      "QCOW2_L2_OVERLAPS_METADATA",
    );
    await assertRefused(patched(images.plain, (b) => b.writeBigUInt64BE(COPIED | 512n, l1Offset(b))), "read", "QCOW2_UNALIGNED_OFFSET");
  });

  it("GIVEN 128 L1 entries all sharing one L2 table in a 6-cluster file WHEN opened THEN QCOW2_L2_TABLES_EXCEED_FILE", async () => {
    const image = patched(images.plain, (b) => {
      const entries = 128;
      b.writeBigUInt64BE(BigInt(entries) * 512n * BigInt(MIB), SIZE_AT);
      b.writeUInt32BE(entries, L1_SIZE_AT);
      const shared = b.readBigUInt64BE(l1Offset(b));
      for (let i = 0; i < entries; i++) b.writeBigUInt64BE(shared, l1Offset(b) + i * 8);
    });
    assert.ok(image.length / (64 * KIB) < 128);
    await assertRefused(image, "open", "QCOW2_L2_TABLES_EXCEED_FILE");
  });

  it("GIVEN an L2 entry pointing past EOF or unaligned WHEN read THEN QCOW2_CLUSTER_PAST_EOF / QCOW2_UNALIGNED_OFFSET", async () => {
    await assertRefused(
      patched(images.plain, (b) => b.writeBigUInt64BE(COPIED | 0x00f0000000000000n, l2Offset(b) + 8)),
      "extents",
      "QCOW2_CLUSTER_PAST_EOF",
    );
    await assertRefused(
      patched(images.plain, (b) => b.writeBigUInt64BE(b.readBigUInt64BE(l2Offset(b)) + 4096n, l2Offset(b))),
      "read",
      "QCOW2_UNALIGNED_OFFSET",
    );
  });

  it("GIVEN refcount_order 7 WHEN opened THEN QCOW2_BAD_REFCOUNT_ORDER", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(7, REFCOUNT_ORDER_AT)), "open", "QCOW2_BAD_REFCOUNT_ORDER");
  });

  it("GIVEN header_length too small, unaligned or past the cluster WHEN opened THEN QCOW2_BAD_HEADER_LENGTH", async () => {
    for (const length of [72, 100, 110, 1 << 30]) {
      await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(length, HEADER_LENGTH_AT)), "open", "QCOW2_BAD_HEADER_LENGTH");
    }
  });

  it("GIVEN a header extension whose length runs past cluster 0 WHEN opened THEN QCOW2_BAD_EXTENSION", async () => {
    const image = patched(images.plain, (b) => {
      const at = b.readUInt32BE(HEADER_LENGTH_AT);
      b.writeUInt32BE(0x12345678, at);
      b.writeUInt32BE(0xfffffff0, at + 4);
    });
    await assertRefused(image, "open", "QCOW2_BAD_EXTENSION");
  });

  it("GIVEN a backing file name longer than 1023 bytes or outside cluster 0 WHEN opened THEN QCOW2_BAD_BACKING_NAME", async () => {
    const tooLong = patched(images.plain, (b) => {
      b.writeBigUInt64BE(512n, BACKING_OFFSET_AT);
      b.writeUInt32BE(5000, BACKING_SIZE_AT);
    });
    await assertRefused(tooLong, "open", "QCOW2_BAD_BACKING_NAME");
    const outside = patched(images.plain, (b) => {
      b.writeBigUInt64BE(1n << 40n, BACKING_OFFSET_AT);
      b.writeUInt32BE(8, BACKING_SIZE_AT);
    });
    await assertRefused(outside, "open", "QCOW2_BAD_BACKING_NAME");
  });

  it("GIVEN encryption, an external data file, an unknown feature or the corrupt bit WHEN opened THEN each is refused by code", async () => {
    await assertRefused(patched(images.plain, (b) => b.writeUInt32BE(1, CRYPT_METHOD_AT)), "open", "QCOW2_ENCRYPTED", NotCapableError);
    const withBit = (bit: bigint): Buffer => patched(images.plain, (b) => b.writeBigUInt64BE(1n << bit, INCOMPATIBLE_AT));
    await assertRefused(withBit(2n), "open", "QCOW2_EXTERNAL_DATA_FILE", NotCapableError);
    await assertRefused(withBit(10n), "open", "QCOW2_INCOMPATIBLE_FEATURE", NotCapableError);
    await assertRefused(withBit(1n), "open", "QCOW2_CORRUPT");
  });

  it("GIVEN an unknown compression type WHEN opened THEN QCOW2_COMPRESSION_TYPE", async () => {
    const image = patched(images.plain, (b) => {
      b.writeBigUInt64BE(1n << 3n, INCOMPATIBLE_AT);
      b.writeUInt8(7, COMPRESSION_TYPE_AT);
    });
    await assertRefused(image, "open", "QCOW2_COMPRESSION_TYPE", NotCapableError);
  });

  it("GIVEN an extended L2 entry both allocated and zero WHEN extents are listed THEN QCOW2_BAD_L2_ENTRY", async () => {
    const image = patched(images.extended, (b) => b.writeUInt32BE(1, l2Offset(b) + 8));
    await assertRefused(image, "extents", "QCOW2_BAD_L2_ENTRY");
  });

  describe("compressed clusters", () => {
    // Ref: qcow2 spec §"Compressed Clusters Descriptor", with cluster_bits 16: x = 54.
    const OFFSET_BITS = 54n;
    function descriptor(image: Buffer): { at: number; hostOffsetBytes: number } {
      const at = l2Offset(image);
      const entry = image.readBigUInt64BE(at);
      assert.ok((entry >> 62n) & 1n, "cluster 0 of the compressed sample is compressed");
      return { at, hostOffsetBytes: Number(entry & ((1n << OFFSET_BITS) - 1n)) };
    }

    /** Puts `stream` where cluster 0's compressed data lives and sizes the descriptor to it. */
    function withStream(stream: Buffer, sample = images.compressed): Buffer {
      const { at, hostOffsetBytes } = descriptor(sample);
      const size = Math.max(sample.length, hostOffsetBytes + stream.length);
      const image = Buffer.alloc(size);
      sample.copy(image);
      stream.copy(image, hostOffsetBytes);
      const extraSectors = BigInt(Math.ceil(((hostOffsetBytes % 512) + stream.length) / 512) - 1);
      image.writeBigUInt64BE((1n << 62n) | (extraSectors << OFFSET_BITS) | BigInt(hostOffsetBytes), at);
      return image;
    }

    // The bomb's 64 KiB stream also overwrites cluster 1's data, so only cluster 0 is read.
    it("GIVEN a deflate bomb (64 MiB of zeros) in place of cluster 0 WHEN read THEN QCOW2_COMPRESSED_OVERFLOW, quickly", async () => {
      await assertRefused(withStream(deflateRawSync(Buffer.alloc(64 * MIB))), "readHead", "QCOW2_COMPRESSED_OVERFLOW");
    });

    it("GIVEN a zstd bomb, or a zstd frame cut short WHEN read THEN QCOW2_COMPRESSED_OVERFLOW / QCOW2_BAD_COMPRESSED_CLUSTER", async () => {
      const bomb = zstdCompressSync(Buffer.alloc(64 * MIB));
      await assertRefused(withStream(bomb, images.zstd), "readHead", "QCOW2_COMPRESSED_OVERFLOW");
      const frame = zstdCompressSync(patternBytesForZstd());
      await assertRefused(withStream(frame.subarray(0, frame.length - 20), images.zstd), "readHead", "QCOW2_BAD_COMPRESSED_CLUSTER");
    });

    it("GIVEN a stream that inflates to less than a cluster, or garbage WHEN read THEN QCOW2_BAD_COMPRESSED_CLUSTER", async () => {
      await assertRefused(withStream(deflateRawSync(Buffer.alloc(1000, 1))), "readHead", "QCOW2_BAD_COMPRESSED_CLUSTER");
      await assertRefused(withStream(Buffer.alloc(600, 0xff)), "readHead", "QCOW2_BAD_COMPRESSED_CLUSTER");
    });

    it("GIVEN a compressed descriptor pointing past EOF WHEN read THEN QCOW2_CLUSTER_PAST_EOF", async () => {
      const { at } = descriptor(images.compressed);
      const image = patched(images.compressed, (b) => b.writeBigUInt64BE((1n << 62n) | (1n << 40n), at));
      await assertRefused(image, "read", "QCOW2_CLUSTER_PAST_EOF");
    });
  });
});
