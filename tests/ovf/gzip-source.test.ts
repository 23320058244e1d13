import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { FormatError } from "../../sdk/errors.ts";
import { bufferSource } from "../../sdk/disk/io.ts";
import { GZIP_BLOCK_BYTES, GZIP_CACHE_BYTES, GzipSource } from "../../sdk/ovf/gzip-source.ts";

const MiB = 2 ** 20;

/** 12.5 MiB: random (incompressible) and repeated (compressible) parts, ending mid-block. */
function plain(): Buffer {
  return Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(4 * MiB, 0x61), randomBytes(5 * MiB + MiB / 2)]);
}

describe("GzipSource", () => {
  it("GIVEN a gzip stream WHEN opened THEN its size is the decompressed length and random reads match the plain bytes", async () => {
    const data = plain();
    const source = await GzipSource.open(bufferSource("x.gz", gzipSync(data)));
    try {
      assert.equal(source.sizeBytes, data.length);
      for (const [offset, length] of [
        [0, 512],
        [data.length - 700, 700],
        [GZIP_BLOCK_BYTES - 10, 20],
        [3 * MiB + 5, 2 * MiB],
        [data.length - 10, 100],
      ] as const) {
        assert.ok((await source.read(offset, length)).equals(data.subarray(offset, offset + length)), `read ${offset}+${length}`);
      }
    } finally {
      await source.close();
    }
  });

  it("GIVEN reads in increasing order after open WHEN the whole stream is read THEN it is decoded at most twice more", async () => {
    const data = plain();
    const source = await GzipSource.open(bufferSource("x.gz", gzipSync(data)));
    try {
      const restartsAfterOpen = source.restarts;
      for (let at = 0; at < data.length; at += 256 * 1024) {
        const length = Math.min(256 * 1024, data.length - at);
        assert.ok((await source.read(at, length)).equals(data.subarray(at, at + length)));
      }
      assert.ok(source.restarts - restartsAfterOpen <= 1, `restarts: ${source.restarts - restartsAfterOpen}`);
      assert.ok(GZIP_CACHE_BYTES >= 32 * MiB, "the cache holds one stream-optimized grain table's span");
    } finally {
      await source.close();
    }
  });

  it("GIVEN concurrent reads WHEN issued together THEN each gets its own bytes", async () => {
    const data = plain();
    const source = await GzipSource.open(bufferSource("x.gz", gzipSync(data)));
    try {
      const offsets = [9 * MiB, 0, 5 * MiB, 11 * MiB];
      const results = await Promise.all(offsets.map((o) => source.read(o, 4096)));
      results.forEach((r, i) => assert.ok(r.equals(data.subarray(offsets[i]!, offsets[i]! + 4096)), `offset ${offsets[i]}`));
    } finally {
      await source.close();
    }
  });

  it("GIVEN bytes that are not gzip, or a gzip stream cut short WHEN opened THEN OVA_GZIP_CORRUPT", async () => {
    for (const bad of [Buffer.from("not gzip at all, just text"), gzipSync(plain()).subarray(0, 100_000)]) {
      await assert.rejects(GzipSource.open(bufferSource("bad.gz", bad)), (err: unknown) => {
        assert.ok(err instanceof FormatError);
        assert.equal(err.code, "OVA_GZIP_CORRUPT");
        return true;
      });
    }
  });
});
