// An Azure page blob as a replication target: blocks are written in place (Put Page, with its
// CRC-64) and blocks that became zeros are cleared (Clear Pages), so each pass sends only the
// changed blocks and a resumed pass just continues on the same blob. The blob has the fixed-VHD
// layout Azure imports (whole MiB plus a footer); the footer is written once, last, by the first
// pass's commit, so a blob without a footer is visibly unfinished.
import type { PageBlobClient } from "@azure/storage-blob";
import { InvalidArgsError, isPortableError } from "../../errors.ts";
import { VHD_FOOTER_BYTES } from "../../disk/formats/vhd/layout.ts";
import type { CommittedReplica, ReplicaPass, ReplicaTarget } from "../../contracts/replica-target.ts";
import { azureCall, redactUrl, type CallOptions } from "./call.ts";
import { crc64Nvme } from "./crc64.ts";
import { createBlob, fixedVhdFooter, vhdBlobSizeFor } from "./page-blob-sink.ts";
import { openPageBlobSource, pageBlobByteSource } from "./page-blob-source.ts";
import { PAGE_BLOB_UPLOADS_IN_FLIGHT, PAGE_BYTES } from "./page-blob-target.ts";

export interface PageBlobReplicaOptions extends CallOptions {
  readonly client: PageBlobClient;
  readonly virtualSizeBytes: number;
  /** Replace a blob that exists when the first pass starts. @default false */
  readonly overwrite?: boolean;
  /** Put Page calls in flight. @default PAGE_BLOB_UPLOADS_IN_FLIGHT */
  readonly concurrency?: number;
}

export function pageBlobReplica(options: PageBlobReplicaOptions): ReplicaTarget {
  const { client, virtualSizeBytes } = options;
  const name = redactUrl(client.url);
  const blobSizeBytes = vhdBlobSizeFor(virtualSizeBytes);

  const makePass = (first: boolean): ReplicaPass => ({
    state: { blob: name, footer: !first },
    async write(_index, offsetBytes, data, zero) {
      const length = Math.ceil(data.length / PAGE_BYTES) * PAGE_BYTES;
      if (zero) {
        await azureCall({ operation: "Clear Pages", blob: name, offsetBytes, lengthBytes: length }, () => client.clearPages(offsetBytes, length), options);
        return undefined;
      }
      const body = length === data.length ? data : Buffer.concat([data, Buffer.alloc(length - data.length)]);
      await azureCall(
        { operation: "Put Page", blob: name, offsetBytes, lengthBytes: length },
        () => client.uploadPages(body, offsetBytes, length, { transactionalContentCrc64: crc64Nvme(body) }),
        options,
      );
      return undefined;
    },
    async commit() {
      if (first) {
        const footer = await fixedVhdFooter(virtualSizeBytes);
        const at = blobSizeBytes - VHD_FOOTER_BYTES;
        await azureCall({ operation: "Put Page (footer)", blob: name, offsetBytes: at, lengthBytes: footer.length }, () =>
          client.uploadPages(footer, at, footer.length, { transactionalContentCrc64: crc64Nvme(footer) }), options);
      }
      return { location: name, state: { blob: name, footer: true } };
    },
    async abort() {},
  });

  const checkExisting = async (): Promise<boolean> => {
    try {
      const props = await azureCall({ operation: "Get Blob Properties", blob: name }, () => client.getProperties(), options);
      if (props.contentLength !== blobSizeBytes) {
        throw new InvalidArgsError("AZURE_UPLOAD_SIZE_MISMATCH", `replica ${name}: the blob holds ${props.contentLength} bytes, a disk of ${virtualSizeBytes} bytes needs ${blobSizeBytes}`);
      }
      return true;
    } catch (error) {
      if (isPortableError(error) && error.context.status === 404) return false;
      throw error;
    }
  };

  /** True when the blob has the replica's length and no footer yet: a first pass never sealed. */
  const isUnfinished = async (): Promise<boolean> => {
    const props = await azureCall({ operation: "Get Blob Properties", blob: name }, () => client.getProperties(), options);
    if (props.contentLength !== blobSizeBytes) return false;
    const at = blobSizeBytes - VHD_FOOTER_BYTES;
    const footer = await pageBlobByteSource(client, blobSizeBytes, options).read(at, VHD_FOOTER_BYTES);
    return footer.every((byte) => byte === 0);
  };

  /**
   * The blob of a new replica. One that is already there with the replica's length and no
   * footer is an unfinished first pass: cut between creating the blob and journalling the pass
   * (a kill, or a Put Blob whose answer was lost, so its retry met If-None-Match: *). Nothing
   * committed lives in it, so it is created again (all zeros, as a new pass assumes); its stale
   * pages must not survive. Any other blob, a finished disk included, is refused (TARGET_EXISTS).
   */
  const createFresh = async (): Promise<void> => {
    try {
      await createBlob(client, name, blobSizeBytes, options);
    } catch (error) {
      if (!(isPortableError(error) && error.code === "TARGET_EXISTS") || !(await isUnfinished())) throw error;
      await createBlob(client, name, blobSizeBytes, { ...options, overwrite: true });
    }
  };

  return {
    name,
    virtualSizeBytes,
    concurrency: options.concurrency ?? PAGE_BLOB_UPLOADS_IN_FLIGHT,
    async begin(base) {
      if (base === undefined) {
        await createFresh();
        return makePass(true);
      }
      if (!(await checkExisting())) {
        throw new InvalidArgsError("REPLICA_TARGET_MISSING", `replica ${name}: the blob is gone; remove the replica state to start over`);
      }
      return makePass(false);
    },
    async resume(_base, pending) {
      if (!(await checkExisting())) return undefined;
      return makePass(pending.targetState.footer !== true);
    },
    openReadBack: (_committed: CommittedReplica) => openPageBlobSource(client, options),
    async destroy() {
      await azureCall({ operation: "Delete Blob", blob: name }, () => client.deleteIfExists({ deleteSnapshots: "include" }), options);
    },
  };
}
