import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { isPortableError } from "../../sdk/errors.ts";
import { convert, CONVERT_CHUNK_BYTES } from "../../sdk/disk/convert.ts";
import { rawFormat } from "../../sdk/disk/formats/raw/index.ts";
import { bufferSource, createFileTarget, openFileSource, streamTarget } from "../../sdk/disk/io.ts";
import type { DiskSink, DiskSource, Extent } from "../../sdk/disk/types.ts";
import { withTempDir } from "../harness/disk.ts";

const MiB = 1024 * 1024;

/** A source over a buffer with an explicit extent map, counting the bytes it is asked to read. */
function mappedSource(data: Buffer, extents: Extent[]): DiskSource & { readBytes: number } {
  const source = {
    format: "test",
    virtualSizeBytes: data.length,
    readBytes: 0,
    async *extents() {
      yield* extents;
    },
    async read(offsetBytes: number, lengthBytes: number) {
      source.readBytes += lengthBytes;
      return Buffer.from(data.subarray(offsetBytes, offsetBytes + lengthBytes));
    },
    close: async () => {},
  };
  return source;
}

interface Recorded {
  readonly writes: Array<[number, number]>;
  readonly image: Buffer;
  aborted: boolean;
  finished: boolean;
}

/** A sink that checks the DiskSink contract on every call and records what it got. */
function contractSink(virtualSizeBytes: number, blockSizeBytes: number): DiskSink & { recorded: Recorded } {
  const recorded: Recorded = { writes: [], image: Buffer.alloc(virtualSizeBytes), aborted: false, finished: false };
  let endBytes = 0;
  return {
    recorded,
    format: "test",
    virtualSizeBytes,
    blockSizeBytes,
    async write(offsetBytes, data) {
      assert.ok(offsetBytes >= endBytes, `write at ${offsetBytes} after ${endBytes}: out of order or overlapping`);
      assert.equal(offsetBytes % 512, 0, "offset is a multiple of 512");
      const end = offsetBytes + data.length;
      assert.ok(end % 512 === 0 || end === virtualSizeBytes, "length is a multiple of 512 except at the end");
      const firstBlock = Math.floor(offsetBytes / blockSizeBytes);
      const lastBlock = Math.floor((end - 1) / blockSizeBytes);
      if (firstBlock !== lastBlock) {
        assert.equal(offsetBytes % blockSizeBytes, 0, "a multi-block write starts on a block");
        assert.ok(end % blockSizeBytes === 0 || end === virtualSizeBytes, "and covers whole blocks");
      }
      data.copy(recorded.image, offsetBytes);
      recorded.writes.push([offsetBytes, data.length]);
      endBytes = end;
    },
    async finish() {
      recorded.finished = true;
      return { location: "memory", dataBytesWritten: recorded.writes.reduce((n, [, l]) => n + l, 0) };
    },
    async abort() {
      recorded.aborted = true;
    },
  };
}

/** 8 MiB: random data, a zero hole inside a data extent, text, and a 1 KiB tail in the last sector. */
function mixedImage(): { data: Buffer; extents: Extent[] } {
  const data = Buffer.alloc(8 * MiB);
  let seed = 7;
  for (let i = 0; i < 2 * MiB; i++) data[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  data.fill("portable-workload ", 3 * MiB, 3 * MiB + 300 * 1024);
  data.fill(0xee, 8 * MiB - 512);
  return {
    data,
    extents: [
      { offsetBytes: 0, lengthBytes: 4 * MiB, kind: "data" }, // 2..3 MiB inside it is zeros
      { offsetBytes: 4 * MiB, lengthBytes: 3 * MiB, kind: "zero" },
      { offsetBytes: 7 * MiB, lengthBytes: MiB, kind: "data" },
    ],
  };
}

describe("convert", () => {
  for (const blockSizeBytes of [512, 64 * 1024, 2 * MiB]) {
    it(`GIVEN a mixed source WHEN converted into a sink with ${blockSizeBytes}-byte blocks THEN the contract holds and bytes match`, async () => {
      const { data, extents } = mixedImage();
      const source = mappedSource(data, extents);
      const sink = contractSink(data.length, blockSizeBytes);
      const result = await convert(source, sink, { concurrency: 3 });
      assert.ok(sink.recorded.finished);
      assert.ok(sink.recorded.image.equals(data), "the sink holds the source's bytes");
      assert.equal(source.readBytes, 5 * MiB, "zero extents are never read");
      const written = sink.recorded.writes.reduce((n, [, l]) => n + l, 0);
      // Random data, the text rounded up to 64 KiB zero-detection units, and the unit holding the tail.
      assert.ok(written <= 2 * MiB + 320 * 1024 + 64 * 1024, `only data is written (${written} bytes)`);
      assert.equal(result.bytesRead, 5 * MiB);
    });
  }

  it("GIVEN a source that fills the buffers it is given and a sink that releases them THEN buffers are recycled and bytes match", async () => {
    const { data, extents } = mixedImage();
    const source = mappedSource(data, extents);
    const seen = new Set<ArrayBufferLike>();
    source.read = async (offsetBytes, lengthBytes, into) => {
      assert.ok(into !== undefined && into.length >= lengthBytes, "convert offers a buffer");
      seen.add(into.buffer);
      data.copy(into, 0, offsetBytes, offsetBytes + lengthBytes);
      return into.subarray(0, lengthBytes);
    };
    const sink = { ...contractSink(data.length, 64 * 1024), releasesData: true };
    await convert(source, sink, { concurrency: 2 });
    assert.ok(sink.recorded.image.equals(data), "recycling never overwrote data the sink still needed");
    assert.ok(seen.size <= 3, `at most concurrency + 1 buffers for 5 chunks, saw ${seen.size}`);
  });

  it("GIVEN a sink that keeps the buffers it was given until finish THEN convert never recycles them", async () => {
    const { data, extents } = mixedImage();
    const source = mappedSource(data, extents);
    source.read = async (offsetBytes, lengthBytes, into) => {
      data.copy(into!, 0, offsetBytes, offsetBytes + lengthBytes);
      return into!.subarray(0, lengthBytes);
    };
    const kept: Array<[number, Buffer]> = [];
    const sink = contractSink(data.length, 64 * 1024);
    const write = sink.write.bind(sink);
    sink.write = async (offsetBytes, piece) => {
      kept.push([offsetBytes, piece]);
      await write(offsetBytes, piece);
    };
    await convert(source, sink, { concurrency: 2 });
    for (const [offsetBytes, piece] of kept) {
      assert.ok(piece.equals(data.subarray(offsetBytes, offsetBytes + piece.length)), `piece at ${offsetBytes} still intact at finish`);
    }
  });

  it("GIVEN progress reporting THEN it rises monotonically to the virtual size", async () => {
    const { data, extents } = mixedImage();
    const seen: number[] = [];
    await convert(mappedSource(data, extents), contractSink(data.length, 64 * 1024), {
      progress: (p) => seen.push(p.doneBytes),
    });
    assert.deepEqual([...seen].sort((a, b) => a - b), seen);
    assert.equal(seen.at(-1), data.length);
  });

  it("GIVEN a read that fails THEN convert rejects with it and aborts the sink", async () => {
    const { data, extents } = mixedImage();
    const source = mappedSource(data, extents);
    source.read = async (offsetBytes) => {
      if (offsetBytes >= CONVERT_CHUNK_BYTES) throw new Error("disk on fire");
      return Buffer.alloc(CONVERT_CHUNK_BYTES);
    };
    const sink = contractSink(data.length, 64 * 1024);
    await assert.rejects(convert(source, sink), /disk on fire/);
    assert.equal(sink.recorded.aborted, true);
    assert.equal(sink.recorded.finished, false);
  });

  it("GIVEN a sink smaller than the source THEN it refuses before writing", async () => {
    const { data, extents } = mixedImage();
    const sink = contractSink(data.length - 512, 64 * 1024);
    await assert.rejects(convert(mappedSource(data, extents), sink), (err) => isPortableError(err) && err.code === "SINK_TOO_SMALL");
    assert.equal(sink.recorded.writes.length, 0);
  });

  it("GIVEN a raw file WHEN converted to raw THEN bytes match and zeros became holes", async () => {
    await withTempDir(async (dir) => {
      const { data } = mixedImage();
      const big = Buffer.alloc(64 * MiB);
      data.copy(big, 0);
      data.copy(big, 64 * MiB - data.length);
      await writeFile(join(dir, "in.raw"), big);
      const source = await rawFormat.open(await openFileSource(join(dir, "in.raw")));
      const sink = await rawFormat.createWriter(await createFileTarget(join(dir, "out.raw")), {
        virtualSizeBytes: source.virtualSizeBytes,
      });
      await convert(source, sink);
      await source.close();
      const out = await readFile(join(dir, "out.raw"));
      assert.ok(out.equals(big));
      const { blocks } = await stat(join(dir, "out.raw"));
      assert.ok(blocks * 512 < 16 * MiB, `sparse output: ${blocks * 512} bytes allocated for 64 MiB`);
    });
  });

  it("GIVEN a sequential target WHEN converted to raw THEN zero gaps are streamed and bytes match", async () => {
    await withTempDir(async (dir) => {
      const { data, extents } = mixedImage();
      const path = join(dir, "piped.raw");
      const sink = await rawFormat.createWriter(streamTarget(path, createWriteStream(path)), {
        virtualSizeBytes: data.length,
      });
      await convert(mappedSource(data, extents), sink);
      const out = await readFile(path);
      assert.equal(createHash("sha256").update(out).digest("hex"), createHash("sha256").update(data).digest("hex"));
    });
  });

  it("GIVEN a raw writer WHEN given an unknown option THEN it reports it", async () => {
    await assert.rejects(
      rawFormat.createWriter(streamTarget("x", createWriteStream("/dev/null")), { virtualSizeBytes: 1024, clusterSize: "4" }),
      (err) => isPortableError(err) && err.code === "INVALID_WRITER_OPTIONS" && /clusterSize/.test(err.message),
    );
  });

  it("GIVEN a buffer source THEN reads past the end come back short", async () => {
    const source = bufferSource("mem", Buffer.from("abc"));
    assert.equal((await source.read(1, 10)).toString(), "bc");
  });
});
