// A raw image file as a replication target: blocks are written in place with positional writes,
// so a pass touches only the changed blocks and a resumed pass simply continues. A new target
// is created sparse (truncated to the virtual size). The local placement keeps its replicas
// this way; QEMU boots a raw file directly.
// The local platform's replica target (contracts/replica-target.ts), beside aws/ and azure/'s.
import { mkdir, open, rm, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { InvalidArgsError } from "../../errors.ts";
import type { DiskSource } from "../../disk/types.ts";
import { openDisk } from "../../disk/open.ts";
import type { CommittedReplica, ReplicaPass, ReplicaTarget } from "../../contracts/replica-target.ts";

export interface RawFileReplicaOptions {
  readonly path: string;
  readonly virtualSizeBytes: number;
  readonly concurrency?: number;
}

export function rawFileReplica(options: RawFileReplicaOptions): ReplicaTarget {
  const { path, virtualSizeBytes } = options;
  const openPass = async (create: boolean): Promise<ReplicaPass> => {
    let handle: FileHandle;
    if (create) await mkdir(dirname(path), { recursive: true });
    try {
      handle = await open(path, create ? "w" : "r+", 0o644);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new InvalidArgsError("REPLICA_TARGET_MISSING", `replica ${path}: cannot open the target (${code ?? String(error)})`, { cause: error });
    }
    try {
      if (create) await handle.truncate(virtualSizeBytes);
      const { size } = await handle.stat();
      if (size !== virtualSizeBytes) {
        throw new InvalidArgsError("REPLICA_SIZE_MISMATCH", `replica ${path}: the file holds ${size} bytes, the disk ${virtualSizeBytes}`);
      }
    } catch (error) {
      await handle.close();
      throw error;
    }
    return {
      state: { path },
      async write(_blockIndex, offsetBytes, data) {
        await handle.write(data, 0, data.length, offsetBytes);
        return undefined;
      },
      async commit() {
        await handle.sync();
        await handle.close();
        return { location: path, state: { path } };
      },
      async abort() {
        await handle.close();
      },
    };
  };
  return {
    name: path,
    virtualSizeBytes,
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
    begin: (base) => openPass(base === undefined),
    resume: async () => openPass(false),
    openReadBack: (_committed: CommittedReplica): Promise<DiskSource> => openDisk(path, { format: "raw" }),
    destroy: () => rm(path, { force: true }),
  };
}
