// Where a local file holds data, asked of the kernel with lseek(2) SEEK_DATA / SEEK_HOLE.
//
// Node's fs has no lseek, so a raw image used to be read whole, holes included, and scanned for
// zeros (docs/decisions/0008-raw-holes-and-startup.md). libc.ts calls lseek directly: about
// 1 µs a call, one call per data run and per hole. Only Linux's whence values are known here;
// elsewhere, or when koffi cannot load, `fileHoles()` returns undefined and callers read the
// whole file as data.
import { libc } from "./libc.ts";
import type { Extent } from "./types.ts";

/** Linux's whence values (include/uapi/linux/fs.h). FreeBSD shares them; macOS swaps them. */
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
/** lseek(SEEK_DATA) at or past the last data: the rest of the file is a hole. */
const ENXIO = 6;

export interface FileHoles {
  /**
   * The data and zero (hole) extents of `fd` over [0, sizeBytes), in order. Data extents may
   * still hold zeros (the file system allocates whole blocks); zero extents are never allocated.
   */
  extents(fd: number, sizeBytes: number): Generator<Extent>;
}

let cached: FileHoles | null | undefined;

/** The hole finder for this platform, or undefined when the kernel cannot be asked. */
export function fileHoles(): FileHoles | undefined {
  if (cached === undefined) cached = process.env.PORTABLE_NO_SEEK_DATA === "1" ? null : load();
  return cached ?? undefined;
}

function load(): FileHoles | null {
  const c = libc();
  if (c === undefined) return null;
  const lseek = c.lseek;
  const errno = c.errno;
  /** The next offset at or after `at` of the kind asked, or undefined when the file system says so. */
  function seek(fd: number, at: number, whence: number): number | undefined {
    const result = lseek(fd, at, whence);
    if (result >= 0) return result;
    if (errno() === ENXIO) return undefined;
    throw new Error(`lseek(${whence === SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE"}) failed with errno ${errno()}`);
  }
  return {
    *extents(fd, sizeBytes) {
      for (let at = 0; at < sizeBytes; ) {
        let dataStart: number;
        let dataEnd: number;
        try {
          dataStart = Math.min(seek(fd, at, SEEK_DATA) ?? sizeBytes, sizeBytes);
          dataEnd = dataStart === sizeBytes ? sizeBytes : Math.min(seek(fd, dataStart, SEEK_HOLE) ?? sizeBytes, sizeBytes);
        } catch {
          // A file system that refuses the question: the rest is data, and convert() finds zeros.
          yield { offsetBytes: at, lengthBytes: sizeBytes - at, kind: "data" };
          return;
        }
        if (dataStart > at) yield { offsetBytes: at, lengthBytes: dataStart - at, kind: "zero" };
        if (dataStart === sizeBytes) return;
        if (dataEnd <= dataStart) {
          // No progress (a file changing under us): the rest is data, and convert() finds zeros.
          yield { offsetBytes: dataStart, lengthBytes: sizeBytes - dataStart, kind: "data" };
          return;
        }
        yield { offsetBytes: dataStart, lengthBytes: dataEnd - dataStart, kind: "data" };
        at = dataEnd;
      }
    },
  };
}
