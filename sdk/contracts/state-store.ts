// Small records kept beside a target (replica manifests, pass markers, leases), so that any
// machine with the credentials finds what the target holds: a folder in the local datastore,
// objects in an S3 bucket, block blobs in the page blobs' container. Every store does
// conditional writes, the one primitive a lease and a safe commit need:
//   - create only if absent (S3 `If-None-Match: *`, blob `ifNoneMatch: "*"`, a hard link here);
//   - replace only if unchanged (S3 and blob `If-Match: <etag>`, a compare under a lock dir here).
//
// A lease (`acquireLease`) is one record created only if absent, naming its holder; it is
// renewed while held and released at the end. A second `up` of the same workload, from any
// machine, fails at once with STATE_LEASE_HELD naming the holder. A holder that died is taken
// over once its lease expired, or at once from the same host when its process is gone.
//
// The stores: fileStateStore here; s3StateStore (clouds/aws/state-store.ts) and blobStateStore
// (clouds/azure/state-store.ts), each chosen by its platform's DiskDriver.stateStore.
import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { link, mkdir, readFile, readdir, rename, rm, rmdir, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PortableError } from "../errors.ts";

export interface StoredText {
  readonly text: string;
  /** An opaque version: what `put(…, { ifMatch })` compares with. */
  readonly etag: string;
}

export interface PutCondition {
  /** Only if no record of that name exists. */
  readonly ifAbsent?: boolean;
  /** Only if the record is still this version. */
  readonly ifMatch?: string;
}

export interface StateStore {
  /** Where the records are, without credentials: `file:///…/`, `s3://bucket/prefix/`, `https://acct.blob…/container/prefix/`. */
  readonly reference: string;
  get(name: string): Promise<StoredText | undefined>;
  /** Writes a record; throws STATE_CONFLICT when the condition does not hold. Returns the new etag. */
  put(name: string, text: string, condition?: PutCondition): Promise<string>;
  delete(name: string): Promise<void>;
  /** Removes the store's own container when nothing is left in it (a local folder). */
  tidy?(): Promise<void>;
}

export class StateConflictError extends PortableError {
  constructor(store: string, name: string, condition: PutCondition) {
    super("STATE_CONFLICT", `${store}${name}: ${condition.ifAbsent === true ? "already exists" : "was changed by someone else"}`, { context: { store, name } });
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

/** A record name: one plain file name (it may name a file). */
export function checkName(name: string): string {
  if (!NAME.test(name) || name.includes("..")) throw new PortableError("STATE_NAME_INVALID", `state record name ${JSON.stringify(name)} must match ${NAME.source}`);
  return name;
}

/** A folder: etags are content hashes; a create is a hard link (atomic, fails if present). */
export function fileStateStore(dir: string): StateStore {
  const etagOf = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 32);
  const read = async (name: string): Promise<StoredText | undefined> => {
    try {
      const text = await readFile(join(dir, checkName(name)), "utf8");
      return { text, etag: etagOf(text) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  };
  const reference = `file://${dir.replace(/\/?$/, "/")}`;
  return {
    reference,
    get: read,
    async put(name, text, condition = {}) {
      const path = join(dir, checkName(name));
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const temp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
      await writeFile(temp, text, { mode: 0o600 });
      try {
        if (condition.ifAbsent === true) {
          await link(temp, path).catch((error: NodeJS.ErrnoException) => {
            throw error.code === "EEXIST" ? new StateConflictError(reference, name, condition) : error;
          });
          return etagOf(text);
        }
        if (condition.ifMatch === undefined) {
          await rename(temp, path);
          return etagOf(text);
        }
        // Compare and swap under a lock folder (mkdir is atomic); a lock older than 30 s is a dead writer's.
        const lock = `${path}.lock`;
        for (let tries = 0; ; tries++) {
          try {
            await mkdir(lock);
            break;
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
            if (tries > 300) await rmdir(lock).catch(() => {});
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        try {
          if ((await read(name))?.etag !== condition.ifMatch) throw new StateConflictError(reference, name, condition);
          await rename(temp, path);
          return etagOf(text);
        } finally {
          await rmdir(lock).catch(() => {});
        }
      } finally {
        await unlink(temp).catch(() => {});
      }
    },
    async delete(name) {
      await rm(join(dir, checkName(name)), { force: true });
    },
    async tidy() {
      if ((await readdir(dir).catch(() => ["?"])).length === 0) await rmdir(dir).catch(() => {});
    },
  };
}

/** Who holds a lease: enough for a person to find the run. */
export interface LeaseHolder {
  readonly host: string;
  readonly pid: number;
  /** What the run is, e.g. "move web local → aws". */
  readonly purpose: string;
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

export interface Lease {
  /** Releases it (only if still ours). */
  release(): Promise<void>;
}

/** How long a lease lives without renewal; renewed every third of it. */
export const LEASE_SECONDS = 120;

function describeHolder(holder: LeaseHolder): string {
  return `pid ${holder.pid} on ${holder.host} (${holder.purpose}) since ${holder.acquiredAt}, until ${holder.expiresAt} unless renewed`;
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/**
 * Takes the lease `name` in `store` for `purpose`, or throws STATE_LEASE_HELD naming the holder.
 * `seconds` is how long it lives without renewal (a crashed holder's lease ends then).
 */
export async function acquireLease(store: StateStore, name: string, purpose: string, seconds = LEASE_SECONDS): Promise<Lease> {
  const record = (): LeaseHolder => {
    const now = Date.now();
    return { host: hostname(), pid: process.pid, purpose, acquiredAt: new Date(now).toISOString(), expiresAt: new Date(now + seconds * 1000).toISOString() };
  };
  let etag: string;
  try {
    etag = await store.put(name, JSON.stringify(record()), { ifAbsent: true });
  } catch (error) {
    if (!(error instanceof PortableError) || error.code !== "STATE_CONFLICT") throw error;
    const current = await store.get(name);
    if (current === undefined) return acquireLease(store, name, purpose, seconds);
    let holder: LeaseHolder | undefined;
    try {
      holder = JSON.parse(current.text) as LeaseHolder;
    } catch {
      holder = undefined;
    }
    const expired = holder === undefined || !(Date.parse(holder.expiresAt) > Date.now());
    const dead = holder !== undefined && holder.host === hostname() && holder.pid !== process.pid && processGone(holder.pid);
    if (!expired && !dead) {
      throw new PortableError("STATE_LEASE_HELD", `${store.reference}${name} is held by ${describeHolder(holder!)}: another run is moving this workload; wait for it, or for the lease to expire if that run died`, {
        context: { store: store.reference, name, holderHost: holder!.host, holderPid: holder!.pid, expiresAt: holder!.expiresAt },
      });
    }
    // Its holder is gone: take it over, unless another run just did.
    try {
      etag = await store.put(name, JSON.stringify(record()), { ifMatch: current.etag });
    } catch (takeover) {
      if (takeover instanceof PortableError && takeover.code === "STATE_CONFLICT") return acquireLease(store, name, purpose, seconds);
      throw takeover;
    }
  }
  let lost: unknown;
  const renew = setInterval(() => {
    void store.put(name, JSON.stringify(record()), { ifMatch: etag }).then((next) => (etag = next), (error: unknown) => (lost = error));
  }, (seconds * 1000) / 3);
  renew.unref();
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      clearInterval(renew);
      if (lost !== undefined) return;
      const current = await store.get(name);
      if (current?.etag === etag) await store.delete(name);
    },
  };
}
