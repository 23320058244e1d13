// VHDX ([MS-VHDX] v1.0): dynamic and fixed disks, read and written; differencing disks refused.
import type { DiskFormat } from "../../format.ts";
import { FILE_IDENTIFIER_SIGNATURE } from "./layout.ts";
import { openVhdx } from "./reader.ts";
import { createVhdxWriter } from "./writer.ts";

export const vhdxFormat: DiskFormat = {
  name: "vhdx",
  // §2.2.1: every VHDX file starts with the 8-byte "vhdxfile" identifier.
  probe: (head) => head.length >= FILE_IDENTIFIER_SIGNATURE.length && head.subarray(0, FILE_IDENTIFIER_SIGNATURE.length).equals(FILE_IDENTIFIER_SIGNATURE),
  open: openVhdx,
  createWriter: createVhdxWriter,
};
