// Workload + disks → an OVA streamed to any Writable, with no temp file and bounded memory.
//
// Order (DSP0243 §5.3, and what streaming importers such as vCenter's need): the .ovf first,
// then each disk as a streamOptimized VMDK, then the .mf manifest with SHA-256 of each file.
//
// A tar header carries its entry's size before the data, but a streamOptimized VMDK's size is
// known only once it has been compressed. Buffering a whole disk would break the memory bound
// and a temp file is ruled out, so each disk is converted twice: a sizing pass into a counting
// target that discards the bytes, then the real pass into the tar entry. The vmdk writer is
// deterministic in length (deflate output depends only on the input; the descriptor's random
// CID and content id have fixed widths), so both passes produce the same size; the second
// pass checks that it did and fails with OVA_SIZE_CHANGED if the source changed in between.
// The cost is a second read and deflate of the data, traded for O(1) memory and no disk space.
import { createHash } from "node:crypto";
import { once } from "node:events";
import type { Writable } from "node:stream";
import tar from "tar-stream";
import { InvalidArgsError, FormatError } from "../errors.ts";
import { convert, type ConvertProgress } from "../disk/convert.ts";
import { formatByName } from "../disk/formats/index.ts";
import { streamTarget } from "../disk/io.ts";
import type { ByteTarget, DiskSource } from "../disk/types.ts";
import { parseWorkload, type Workload } from "../spec/workload.ts";
import { formatManifest } from "./manifest.ts";
import { writeOvf, type OvfDiskFile } from "./ovf-writer.ts";

export interface OvaDisk {
  /** The Workload disk id. */
  readonly id: string;
  readonly source: DiskSource;
}

export interface WriteOvaOptions {
  /** Base name of the files inside the OVA. @default the workload name, made file-safe */
  readonly baseName?: string;
  readonly progress?: (phase: "size" | "write", diskId: string, progress: ConvertProgress) => void;
}

export interface OvaFileSummary {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sha256: string;
}

export interface WriteOvaResult {
  readonly files: readonly OvaFileSummary[];
}

/** A sequential target that only counts: the sizing pass. */
function countingTarget(name: string): ByteTarget & { readonly bytes: () => number } {
  let bytes = 0;
  return {
    name,
    sequential: true,
    async write(offsetBytes, data) {
      if (offsetBytes !== bytes) throw new InvalidArgsError("SEQUENTIAL_TARGET", `${name}: counting target at ${bytes} cannot write at ${offsetBytes}`);
      bytes += data.length;
    },
    async truncate(lengthBytes) {
      bytes = Math.max(bytes, lengthBytes);
    },
    close: async () => {},
    bytes: () => bytes,
  };
}

/** Forwards to `inner` and hashes what passes. */
function hashingTarget(inner: ByteTarget): ByteTarget & { readonly digest: () => string; readonly bytes: () => number } {
  const hash = createHash("sha256");
  let bytes = 0;
  return {
    name: inner.name,
    sequential: true,
    async write(offsetBytes, data) {
      hash.update(data);
      bytes += data.length;
      await inner.write(offsetBytes, data);
    },
    async truncate(lengthBytes) {
      if (lengthBytes > bytes) {
        hash.update(Buffer.alloc(lengthBytes - bytes));
        bytes = lengthBytes;
      }
      await inner.truncate(lengthBytes);
    },
    close: () => inner.close(),
    digest: () => hash.digest("hex"),
    bytes: () => bytes,
  };
}

function safeBaseName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[.-]+/, "");
  return cleaned === "" ? "workload" : cleaned.slice(0, 100);
}

async function vmdkPass(source: DiskSource, target: ByteTarget, virtualSizeBytes: number, onProgress?: (p: ConvertProgress) => void): Promise<number> {
  const sink = await formatByName("vmdk").createWriter(target, { virtualSizeBytes, subformat: "streamOptimized", adapterType: "lsilogic" });
  const result = await convert(source, sink, onProgress === undefined ? {} : { progress: onProgress });
  return result.dataBytesWritten;
}

/**
 * Streams an OVA into `output`. Each disk's source is read twice (see the module comment);
 * the sources stay open and remain the caller's to close.
 */
export async function writeOva(output: Writable, input: Workload, disks: readonly OvaDisk[], options: WriteOvaOptions = {}): Promise<WriteOvaResult> {
  const workload = parseWorkload(input);
  const base = safeBaseName(options.baseName ?? workload.name);
  for (const disk of disks) {
    const spec = workload.disks.find((d) => d.id === disk.id);
    if (spec === undefined) throw new InvalidArgsError("OVA_DISK_UNKNOWN", `ova: disk "${disk.id}" is not in the workload`, { context: { diskId: disk.id } });
    if (disk.source.virtualSizeBytes > spec.sizeBytes) {
      throw new InvalidArgsError("OVA_DISK_TOO_LARGE", `ova: disk "${disk.id}" source holds ${disk.source.virtualSizeBytes} bytes but the workload gives it ${spec.sizeBytes}`, {
        context: { diskId: disk.id, sourceBytes: disk.source.virtualSizeBytes, sizeBytes: spec.sizeBytes },
      });
    }
  }

  // Sizing pass: the compressed size of each disk, for its tar header and ovf:size.
  const files: (OvfDiskFile & { readonly sizeBytes: number })[] = [];
  for (const [index, disk] of disks.entries()) {
    const href = `${base}-disk${index + 1}.vmdk`;
    const spec = workload.disks.find((d) => d.id === disk.id) as Workload["disks"][number];
    const counter = countingTarget(href);
    const populated = await vmdkPass(disk.source, counter, spec.sizeBytes, options.progress === undefined ? undefined : (p) => options.progress?.("size", disk.id, p));
    files.push({ diskId: disk.id, href, sizeBytes: counter.bytes(), populatedSizeBytes: populated });
  }

  const pack = tar.pack();
  const piped = new Promise<void>((resolve, reject) => {
    pack.on("error", reject);
    output.on("error", reject);
    output.on("finish", resolve);
    pack.pipe(output);
  });
  piped.catch(() => {});
  const summaries: OvaFileSummary[] = [];
  try {
    const descriptorName = `${base}.ovf`;
    const descriptor = Buffer.from(writeOvf(workload, files), "utf8");
    await addBuffer(pack, descriptorName, descriptor);
    summaries.push({ name: descriptorName, sizeBytes: descriptor.length, sha256: createHash("sha256").update(descriptor).digest("hex") });

    for (const [index, disk] of disks.entries()) {
      const file = files[index] as (typeof files)[number];
      const spec = workload.disks.find((d) => d.id === disk.id) as Workload["disks"][number];
      const entry = pack.entry({ name: file.href, size: file.sizeBytes, type: "file", mode: 0o644, mtime: new Date() });
      const entryDone = once(entry, "finish").catch(() => {});
      const target = hashingTarget(streamTarget(file.href, entry as unknown as Writable));
      await vmdkPass(disk.source, target, spec.sizeBytes, options.progress === undefined ? undefined : (p) => options.progress?.("write", disk.id, p));
      await entryDone;
      if (target.bytes() !== file.sizeBytes) {
        throw new FormatError("OVA_SIZE_CHANGED", `ova: disk "${disk.id}" compressed to ${file.sizeBytes} bytes in the sizing pass but ${target.bytes()} in the write pass; did the source change?`, {
          context: { diskId: disk.id, sizedBytes: file.sizeBytes, writtenBytes: target.bytes() },
        });
      }
      summaries.push({ name: file.href, sizeBytes: file.sizeBytes, sha256: target.digest() });
    }

    const manifest = Buffer.from(formatManifest(summaries.map((s) => ({ file: s.name, sha256: s.sha256 }))), "utf8");
    await addBuffer(pack, `${base}.mf`, manifest);
    summaries.push({ name: `${base}.mf`, sizeBytes: manifest.length, sha256: createHash("sha256").update(manifest).digest("hex") });
    pack.finalize();
    await piped;
  } catch (err) {
    pack.destroy(err as Error);
    throw err;
  }
  return { files: summaries };
}

function addBuffer(pack: tar.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: data.length, type: "file", mode: 0o644, mtime: new Date() }, data, (err) => (err ? reject(err) : resolve()));
  });
}
