// convert(): the pipe from any DiskSource to any DiskSink.
//
// - Zero extents are never read; data extents are read in chunks and checked for zeros, so
//   sources without allocation information (raw, clouds) still produce sparse output.
// - Where a chunk's bytes lie verbatim in a local file and the sink stores data verbatim in a
//   file the kernel can copy into, the kernel copies them (file-span.ts): each 64 KiB unit is
//   probed for zeros by its first bytes, and read whole only when those are zeros.
// - Reads run ahead `concurrency` chunks; writes go to the sink strictly in order, which is
//   what sequential sinks (streamOptimized VMDK, OVA entries, pipes) need.
// - Memory is bounded by `(concurrency + FILE_TARGET_WRITES_IN_FLIGHT) × CONVERT_CHUNK_BYTES`,
//   whatever the virtual size.
import { InvalidArgsError } from "../errors.ts";
import { readSync } from "node:fs";
import { held, idle, lease } from "./buffer-lease.ts";
import { FileSpan, kernelCopyAvailable, type Payload } from "./file-span.ts";
import { FILE_TARGET_WRITES_IN_FLIGHT } from "./io.ts";
import type { DiskSink, DiskSource, Extent, SinkResult } from "./types.ts";

/**
 * Read unit. Each write is a round trip to a thread-pool thread, and with one write in flight
 * the file waits for it: 4 MiB pieces cut those waits to a quarter of 1 MiB's, which was 4–8 %
 * of a qcow2 → raw run (docs/decisions/0012-engine-throughput.md), for 16 MiB more memory.
 */
export const CONVERT_CHUNK_BYTES = 4 * 1024 * 1024;
/** Zero-detection unit: small enough to find holes between files, large enough to be cheap. */
export const ZERO_DETECT_BYTES = 64 * 1024;
/** Reads in flight. Four overlap I/O latency on files and HTTP without much memory. */
export const DEFAULT_CONVERT_CONCURRENCY = 4;
export const MAX_CONVERT_CONCURRENCY = 64;

export interface ConvertProgress {
  /** Virtual bytes handled so far (read or known zero). */
  readonly doneBytes: number;
  readonly totalBytes: number;
  /** Bytes handed to the sink. */
  readonly dataBytesWritten: number;
}

export interface ConvertOptions {
  /** Called after every chunk; throttle in the caller if it prints. */
  readonly progress?: (progress: ConvertProgress) => void;
  /** Chunks read ahead of the writer. @default 4 */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
}

export interface ConvertResult extends SinkResult {
  /** Bytes read from the source (data extents only), by this process or by the kernel's copies. */
  readonly bytesRead: number;
  /** Bytes of data extents that turned out to be zeros and were skipped. */
  readonly zeroBytesDetected: number;
}

interface Chunk {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

const ZEROS = Buffer.alloc(ZERO_DETECT_BYTES);
/**
 * Bytes read from the start of a unit in a file span: one that is not all zeros settles that
 * the unit holds data without reading the rest of it.
 */
const PROBE_BYTES = 64;
/** The most bytes one kernel copy joins (see writeRun). */
const COPY_JOIN_BYTES = 8 * 1024 * 1024;

/** True when the unit [at, at + length) of `span` is all zeros (reading as little as it can). */
function spanUnitIsZero(span: FileSpan, at: number, length: number, scratch: Buffer): boolean {
  const unit = span.subarray(at, at + length);
  const first = unit.runs[0];
  if (first === undefined) return true;
  // A short read (the file shrank) is "not zero": the copy then fails with TRUNCATED, as a read would.
  const probe = Math.min(PROBE_BYTES, first.lengthBytes);
  const got = readSync(first.fd, scratch, 0, probe, first.fileOffsetBytes);
  if (got < probe || !isZero(scratch.subarray(0, probe))) return false;
  for (const run of unit.runs) {
    if (readSync(run.fd, scratch, 0, run.lengthBytes, run.fileOffsetBytes) < run.lengthBytes) return false;
    if (!isZero(scratch.subarray(0, run.lengthBytes))) return false;
  }
  return true;
}

function isZero(bytes: Buffer): boolean {
  return bytes.length <= ZEROS.length ? bytes.equals(ZEROS.subarray(0, bytes.length)) : bytes.every((b) => b === 0);
}

/** Splits data extents into chunks aligned to CONVERT_CHUNK_BYTES; zero extents are skipped. */
async function* dataChunks(extents: AsyncIterable<Extent>, onZero: (lengthBytes: number) => void): AsyncGenerator<Chunk> {
  for await (const extent of extents) {
    if (extent.kind === "zero") {
      onZero(extent.lengthBytes);
      continue;
    }
    const end = extent.offsetBytes + extent.lengthBytes;
    for (let offsetBytes = extent.offsetBytes; offsetBytes < end; ) {
      const next = Math.min(end, (Math.floor(offsetBytes / CONVERT_CHUNK_BYTES) + 1) * CONVERT_CHUNK_BYTES);
      yield { offsetBytes, lengthBytes: next - offsetBytes };
      offsetBytes = next;
    }
  }
}

/**
 * Cuts a run of data at block boundaries so that each write lies inside one block or covers
 * whole blocks (the DiskSink contract in types.ts).
 */
function* blockAlignedPieces<P extends Payload>(offsetBytes: number, data: P, blockSizeBytes: number): Generator<[number, P]> {
  let start = 0;
  while (start < data.length) {
    const at = offsetBytes + start;
    const toBoundary = blockSizeBytes - (at % blockSizeBytes);
    let length: number;
    if (toBoundary !== blockSizeBytes) length = Math.min(toBoundary, data.length - start);
    else {
      const wholeBlocks = Math.floor((data.length - start) / blockSizeBytes);
      length = wholeBlocks > 0 ? wholeBlocks * blockSizeBytes : data.length - start;
    }
    yield [at, data.subarray(start, start + length) as P];
    start += length;
  }
}

export async function convert(source: DiskSource, sink: DiskSink, options: ConvertOptions = {}): Promise<ConvertResult> {
  const concurrency = options.concurrency ?? DEFAULT_CONVERT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONVERT_CONCURRENCY) {
    throw new InvalidArgsError("INVALID_CONCURRENCY", `convert: concurrency must be 1..${MAX_CONVERT_CONCURRENCY}, got ${concurrency}`);
  }
  if (sink.virtualSizeBytes < source.virtualSizeBytes) {
    throw new InvalidArgsError(
      "SINK_TOO_SMALL",
      `convert: ${sink.format} sink holds ${sink.virtualSizeBytes} bytes but the ${source.format} source has ${source.virtualSizeBytes}`,
      { context: { sinkBytes: sink.virtualSizeBytes, sourceBytes: source.virtualSizeBytes } },
    );
  }
  const zeroUnit = Math.min(ZERO_DETECT_BYTES, sink.blockSizeBytes);
  let doneBytes = 0;
  let dataBytesWritten = 0;
  let bytesRead = 0;
  let zeroBytesDetected = 0;
  const report = (): void =>
    options.progress?.({ doneBytes, totalBytes: source.virtualSizeBytes, dataBytesWritten });

  const chunks = dataChunks(source.extents(), (lengthBytes) => {
    doneBytes += lengthBytes;
    report();
  });
  // Read buffers are recycled when the sink lets go of them: fresh buffers cost page faults and
  // GC that dominate a conversion (docs/decisions/0003-conversion-performance.md). They are
  // leased, so a file target writes them without a copy and convert() waits until it has.
  const spare: Buffer[] = [];
  let buffers = 0;
  const recycle = sink.releasesData === true;
  // Kernel copies, where the source has spans, the sink takes them and the kernel copies from
  // the span's file into the sink's (asked once per source file).
  const copySpans = source.fileSpan !== undefined && sink.copy !== undefined && sink.copiesFrom !== undefined && kernelCopyAvailable();
  const copyable = new Map<number, boolean>();
  const copies = (span: FileSpan): boolean =>
    span.runs.every((run) => {
      let yes = copyable.get(run.fd);
      if (yes === undefined) copyable.set(run.fd, (yes = sink.copiesFrom?.(run.fd) === true));
      return yes;
    });
  const scratch = Buffer.allocUnsafeSlow(zeroUnit);
  type Pending = { chunk: Chunk; span: FileSpan } | { chunk: Chunk; data: Promise<Buffer>; into: Buffer };
  const inFlight: Pending[] = [];
  async function refill(): Promise<boolean> {
    while (inFlight.length < concurrency) {
      const next = await chunks.next();
      if (next.done === true) return inFlight.length > 0;
      const chunk = next.value;
      if (copySpans) {
        const span = await source.fileSpan?.(chunk.offsetBytes, chunk.lengthBytes);
        if (span !== undefined && copies(span)) {
          inFlight.push({ chunk, span });
          continue;
        }
      }
      // A spare buffer no write holds; else, once there are as many buffers as reads and a file
      // target's writes in flight, the oldest spare when its write has landed; else a new one.
      // (A sink that keeps its data gives nothing back, so every read gets a new buffer.)
      let into: Buffer;
      const free = spare.findIndex((b) => !held(b));
      if (free >= 0) into = spare.splice(free, 1)[0]!;
      else if (spare.length > 0 && buffers >= concurrency + FILE_TARGET_WRITES_IN_FLIGHT) {
        into = spare.shift()!;
        await idle(into);
      } else {
        into = Buffer.allocUnsafeSlow(CONVERT_CHUNK_BYTES);
        lease(into);
        buffers++;
      }
      const data = source.read(chunk.offsetBytes, chunk.lengthBytes, into);
      // A read that fails while an earlier write is pending is reported when its turn comes.
      data.catch(() => {});
      inFlight.push({ chunk, data, into });
    }
    return true;
  }

  async function writeRun(offsetBytes: number, run: Payload): Promise<void> {
    if (run instanceof FileSpan) {
      // Spans that follow on in the disk join into one copy, up to COPY_JOIN_BYTES: a kernel
      // copy costs a round trip to a worker thread, which 1 MiB pieces do not amortise.
      if (joined !== undefined && joined.offsetBytes + joined.span.length === offsetBytes && joined.span.length + run.length <= COPY_JOIN_BYTES) {
        joined = { offsetBytes: joined.offsetBytes, span: joined.span.concat(run) };
        return;
      }
      await flushJoined();
      joined = { offsetBytes, span: run };
      return;
    }
    await flushJoined();
    await writePieces(offsetBytes, run);
  }

  /** Writes (or copies) a run, cut where the sink's blocks need it. */
  async function writePieces(offsetBytes: number, run: Payload): Promise<void> {
    for (const [at, piece] of blockAlignedPieces(offsetBytes, run, sink.blockSizeBytes)) {
      if (piece instanceof FileSpan) await sink.copy!(at, piece);
      else await sink.write(at, piece);
      dataBytesWritten += piece.length;
    }
  }

  let joined: { offsetBytes: number; span: FileSpan } | undefined;
  async function flushJoined(): Promise<void> {
    if (joined === undefined) return;
    const { offsetBytes, span } = joined;
    joined = undefined;
    await writePieces(offsetBytes, span);
  }

  /** Writes maximal runs of units that are not all zeros, one call each. */
  async function writeNonZero(offsetBytes: number, data: Payload, unitIsZero: (at: number, length: number) => boolean): Promise<void> {
    let runStart = -1;
    for (let at = 0; at < data.length; at += zeroUnit) {
      const length = Math.min(zeroUnit, data.length - at);
      if (unitIsZero(at, length)) {
        zeroBytesDetected += length;
        if (runStart >= 0) await writeRun(offsetBytes + runStart, data.subarray(runStart, at));
        runStart = -1;
      } else if (runStart < 0) runStart = at;
    }
    if (runStart >= 0) await writeRun(offsetBytes + runStart, data.subarray(runStart));
  }

  try {
    while (await refill()) {
      options.signal?.throwIfAborted();
      const pending = inFlight.shift()!;
      const { chunk } = pending;
      if ("span" in pending) {
        const { span } = pending;
        bytesRead += span.length;
        await writeNonZero(chunk.offsetBytes, span, (at, length) => spanUnitIsZero(span, at, length, scratch));
      } else {
        const data = await pending.data;
        bytesRead += data.length;
        await writeNonZero(chunk.offsetBytes, data, (at, length) => isZero(data.subarray(at, at + length)));
        // A source that ignored `into` leaves it unused; one that filled it frees it only if the
        // sink holds nothing of it now.
        if (data.buffer !== pending.into.buffer || recycle) spare.push(pending.into);
      }
      doneBytes += chunk.lengthBytes;
      report();
    }
    await flushJoined();
    const result = await sink.finish();
    return { ...result, bytesRead, zeroBytesDetected };
  } catch (err) {
    await sink.abort().catch(() => {});
    throw err;
  } finally {
    await chunks.return(undefined);
  }
}
