// detect() and openDisk(): from a path or ByteSource to a DiskSource of the right format.
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { FormatError } from "../errors.ts";
import { PROBE_HEAD_BYTES, PROBE_TAIL_BYTES, type DiskFormat, type OpenOptions } from "./format.ts";
import { FORMATS, formatByName } from "./formats/index.ts";
import { openFileSource } from "./io.ts";
import type { ByteSource, DiskFormatName, DiskSource } from "./types.ts";

/**
 * Names the format of an image by magic numbers: the header for qcow2, VHDX, VMDK and dynamic
 * VHD, the 512-byte footer for fixed VHD. Anything else is raw, as qemu-img decides.
 */
export async function detect(source: ByteSource): Promise<DiskFormat> {
  const head = await source.read(0, PROBE_HEAD_BYTES);
  const tail = await source.read(Math.max(0, source.sizeBytes - PROBE_TAIL_BYTES), PROBE_TAIL_BYTES);
  return FORMATS.find((format) => format.probe(head, tail, source.sizeBytes)) ?? formatByName("raw");
}

/**
 * Resolves a file an image refers to (a VMDK extent, a backing file) inside the image's own
 * folder, so a hostile descriptor cannot read `../../etc/shadow`.
 */
export function siblingOpener(imagePath: string): (name: string) => Promise<ByteSource> {
  const folder = dirname(resolve(imagePath));
  return async (name) => {
    const path = resolve(folder, name);
    const rel = relative(folder, path);
    if (isAbsolute(name) || rel.startsWith("..") || isAbsolute(rel)) {
      throw new FormatError("PATH_ESCAPE", `${imagePath}: refers to "${name}" outside its folder`, {
        context: { name },
      });
    }
    return openFileSource(path);
  };
}

export interface OpenDiskOptions extends OpenOptions {
  /** Skip detection and read as this format. */
  readonly format?: DiskFormatName;
}

/** Opens an image file read-only, detecting its format unless one is given. */
export async function openDisk(path: string, options: OpenDiskOptions = {}): Promise<DiskSource> {
  const bytes = await openFileSource(path);
  try {
    const format = options.format === undefined ? await detect(bytes) : formatByName(options.format);
    return await format.open(bytes, { openRelative: siblingOpener(path), ...options });
  } catch (err) {
    await bytes.close();
    throw err;
  }
}
