// Bytes that are still in a local file: convert() hands a sink a FileSpan instead of a buffer
// when the source's bytes lie verbatim in a file (a raw image, a qcow2's uncompressed clusters)
// and the target is a file, and the kernel copies them (copy_file_range(2)). Read and write
// copy every byte twice, into the process and back out; the kernel copies it once, for about a
// third less CPU. Off unless PORTABLE_COPY_RANGE=1: it has not yet won on wall time
// (docs/decisions/0012-engine-throughput.md).
import { FormatError, NotCapableError, PortableError } from "../errors.ts";
import { libc } from "./libc.ts";
import type { ByteTarget } from "./types.ts";

/** A run of bytes at `fileOffsetBytes` in the file open as `fd`. */
export interface FileRun {
  readonly fd: number;
  readonly fileOffsetBytes: number;
  readonly lengthBytes: number;
}

/** Consecutive disk bytes, stored as runs in local files (in order; their lengths add up). */
export class FileSpan {
  readonly runs: readonly FileRun[];
  readonly length: number;
  constructor(runs: readonly FileRun[]) {
    this.runs = runs;
    this.length = runs.reduce((sum, r) => sum + r.lengthBytes, 0);
  }

  /** This span followed by `next`, with runs that follow on in one file joined. */
  concat(next: FileSpan): FileSpan {
    const runs = [...this.runs];
    for (const run of next.runs) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last.fd === run.fd && last.fileOffsetBytes + last.lengthBytes === run.fileOffsetBytes) {
        runs[runs.length - 1] = { fd: run.fd, fileOffsetBytes: last.fileOffsetBytes, lengthBytes: last.lengthBytes + run.lengthBytes };
      } else runs.push(run);
    }
    return new FileSpan(runs);
  }

  /** The bytes [start, end) of this span, as Buffer.subarray takes them. */
  subarray(start = 0, end = this.length): FileSpan {
    const runs: FileRun[] = [];
    let at = 0;
    for (const run of this.runs) {
      const from = Math.max(start, at);
      const to = Math.min(end, at + run.lengthBytes);
      if (from < to) runs.push({ fd: run.fd, fileOffsetBytes: run.fileOffsetBytes + (from - at), lengthBytes: to - from });
      at += run.lengthBytes;
      if (at >= end) break;
    }
    return new FileSpan(runs);
  }
}

/** Bytes for a sink: in memory, or still in a file. */
export type Payload = Buffer | FileSpan;

/** errno values with which copy_file_range refuses a pair of files before copying anything. */
const REFUSALS = new Set([
  18, // EXDEV: older kernels, different file systems
  22, // EINVAL: a file system or file kind that cannot
  38, // ENOSYS
  95, // EOPNOTSUPP
]);

/**
 * True when the kernel may be asked to copy: Linux, koffi loads, and PORTABLE_COPY_RANGE=1. Off by
 * default: it saves CPU, but in one full bench:convert run it was 2.5 times slower than reading
 * and writing (docs/decisions/0012-engine-throughput.md).
 */
export function kernelCopyAvailable(): boolean {
  return process.env.PORTABLE_COPY_RANGE === "1" && libc() !== undefined;
}

/**
 * Copies `span` into `fdOut` at `offsetBytes` inside the kernel, on a worker thread. Resolves
 * false, having written nothing, when the kernel refuses this pair of files: the caller then
 * reads and writes.
 */
export async function kernelCopy(span: FileSpan, fdOut: number, offsetBytes: number): Promise<boolean> {
  const c = libc();
  if (c === undefined || !kernelCopyAvailable()) return false;
  let out = offsetBytes;
  for (const run of span.runs) {
    let done = 0;
    while (done < run.lengthBytes) {
      const [copied, errno] = await c.copyFileRangeAsync(run.fd, run.fileOffsetBytes + done, fdOut, out, run.lengthBytes - done);
      if (copied > 0) {
        done += copied;
        out += copied;
        continue;
      }
      if (copied === 0) {
        // The reader checked its offsets against the file's size: the file shrank under us.
        throw new FormatError("TRUNCATED", `copy_file_range: the source file ends before offset 0x${(run.fileOffsetBytes + done).toString(16)}`, {
          context: { fileOffsetBytes: run.fileOffsetBytes + done, lengthBytes: run.lengthBytes - done },
        });
      }
      if (out === offsetBytes && REFUSALS.has(errno)) return false;
      throw new PortableError("KERNEL_COPY_FAILED", `copy_file_range failed with errno ${errno} at source offset 0x${(run.fileOffsetBytes + done).toString(16)}`, {
        context: { fileOffsetBytes: run.fileOffsetBytes + done, errno },
      });
    }
  }
  return true;
}

/** Writes `payload` at `offsetBytes`: a buffer as a write, a span as a copy (which the target must offer). */
export function put(target: ByteTarget, offsetBytes: number, payload: Payload): Promise<void> {
  if (!(payload instanceof FileSpan)) return target.write(offsetBytes, payload);
  if (target.copy === undefined || target.sequential) {
    throw new NotCapableError("KERNEL_COPY_UNSUPPORTED", `${target.name} cannot copy from a file; write its bytes instead`);
  }
  return target.copy(offsetBytes, payload);
}

/**
 * What a writer that stores data verbatim offers when its target copies (a file): `copy`, which
 * places a span as `place` places a buffer, and `copiesFrom`. Nothing for other targets.
 */
export function copyMembers(
  target: ByteTarget,
  place: (offsetBytes: number, data: Payload) => Promise<void>,
): { copy?: (offsetBytes: number, span: FileSpan) => Promise<void>; copiesFrom?: (fd: number) => boolean } {
  const copiesFrom = target.copiesFrom;
  if (target.copy === undefined || copiesFrom === undefined || target.sequential) return {};
  return { copy: place, copiesFrom: (fd) => copiesFrom(fd) };
}

/**
 * True when the kernel will copy from `fdIn` into `fdOut`: a copy of no bytes runs the kernel's
 * checks (EXDEV between file systems that cannot) and copies nothing.
 */
export function kernelCopies(fdIn: number, fdOut: number): boolean {
  return kernelCopyAvailable() && libc()!.copyFileRange(fdIn, 0, fdOut, 0, 0) === 0;
}
