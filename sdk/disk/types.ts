// The one idea (DESIGN.md): every disk is a DiskSource or a DiskSink, and convert() is the pipe.
//
// Offsets are JavaScript numbers, exact up to 2^53 (8 PiB). On-disk 64-bit fields are read as
// bigint and narrowed with `toSafeNumber` (layout.ts), which throws instead of losing bits.

import type { FileSpan } from "./file-span.ts";

export type DiskFormatName = "raw" | "vmdk" | "vhd" | "vhdx" | "qcow2";

/** A range of the virtual disk. Extents from a source are ordered, contiguous and cover the disk. */
export interface Extent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /**
   * "data": allocated, holds bytes (which may still be zeros; convert() checks).
   * "zero": known to read as zeros (unallocated, a zero flag, a hole) and never needs reading.
   */
  readonly kind: "data" | "zero";
}

/** Random-access bytes underneath a format reader: a local file, an HTTP range reader, a blob. */
export interface ByteSource {
  /** A short name for messages, e.g. the file path or URL without credentials. */
  readonly name: string;
  readonly sizeBytes: number;
  /**
   * Reads up to `lengthBytes` at `offsetBytes`. Returns fewer bytes only at end of input; use
   * `readExact` (io.ts) where a short read means a truncated image.
   */
  read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer>;
  /**
   * Where the bytes are allocated, when the storage can tell (a sparse local file): ordered,
   * contiguous extents over [0, sizeBytes), "zero" for ranges that read as zeros without being
   * stored. Absent when unknown.
   */
  extents?(): Iterable<Extent>;
  /** The open descriptor when the bytes are a local file, for copies inside the kernel. */
  readonly fd?: number;
  close(): Promise<void>;
}

/** A range of a disk that may have changed (change tracking). */
export interface DirtyRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/**
 * A live source's change tracking (a QEMU dirty bitmap, vSphere CBT): what may have changed
 * since an earlier view, so a pass reads only that. A tracker that cannot be sure says so
 * (undefined), and the pass reads everything: tracking never misses a write.
 */
export interface ChangeTracking {
  /**
   * Names this view for the next pass: the tracking behind it started before this view was
   * taken. A pass keeps it with its commit.
   */
  readonly token: string;
  /**
   * The ranges that may differ from what the view named `since` read: ascending, not
   * overlapping. Undefined when the tracker cannot say (tracking lost or reset, another disk).
   */
  changedSince(since: string): Promise<AsyncIterable<DirtyRange> | undefined>;
  /** The pass over this view was committed with `token`: older tracking may go. */
  committed(): void;
}

/** A virtual disk to read from: an image file of some format, a snapshot, a blob. */
export interface DiskSource {
  readonly format: DiskFormatName | string;
  /** e.g. "monolithicSparse", "streamOptimized", "dynamic", "fixed", "v3". */
  readonly subformat?: string;
  readonly virtualSizeBytes: number;
  /**
   * Ordered, contiguous extents covering [0, virtualSizeBytes). Generated lazily: a 1 TiB image
   * must not materialise millions of entries. A source without allocation information returns a
   * single "data" extent and lets convert() find the zeros.
   */
  extents(): AsyncIterable<Extent>;
  /**
   * Reads exactly `lengthBytes` (the range must lie inside the virtual disk). A source may fill
   * `into` (at least `lengthBytes` long) and return a view of it instead of allocating: callers
   * that recycle buffers pass one, and use whatever buffer comes back.
   */
  read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer>;
  /**
   * Where the range lies verbatim in local files, when it all does (file-span.ts): a raw image's
   * bytes, a qcow2's uncompressed clusters. Undefined when any of it does not (compressed, zero,
   * from a backing file, remote); the caller then reads.
   */
  fileSpan?(offsetBytes: number, lengthBytes: number): Promise<FileSpan | undefined>;
  /** Change tracking, when the source is a live disk whose platform tracks writes. */
  readonly changes?: ChangeTracking;
  close(): Promise<void>;
}

/** What a sink produced: a file, a snapshot id, a blob URL, a datastore path. */
export interface SinkResult {
  readonly location: string;
  /** Bytes of disk data written (zero ranges excluded). */
  readonly dataBytesWritten: number;
  readonly details?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * A virtual disk being written. The contract convert() keeps, so that every sink can be simple
 * and stream:
 * - a new sink reads as all zeros; ranges never written stay zero;
 * - `write` calls arrive in strictly increasing offset order and never overlap;
 * - offsets and lengths are multiples of 512, except that the last write may end at a virtual
 *   size that is not;
 * - a write never crosses a multiple of `blockSizeBytes` unless it starts on one and covers whole
 *   blocks (so block-allocating formats see whole blocks or pieces of one block);
 * - `data` belongs to the sink once passed: a sink may keep it until `finish()` to pipeline its
 *   I/O, so callers never reuse a buffer they have written.
 */
export interface DiskSink {
  readonly format: DiskFormatName | string;
  readonly virtualSizeBytes: number;
  /** The sink's allocation unit (grain, cluster, block); a power of two, at least 512. */
  readonly blockSizeBytes: number;
  write(offsetBytes: number, data: Buffer): Promise<void>;
  /**
   * Writes bytes that are still in a local file, as `write` would, under the same contract:
   * present when the sink stores data verbatim in a file target, so the kernel can copy them.
   * Never given a span of zeros: convert() has checked.
   */
  copy?(offsetBytes: number, span: FileSpan): Promise<void>;
  /** With `copy`: true when the kernel copies from the file open as `fd` into this sink's file. */
  copiesFrom?(fd: number): boolean;
  /**
   * True when the sink keeps no reference to `data` once write() resolves, so the caller may
   * recycle the buffer; a leased buffer (buffer-lease.ts) once it is also idle. Unset means the
   * sink may hold it until finish().
   */
  readonly releasesData?: boolean;
  /** Flushes metadata and returns the artefact. After finish() the sink is closed. */
  finish(): Promise<SinkResult>;
  /** Stops after a failure and releases resources; leaves no artefact marked complete. */
  abort(): Promise<void>;
}

/** Where a format writer puts its bytes. */
export interface ByteTarget {
  readonly name: string;
  /** True when writes must be appends in order (a pipe, an HTTP upload, an OVA entry). */
  readonly sequential: boolean;
  /**
   * May resolve before the bytes are stored (a file target pipelines its writes): the target
   * holds `data` until then, so a caller never modifies a buffer once written. Errors surface by
   * a later call or close() at the latest.
   */
  write(offsetBytes: number, data: Buffer): Promise<void>;
  /** Writes bytes still in local files at `offsetBytes`, copied by the kernel where it can (a file target). */
  copy?(offsetBytes: number, span: FileSpan): Promise<void>;
  /** With `copy`: true when the kernel copies from the file open as `fd` into this one. */
  copiesFrom?(fd: number): boolean;
  /**
   * True when the caller may reuse `data` once write() resolves: the target copies it, or holds
   * it under a lease (buffer-lease.ts) that the caller waits out with `idle` before reusing it.
   */
  readonly releasesData?: boolean;
  /** Sets the final length; on a file this leaves a hole rather than writing zeros. */
  truncate(lengthBytes: number): Promise<void>;
  close(): Promise<void>;
}
