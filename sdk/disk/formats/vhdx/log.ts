// In-memory replay of a VHDX metadata log ([MS-VHDX] §2.3.3). A file whose header names a
// non-zero LogGuid was closed before its log was applied, so its BAT, metadata or data may be
// stale on disk. Instead of writing the file (the source is never written), we find the active
// log sequence and return a ByteSource that overlays the logged sectors on the file's bytes.
import { FormatError, NotCapableError } from "../../../errors.ts";
import { readExact } from "../../io.ts";
import { toSafeNumber } from "../../layout.ts";
import type { ByteSource } from "../../types.ts";
import { crc32cWithZeroedField } from "./crc32c.ts";
import {
  FORMAT_NAME,
  LOG_DATA_DESCRIPTOR_SIGNATURE,
  LOG_DATA_SECTOR_SIGNATURE,
  LOG_DATA_SECTOR_TRAILING_BYTES,
  LOG_DESCRIPTOR_BYTES,
  LOG_ENTRY_CHECKSUM_OFFSET_BYTES,
  LOG_ENTRY_HEADER_BYTES,
  LOG_ENTRY_SIGNATURE,
  LOG_SECTOR_BYTES,
  LOG_ZERO_DESCRIPTOR_SIGNATURE,
  LogDataDescriptor,
  LogDataSector,
  LogEntryHeader,
  LogZeroDescriptor,
  VHDX_HEADER_SECTION_BYTES,
} from "./layout.ts";

/**
 * The largest log we replay. The whole log is read into memory once (Hyper-V and qemu make
 * 1 MiB logs), and the replayed sectors stay in memory while the image is open, so this bounds
 * the reader's memory at well under the 256 MiB RSS target.
 */
export const VHDX_MAX_REPLAY_LOG_BYTES = 64 * 1024 * 1024;

export interface LogRegion {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly guid: Buffer;
}

interface LogEntry {
  readonly positionBytes: number;
  readonly lengthBytes: number;
  readonly tailBytes: number;
  readonly sequenceNumber: bigint;
  readonly descriptorCount: number;
  readonly flushedFileOffsetBytes: number;
  readonly lastFileOffsetBytes: number;
}

interface ZeroRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

function corrupt(message: string, context: Record<string, number | string> = {}): FormatError {
  return new FormatError("VHDX_LOG_CORRUPT", `${FORMAT_NAME}: log needs replay but is corrupt: ${message}`, { context });
}

/**
 * Replays the log in memory and returns the file as it reads after replay. Refuses with
 * VHDX_LOG_CORRUPT when the header asks for a replay but no valid sequence exists, or when the
 * active sequence writes where it must not.
 */
export async function replayLog(source: ByteSource, log: LogRegion): Promise<ByteSource> {
  if (log.lengthBytes > VHDX_MAX_REPLAY_LOG_BYTES) {
    throw new NotCapableError(
      "VHDX_LOG_TOO_LARGE",
      `${FORMAT_NAME}: log needs replay, but its ${log.lengthBytes} bytes exceed the ${VHDX_MAX_REPLAY_LOG_BYTES}-byte replay limit`,
      { context: { logLengthBytes: log.lengthBytes } },
    );
  }
  const logBytes = await readExact(source, log.offsetBytes, log.lengthBytes, FORMAT_NAME, "log");
  const sequence = findActiveSequence(logBytes, log.guid);
  if (sequence.length === 0) throw corrupt("no log entry with a valid checksum carries the header's LogGuid");

  const sectors = new Map<number, Buffer>();
  const zeros: ZeroRange[] = [];
  let lastFileOffsetBytes = 0;
  for (const entry of sequence) {
    if (entry.flushedFileOffsetBytes > source.sizeBytes) {
      throw corrupt(`entry ${entry.sequenceNumber} says the file held 0x${entry.flushedFileOffsetBytes.toString(16)} bytes, but it has 0x${source.sizeBytes.toString(16)}`);
    }
    lastFileOffsetBytes = Math.max(lastFileOffsetBytes, entry.lastFileOffsetBytes);
    applyEntry(logBytes, entry, sectors, zeros);
  }
  return overlaySource(source, sectors, zeros, Math.max(source.sizeBytes, lastFileOffsetBytes));
}

function wrapped(logBytes: Buffer, positionBytes: number, lengthBytes: number): Buffer {
  // §2.3: the log is a circular buffer, so an entry may run past its end and continue at 0.
  if (positionBytes + lengthBytes <= logBytes.length) return logBytes.subarray(positionBytes, positionBytes + lengthBytes);
  const head = logBytes.subarray(positionBytes);
  return Buffer.concat([head, logBytes.subarray(0, lengthBytes - head.length)]);
}

function parseEntry(logBytes: Buffer, positionBytes: number, logGuid: Buffer): LogEntry | undefined {
  if (logBytes.readUInt32LE(positionBytes) !== LOG_ENTRY_SIGNATURE) return undefined;
  const header = LogEntryHeader.get(logBytes, positionBytes);
  const { entryLengthBytes, tailBytes, descriptorCount } = header;
  if (entryLengthBytes === 0 || entryLengthBytes % LOG_SECTOR_BYTES !== 0 || entryLengthBytes > logBytes.length) return undefined;
  if (tailBytes % LOG_SECTOR_BYTES !== 0 || tailBytes >= logBytes.length) return undefined;
  if (!header.logGuid.equals(logGuid)) return undefined;
  // §2.3.1.1: descriptors fill whole sectors after the header, then one data sector per data descriptor.
  const descriptorAreaBytes = Math.ceil((LOG_ENTRY_HEADER_BYTES + descriptorCount * LOG_DESCRIPTOR_BYTES) / LOG_SECTOR_BYTES) * LOG_SECTOR_BYTES;
  if (descriptorAreaBytes > entryLengthBytes) return undefined;
  const entryBytes = wrapped(logBytes, positionBytes, entryLengthBytes);
  if (crc32cWithZeroedField(entryBytes, LOG_ENTRY_CHECKSUM_OFFSET_BYTES) !== header.checksum) return undefined;
  return {
    positionBytes,
    lengthBytes: entryLengthBytes,
    tailBytes,
    sequenceNumber: header.sequenceNumber,
    descriptorCount,
    flushedFileOffsetBytes: toSafeNumber(header.flushedFileOffsetBytes, "log FlushedFileOffset", FORMAT_NAME),
    lastFileOffsetBytes: toSafeNumber(header.lastFileOffsetBytes, "log LastFileOffset", FORMAT_NAME),
  };
}

/**
 * §2.3.3: the active sequence is the run of valid entries with consecutive sequence numbers
 * whose last entry (the head) has the highest sequence number, starting at the head's Tail.
 */
function findActiveSequence(logBytes: Buffer, logGuid: Buffer): LogEntry[] {
  const entries = new Map<number, LogEntry>();
  for (let positionBytes = 0; positionBytes < logBytes.length; positionBytes += LOG_SECTOR_BYTES) {
    const entry = parseEntry(logBytes, positionBytes, logGuid);
    if (entry !== undefined) entries.set(positionBytes, entry);
  }
  const successor = (entry: LogEntry): LogEntry | undefined => {
    const next = entries.get((entry.positionBytes + entry.lengthBytes) % logBytes.length);
    return next !== undefined && next.sequenceNumber === entry.sequenceNumber + 1n ? next : undefined;
  };
  // The last entry reachable from each entry, memoised so that a log full of one long chain
  // costs linear, not quadratic, time. Sequence numbers rise along a chain, so it cannot loop.
  const headOf = new Map<LogEntry, LogEntry>();
  const findHead = (start: LogEntry): LogEntry => {
    const path: LogEntry[] = [];
    let current: LogEntry = start;
    let head = headOf.get(current);
    while (head === undefined) {
      path.push(current);
      const next = successor(current);
      if (next === undefined) {
        head = current;
        break;
      }
      current = next;
      head = headOf.get(current);
    }
    for (const visited of path) headOf.set(visited, head);
    return head;
  };
  let bestTail: LogEntry | undefined;
  let bestHead: LogEntry | undefined;
  for (const tail of entries.values()) {
    const head = findHead(tail);
    // The head names the first entry still to replay; a run that starts elsewhere is not whole.
    if (head.tailBytes !== tail.positionBytes) continue;
    if (bestHead === undefined || head.sequenceNumber > bestHead.sequenceNumber) {
      bestTail = tail;
      bestHead = head;
    }
  }
  const sequence: LogEntry[] = [];
  for (let entry = bestTail; entry !== undefined; entry = entry === bestHead ? undefined : successor(entry)) sequence.push(entry);
  return sequence;
}

function applyEntry(logBytes: Buffer, entry: LogEntry, sectors: Map<number, Buffer>, zeros: ZeroRange[]): void {
  const entryBytes = wrapped(logBytes, entry.positionBytes, entry.lengthBytes);
  const descriptorAreaBytes = Math.ceil((LOG_ENTRY_HEADER_BYTES + entry.descriptorCount * LOG_DESCRIPTOR_BYTES) / LOG_SECTOR_BYTES) * LOG_SECTOR_BYTES;
  let dataSectorBytes = descriptorAreaBytes;
  for (let index = 0; index < entry.descriptorCount; index++) {
    const at = LOG_ENTRY_HEADER_BYTES + index * LOG_DESCRIPTOR_BYTES;
    const signature = entryBytes.readUInt32LE(at);
    const context = { entry: String(entry.sequenceNumber), descriptor: index };
    if (signature === LOG_ZERO_DESCRIPTOR_SIGNATURE) {
      const descriptor = LogZeroDescriptor.get(entryBytes, at);
      if (descriptor.sequenceNumber !== entry.sequenceNumber) throw corrupt(`descriptor ${index} has a foreign sequence number`, context);
      const offsetBytes = checkedTarget(descriptor.fileOffsetBytes, index);
      const lengthBytes = toSafeNumber(descriptor.zeroLengthBytes, "log zero length", FORMAT_NAME);
      if (lengthBytes % LOG_SECTOR_BYTES !== 0) throw corrupt(`zero descriptor ${index} length ${lengthBytes} is not a multiple of 4 KiB`, context);
      // A later zero range hides earlier logged sectors; later sectors win over it in overlay order.
      for (const sectorOffset of sectors.keys()) {
        if (sectorOffset >= offsetBytes && sectorOffset < offsetBytes + lengthBytes) sectors.delete(sectorOffset);
      }
      zeros.push({ offsetBytes, lengthBytes });
    } else if (signature === LOG_DATA_DESCRIPTOR_SIGNATURE) {
      const descriptor = LogDataDescriptor.get(entryBytes, at);
      if (descriptor.sequenceNumber !== entry.sequenceNumber) throw corrupt(`descriptor ${index} has a foreign sequence number`, context);
      const offsetBytes = checkedTarget(descriptor.fileOffsetBytes, index);
      if (dataSectorBytes + LOG_SECTOR_BYTES > entry.lengthBytes) throw corrupt(`entry has fewer data sectors than data descriptors`, context);
      const dataSector = entryBytes.subarray(dataSectorBytes, dataSectorBytes + LOG_SECTOR_BYTES);
      const fields = LogDataSector.get(dataSector, 0);
      const sectorSequence = (BigInt(fields.sequenceHigh) << 32n) | BigInt(fields.sequenceLow);
      if (fields.signature !== LOG_DATA_SECTOR_SIGNATURE || sectorSequence !== entry.sequenceNumber) {
        throw corrupt(`data sector for descriptor ${index} has a bad signature or sequence number`, context);
      }
      const sector = Buffer.from(dataSector);
      descriptor.leadingBytes.copy(sector, 0);
      descriptor.trailingBytes.copy(sector, LOG_SECTOR_BYTES - LOG_DATA_SECTOR_TRAILING_BYTES);
      sectors.set(offsetBytes, sector);
      dataSectorBytes += LOG_SECTOR_BYTES;
    } else {
      throw corrupt(`descriptor ${index} has unknown signature 0x${signature.toString(16)}`, context);
    }
  }
}

function checkedTarget(fileOffset: bigint, index: number): number {
  const offsetBytes = toSafeNumber(fileOffset, "log descriptor file offset", FORMAT_NAME);
  // §2.3.1.2-3: targets are 4 KiB aligned; the log never rewrites the header section (§2.3.3
  // updates headers separately), so a descriptor aimed there is corruption, not data.
  if (offsetBytes % LOG_SECTOR_BYTES !== 0 || offsetBytes < VHDX_HEADER_SECTION_BYTES) {
    throw corrupt(`descriptor ${index} targets file offset 0x${offsetBytes.toString(16)}`, { descriptor: index, offsetBytes });
  }
  return offsetBytes;
}

function overlaySource(base: ByteSource, sectors: Map<number, Buffer>, zeros: readonly ZeroRange[], sizeBytes: number): ByteSource {
  return {
    name: base.name,
    sizeBytes,
    async read(offsetBytes, lengthBytes) {
      const endBytes = Math.min(sizeBytes, offsetBytes + lengthBytes);
      if (endBytes <= offsetBytes) return Buffer.alloc(0);
      const out = Buffer.alloc(endBytes - offsetBytes);
      // Past the file's own end (up to the log's LastFileOffset) the file reads as zeros.
      if (offsetBytes < base.sizeBytes) {
        const got = await base.read(offsetBytes, Math.min(endBytes, base.sizeBytes) - offsetBytes);
        got.copy(out, 0);
      }
      for (const zero of zeros) {
        const from = Math.max(offsetBytes, zero.offsetBytes);
        const to = Math.min(endBytes, zero.offsetBytes + zero.lengthBytes);
        if (from < to) out.fill(0, from - offsetBytes, to - offsetBytes);
      }
      for (const [sectorOffset, sector] of sectors) {
        const from = Math.max(offsetBytes, sectorOffset);
        const to = Math.min(endBytes, sectorOffset + LOG_SECTOR_BYTES);
        if (from < to) sector.copy(out, from - offsetBytes, from - sectorOffset, to - sectorOffset);
      }
      return out;
    },
    close: () => base.close(),
  };
}
