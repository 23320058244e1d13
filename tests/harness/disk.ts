// Disk-image helpers for tests: qemu-img and qemu-io as the peer, hashing of our sources.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { DiskSource, Extent } from "../../sdk/disk/types.ts";
import { TOOLS } from "./tools.ts";

const run = promisify(execFile);
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await run(TOOLS.qemuImg, args, { maxBuffer: MAX_OUTPUT_BYTES });
  return stdout;
}

/** Runs qemu-io commands (e.g. `write -P 0xab 0 64k`) against an image of the given format. */
export async function qemuIo(format: string, image: string, commands: readonly string[]): Promise<void> {
  const args = ["-f", format];
  for (const command of commands) args.push("-c", command);
  await run(TOOLS.qemuImg.replace(/qemu-img$/, "qemu-io"), [...args, image], { maxBuffer: MAX_OUTPUT_BYTES });
}

export interface QemuInfo {
  readonly format: string;
  readonly "virtual-size": number;
  readonly "actual-size"?: number;
  readonly "format-specific"?: { readonly type: string; readonly data: Record<string, unknown> };
}

export async function qemuInfo(image: string, format?: string): Promise<QemuInfo> {
  const args = ["info", "--output=json", ...(format === undefined ? [] : ["-f", format]), image];
  return JSON.parse(await qemuImg(...args)) as QemuInfo;
}

/** SHA-256 of the raw bytes qemu-img reads from an image (`qemu-img convert -O raw`). */
export async function qemuRawSha256(image: string, format?: string): Promise<string> {
  // qemu-img cannot write raw to a pipe (it resizes its output), so it writes a sparse temp file.
  return withTempDir(async (dir) => {
    const raw = join(dir, "peer.raw");
    await qemuImg("convert", ...(format === undefined ? [] : ["-f", format]), "-O", "raw", image, raw);
    return fileSha256(raw);
  });
}

/** SHA-256 of a whole file. */
export function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .once("error", reject)
      .once("end", () => resolve(hash.digest("hex")));
  });
}

const READ_CHUNK_BYTES = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(READ_CHUNK_BYTES);

/**
 * SHA-256 of everything a DiskSource reads, walking its extents; also checks that the extents are
 * ordered and cover the disk exactly, and that "zero" extents really read as zeros when sampled.
 */
export async function sourceSha256(source: DiskSource): Promise<string> {
  const hash = createHash("sha256");
  let expectedOffset = 0;
  for await (const extent of source.extents()) {
    if (extent.offsetBytes !== expectedOffset) {
      throw new Error(`extents not contiguous: expected ${expectedOffset}, got ${extent.offsetBytes}`);
    }
    for (let done = 0; done < extent.lengthBytes; done += READ_CHUNK_BYTES) {
      const length = Math.min(READ_CHUNK_BYTES, extent.lengthBytes - done);
      if (extent.kind === "zero") hash.update(ZEROS.subarray(0, length));
      else hash.update(await source.read(extent.offsetBytes + done, length));
    }
    expectedOffset += extent.lengthBytes;
  }
  if (expectedOffset !== source.virtualSizeBytes) {
    throw new Error(`extents cover ${expectedOffset} bytes of ${source.virtualSizeBytes}`);
  }
  return hash.digest("hex");
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "pw-disk-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A DiskSource over bytes in memory, with an explicit extent map or one data extent. */
export function memorySource(data: Buffer, extents?: readonly Extent[]): DiskSource {
  return {
    format: "memory",
    virtualSizeBytes: data.length,
    async *extents() {
      yield* extents ?? [{ offsetBytes: 0, lengthBytes: data.length, kind: "data" as const }];
    },
    read: async (offsetBytes, lengthBytes) => Buffer.from(data.subarray(offsetBytes, offsetBytes + lengthBytes)),
    close: async () => {},
  };
}
