// The VMDK format: monolithicSparse, streamOptimized and descriptor-based multi-extent disks.
import type { DiskFormat } from "../../format.ts";
import { VMDK_COWD_MAGIC, VMDK_SPARSE_MAGIC } from "./layout.ts";
import { looksLikeDescriptor, openVmdk } from "./reader.ts";
import { createVmdkWriter } from "./writer.ts";

export const vmdkFormat: DiskFormat = {
  name: "vmdk",
  probe(head) {
    if (head.length < 4) return false;
    const magic = head.readUInt32LE(0);
    return magic === VMDK_SPARSE_MAGIC || magic === VMDK_COWD_MAGIC || looksLikeDescriptor(head);
  },
  open: openVmdk,
  createWriter: createVmdkWriter,
};
