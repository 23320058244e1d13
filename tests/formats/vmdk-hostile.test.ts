import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { deflateSync } from "node:zlib";
import { FormatError, NotCapableError } from "../../sdk/errors.ts";
import { vmdkFormat } from "../../sdk/disk/formats/vmdk/index.ts";
import { bufferSource, streamTarget } from "../../sdk/disk/io.ts";
import type { ByteSource, DiskSource } from "../../sdk/disk/types.ts";
import { qemuImg, qemuIo, withTempDir } from "../harness/disk.ts";

const MIB = 1024 * 1024;
/** Every hostile case must fail fast; a hang or a huge allocation shows up as a timeout. */
const QUICK = { timeout: 10_000 };

// Sparse extent header field offsets (VDF5 §"Hosted Sparse Extent Header").
const VERSION = 4;
const CAPACITY = 12;
const GRAIN_SIZE = 20;
const NUM_GTES_PER_GT = 44;
const RGD_OFFSET = 48;
const GD_OFFSET = 56;
const COMPRESS_ALGORITHM = 77;
const STREAM_FIRST_GRAIN_BYTES = 128 * 512;

let sparse: Buffer;
let stream: Buffer;

before(() =>
  withTempDir(async (dir) => {
    // 64 MiB: two grain tables, with data in both.
    const sparsePath = join(dir, "sparse.vmdk");
    await qemuImg("create", "-f", "vmdk", "-o", "subformat=monolithicSparse", sparsePath, String(64 * MIB));
    await qemuIo("vmdk", sparsePath, ["write -P 0xab 0 64k", "write -P 0xcd 32M 64k"]);
    sparse = await readFile(sparsePath);
    // A stream of 16 incompressible grains, written by our own writer (GD in the footer).
    const streamPath = join(dir, "stream.vmdk");
    const sink = await vmdkFormat.createWriter(streamTarget(streamPath, createWriteStream(streamPath)), {
      virtualSizeBytes: 4 * MIB,
      subformat: "streamOptimized",
    });
    await sink.write(0, randomBytes(MIB));
    await sink.finish();
    stream = await readFile(streamPath);
  }),
);

function patched(base: Buffer, patch: (buf: Buffer) => void): Buffer {
  const copy = Buffer.from(base);
  patch(copy);
  return copy;
}

async function openBuffer(data: Buffer, files: Record<string, Buffer> = {}): Promise<DiskSource> {
  return vmdkFormat.open(bufferSource("hostile.vmdk", data), {
    openRelative: async (name): Promise<ByteSource> => {
      const file = files[name];
      if (file === undefined) throw new Error(`no such file ${name}`);
      return bufferSource(name, file);
    },
  });
}

/** Opens, then reads everything: a failure may come from open() or from the first read. */
async function openAndReadAll(data: Buffer, files: Record<string, Buffer> = {}): Promise<void> {
  const source = await openBuffer(data, files);
  try {
    for await (const extent of source.extents()) {
      if (extent.kind === "data") await source.read(extent.offsetBytes, extent.lengthBytes);
    }
  } finally {
    await source.close();
  }
}

function gdSector(buf: Buffer, field = GD_OFFSET): number {
  return Number(buf.readBigUInt64LE(field));
}

/** Applies `patch(buf, directoryByteOffset)` to the primary and the redundant directory. */
function patchBothDirectories(base: Buffer, patch: (buf: Buffer, gdByteOffset: number) => void): Buffer {
  return patched(base, (buf) => {
    patch(buf, gdSector(buf, GD_OFFSET) * 512);
    patch(buf, gdSector(buf, RGD_OFFSET) * 512);
  });
}

function expectFormatError(code: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof FormatError, `expected FormatError ${code}, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

describe("vmdk hostile input: sparse extent headers", () => {
  it("GIVEN a baseline image WHEN read THEN it opens (the patches below are what break it)", QUICK, async () => {
    await openAndReadAll(sparse);
    await openAndReadAll(stream);
  });

  it("GIVEN a bad magic WHEN opened THEN VMDK_BAD_MAGIC", QUICK, async () => {
    await assert.rejects(openBuffer(patched(sparse, (b) => b.write("XXXX", 0, "latin1"))), expectFormatError("VMDK_BAD_MAGIC"));
  });

  it("GIVEN version 7 WHEN opened THEN VMDK_UNSUPPORTED_VERSION", QUICK, async () => {
    await assert.rejects(openBuffer(patched(sparse, (b) => b.writeUInt32LE(7, VERSION))), expectFormatError("VMDK_UNSUPPORTED_VERSION"));
  });

  for (const [label, grainSectors] of [
    ["0", 0n],
    ["not a power of two", 100n],
    ["2^40 sectors", 1n << 40n],
  ] as const) {
    it(`GIVEN grain size ${label} WHEN opened THEN VMDK_GRAIN_SIZE_INVALID`, QUICK, async () => {
      await assert.rejects(openBuffer(patched(sparse, (b) => b.writeBigUInt64LE(grainSectors, GRAIN_SIZE))), expectFormatError("VMDK_GRAIN_SIZE_INVALID"));
    });
  }

  for (const entries of [0, 0x80000000]) {
    it(`GIVEN numGTEsPerGT ${entries} WHEN opened THEN VMDK_GT_SIZE_INVALID`, QUICK, async () => {
      await assert.rejects(openBuffer(patched(sparse, (b) => b.writeUInt32LE(entries, NUM_GTES_PER_GT))), expectFormatError("VMDK_GT_SIZE_INVALID"));
    });
  }

  it("GIVEN a capacity near 2^63 sectors WHEN opened THEN the directory it implies is refused before allocation", QUICK, async () => {
    await assert.rejects(
      openBuffer(patched(sparse, (b) => b.writeBigUInt64LE((1n << 63n) - 1n, CAPACITY))),
      expectFormatError("VMDK_GD_TOO_LARGE"),
    );
  });

  it("GIVEN newline test bytes rewritten by a text-mode transfer WHEN opened THEN VMDK_NEWLINE_CORRUPT", QUICK, async () => {
    await assert.rejects(openBuffer(patched(sparse, (b) => b.set([0x0d, 0x0a], 73))), expectFormatError("VMDK_NEWLINE_CORRUPT"));
  });

  it("GIVEN a file cut inside the header WHEN opened THEN TRUNCATED", QUICK, async () => {
    await assert.rejects(openBuffer(sparse.subarray(0, 300)), expectFormatError("TRUNCATED"));
  });
});

describe("vmdk hostile input: grain directory and tables", () => {
  it("GIVEN both directories past end of file WHEN opened THEN VMDK_GD_OUT_OF_RANGE", QUICK, async () => {
    const bad = patched(sparse, (b) => {
      b.writeBigUInt64LE(0xfffffffn, GD_OFFSET);
      b.writeBigUInt64LE(0xffffff0n, RGD_OFFSET);
    });
    await assert.rejects(openBuffer(bad), expectFormatError("VMDK_GD_OUT_OF_RANGE"));
  });

  it("GIVEN a directory entry past end of file WHEN opened THEN VMDK_GT_OUT_OF_RANGE", QUICK, async () => {
    const bad = patchBothDirectories(sparse, (b, gd) => b.writeUInt32LE(0x7fffffff, gd));
    await assert.rejects(openBuffer(bad), expectFormatError("VMDK_GT_OUT_OF_RANGE"));
  });

  it("GIVEN two directory entries naming the same grain table (a loop) WHEN opened THEN VMDK_GT_OVERLAP", QUICK, async () => {
    const bad = patchBothDirectories(sparse, (b, gd) => b.writeUInt32LE(b.readUInt32LE(gd), gd + 4));
    await assert.rejects(openBuffer(bad), expectFormatError("VMDK_GT_OVERLAP"));
  });

  it("GIVEN a grain table overlapping the directory itself WHEN opened THEN VMDK_GT_OVERLAP", QUICK, async () => {
    const bad = patchBothDirectories(sparse, (b, gd) => b.writeUInt32LE(gd / 512, gd));
    await assert.rejects(openBuffer(bad), expectFormatError("VMDK_GT_OVERLAP"));
  });

  it("GIVEN a grain table entry past end of file WHEN read THEN VMDK_GRAIN_OUT_OF_RANGE", QUICK, async () => {
    const bad = patched(sparse, (b) => {
      const gt = b.readUInt32LE(gdSector(b) * 512) * 512;
      b.writeUInt32LE(0x7fffff00, gt);
    });
    await assert.rejects(openAndReadAll(bad), expectFormatError("VMDK_GRAIN_OUT_OF_RANGE"));
  });

  it("GIVEN a grain table entry pointing into the header and descriptor WHEN read THEN VMDK_GRAIN_OUT_OF_RANGE", QUICK, async () => {
    const bad = patched(sparse, (b) => {
      const gt = b.readUInt32LE(gdSector(b) * 512) * 512;
      b.writeUInt32LE(2, gt);
    });
    await assert.rejects(openAndReadAll(bad), expectFormatError("VMDK_GRAIN_OUT_OF_RANGE"));
  });
});

describe("vmdk hostile input: stream-optimized", () => {
  it("GIVEN a stream cut before its footer WHEN opened THEN VMDK_FOOTER_INVALID", QUICK, async () => {
    await assert.rejects(openBuffer(stream.subarray(0, stream.length - 1536)), expectFormatError("VMDK_FOOTER_INVALID"));
  });

  it("GIVEN a footer that disagrees with the header on capacity WHEN opened THEN VMDK_FOOTER_INVALID", QUICK, async () => {
    const bad = patched(stream, (b) => b.writeBigUInt64LE(1n << 40n, b.length - 1024 + CAPACITY));
    await assert.rejects(openBuffer(bad), expectFormatError("VMDK_FOOTER_INVALID"));
  });

  it("GIVEN an unknown compression algorithm WHEN opened THEN VMDK_COMPRESSION_UNSUPPORTED", QUICK, async () => {
    await assert.rejects(openBuffer(patched(stream, (b) => b.writeUInt16LE(7, COMPRESS_ALGORITHM))), expectFormatError("VMDK_COMPRESSION_UNSUPPORTED"));
  });

  it("GIVEN a grain that inflates to 64 MiB (a zip bomb) WHEN read THEN VMDK_GRAIN_INFLATE_OVERFLOW without inflating it all", QUICK, async () => {
    const bomb = deflateSync(Buffer.alloc(64 * MIB), { level: 9 });
    assert.ok(bomb.length < 64 * 1024, "the bomb fits in the first grain's record");
    const bad = patched(stream, (b) => {
      b.writeUInt32LE(bomb.length, STREAM_FIRST_GRAIN_BYTES + 8);
      bomb.copy(b, STREAM_FIRST_GRAIN_BYTES + 12);
    });
    const source = await openBuffer(bad);
    try {
      await assert.rejects(source.read(0, 4096), expectFormatError("VMDK_GRAIN_INFLATE_OVERFLOW"));
    } finally {
      await source.close();
    }
  });

  it("GIVEN a grain whose compressed bytes are garbage WHEN read THEN VMDK_GRAIN_CORRUPT", QUICK, async () => {
    const bad = patched(stream, (b) => b.fill(0x55, STREAM_FIRST_GRAIN_BYTES + 12, STREAM_FIRST_GRAIN_BYTES + 200));
    await assert.rejects(openAndReadAll(bad), expectFormatError("VMDK_GRAIN_CORRUPT"));
  });

  it("GIVEN a grain marker for another LBA WHEN read THEN VMDK_GRAIN_LBA_MISMATCH", QUICK, async () => {
    const bad = patched(stream, (b) => b.writeBigUInt64LE(12345n * 128n, STREAM_FIRST_GRAIN_BYTES));
    await assert.rejects(openAndReadAll(bad), expectFormatError("VMDK_GRAIN_LBA_MISMATCH"));
  });

  it("GIVEN a grain marker claiming 4 GiB of compressed data WHEN read THEN VMDK_GRAIN_MARKER_INVALID", QUICK, async () => {
    const bad = patched(stream, (b) => b.writeUInt32LE(0xffffffff, STREAM_FIRST_GRAIN_BYTES + 8));
    await assert.rejects(openAndReadAll(bad), expectFormatError("VMDK_GRAIN_MARKER_INVALID"));
  });
});

function descriptor(extentLines: string, extra = ""): Buffer {
  return Buffer.from(`# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n${extra}createType="monolithicFlat"\n\n# Extent description\n${extentLines}\n`);
}

describe("vmdk hostile input: text descriptors", () => {
  it("GIVEN a descriptor of over 1 MiB listing a million extents WHEN opened THEN VMDK_DESCRIPTOR_TOO_LARGE", QUICK, async () => {
    await assert.rejects(openBuffer(descriptor("RW 1 ZERO\n".repeat(1_000_000))), expectFormatError("VMDK_DESCRIPTOR_TOO_LARGE"));
  });

  it("GIVEN a descriptor under 1 MiB listing 10001 extents WHEN opened THEN VMDK_TOO_MANY_EXTENTS", QUICK, async () => {
    await assert.rejects(openBuffer(descriptor("RW 1 ZERO\n".repeat(10_001))), expectFormatError("VMDK_TOO_MANY_EXTENTS"));
  });

  for (const path of ["../../etc/passwd", "/etc/passwd", "sub/../../x-flat.vmdk", "C:\\Windows\\disk-flat.vmdk", "\\\\server\\share\\f.vmdk"]) {
    it(`GIVEN an extent path "${path}" escaping the descriptor's folder WHEN opened THEN VMDK_EXTENT_PATH and no file is opened`, QUICK, async () => {
      let opened = 0;
      const open = vmdkFormat.open(bufferSource("d.vmdk", descriptor(`RW 2048 FLAT "${path}" 0`)), {
        openRelative: async (name) => {
          opened++;
          return bufferSource(name, Buffer.alloc(MIB));
        },
      });
      await assert.rejects(open, expectFormatError("VMDK_EXTENT_PATH"));
      assert.equal(opened, 0);
    });
  }

  it("GIVEN a flat descriptor and no openRelative WHEN opened THEN VMDK_EXTENT_UNAVAILABLE", QUICK, async () => {
    await assert.rejects(vmdkFormat.open(bufferSource("d.vmdk", descriptor('RW 2048 FLAT "d-flat.vmdk" 0'))), expectFormatError("VMDK_EXTENT_UNAVAILABLE"));
  });

  it("GIVEN an extent file that cannot be opened WHEN opened THEN VMDK_EXTENT_UNAVAILABLE", QUICK, async () => {
    await assert.rejects(openBuffer(descriptor('RW 2048 FLAT "missing-flat.vmdk" 0')), expectFormatError("VMDK_EXTENT_UNAVAILABLE"));
  });

  it("GIVEN a flat extent file shorter than the descriptor says WHEN opened THEN VMDK_EXTENT_TRUNCATED", QUICK, async () => {
    await assert.rejects(
      openBuffer(descriptor('RW 2048 FLAT "d-flat.vmdk" 0'), { "d-flat.vmdk": Buffer.alloc(4096) }),
      expectFormatError("VMDK_EXTENT_TRUNCATED"),
    );
  });

  it("GIVEN extents adding up to more than 2^53 bytes WHEN opened THEN VMDK_CAPACITY_TOO_LARGE", QUICK, async () => {
    await assert.rejects(openBuffer(descriptor("RW 9007199254740991 ZERO\nRW 9007199254740991 ZERO")), expectFormatError("VMDK_CAPACITY_TOO_LARGE"));
  });

  it("GIVEN a malformed extent line WHEN opened THEN VMDK_DESCRIPTOR_INVALID", QUICK, async () => {
    await assert.rejects(openBuffer(descriptor('RW lots FLAT "d-flat.vmdk"')), expectFormatError("VMDK_DESCRIPTOR_INVALID"));
  });

  it("GIVEN a sparse extent whose header is smaller than its descriptor line WHEN opened THEN VMDK_EXTENT_SIZE_MISMATCH", QUICK, async () => {
    await assert.rejects(
      openBuffer(descriptor(`RW ${256 * 1024} SPARSE "s.vmdk"`), { "s.vmdk": sparse }),
      expectFormatError("VMDK_EXTENT_SIZE_MISMATCH"),
    );
  });

  it("GIVEN a differencing disk (parentCID set) WHEN opened without backing THEN NotCapableError VMDK_DIFFERENCING", QUICK, async () => {
    const text = Buffer.from(
      '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=87654321\ncreateType="monolithicSparse"\nparentFileNameHint="base.vmdk"\nRW 2048 SPARSE "delta.vmdk"\n',
    );
    await assert.rejects(openBuffer(text), (err: unknown) => {
      assert.ok(err instanceof NotCapableError);
      assert.equal(err.code, "VMDK_DIFFERENCING");
      return true;
    });
  });
});
