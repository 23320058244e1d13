// Lists a tar archive's entries with their byte ranges, reading only the 512-byte headers.
//
// Written by hand because tar-stream (used for writing, ova-writer.ts) only streams entries in
// order and never says where an entry's data lies in the file; an OVA disk opened as a
// DiskSource needs exactly that range, so it can be read in place without extraction.
// Format: POSIX.1-2001 ustar with pax extended headers (IEEE 1003.1 "pax" §ustar Interchange
// Format, §pax Extended Header), plus GNU long names ('L'), which ovftool and GNU tar write.
import { FormatError } from "../errors.ts";
import { readExact } from "../disk/io.ts";
import type { ByteSource } from "../disk/types.ts";

export const TAR_BLOCK_BYTES = 512;
/**
 * Entries accepted in one OVA. A package holds a descriptor, a manifest, a certificate and its
 * disks (or their chunks: a 2 TiB disk in ovftool's 4 GiB default chunks is 512); 4096 bounds
 * the index's memory and a hostile archive's header walk.
 */
export const OVA_MAX_ENTRIES = 4096;
/** pax and GNU long-name records are a few hundred bytes; 64 KiB is far past any honest one. */
export const TAR_MAX_META_BYTES = 64 * 1024;

export interface TarEntry {
  /** The name as stored (pax path or GNU long name win over the header field). */
  readonly name: string;
  /** Where the entry's data starts in the archive. */
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  /** Position in the archive, counting only file entries. */
  readonly index: number;
}

function cString(buf: Buffer, offset: number, length: number): string {
  const field = buf.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString("utf8");
}

/** Octal ASCII, or base-256 when the high bit of the first byte is set (GNU/star, sizes ≥ 8 GiB). */
function numeric(buf: Buffer, offset: number, length: number, what: string, at: number): number {
  const field = buf.subarray(offset, offset + length);
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = BigInt((field[0] ?? 0) & 0x7f);
    for (let i = 1; i < field.length; i++) value = (value << 8n) | BigInt(field[i] ?? 0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError("OVA_TAR_HEADER_INVALID", `tar: ${what} of header at 0x${at.toString(16)} exceeds 2^53`, { context: { offsetBytes: at } });
    return Number(value);
  }
  const text = field.toString("latin1").replace(/\0.*$/s, "").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new FormatError("OVA_TAR_HEADER_INVALID", `tar: ${what} "${text}" of header at 0x${at.toString(16)} is not octal`, { context: { offsetBytes: at } });
  return parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK_BYTES; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  const stored = parseInt(header.subarray(148, 156).toString("latin1").replace(/\0.*$/s, "").trim() || "-1", 8);
  return stored === sum;
}

/** pax records: "<length> <key>=<value>\n", the length counting the whole record. */
function parsePax(data: Buffer, at: number): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < data.length) {
    const space = data.indexOf(0x20, position);
    const length = space < 0 ? NaN : Number(data.subarray(position, space).toString("latin1"));
    if (!Number.isInteger(length) || length <= 0 || position + length > data.length) {
      throw new FormatError("OVA_TAR_HEADER_INVALID", `tar: malformed pax record in header at 0x${at.toString(16)}`, { context: { offsetBytes: at } });
    }
    const record = data.subarray(space + 1, position + length - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    position += length;
  }
  return records;
}

/**
 * Names an OVA may hold: relative, without "..", without a drive letter or backslash, and
 * without NUL. Anything else could write or read outside a folder when a tool extracts it.
 */
export function checkEntryName(name: string, archive: string): void {
  const segments = name.split("/");
  const bad =
    name === "" ||
    name.includes("\0") ||
    name.includes("\\") ||
    name.startsWith("/") ||
    /^[A-Za-z]:/.test(name) ||
    segments.some((segment) => segment === "..");
  if (bad) {
    throw new FormatError("OVA_ENTRY_PATH", `ova: ${archive} holds entry "${name}", which is absolute or leaves its folder`, { context: { entry: name } });
  }
}

const LINK_TYPES: Readonly<Record<string, string>> = { "1": "hard link", "2": "symbolic link" };
const SPECIAL_TYPES: Readonly<Record<string, string>> = { "3": "character device", "4": "block device", "6": "FIFO" };

/**
 * Walks the headers of a tar archive. Refuses links, devices, unsafe names, duplicate names,
 * entries past the end of the archive, bad checksums and more than OVA_MAX_ENTRIES entries.
 */
export async function indexTar(source: ByteSource): Promise<TarEntry[]> {
  const archive = source.name;
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  let position = 0;
  let pending: { path?: string; size?: number } = {};
  let headers = 0;
  while (position + TAR_BLOCK_BYTES <= source.sizeBytes) {
    const header = await readExact(source, position, TAR_BLOCK_BYTES, "tar", "header");
    if (header.every((b) => b === 0)) break;
    if (++headers > OVA_MAX_ENTRIES * 3) {
      throw new FormatError("OVA_TOO_MANY_ENTRIES", `ova: ${archive} has more than ${OVA_MAX_ENTRIES} entries`, { context: { limit: OVA_MAX_ENTRIES } });
    }
    if (!checksumOk(header)) {
      throw new FormatError("OVA_TAR_CHECKSUM", `tar: header at 0x${position.toString(16)} of ${archive} fails its checksum (not a tar archive, or corrupt)`, {
        context: { offsetBytes: position },
      });
    }
    const type = String.fromCharCode(header[156] ?? 0);
    const headerSize = numeric(header, 124, 12, "size", position);
    const dataOffset = position + TAR_BLOCK_BYTES;
    const size = type === "0" || type === "\0" || type === "7" ? (pending.size ?? headerSize) : headerSize;
    if (dataOffset + size > source.sizeBytes) {
      throw new FormatError("OVA_ENTRY_TRUNCATED", `ova: entry at 0x${position.toString(16)} of ${archive} claims ${size} bytes, past the end of the archive (${source.sizeBytes} bytes)`, {
        context: { offsetBytes: dataOffset, sizeBytes: size, archiveBytes: source.sizeBytes },
      });
    }
    const next = dataOffset + Math.ceil(size / TAR_BLOCK_BYTES) * TAR_BLOCK_BYTES;
    if (type === "x" || type === "L" || type === "g") {
      if (size > TAR_MAX_META_BYTES) {
        throw new FormatError("OVA_TAR_HEADER_INVALID", `tar: metadata entry at 0x${position.toString(16)} is ${size} bytes, over ${TAR_MAX_META_BYTES}`, { context: { offsetBytes: position } });
      }
      const data = await readExact(source, dataOffset, size, "tar", "metadata");
      if (type === "L") pending.path = cString(data, 0, data.length);
      else if (type === "x") {
        const pax = parsePax(data, position);
        const path = pax.get("path");
        const paxSize = pax.get("size");
        if (path !== undefined) pending.path = path;
        if (paxSize !== undefined) {
          if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) {
            throw new FormatError("OVA_TAR_HEADER_INVALID", `tar: pax size "${paxSize}" at 0x${position.toString(16)} is not a byte count`, { context: { offsetBytes: position } });
          }
          pending.size = Number(paxSize);
        }
      }
      position = next;
      continue;
    }
    const prefix = cString(header, 345, 155);
    const magic = header.subarray(257, 262).toString("latin1");
    const shortName = cString(header, 0, 100);
    const name = pending.path ?? (magic === "ustar" && prefix !== "" ? `${prefix}/${shortName}` : shortName);
    pending = {};
    const link = LINK_TYPES[type];
    if (link !== undefined) {
      throw new FormatError("OVA_ENTRY_LINK", `ova: ${archive} holds a ${link} "${name}" → "${cString(header, 157, 100)}"; OVA entries must be plain files`, {
        context: { entry: name, type },
      });
    }
    const special = SPECIAL_TYPES[type];
    if (special !== undefined) {
      throw new FormatError("OVA_ENTRY_TYPE", `ova: ${archive} holds a ${special} "${name}"; OVA entries must be plain files`, { context: { entry: name, type } });
    }
    checkEntryName(name, archive);
    if (type !== "5") {
      if (seen.has(name)) {
        // Two entries with one name let a manifest check one copy while a reader uses the other.
        throw new FormatError("OVA_ENTRY_DUPLICATE", `ova: ${archive} holds "${name}" twice`, { context: { entry: name } });
      }
      seen.add(name);
      entries.push({ name, offsetBytes: dataOffset, sizeBytes: size, index: entries.length });
      if (entries.length > OVA_MAX_ENTRIES) {
        throw new FormatError("OVA_TOO_MANY_ENTRIES", `ova: ${archive} has more than ${OVA_MAX_ENTRIES} entries`, { context: { limit: OVA_MAX_ENTRIES } });
      }
    }
    position = next;
  }
  return entries;
}
