// Replica state beside the target (a StateStore: the local datastore's folder, an S3 bucket, the
// page blobs' container), so a second machine, or a CI runner with an empty state folder, finds
// what the target holds and plans or moves incrementally from there.
//
// Per replica key, beside the target:
//   <key>.replica.json  the committed record (manifest, location, target state, last pass)
//   <key>.pass.json     written before a pass's first block and deleted by its commit: a pass
//                       that died on one machine is seen by every other
// and in the local cache (stateDir), the pass's journal, appended per block with a synchronous
// write (checkpoint.ts), so a resume on the same machine re-sends only unacknowledged blocks.
// A resume on another machine finds the marker without that journal: every block's content on
// the target is then unknown, and the pass rewrites each block from the source (correct, not
// cheap; it happens only after a crash).
import { hostname } from "node:os";
import { isPortableError, PortableError } from "../errors.ts";
import { isTransientError, withRetry } from "../retry.ts";
import type { CommittedReplica, PendingPass, TargetState } from "../contracts/replica-target.ts";
import { parseCommitted, serializeCommitted, type FileReplicaStore, type PassJournal, type ReplicaStore } from "./checkpoint.ts";
import type { StateStore } from "../contracts/state-store.ts";

/**
 * A call to the store beside the target, retried on throttling, 5xx and network errors (every
 * call here is idempotent: whole-record reads, unconditional writes, deletes), and coded
 * STATE_STORE_UNAVAILABLE when it still fails with an error the store did not code.
 */
function remote<T>(store: StateStore, what: string, call: () => Promise<T>): Promise<T> {
  return withRetry(call, { operation: `${what} ${store.reference}`, isRetryable: isTransientError }).catch((error: unknown) => {
    if (isPortableError(error)) throw error;
    throw new PortableError("STATE_STORE_UNAVAILABLE", `replica state at ${store.reference}: ${what} failed: ${(error as Error).message}`, { context: { store: store.reference }, cause: error });
  });
}

interface PassMarker {
  readonly base: string;
  readonly target: TargetState;
  readonly sealing: boolean;
  readonly host: string;
  readonly pid: number;
}

export class TargetReplicaStore implements ReplicaStore {
  readonly remote: StateStore;
  readonly #cache: FileReplicaStore;
  /** Per key, the marker write in flight. */
  readonly #markers = new Map<string, Promise<unknown>>();

  constructor(remote: StateStore, cache: FileReplicaStore) {
    this.remote = remote;
    this.#cache = cache;
  }

  reference(key: string): string {
    return `${this.remote.reference}${key}.replica.json`;
  }

  async loadCommitted(key: string): Promise<CommittedReplica | undefined> {
    const stored = await remote(this.remote, `read ${key}.replica.json`, () => this.remote.get(`${key}.replica.json`));
    return stored === undefined ? undefined : parseCommitted(stored.text, key);
  }

  async loadPending(key: string): Promise<PendingPass | undefined> {
    const [local, stored] = await Promise.all([this.#cache.loadPending(key), remote(this.remote, `read ${key}.pass.json`, () => this.remote.get(`${key}.pass.json`))]);
    if (stored === undefined) return undefined; // no pass is open anywhere (a local journal without it was committed)
    let marker: PassMarker;
    try {
      marker = JSON.parse(stored.text) as PassMarker;
    } catch {
      return undefined;
    }
    if (local !== undefined && local.baseDigest === marker.base) return local;
    return { baseDigest: marker.base, targetState: marker.target, done: new Map(), unknown: new Set(), sealing: marker.sealing, unknownAll: true };
  }

  async openJournal(key: string): Promise<PassJournal> {
    const local = await this.#cache.openJournal(key);
    let begun: { base: string; target: TargetState } | undefined;
    const mark = (sealing: boolean) => {
      const marker: PassMarker = { base: begun!.base, target: begun!.target, sealing, host: hostname(), pid: process.pid };
      const previous = this.#markers.get(key) ?? Promise.resolve();
      this.#markers.set(key, previous.then(() => remote(this.remote, `write ${key}.pass.json`, () => this.remote.put(`${key}.pass.json`, JSON.stringify(marker)))));
    };
    return {
      begin: (base, target) => {
        local.begin(base, target);
        begun = { base, target };
        mark(false);
      },
      send: (i) => local.send(i),
      done: (i, hash, receipt) => local.done(i, hash, receipt),
      sealing: () => {
        local.sealing();
        if (begun !== undefined) mark(true);
      },
      flush: async () => {
        await this.#markers.get(key);
      },
      close: () => local.close(),
    };
  }

  async commit(key: string, replica: CommittedReplica): Promise<void> {
    const marker = this.#markers.get(key);
    this.#markers.delete(key);
    await marker;
    await remote(this.remote, `write ${key}.replica.json`, () => this.remote.put(`${key}.replica.json`, serializeCommitted(replica)));
    await remote(this.remote, `delete ${key}.pass.json`, () => this.remote.delete(`${key}.pass.json`));
    await this.#cache.dropJournal(key);
  }

  async remove(key: string): Promise<void> {
    await remote(this.remote, `delete ${key}.pass.json`, () => this.remote.delete(`${key}.pass.json`));
    await remote(this.remote, `delete ${key}.replica.json`, () => this.remote.delete(`${key}.replica.json`));
    await this.#cache.remove(key);
    await remote(this.remote, "tidy", () => this.remote.tidy?.() ?? Promise.resolve());
  }
}
