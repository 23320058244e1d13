import type { DiskFormat } from "../../format.ts";
import { openRaw } from "./reader.ts";
import { createRawWriter } from "./writer.ts";

export const rawFormat: DiskFormat = {
  name: "raw",
  // Raw has no magic: detect() falls back to it when no other format claims the bytes.
  probe: () => false,
  open: async (source) => openRaw(source),
  createWriter: createRawWriter,
};
