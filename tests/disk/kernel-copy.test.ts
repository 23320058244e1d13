// Kernel copies (copy_file_range, file-span.ts): where a source's bytes lie verbatim in a local
// file and the target is a file the kernel can copy into, convert() hands the sink FileSpans
// instead of buffers. The output must be what qemu-img reads from the source whichever path
// runs; these tests also check which path ran, that zero units still become holes, and that the
// kernel's refusals (another file system, kernel copies not turned on) fall back to reading.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, open, readFile, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { PortableError } from "../../sdk/errors.ts";
import { convert, type ConvertResult } from "../../sdk/disk/convert.ts";
import { FileSpan, kernelCopies, kernelCopy, kernelCopyAvailable } from "../../sdk/disk/file-span.ts";
import type { WriterOptions } from "../../sdk/disk/format.ts";
import { formatByName } from "../../sdk/disk/formats/index.ts";
import { createFileTarget } from "../../sdk/disk/io.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import type { DiskSink, DiskSource } from "../../sdk/disk/types.ts";
import { qemuImg, qemuIo, withTempDir } from "../harness/disk.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

type Range = [number, number];

/** A run of bytes in a test image: seeded random bytes, one repeated byte, or compressible text. */
interface Run {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly fill: { readonly seed: number } | { readonly byte: number } | { readonly text: string };
}

function runBytes(run: Run): Buffer {
  const out = Buffer.alloc(run.lengthBytes);
  const { fill } = run;
  if ("seed" in fill) {
    let seed = fill.seed;
    for (let i = 0; i < out.length; i++) out[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  } else if ("byte" in fill) out.fill(fill.byte);
  else out.fill(fill.text);
  return out;
}

/** Writes a sparse raw file of `sizeBytes`: holes everywhere but `runs`. Returns its bytes. */
async function sparseRaw(path: string, sizeBytes: number, runs: readonly Run[]): Promise<Buffer> {
  const image = Buffer.alloc(sizeBytes);
  const file = await open(path, "w");
  try {
    await file.truncate(sizeBytes);
    for (const run of runs) {
      const bytes = runBytes(run);
      bytes.copy(image, run.offsetBytes);
      await file.write(bytes, 0, bytes.length, run.offsetBytes);
    }
  } finally {
    await file.close();
  }
  return image;
}

function merge(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const [start, end] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const last = out.at(-1);
    if (last !== undefined && last[1] >= start) last[1] = Math.max(last[1], end);
    else out.push([start, end]);
  }
  return out;
}

interface QemuMapEntry {
  readonly start: number;
  readonly length: number;
  readonly data: boolean;
  readonly offset?: number;
}

async function qemuMap(path: string, format: string): Promise<QemuMapEntry[]> {
  return JSON.parse(await qemuImg("map", "--output=json", "-f", format, path)) as QemuMapEntry[];
}

/** qemu-img map's view of a raw file: [start, end) of every range that is not a hole, merged. */
async function rawDataRanges(path: string): Promise<Range[]> {
  return merge((await qemuMap(path, "raw")).filter((e) => e.data).map((e) => [e.start, e.start + e.length]));
}

/** Asserts qemu-img compare finds the images identical (it exits 1, and so throws, when they differ). */
async function assertIdentical(sourcePath: string, sourceFormat: string, outPath: string, outFormat: string): Promise<void> {
  assert.match(await qemuImg("compare", "-f", sourceFormat, "-F", outFormat, sourcePath, outPath), /Images are identical/);
}

interface Counts {
  copyCalls: number;
  copyBytes: number;
  writeCalls: number;
  writeBytes: number;
  /** Disk ranges [start, end) given to copy. */
  readonly copied: Range[];
  /** What copiesFrom answered, in order. */
  readonly copiesFromAnswers: boolean[];
}

/** Forwards every call to `inner`, counting copies and writes; offers copy/copiesFrom only where `inner` does. */
function countingSink(inner: DiskSink): { sink: DiskSink; counts: Counts } {
  const counts: Counts = { copyCalls: 0, copyBytes: 0, writeCalls: 0, writeBytes: 0, copied: [], copiesFromAnswers: [] };
  const innerCopy = inner.copy;
  const innerCopiesFrom = inner.copiesFrom;
  const sink: DiskSink = {
    format: inner.format,
    virtualSizeBytes: inner.virtualSizeBytes,
    blockSizeBytes: inner.blockSizeBytes,
    ...(inner.releasesData === undefined ? {} : { releasesData: inner.releasesData }),
    async write(offsetBytes: number, data: Buffer) {
      counts.writeCalls++;
      counts.writeBytes += data.length;
      await inner.write(offsetBytes, data);
    },
    ...(innerCopy === undefined
      ? {}
      : {
          async copy(offsetBytes: number, span: FileSpan) {
            assert.ok(span instanceof FileSpan);
            counts.copyCalls++;
            counts.copyBytes += span.length;
            counts.copied.push([offsetBytes, offsetBytes + span.length]);
            await innerCopy.call(inner, offsetBytes, span);
          },
        }),
    ...(innerCopiesFrom === undefined
      ? {}
      : {
          copiesFrom(fd: number) {
            const yes = innerCopiesFrom.call(inner, fd);
            counts.copiesFromAnswers.push(yes);
            return yes;
          },
        }),
    finish: () => inner.finish(),
    abort: () => inner.abort(),
  };
  return { sink, counts };
}

/** Converts `source` into a new file at `outPath` in `format`, through a counting sink. */
async function convertCounting(
  source: DiskSource,
  outPath: string,
  format: string,
  options: Omit<WriterOptions, "virtualSizeBytes"> = {},
): Promise<{ result: ConvertResult; counts: Counts }> {
  const target = await createFileTarget(outPath);
  const inner = await formatByName(format).createWriter(target, { ...options, virtualSizeBytes: source.virtualSizeBytes });
  const { sink, counts } = countingSink(inner);
  const result = await convert(source, sink);
  return { result, counts };
}

async function withDisk<T>(path: string, fn: (source: DiskSource) => Promise<T>): Promise<T> {
  const source = await openDisk(path);
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}

/**
 * Runs `fn` with kernel copies on (PORTABLE_COPY_RANGE=1), whatever the environment the
 * tests were started in, and restores it after.
 */
async function withKernelCopies<T>(fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PORTABLE_COPY_RANGE;
  process.env.PORTABLE_COPY_RANGE = "1";
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.PORTABLE_COPY_RANGE;
    else process.env.PORTABLE_COPY_RANGE = saved;
  }
}

/** A temp dir for `fn`, which runs with kernel copies on. */
function withCopiesInTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  return withKernelCopies(() => withTempDir(fn));
}

const rangeBytes = (ranges: readonly Range[]): number => ranges.reduce((n, [s, e]) => n + e - s, 0);

/** 6 MiB: random runs (one across a 1 MiB chunk boundary, one ending the disk) between holes. */
const RAW_SIZE_BYTES = 6 * MiB;
const RAW_RUNS: readonly Run[] = [
  { offsetBytes: 256 * KiB, lengthBytes: 512 * KiB, fill: { seed: 1 } },
  { offsetBytes: 1 * MiB + 896 * KiB, lengthBytes: 1 * MiB + 192 * KiB, fill: { seed: 2 } },
  { offsetBytes: 4 * MiB, lengthBytes: 64 * KiB, fill: { byte: 0xa5 } },
  { offsetBytes: 6 * MiB - 128 * KiB, lengthBytes: 128 * KiB, fill: { seed: 3 } },
];
const RAW_DATA: readonly Range[] = RAW_RUNS.map((r) => [r.offsetBytes, r.offsetBytes + r.lengthBytes]);

describe("kernel copies (copy_file_range) in convert", () => {
  it("GIVEN a qcow2 made by qemu-img with data runs, an explicit zero cluster and holes WHEN converted to raw beside it THEN the kernel copies the data, the zero cluster becomes a hole and qemu-img finds them identical", async () => {
    await withCopiesInTempDir(async (dir) => {
      assert.ok(kernelCopyAvailable(), "koffi loads and copy_file_range is callable on Linux");
      const raw = join(dir, "in.raw");
      const qcow2 = join(dir, "in.qcow2");
      const out = join(dir, "out.raw");
      // 8 MiB: a data run holding a 64 KiB unit of zeros at 1.5 MiB, a run across the 5 MiB
      // chunk boundary, a unit whose first half is zeros (more than the zero probe reads), and
      // a run ending the disk; holes between them.
      const zeroUnit: Range = [1 * MiB + 512 * KiB, 1 * MiB + 576 * KiB];
      const runs: Run[] = [
        { offsetBytes: 1 * MiB, lengthBytes: 512 * KiB, fill: { seed: 11 } },
        { offsetBytes: zeroUnit[1], lengthBytes: 960 * KiB, fill: { seed: 12 } },
        { offsetBytes: 4 * MiB + 64 * KiB, lengthBytes: 1 * MiB + 128 * KiB, fill: { seed: 13 } },
        { offsetBytes: 6 * MiB + 32 * KiB, lengthBytes: 32 * KiB, fill: { seed: 14 } },
        { offsetBytes: 8 * MiB - 128 * KiB, lengthBytes: 128 * KiB, fill: { byte: 0x3c } },
      ];
      // The 64 KiB units (qcow2 clusters) that hold data.
      const data = merge(runs.map((r) => [r.offsetBytes - (r.offsetBytes % (64 * KiB)), r.offsetBytes + r.lengthBytes]));
      await sparseRaw(raw, 8 * MiB, runs);
      await qemuImg("convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
      // qemu-img left the zeros unallocated; a plain write of zeros allocates the cluster.
      await qemuIo("qcow2", qcow2, [`write -P 0 ${zeroUnit[0]} ${zeroUnit[1] - zeroUnit[0]}`]);
      const qcowAllocated = merge((await qemuMap(qcow2, "qcow2")).filter((e) => e.data).map((e) => [e.start, e.start + e.length]));
      assert.deepEqual(qcowAllocated, merge([...data, zeroUnit]), "the zero cluster is allocated data in the qcow2");

      const { result, counts } = await withDisk(qcow2, async (source) => {
        assert.equal(source.format, "qcow2");
        return convertCounting(source, out, "raw");
      });

      await assertIdentical(qcow2, "qcow2", out, "raw");
      await assertIdentical(raw, "raw", out, "raw");
      assert.ok(counts.copyCalls > 0, "the sink was given spans to copy");
      assert.ok(counts.copiesFromAnswers.length > 0 && counts.copiesFromAnswers.every((yes) => yes), "the kernel copies from the qcow2 into the raw file");
      assert.deepEqual(merge(counts.copied), data, "the copies cover exactly the data, not the zero cluster");
      assert.equal(counts.copyBytes, rangeBytes(data), "each data byte is copied once");
      assert.equal(counts.writeBytes, 0, "nothing went through buffers");
      assert.equal(result.zeroBytesDetected, zeroUnit[1] - zeroUnit[0], "the zero cluster was detected");
      assert.equal(result.dataBytesWritten, rangeBytes(data));
      assert.deepEqual(await rawDataRanges(out), data, "the output's allocated ranges are the data runs; the zero cluster is a hole");
    });
  });

  for (const [label, format, options, qemuFormat] of [
    ["vhd fixed", "vhd", { subformat: "fixed" }, "vpc"],
    ["vhd dynamic", "vhd", { subformat: "dynamic" }, "vpc"],
    ["vhdx dynamic", "vhdx", { subformat: "dynamic" }, "vhdx"],
    ["vhdx fixed", "vhdx", { subformat: "fixed" }, "vhdx"],
    ["qcow2 (64 KiB clusters)", "qcow2", {}, "qcow2"],
    ["qcow2 (4 KiB clusters, many L2 tables)", "qcow2", { clusterSize: 4096 }, "qcow2"],
  ] as const) {
    it(`GIVEN a sparse raw source WHEN converted to ${label} THEN the kernel copies the data and qemu-img finds them identical`, async () => {
      await withCopiesInTempDir(async (dir) => {
        const raw = join(dir, "in.raw");
        const out = join(dir, `out.${format}`);
        await sparseRaw(raw, RAW_SIZE_BYTES, RAW_RUNS);
        const { result, counts } = await withDisk(raw, (source) => convertCounting(source, out, format, options));
        await assertIdentical(raw, "raw", out, qemuFormat);
        assert.ok(counts.copyCalls > 0, "copy was called");
        assert.deepEqual(merge(counts.copied), merge(RAW_DATA), "the copies cover exactly the data runs");
        assert.equal(counts.copyBytes, rangeBytes(RAW_DATA));
        assert.equal(counts.writeBytes, 0, "nothing went through buffers");
        assert.equal(result.dataBytesWritten, rangeBytes(RAW_DATA));
      });
    });
  }

  it("GIVEN kernel copies not turned on (no PORTABLE_COPY_RANGE=1, the default) WHEN a raw file is converted to raw THEN no copy is made and the output is still identical", async () => {
    const saved = process.env.PORTABLE_COPY_RANGE;
    delete process.env.PORTABLE_COPY_RANGE;
    try {
      assert.equal(kernelCopyAvailable(), false);
      await withTempDir(async (dir) => {
        const raw = join(dir, "in.raw");
        const out = join(dir, "out.raw");
        await sparseRaw(raw, RAW_SIZE_BYTES, RAW_RUNS);
        const probe = await open(raw, "r");
        const probeOut = await open(join(dir, "probe.out"), "w");
        try {
          assert.equal(kernelCopies(probe.fd, probeOut.fd), false, "kernelCopies answers no while turned off");
          assert.equal(await kernelCopy(new FileSpan([{ fd: probe.fd, fileOffsetBytes: 256 * KiB, lengthBytes: 4096 }]), probeOut.fd, 0), false);
          assert.equal((await probeOut.stat()).size, 0, "a refused kernelCopy writes nothing");
        } finally {
          await probe.close();
          await probeOut.close();
        }
        const { result, counts } = await withDisk(raw, (source) => convertCounting(source, out, "raw"));
        assert.equal(counts.copyCalls, 0, "no copy call");
        assert.equal(counts.writeBytes, rangeBytes(RAW_DATA), "the data was read and written");
        assert.equal(result.dataBytesWritten, rangeBytes(RAW_DATA));
        await assertIdentical(raw, "raw", out, "raw");
        assert.deepEqual(await rawDataRanges(out), merge(RAW_DATA));
      });
    } finally {
      if (saved !== undefined) process.env.PORTABLE_COPY_RANGE = saved;
    }
    assert.equal(kernelCopyAvailable(), saved === "1", "restored");
  });

  it("GIVEN a source on tmpfs and a target on another file system THEN the kernel refuses, convert reads and writes, and a direct copy falls back to read and write", async (t) => {
    if (!existsSync("/dev/shm")) return t.skip("no /dev/shm");
    const shm = await mkdtemp(join("/dev/shm", "pw-kernel-copy-"));
    try {
      await withCopiesInTempDir(async (dir) => {
        if (statSync(shm).dev === statSync(dir).dev) return t.skip(`/dev/shm and ${dir} are one file system`);
        const raw = join(shm, "in.raw");
        const image = await sparseRaw(raw, RAW_SIZE_BYTES, RAW_RUNS);
        const src = await open(raw, "r");
        try {
          // The kernel's answer, then the file target's, for this pair of files.
          const probe = await open(join(dir, "probe.out"), "w");
          try {
            assert.equal(kernelCopies(src.fd, probe.fd), false, "copy_file_range refuses between these file systems");
          } finally {
            await probe.close();
          }

          // A direct copy through the file target: the kernel refuses, read and write stand in.
          const direct = join(dir, "direct.bin");
          const target = await createFileTarget(direct);
          assert.ok(target.copy !== undefined && target.copiesFrom !== undefined, "a file target offers copy");
          assert.equal(target.copiesFrom(src.fd), false, "the target knows the kernel will not copy");
          const runs = [
            { fd: src.fd, fileOffsetBytes: 1 * MiB + 900 * KiB, lengthBytes: 1 * MiB + 100 * KiB }, // more than one 1 MiB buffer
            { fd: src.fd, fileOffsetBytes: 300 * KiB, lengthBytes: 5000 },
          ];
          const at = 12345;
          await target.copy(at, new FileSpan(runs));
          await target.close();
          const expected = Buffer.concat(runs.map((r) => image.subarray(r.fileOffsetBytes, r.fileOffsetBytes + r.lengthBytes)));
          const written = await readFile(direct);
          assert.equal(written.length, at + expected.length);
          assert.ok(written.subarray(at).equals(expected), "the fallback wrote the span's bytes in order");
          assert.ok(written.subarray(0, at).equals(Buffer.alloc(at)), "and nothing before them");
        } finally {
          await src.close();
        }

        const out = join(dir, "out.raw");
        const { result, counts } = await withDisk(raw, (source) => convertCounting(source, out, "raw"));
        assert.ok(counts.copiesFromAnswers.length > 0, "convert asked the sink");
        assert.ok(counts.copiesFromAnswers.every((yes) => !yes), "and the sink said no");
        assert.equal(counts.copyCalls, 0, "convert took the read path");
        assert.equal(counts.writeBytes, rangeBytes(RAW_DATA));
        assert.equal(result.dataBytesWritten, rangeBytes(RAW_DATA));
        await assertIdentical(raw, "raw", out, "raw");
      });
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  describe("FileSpan", () => {
    const a = { fd: 3, fileOffsetBytes: 1000, lengthBytes: 100 };
    const b = { fd: 3, fileOffsetBytes: 5000, lengthBytes: 50 };
    const c = { fd: 4, fileOffsetBytes: 0, lengthBytes: 30 };
    const span = new FileSpan([a, b, c]);

    it("GIVEN runs WHEN a span is made THEN its length is the sum of theirs", () => {
      assert.equal(span.length, 180);
      assert.equal(new FileSpan([]).length, 0);
    });

    it("GIVEN a span of three runs WHEN cut across run boundaries THEN the pieces map to the right file offsets", () => {
      assert.deepEqual(span.subarray(90, 160).runs, [
        { fd: 3, fileOffsetBytes: 1090, lengthBytes: 10 },
        { fd: 3, fileOffsetBytes: 5000, lengthBytes: 50 },
        { fd: 4, fileOffsetBytes: 0, lengthBytes: 10 },
      ]);
      assert.equal(span.subarray(90, 160).length, 70);
      assert.deepEqual(span.subarray(100, 150).runs, [b], "exactly one run");
      assert.deepEqual(span.subarray(120, 125).runs, [{ fd: 3, fileOffsetBytes: 5020, lengthBytes: 5 }], "inside one run");
      assert.deepEqual(span.subarray(150).runs, [c], "to the end by default");
      assert.deepEqual(span.subarray().runs, [a, b, c]);
      assert.equal(span.subarray(70, 70).length, 0, "empty");
      assert.deepEqual(span.subarray(70, 70).runs, []);
      // Cut into pieces and back, the bytes are the same.
      for (const cut of [0, 1, 99, 100, 101, 149, 150, 151, 179, 180]) {
        const joined = span.subarray(0, cut).concat(span.subarray(cut));
        assert.equal(joined.length, span.length, `cut at ${cut}`);
        assert.deepEqual(joined.runs, span.runs, `cut at ${cut} joins back`);
      }
    });

    it("GIVEN spans WHEN concatenated THEN runs that follow on in one file join and others stay separate", () => {
      const follows = new FileSpan([{ fd: 3, fileOffsetBytes: 1100, lengthBytes: 20 }]);
      assert.deepEqual(new FileSpan([a]).concat(follows).runs, [{ fd: 3, fileOffsetBytes: 1000, lengthBytes: 120 }]);
      const otherFile = new FileSpan([{ fd: 4, fileOffsetBytes: 1100, lengthBytes: 20 }]);
      assert.deepEqual(new FileSpan([a]).concat(otherFile).runs, [a, otherFile.runs[0]], "same offsets, another fd");
      const gap = new FileSpan([{ fd: 3, fileOffsetBytes: 1101, lengthBytes: 20 }]);
      assert.deepEqual(new FileSpan([a]).concat(gap).runs, [a, gap.runs[0]], "a gap in the file");
      const before = new FileSpan([{ fd: 3, fileOffsetBytes: 900, lengthBytes: 100 }]);
      assert.deepEqual(new FileSpan([a]).concat(before).runs, [a, before.runs[0]], "ends where the first begins, but comes after it");
      const joined = span.concat(new FileSpan([{ fd: 4, fileOffsetBytes: 30, lengthBytes: 70 }, { fd: 3, fileOffsetBytes: 1100, lengthBytes: 1 }]));
      assert.deepEqual(joined.runs, [a, b, { fd: 4, fileOffsetBytes: 0, lengthBytes: 100 }, { fd: 3, fileOffsetBytes: 1100, lengthBytes: 1 }]);
      assert.equal(joined.length, span.length + 71);
      assert.equal(span.runs.length, 3, "concat leaves its operands alone");
      assert.equal(span.concat(new FileSpan([])).length, span.length);
    });
  });

  it("GIVEN a qcow2 with compressed clusters WHEN asked for spans and converted to raw THEN compressed ranges have none, the uncompressed clusters are copied and the output is identical", async () => {
    await withCopiesInTempDir(async (dir) => {
      const raw = join(dir, "in.raw");
      const qcow2 = join(dir, "c.qcow2");
      const out = join(dir, "out.raw");
      // 4 MiB: 2 MiB of text that deflate shrinks (distinct per cluster), compressed by qemu-img;
      // then 128 KiB written uncompressed by qemu-io at 3 MiB.
      const runs: Run[] = [];
      for (let cluster = 0; cluster < 32; cluster++) {
        runs.push({ offsetBytes: cluster * 64 * KiB, lengthBytes: 64 * KiB, fill: { text: `cluster ${cluster} of the compressed part. ` } });
      }
      await sparseRaw(raw, 4 * MiB, runs);
      await qemuImg("convert", "-c", "-f", "raw", "-O", "qcow2", raw, qcow2);
      const plain: Range = [3 * MiB, 3 * MiB + 128 * KiB];
      await qemuIo("qcow2", qcow2, [`write -P 0x5a ${plain[0]} ${plain[1] - plain[0]}`]);
      await sparseRaw(raw, 4 * MiB, [...runs, { offsetBytes: plain[0], lengthBytes: plain[1] - plain[0], fill: { byte: 0x5a } }]);
      // qemu-img map gives no host offset for compressed clusters.
      const map = await qemuMap(qcow2, "qcow2");
      assert.ok(map.some((e) => e.data && e.start === 0 && e.length === 2 * MiB && e.offset === undefined), "the first 2 MiB are compressed");
      assert.ok(map.some((e) => e.data && e.start === plain[0] && e.offset !== undefined), "the qemu-io write is not");

      const { result, counts } = await withDisk(qcow2, async (source) => {
        assert.ok(source.fileSpan !== undefined, "a qcow2 over a local file offers spans");
        assert.equal(await source.fileSpan(0, 64 * KiB), undefined, "one compressed cluster");
        assert.equal(await source.fileSpan(100, 1 * MiB), undefined, "a compressed range");
        assert.equal(await source.fileSpan(2 * MiB - 64 * KiB, 128 * KiB), undefined, "compressed, then unallocated");
        assert.equal(await source.fileSpan(plain[0] - 512, 1024), undefined, "unallocated, then data");
        const span = await source.fileSpan(plain[0], plain[1] - plain[0]);
        assert.ok(span !== undefined, "the uncompressed clusters have a span");
        assert.equal(span.length, plain[1] - plain[0]);
        return convertCounting(source, out, "raw");
      });

      await assertIdentical(qcow2, "qcow2", out, "raw");
      await assertIdentical(raw, "raw", out, "raw");
      assert.deepEqual(merge(counts.copied), [plain], "only the uncompressed clusters were copied");
      assert.equal(counts.writeBytes, 2 * MiB, "the compressed clusters were read, inflated and written");
      assert.equal(result.dataBytesWritten, 2 * MiB + (plain[1] - plain[0]));
    });
  });

  for (const [label, shorterBytes] of [
    ["inside the span", 1 * MiB + 512 * KiB],
    ["before the span", 512 * KiB],
  ] as const) {
    it(`GIVEN a raw source truncated ${label} after its span was taken WHEN the kernel copies it THEN it rejects with TRUNCATED`, async () => {
      await withCopiesInTempDir(async (dir) => {
        const raw = join(dir, "in.raw");
        await sparseRaw(raw, 4 * MiB, [{ offsetBytes: 0, lengthBytes: 4 * MiB, fill: { seed: 21 } }]);
        const out = await open(join(dir, "out.raw"), "w");
        try {
          await withDisk(raw, async (source) => {
            const span = await source.fileSpan?.(1 * MiB, 1 * MiB);
            assert.ok(span !== undefined);
            assert.ok(kernelCopies(span.runs[0]!.fd, out.fd), "the kernel copies between these files");
            await truncate(raw, shorterBytes);
            await assert.rejects(kernelCopy(span, out.fd, 0), (err) => err instanceof PortableError && err.code === "TRUNCATED");
          });
        } finally {
          await out.close();
        }
      });
    });
  }

  it("GIVEN a source file that shrank after its extents were listed WHEN converted through kernel copies THEN convert rejects with TRUNCATED instead of writing zeros", async () => {
    await withCopiesInTempDir(async (dir) => {
      const raw = join(dir, "in.raw");
      await sparseRaw(raw, 4 * MiB, [{ offsetBytes: 0, lengthBytes: 4 * MiB, fill: { seed: 22 } }]);
      await withDisk(raw, async (disk) => {
        // The disk as listed before the file shrank: all data, spans over the whole 4 MiB.
        const listed: DiskSource = {
          format: disk.format,
          virtualSizeBytes: disk.virtualSizeBytes,
          async *extents() {
            yield { offsetBytes: 0, lengthBytes: 4 * MiB, kind: "data" as const };
          },
          read: (offsetBytes, lengthBytes, into) => disk.read(offsetBytes, lengthBytes, into),
          fileSpan: (offsetBytes, lengthBytes) => disk.fileSpan!(offsetBytes, lengthBytes),
          close: async () => {},
        };
        await truncate(raw, 1 * MiB);
        await assert.rejects(
          convertCounting(listed, join(dir, "out.raw"), "raw"),
          (err) => err instanceof PortableError && err.code === "TRUNCATED",
        );
      });
    });
  });
});
