import type { DiskFormat } from "../../format.ts";
import { QCOW2_MAGIC, QCOW2_VERSION_2, QCOW2_VERSION_3 } from "./layout.ts";
import { openQcow2 } from "./reader.ts";
import { createQcow2Writer } from "./writer.ts";

export type { Qcow2Header, Qcow2Source } from "./reader.ts";

export const qcow2Format: DiskFormat = {
  name: "qcow2",
  // Ref: qcow2 spec §"Header": magic "QFI\xfb" then a big-endian version; checking the version
  // too keeps qcow (version 1) images from being claimed.
  probe: (head) => {
    if (head.length < 8 || head.readUInt32BE(0) !== QCOW2_MAGIC) return false;
    const version = head.readUInt32BE(4);
    return version === QCOW2_VERSION_2 || version === QCOW2_VERSION_3;
  },
  open: (source, options) => openQcow2(source, options),
  createWriter: createQcow2Writer,
};
