// The format registry. Order matters for detect(): formats with a header magic come before
// VHD, whose fixed variant is recognised only by its footer, and raw is the fallback.
import { InvalidArgsError } from "../../errors.ts";
import type { DiskFormat } from "../format.ts";
import type { DiskFormatName } from "../types.ts";
import { qcow2Format } from "./qcow2/index.ts";
import { rawFormat } from "./raw/index.ts";
import { vhdFormat } from "./vhd/index.ts";
import { vhdxFormat } from "./vhdx/index.ts";
import { vmdkFormat } from "./vmdk/index.ts";

export const FORMATS: readonly DiskFormat[] = [qcow2Format, vhdxFormat, vmdkFormat, vhdFormat, rawFormat];

/** qemu-img's names for the same formats, so its users can keep theirs. */
const ALIASES: Readonly<Record<string, DiskFormatName>> = { vpc: "vhd" };

/** Looks a format up by our name or qemu-img's; unknown names get a list of the known ones. */
export function formatByName(name: string): DiskFormat {
  const wanted = ALIASES[name] ?? name;
  const format = FORMATS.find((f) => f.name === wanted);
  if (format === undefined) {
    throw new InvalidArgsError(
      "UNKNOWN_FORMAT",
      `unknown disk format "${name}" (known: ${FORMATS.map((f) => f.name).join(", ")}; vpc is vhd)`,
      { context: { format: name } },
    );
  }
  return format;
}
