import type { DiskFormat } from "../../format.ts";
import { VHD_FOOTER_BYTES, VHD_FOOTER_COOKIE } from "./layout.ts";
import { openVhd } from "./reader.ts";
import { createVhdWriter } from "./writer.ts";

const COOKIE = Buffer.from(VHD_FOOTER_COOKIE, "latin1");

export const vhdFormat: DiskFormat = {
  name: "vhd",
  // Every VHD ends with its footer; a dynamic one also starts with a copy of it.
  probe: (head, tail, sizeBytes) =>
    (head.length >= COOKIE.length && head.subarray(0, COOKIE.length).equals(COOKIE)) ||
    (sizeBytes >= VHD_FOOTER_BYTES && tail.length >= VHD_FOOTER_BYTES &&
      tail.subarray(tail.length - VHD_FOOTER_BYTES, tail.length - VHD_FOOTER_BYTES + COOKIE.length).equals(COOKIE)),
  open: openVhd,
  createWriter: createVhdWriter,
};
