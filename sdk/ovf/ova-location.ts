// `file.ova!disk.vmdk`: how a disk inside an OVA is named wherever a disk path is accepted, and
// exactly what `portable ovf` prints as that disk's location. This module is the one place that
// writes and parses the form, and that tells an OVA archive from a disk image by its bytes.
import { stat } from "node:fs/promises";
import { openFileSource } from "../disk/io.ts";
import type { ByteSource } from "../disk/types.ts";
import { indexTar } from "./tar-index.ts";

/** A disk inside an OVA: the archive's path and the tar entry name (the descriptor's File href). */
export interface OvaLocation {
  readonly path: string;
  readonly entry: string;
}

const OVA_EXTENSION = /\.ova$/i;
/** The ustar magic "ustar" sits at byte 257 of every POSIX tar header (IEEE 1003.1 §ustar). */
const USTAR_MAGIC_OFFSET_BYTES = 257;
const USTAR_MAGIC = "ustar";

export function formatOvaLocation(path: string, entry: string): string {
  return `${path}!${entry}`;
}

/**
 * The syntax alone: splits at the last "!" when the part before it ends in ".ova" (any case) and
 * an entry follows. Undefined for anything else. Entry names are checked when the archive is
 * indexed (tar-index.ts), so a location cannot reach outside its archive.
 */
export function parseOvaLocation(text: string): OvaLocation | undefined {
  const bang = text.lastIndexOf("!");
  if (bang < 0) return undefined;
  const path = text.slice(0, bang);
  const entry = text.slice(bang + 1);
  if (!OVA_EXTENSION.test(path) || entry === "") return undefined;
  return { path, entry };
}

/** The rule for a typed path: an existing file of that very name wins over the `!` form. */
export async function resolveOvaLocation(text: string): Promise<OvaLocation | undefined> {
  const location = parseOvaLocation(text);
  if (location === undefined) return undefined;
  const existing = await stat(text).catch(() => undefined);
  return existing?.isFile() === true ? undefined : location;
}

/**
 * True when the bytes are a tar archive to read as an OVA: the ustar magic at byte 257, or an
 * older tar whose headers index cleanly and hold a .ovf. A disk image has neither: no image
 * format's header holds "ustar" there, and a raw disk's first sector fails a tar checksum.
 */
export async function isOvaArchive(source: ByteSource): Promise<boolean> {
  const magic = await source.read(USTAR_MAGIC_OFFSET_BYTES, USTAR_MAGIC.length);
  if (magic.toString("latin1") === USTAR_MAGIC) return true;
  try {
    return (await indexTar(source)).some((entry) => /\.ovf$/i.test(entry.name));
  } catch {
    return false;
  }
}

/** isOvaArchive() of a local file; false for anything that is not a regular file. */
export async function isOvaFile(path: string): Promise<boolean> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFile() !== true) return false;
  const source = await openFileSource(path);
  try {
    return await isOvaArchive(source);
  } finally {
    await source.close();
  }
}
