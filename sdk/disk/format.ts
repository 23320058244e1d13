// What every format folder (sdk/disk/formats/<name>/index.ts) exports, so that detect(),
// convert and the CLI treat all formats alike.
import type { ByteSource, ByteTarget, DiskFormatName, DiskSink, DiskSource } from "./types.ts";

/** Bytes detect() hands to `probe`: enough for every magic and the VHD footer. */
export const PROBE_HEAD_BYTES = 64 * 1024;
export const PROBE_TAIL_BYTES = 512;

export interface OpenOptions {
  /**
   * Opens a file named by the image itself, relative to it (VMDK descriptor extents, a qcow2
   * backing file). Without it such images are refused with a clear error.
   */
  readonly openRelative?: (name: string) => Promise<ByteSource>;
  /** The parent disk for a qcow2 backing file or a differencing VHD/VHDX, when the caller has it. */
  readonly backing?: DiskSource;
}

/**
 * Writer options. `virtualSizeBytes` is always given; the rest are format-specific keys
 * (e.g. `subformat`, `clusterSize`), which the writer validates with zod. Values may arrive as
 * strings from the CLI's `-o key=value`, so writers coerce.
 */
export interface WriterOptions {
  readonly virtualSizeBytes: number;
  readonly [key: string]: unknown;
}

export interface DiskFormat {
  readonly name: DiskFormatName;
  /** True when the head (first PROBE_HEAD_BYTES) or tail (last PROBE_TAIL_BYTES) carries this format's magic. */
  probe(head: Buffer, tail: Buffer, sizeBytes: number): boolean;
  /**
   * Reads an image. On success the returned DiskSource owns `source` (its close() closes it); on
   * failure `source` stays the caller's to close.
   */
  open(source: ByteSource, options?: OpenOptions): Promise<DiskSource>;
  createWriter(target: ByteTarget, options: WriterOptions): Promise<DiskSink>;
}
