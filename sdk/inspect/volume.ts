// A bounded window onto a DiskSource: a partition, or the whole disk. Every structure the
// inspectors read goes through here, so an offset or length taken from hostile metadata is
// checked against the volume (and the disk) before a byte is read, and no single read can ask
// for more memory than MAX_INSPECT_READ_BYTES.
import { FormatError } from "../errors.ts";
import type { DiskSource } from "../disk/types.ts";

/**
 * 16 MiB: the largest single read any inspector needs is an ext4 block or an NTFS index
 * record (64 KiB at most) or a config file (capped far lower); this is a backstop against a
 * length field that escaped its own check.
 */
export const MAX_INSPECT_READ_BYTES = 16 * 1024 * 1024;

export interface Volume {
  readonly disk: DiskSource;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** For messages and evidence paths: `p2`, `disk`. */
  readonly name: string;
}

export function wholeDisk(disk: DiskSource): Volume {
  return { disk, offsetBytes: 0, lengthBytes: disk.virtualSizeBytes, name: "disk" };
}

/** A sub-range of the disk; throws INSPECT_OUT_OF_RANGE when it does not fit the disk. */
export function subVolume(disk: DiskSource, offsetBytes: number, lengthBytes: number, name: string): Volume {
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > disk.virtualSizeBytes) {
    throw new FormatError("INSPECT_OUT_OF_RANGE", `${name}: range 0x${offsetBytes.toString(16)}+0x${lengthBytes.toString(16)} lies outside the disk (0x${disk.virtualSizeBytes.toString(16)} bytes)`, {
      context: { volume: name, offsetBytes, lengthBytes, diskBytes: disk.virtualSizeBytes },
    });
  }
  return { disk, offsetBytes, lengthBytes, name };
}

/**
 * Reads `lengthBytes` at `offsetBytes` inside the volume. `what` names the structure for the
 * message (`ext4 inode 12`); `code` lets a reader report its own error code.
 */
export async function readVolume(volume: Volume, offsetBytes: number, lengthBytes: number, what: string, code = "INSPECT_OUT_OF_RANGE"): Promise<Buffer> {
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > volume.lengthBytes) {
    throw new FormatError(code, `${volume.name}: ${what} at 0x${offsetBytes.toString(16)} (+${lengthBytes}) lies outside the volume (0x${volume.lengthBytes.toString(16)} bytes)`, {
      context: { volume: volume.name, offsetBytes, lengthBytes, volumeBytes: volume.lengthBytes },
    });
  }
  if (lengthBytes > MAX_INSPECT_READ_BYTES) {
    throw new FormatError("INSPECT_READ_TOO_LARGE", `${volume.name}: ${what} asks for ${lengthBytes} bytes in one read (limit ${MAX_INSPECT_READ_BYTES})`, {
      context: { volume: volume.name, offsetBytes, lengthBytes },
    });
  }
  if (lengthBytes === 0) return Buffer.alloc(0);
  return volume.disk.read(volume.offsetBytes + offsetBytes, lengthBytes);
}

/** A coded FormatError for the inspectors; `where` starts the message (`p2: ext4`). */
export function inspectError(code: string, where: string, message: string, context: Readonly<Record<string, string | number | boolean | bigint | undefined>> = {}): FormatError {
  return new FormatError(code, `${where}: ${message}`, { context });
}

/** Narrows a 64-bit field to a number, or throws `code` (no silent precision loss). */
export function safeNumber(value: bigint, code: string, where: string, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw inspectError(code, where, `${what} ${value} exceeds 2^53`, { field: what });
  return Number(value);
}
