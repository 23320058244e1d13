// The few libc calls Node's fs lacks, through koffi: lseek(2) for SEEK_DATA/SEEK_HOLE
// (file-holes.ts) and copy_file_range(2) for copies that stay in the kernel (file-span.ts).
//
// koffi is a maintained FFI library that ships a prebuilt binary for each platform; its install
// script is not needed and stays denied in package.json's allowScripts. Each call costs about
// 1 µs. Only Linux is wired: elsewhere, or when koffi cannot load, `libc()` returns undefined
// and callers keep to Node's fs.
import { createRequire } from "node:module";

export interface Libc {
  /** lseek(2); -1 on failure, then see errno(). */
  lseek(fd: number, offsetBytes: number, whence: number): number;
  /**
   * copy_file_range(2) at explicit offsets (neither file position moves); the bytes copied, 0 at
   * the end of `fdIn`, -1 on failure, then see errno().
   */
  copyFileRange(fdIn: number, inOffsetBytes: number, fdOut: number, outOffsetBytes: number, lengthBytes: number): number;
  /**
   * The same on a worker thread, so the event loop runs on meanwhile. errno is the worker's, so
   * on failure the call is made again here to learn it: `[result, errno]`.
   */
  copyFileRangeAsync(fdIn: number, inOffsetBytes: number, fdOut: number, outOffsetBytes: number, lengthBytes: number): Promise<[number, number]>;
  /** errno of the last call on this thread. */
  errno(): number;
}

interface KoffiFunction {
  (...args: unknown[]): number | bigint;
  async(...args: unknown[]): void;
}

interface Koffi {
  load(path: string): { func(signature: string): KoffiFunction };
  errno(): number;
}

let cached: Libc | null | undefined;

export function libc(): Libc | undefined {
  if (cached === undefined) cached = load();
  return cached ?? undefined;
}

function load(): Libc | null {
  if (process.platform !== "linux") return null;
  try {
    const koffi = createRequire(import.meta.url)("koffi") as Koffi;
    const c = koffi.load("libc.so.6");
    // int64_t comes back as a JS number while it fits in 2^53, which every file offset here does.
    const lseek = c.func("int64_t lseek(int fd, int64_t offset, int whence)");
    const copyFileRange = c.func(
      "int64_t copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, _Inout_ int64_t *off_out, size_t len, unsigned int flags)",
    );
    return {
      lseek: (fd, offsetBytes, whence) => Number(lseek(fd, offsetBytes, whence)),
      copyFileRange: (fdIn, inOffsetBytes, fdOut, outOffsetBytes, lengthBytes) =>
        Number(copyFileRange(fdIn, [inOffsetBytes], fdOut, [outOffsetBytes], lengthBytes, 0)),
      copyFileRangeAsync: (fdIn, inOffsetBytes, fdOut, outOffsetBytes, lengthBytes) =>
        new Promise((resolve, reject) => {
          copyFileRange.async(fdIn, [inOffsetBytes], fdOut, [outOffsetBytes], lengthBytes, 0, (err: unknown, result: number | bigint) => {
            if (err !== null && err !== undefined) return reject(err as Error);
            const copied = Number(result);
            if (copied >= 0) return resolve([copied, 0]);
            const again = Number(copyFileRange(fdIn, [inOffsetBytes], fdOut, [outOffsetBytes], lengthBytes, 0));
            resolve([again, again < 0 ? koffi.errno() : 0]);
          });
        }),
      errno: () => koffi.errno(),
    };
  } catch {
    return null;
  }
}
