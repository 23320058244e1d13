// Byte-level I/O under the format readers and writers: local files, and any Node Writable
// as a sequential target.
import { read as readFd } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { promisify } from "node:util";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { FormatError, InvalidArgsError } from "../errors.ts";
import { hold } from "./buffer-lease.ts";
import { kernelCopies, kernelCopy, type FileSpan } from "./file-span.ts";
import { fileHoles } from "./file-holes.ts";
import type { ByteSource, ByteTarget } from "./types.ts";

/** Opens a file read-only: the source of a migration is never written. */
export async function openFileSource(path: string): Promise<ByteSource> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    return fileSource(handle, path, size);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function fileSource(handle: FileHandle, name: string, sizeBytes: number): ByteSource {
  const holes = fileHoles();
  return {
    name,
    sizeBytes,
    fd: handle.fd,
    ...(holes === undefined ? {} : { extents: () => holes.extents(handle.fd, sizeBytes) }),
    async read(offsetBytes, lengthBytes, into) {
      const length = Math.max(0, Math.min(lengthBytes, sizeBytes - offsetBytes));
      const buf = into !== undefined && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buf, done, length - done, offsetBytes + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === length ? buf : buf.subarray(0, done);
    },
    close: () => handle.close(),
  };
}

/** A ByteSource over bytes in memory (tests, small descriptors). */
export function bufferSource(name: string, data: Buffer): ByteSource {
  return {
    name,
    sizeBytes: data.length,
    read: async (offsetBytes, lengthBytes) =>
      Buffer.from(data.subarray(offsetBytes, Math.min(data.length, offsetBytes + lengthBytes))),
    close: async () => {},
  };
}

/**
 * Reads exactly `lengthBytes` or throws `TRUNCATED`: the image claims data past its end.
 * `format` and `what` name the structure in the message, e.g. "qcow2", "L2 table 3".
 */
export async function readExact(
  source: ByteSource,
  offsetBytes: number,
  lengthBytes: number,
  format: string,
  what: string,
  into?: Buffer,
): Promise<Buffer> {
  if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > source.sizeBytes) {
    throw new FormatError(
      "TRUNCATED",
      `${format}: ${what} at offset 0x${offsetBytes.toString(16)} (+${lengthBytes}) lies past end of file ` +
        `(size 0x${source.sizeBytes.toString(16)}) in ${source.name}`,
      { context: { offsetBytes, lengthBytes, fileSizeBytes: source.sizeBytes } },
    );
  }
  const buf = await source.read(offsetBytes, lengthBytes, into);
  if (buf.length !== lengthBytes) {
    throw new FormatError("TRUNCATED", `${format}: short read of ${what} at 0x${offsetBytes.toString(16)}`, {
      context: { offsetBytes, lengthBytes, got: buf.length },
    });
  }
  return buf;
}

export interface FileTargetOptions {
  /** Replace an existing file. Off by default so a typo never clobbers an image. */
  readonly overwrite?: boolean;
  /**
   * fdatasync before close, so the image is on disk when close() resolves. Off by default, as
   * in qemu-img convert; the migration engine turns it on before it marks a target complete.
   */
  readonly sync?: boolean;
}

/**
 * Writes a file target keeps in flight: one, as qemu-img convert does without -W. write()
 * still resolves once the write is queued, so convert() reads on while it runs. Concurrent
 * writes to one file queue on its inode lock, and on these VMs the waiters spin: with 8 in
 * flight a qcow2 → raw run took up to 9 s of system time in 6.5 s, against 0.7 s with one
 * (docs/decisions/0008-raw-holes-and-startup.md).
 */
export const FILE_TARGET_WRITES_IN_FLIGHT = 1;
const readFdAsync = promisify(readFd);
/** Writes up to this size are copied into recycled buffers; larger ones get a one-off copy. */
const FILE_TARGET_COPY_BYTES = 1024 * 1024;

/**
 * A random-access file target. Writes are pipelined, on copies or on leased buffers
 * (buffer-lease.ts), so callers may reuse their buffers once write() resolves (leased ones once
 * they are idle); writes that overlap one still in flight wait for it, so a rewritten header or
 * table always lands last. `truncate` extends with a hole, so zeros cost no space.
 */
export async function createFileTarget(path: string, options: FileTargetOptions = {}): Promise<ByteTarget> {
  let handle: FileHandle;
  try {
    handle = await open(path, options.overwrite === true ? "w" : "wx");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new InvalidArgsError("TARGET_EXISTS", `${path} already exists (pass overwrite to replace it)`, {
        cause: err,
      });
    }
    throw err;
  }
  const inFlight = new Set<{ start: number; end: number; done: Promise<void> }>();
  const spare: Buffer[] = [];
  let failure: unknown;
  async function pwrite(offsetBytes: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await handle.write(data, done, data.length - done, offsetBytes + done);
      done += bytesWritten;
    }
  }
  /** Waits until a write of [start, end) may start: none in flight overlaps it, and there is room. */
  async function room(start: number, end: number): Promise<void> {
    const overlapping = [...inFlight].filter((w) => w.start < end && start < w.end);
    if (overlapping.length > 0) await Promise.all(overlapping.map((w) => w.done));
    while (inFlight.size >= FILE_TARGET_WRITES_IN_FLIGHT) await Promise.race([...inFlight].map((w) => w.done));
  }
  /** Runs `io` in flight; its error sticks in `failure` and surfaces on a later call. */
  function track(start: number, end: number, io: () => Promise<void>): void {
    const entry = {
      start,
      end,
      done: io().catch((err: unknown) => {
        failure ??= err;
      }),
    };
    inFlight.add(entry);
    void entry.done.then(() => inFlight.delete(entry));
  }
  async function drain(): Promise<void> {
    await Promise.all([...inFlight].map((w) => w.done));
    if (failure !== undefined) throw failure;
  }
  /** A copy the kernel refused (another file system, an old kernel): through `buffer` instead. */
  async function readAndWrite(span: FileSpan, offsetBytes: number, buffer: Buffer): Promise<void> {
    let at = offsetBytes;
    for (const run of span.runs) {
      for (let done = 0; done < run.lengthBytes; ) {
        const length = Math.min(buffer.length, run.lengthBytes - done);
        const { bytesRead } = await readFdAsync(run.fd, buffer, 0, length, run.fileOffsetBytes + done);
        if (bytesRead === 0) {
          throw new FormatError("TRUNCATED", `copy into ${path}: the source file ends before offset 0x${(run.fileOffsetBytes + done).toString(16)}`, {
            context: { fileOffsetBytes: run.fileOffsetBytes + done },
          });
        }
        await pwrite(at, buffer.subarray(0, bytesRead));
        done += bytesRead;
        at += bytesRead;
      }
    }
  }
  return {
    name: path,
    sequential: false,
    releasesData: true,
    async write(offsetBytes, data) {
      if (failure !== undefined) throw failure;
      await room(offsetBytes, offsetBytes + data.length);
      // A leased buffer (convert()'s reads) is held until the write lands; anything else is
      // copied into a recycled buffer so the caller can reuse `data` at once. Fresh buffers cost
      // page faults and GC that dwarf a memcpy (docs/decisions/0003, buffer-lease.ts).
      const release = hold(data);
      const pooled = release === undefined && data.length <= FILE_TARGET_COPY_BYTES ? (spare.pop() ?? Buffer.allocUnsafeSlow(FILE_TARGET_COPY_BYTES)) : undefined;
      let bytes = data;
      if (release === undefined) {
        bytes = pooled === undefined ? Buffer.from(data) : pooled.subarray(0, data.length);
        data.copy(bytes);
      }
      track(offsetBytes, offsetBytes + data.length, async () => {
        try {
          await pwrite(offsetBytes, bytes);
          if (pooled !== undefined) spare.push(pooled);
        } finally {
          release?.();
        }
      });
    },
    copiesFrom: (fd) => kernelCopies(fd, handle.fd),
    async copy(offsetBytes, span) {
      if (failure !== undefined) throw failure;
      // In flight as writes are: the kernel copies this span while convert() looks at the next.
      await room(offsetBytes, offsetBytes + span.length);
      track(offsetBytes, offsetBytes + span.length, async () => {
        if (await kernelCopy(span, handle.fd, offsetBytes)) return;
        const buffer = spare.pop() ?? Buffer.allocUnsafeSlow(FILE_TARGET_COPY_BYTES);
        await readAndWrite(span, offsetBytes, buffer);
        spare.push(buffer);
      });
    },
    async truncate(lengthBytes) {
      await drain();
      await handle.truncate(lengthBytes);
    },
    async close() {
      try {
        await drain();
        if (options.sync === true) await handle.datasync();
      } finally {
        await handle.close();
      }
    },
  };
}

/**
 * A sequential target over a Writable (a pipe, an HTTP request body, a tar entry). Writes must
 * be appends; `truncate` may only extend, which it does by streaming zeros.
 */
export function streamTarget(name: string, stream: Writable): ByteTarget {
  let positionBytes = 0;
  async function push(data: Buffer): Promise<void> {
    if (!stream.write(data)) await once(stream, "drain");
    positionBytes += data.length;
  }
  return {
    name,
    sequential: true,
    async write(offsetBytes, data) {
      if (offsetBytes !== positionBytes) {
        throw new InvalidArgsError(
          "SEQUENTIAL_TARGET",
          `${name}: sequential target at 0x${positionBytes.toString(16)} cannot write at 0x${offsetBytes.toString(16)}`,
        );
      }
      await push(data);
    },
    async truncate(lengthBytes) {
      if (lengthBytes < positionBytes) {
        throw new InvalidArgsError("SEQUENTIAL_TARGET", `${name}: a sequential target cannot shrink`);
      }
      const zeros = Buffer.alloc(Math.min(1 << 20, lengthBytes - positionBytes));
      while (positionBytes < lengthBytes) await push(zeros.subarray(0, Math.min(zeros.length, lengthBytes - positionBytes)));
    },
    async close() {
      stream.end();
      await once(stream, "finish");
    },
  };
}
