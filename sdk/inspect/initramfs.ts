// Which kernel modules an initramfs carries: the drivers a guest has before its root is mounted.
// A module in /lib/modules is no help at boot when the root disk's driver is not in here.
//
// An initramfs is one or more cpio archives ("newc", magic 070701/070702) laid end to end, each
// optionally compressed; Debian's starts with an uncompressed early archive (CPU microcode) and
// goes on with the main one, compressed with zstd or gzip (dracut's: the same, or xz). We list
// file names only, streaming: the data of each member is skipped, so memory stays at one chunk
// whatever the archive holds.
//
// Written by hand: the npm cpio readers are unmaintained or extract to disk; the newc header is
// thirteen hex fields (the kernel's Documentation/driver-api/early-userspace/buffer-format.rst).
import { createGunzip, createZstdDecompress } from "node:zlib";
import type { Transform } from "node:stream";
import { PortableError } from "../errors.ts";

/** Member names read at most: a real initramfs holds a few thousand. */
const MAX_MEMBERS = 200_000;
/** Decompressed bytes read at most: a real one is under 200 MiB. */
const MAX_EXPANDED_BYTES = 1024 * 1024 * 1024;
const HEADER_BYTES = 110;
const TRAILER = "TRAILER!!!";

export interface InitramfsListing {
  /** Module names (file name without .ko and a compression suffix, "-" as "_"), e.g. virtio_blk. */
  readonly modules: ReadonlySet<string>;
  /** The compression of each archive in order: "none", "gzip", "zstd". */
  readonly archives: readonly string[];
  readonly members: number;
}

function fail(message: string): never {
  throw new PortableError("INSPECT_INITRAMFS_INVALID", `initramfs: ${message}`);
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

/** A push parser of concatenated newc archives; returns where the data ends within the input when it meets the last trailer. */
class CpioNames {
  readonly names: string[] = [];
  private pending = Buffer.alloc(0);
  private skip = 0;
  private header: { nameBytes: number; fileBytes: number } | undefined;
  trailers = 0;

  /** Feeds bytes; returns the number consumed before a trailer ended an archive, or -1 to keep going. */
  push(chunk: Buffer): number {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - offset);
        this.skip -= n;
        offset += n;
        continue;
      }
      const need = this.header === undefined ? HEADER_BYTES : this.header.nameBytes + pad4(HEADER_BYTES + this.header.nameBytes);
      const take = Math.min(need - this.pending.length, chunk.length - offset);
      this.pending = Buffer.concat([this.pending, chunk.subarray(offset, offset + take)]);
      offset += take;
      if (this.pending.length < need) continue;
      if (this.header === undefined) {
        const magic = this.pending.toString("latin1", 0, 6);
        if (magic !== "070701" && magic !== "070702") fail(`no cpio header (magic ${JSON.stringify(magic)})`);
        const field = (i: number): number => {
          const text = this.pending.toString("latin1", 6 + i * 8, 14 + i * 8);
          if (!/^[0-9A-Fa-f]{8}$/.test(text)) fail(`bad header field ${JSON.stringify(text)}`);
          return Number.parseInt(text, 16);
        };
        const nameBytes = field(11);
        if (nameBytes < 1 || nameBytes > 4096) fail(`name length ${nameBytes}`);
        this.header = { nameBytes, fileBytes: field(6) };
        this.pending = Buffer.alloc(0);
        continue;
      }
      const name = this.pending.toString("utf8", 0, this.header.nameBytes - 1);
      const fileBytes = this.header.fileBytes;
      this.header = undefined;
      this.pending = Buffer.alloc(0);
      if (name === TRAILER) {
        this.trailers++;
        return offset;
      }
      if (this.names.length >= MAX_MEMBERS) fail(`more than ${MAX_MEMBERS} members`);
      this.names.push(name);
      this.skip = fileBytes + pad4(fileBytes);
    }
    return -1;
  }

  get idle(): boolean {
    return this.skip === 0 && this.header === undefined && this.pending.length === 0;
  }
}

function compressionOf(bytes: Buffer): "gzip" | "zstd" | "xz" | "lz4" | "bzip2" | "lzma" | undefined {
  if (bytes[0] === 0x1f && (bytes[1] === 0x8b || bytes[1] === 0x9e)) return "gzip";
  if (bytes.readUInt32LE(0) === 0xfd2fb528) return "zstd";
  if (bytes.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
  if (bytes.readUInt32LE(0) === 0x184c2102) return "lz4";
  if (bytes.toString("latin1", 0, 3) === "BZh") return "bzip2";
  if (bytes[0] === 0x5d && bytes[1] === 0x00) return "lzma";
  return undefined;
}

async function listCompressed(data: Buffer, decompressor: Transform, parser: CpioNames): Promise<void> {
  let expanded = 0;
  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (error?: Error): void => {
      if (done) return;
      done = true;
      decompressor.destroy();
      if (error) reject(error);
      else resolve();
    };
    decompressor.on("data", (chunk: Buffer) => {
      expanded += chunk.length;
      try {
        if (expanded > MAX_EXPANDED_BYTES) fail(`expands beyond ${MAX_EXPANDED_BYTES} bytes`);
        // Archives inside one compressed stream may follow each other; anything after the last is padding.
        let rest = chunk;
        for (;;) {
          const used = parser.push(rest);
          if (used < 0) break;
          rest = rest.subarray(used);
          const next = rest.findIndex((b) => b !== 0);
          if (next < 0) break;
          rest = rest.subarray(next);
        }
      } catch (error) {
        finish(error as Error);
      }
    });
    decompressor.on("error", (error) => finish(new PortableError("INSPECT_INITRAMFS_INVALID", `initramfs: ${error.message}`)));
    decompressor.on("end", () => finish());
    decompressor.end(data);
  });
}

/** Lists the modules in an initramfs image held in memory (callers bound its size). */
export async function listInitramfs(image: Buffer): Promise<InitramfsListing> {
  const parser = new CpioNames();
  const archives: string[] = [];
  let offset = 0;
  while (offset < image.length) {
    while (offset < image.length && image[offset] === 0) offset++;
    if (offset >= image.length) break;
    const rest = image.subarray(offset);
    const magic = rest.toString("latin1", 0, 6);
    if (magic === "070701" || magic === "070702") {
      archives.push("none");
      const used = parser.push(rest);
      if (used < 0) fail("an uncompressed archive ends without its trailer");
      offset += used;
      continue;
    }
    const compression = rest.length >= 6 ? compressionOf(rest) : undefined;
    if (compression === "gzip" || compression === "zstd") {
      archives.push(compression);
      await listCompressed(rest, compression === "gzip" ? createGunzip() : createZstdDecompress(), parser);
      break;
    }
    throw new PortableError("INSPECT_INITRAMFS_UNSUPPORTED", `initramfs: ${compression ?? "unknown"} compression is not read here (gzip and zstd are)`);
  }
  if (!parser.idle && parser.trailers === 0) fail("truncated");
  const modules = new Set<string>();
  for (const name of parser.names) {
    const match = /(?:^|\/)([^/]+)\.ko(?:\.(?:xz|zst|gz))?$/.exec(name);
    if (match?.[1] !== undefined) modules.add(match[1].replaceAll("-", "_"));
  }
  return { modules, archives, members: parser.names.length };
}
