// A replica store that keeps the committed state next to the target artefact as well: in the
// blob container beside the page blob (or any object store), so another machine, or a CI runner
// with an empty disk, finds the manifest where the replica is. The journal of a pass in progress
// stays local: it is appended per block and only matters to the process that can resume it.
import type { ContainerClient } from "@azure/storage-blob";
import type { CommittedReplica, PendingPass } from "../contracts/replica-target.ts";
import { BlockManifest, type ManifestJson } from "../disk/manifest.ts";
import type { FileReplicaStore, PassJournal, ReplicaStore } from "./checkpoint.ts";

/** The little an object store must do: whole small objects by name. */
export interface ObjectStore {
  /** e.g. `https://acct.blob.core.windows.net/disks/` (no credentials). */
  readonly name: string;
  get(key: string): Promise<string | undefined>;
  put(key: string, text: string): Promise<void>;
  delete(key: string): Promise<void>;
}

export class MirroredReplicaStore implements ReplicaStore {
  readonly #local: FileReplicaStore;
  readonly #remote: ObjectStore;

  constructor(local: FileReplicaStore, remote: ObjectStore) {
    this.#local = local;
    this.#remote = remote;
  }

  reference(key: string): string {
    return `${this.#remote.name}${key}.replica.json`;
  }

  async loadCommitted(key: string): Promise<CommittedReplica | undefined> {
    const local = await this.#local.loadCommitted(key);
    if (local !== undefined) return local;
    const text = await this.#remote.get(`${key}.replica.json`);
    if (text === undefined) return undefined;
    const body = JSON.parse(text) as Omit<CommittedReplica, "manifest"> & { manifest: ManifestJson };
    const replica: CommittedReplica = { ...body, manifest: BlockManifest.fromJSON(body.manifest) };
    await this.#local.commit(key, replica); // validates it too
    return this.#local.loadCommitted(key);
  }

  loadPending(key: string): Promise<PendingPass | undefined> {
    return this.#local.loadPending(key);
  }

  openJournal(key: string): Promise<PassJournal> {
    return this.#local.openJournal(key);
  }

  async commit(key: string, replica: CommittedReplica): Promise<void> {
    await this.#local.commit(key, replica);
    await this.#remote.put(`${key}.replica.json`, JSON.stringify({ version: 1, ...replica, manifest: replica.manifest.toJSON() }));
  }

  async remove(key: string): Promise<void> {
    await this.#local.remove(key);
    await this.#remote.delete(`${key}.replica.json`);
  }
}

/** Block blobs in a container (beside the page blobs), under `prefix`. */
export function blobObjectStore(container: ContainerClient, prefix = "portable-replicas/"): ObjectStore {
  const url = new URL(container.url);
  url.search = "";
  return {
    name: `${url.toString().replace(/\/?$/, "/")}${prefix}`,
    async get(key) {
      const blob = container.getBlockBlobClient(`${prefix}${key}`);
      try {
        return (await blob.downloadToBuffer()).toString("utf8");
      } catch (error) {
        if ((error as { statusCode?: number }).statusCode === 404) return undefined;
        throw error;
      }
    },
    async put(key, text) {
      await container.getBlockBlobClient(`${prefix}${key}`).upload(text, Buffer.byteLength(text), { blobHTTPHeaders: { blobContentType: "application/json" } });
    },
    async delete(key) {
      await container.getBlockBlobClient(`${prefix}${key}`).deleteIfExists();
    },
  };
}
