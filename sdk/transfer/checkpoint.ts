// Where replication remembers what a target holds, so a rerun sends only what changed and a
// killed run resumes without re-sending a finished block.
//
// Two records per replica key:
// - the committed state: the manifest of what the target holds after the last completed pass,
//   where that is (a path, a snapshot id, a blob), and the measured throughput of that pass;
// - a journal of the pass in progress, one JSON line per event, appended with a synchronous
//   write so that it survives `kill -9` (the bytes are in the kernel once writeSync returns):
//     begin  the pass's base (manifest digest) and the target's resumable state (e.g. snapshot id)
//     send   a block is about to be written: if no `done` follows, its content on the target is
//            unknown and a resume rewrites it
//     done   the target acknowledged the block: its manifest hash and the target's receipt
//     seal   every write is done and the target's commit (e.g. CompleteSnapshot) starts
// Committing writes the new state atomically (temp file + rename) and only then drops the
// journal, so a crash in between leaves a journal whose base no longer matches: it is ignored.
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { InvalidArgsError } from "../errors.ts";
import type { CommittedReplica, PendingPass, TargetState } from "../contracts/replica-target.ts";
import { BlockManifest, type ManifestJson } from "../disk/manifest.ts";

export interface PassJournal {
  begin(baseDigest: string, targetState: TargetState): void;
  send(blockIndex: number): void;
  done(blockIndex: number, hash: Buffer | undefined, receipt?: string): void;
  /** Every write is done; the target's commit starts now. */
  sealing(): void;
  /**
   * Resolves once what was journalled so far is durable where another machine finds it (a
   * store beside the target); replicate() awaits it after `begin`, before any write.
   */
  flush?(): Promise<void>;
  close(): void;
}

/** Pluggable: a local directory by default; anything that can keep two small records per key. */
export interface ReplicaStore {
  /** A stable reference for Pulumi state, e.g. `file:///var/lib/portable/replicas/web-disk0`. */
  reference(key: string): string;
  loadCommitted(key: string): Promise<CommittedReplica | undefined>;
  loadPending(key: string): Promise<PendingPass | undefined>;
  openJournal(key: string): Promise<PassJournal>;
  /** Atomically records a completed pass, then drops its journal. */
  commit(key: string, replica: CommittedReplica): Promise<void>;
  /** Forgets the key entirely (after the target is deleted). */
  remove(key: string): Promise<void>;
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkKey(key: string): string {
  if (!KEY.test(key) || key.includes("..")) {
    throw new InvalidArgsError("REPLICA_KEY_INVALID", `replica key ${JSON.stringify(key)} must match ${KEY.source} (it names files)`);
  }
  return key;
}

const targetStateSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])) satisfies z.ZodType<TargetState>;
const committedSchema = z.object({
  version: z.literal(1),
  manifest: z.custom<ManifestJson>((value) => typeof value === "object" && value !== null),
  location: z.string(),
  targetState: targetStateSchema,
  changeToken: z.string().max(4096).optional(),
  passes: z.number().int().nonnegative(),
  lastPass: z.object({ bytesSent: z.number(), scannedBytes: z.number().optional(), blocksSent: z.number(), seconds: z.number(), finishedAt: z.string(), scan: z.enum(["tracked", "full"]).optional(), verify: z.object({ blocksChecked: z.number(), seconds: z.number() }).optional() }).optional(),
});
const journalLine = z.discriminatedUnion("t", [
  z.object({ t: z.literal("begin"), base: z.string(), target: targetStateSchema }),
  z.object({ t: z.literal("send"), i: z.number().int().nonnegative() }),
  z.object({ t: z.literal("seal") }),
  z.object({ t: z.literal("done"), i: z.number().int().nonnegative(), h: z.string().regex(/^[0-9a-f]{64}$/).nullable(), r: z.string().optional() }),
]);

/** The default store: `<dir>/<key>.replica.json` and `<dir>/<key>.journal`. */
export class FileReplicaStore implements ReplicaStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  reference(key: string): string {
    return `file://${join(this.dir, `${checkKey(key)}.replica.json`)}`;
  }

  #paths(key: string) {
    checkKey(key);
    return { state: join(this.dir, `${key}.replica.json`), journal: join(this.dir, `${key}.journal`) };
  }

  async loadCommitted(key: string): Promise<CommittedReplica | undefined> {
    const text = await readOptional(this.#paths(key).state);
    return text === undefined ? undefined : parseCommitted(text, key);
  }

  async loadPending(key: string): Promise<PendingPass | undefined> {
    const text = await readOptional(this.#paths(key).journal);
    if (text === undefined) return undefined;
    let begin: { base: string; target: TargetState } | undefined;
    const done = new Map<number, { hash: Buffer | undefined; receipt?: string }>();
    const unknown = new Set<number>();
    let sealing = false;
    for (const raw of text.split("\n")) {
      if (raw === "") continue;
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch {
        continue; // a line torn by the kill: its write never finished, so it recorded nothing
      }
      const line = journalLine.safeParse(value);
      if (!line.success) continue;
      const entry = line.data;
      if (entry.t === "begin") {
        begin = { base: entry.base, target: entry.target };
        done.clear();
        unknown.clear();
        sealing = false;
      } else if (entry.t === "seal") {
        sealing = true;
      } else if (entry.t === "send") {
        unknown.add(entry.i);
      } else {
        unknown.delete(entry.i);
        done.set(entry.i, { hash: entry.h === null ? undefined : Buffer.from(entry.h, "hex"), ...(entry.r === undefined ? {} : { receipt: entry.r }) });
      }
    }
    if (begin === undefined) return undefined;
    return { baseDigest: begin.base, targetState: begin.target, done, unknown, sealing };
  }

  async openJournal(key: string): Promise<PassJournal> {
    await mkdir(this.dir, { recursive: true });
    const fd = openSync(this.#paths(key).journal, "a", 0o600);
    const append = (value: unknown) => {
      writeSync(fd, `${JSON.stringify(value)}\n`);
    };
    let closed = false;
    return {
      begin: (base, target) => append({ t: "begin", base, target }),
      send: (i) => append({ t: "send", i }),
      sealing: () => append({ t: "seal" }),
      done: (i, hash, receipt) => append({ t: "done", i, h: hash === undefined ? null : hash.toString("hex"), ...(receipt === undefined ? {} : { r: receipt }) }),
      close: () => {
        if (!closed) closeSync(fd);
        closed = true;
      },
    };
  }

  async commit(key: string, replica: CommittedReplica): Promise<void> {
    const paths = this.#paths(key);
    await mkdir(this.dir, { recursive: true });
    const temp = `${paths.state}.${process.pid}.tmp`;
    await writeFile(temp, serializeCommitted(replica), { mode: 0o600 });
    await rename(temp, paths.state);
    await rm(paths.journal, { force: true });
  }

  /** Drops the journal of `key` (its pass was committed elsewhere). */
  async dropJournal(key: string): Promise<void> {
    await rm(this.#paths(key).journal, { force: true });
  }

  async remove(key: string): Promise<void> {
    const paths = this.#paths(key);
    await rm(paths.state, { force: true });
    await rm(paths.journal, { force: true });
    // A commit killed between its write and its rename leaves `<state>.<pid>.tmp`.
    const prefix = `${key}.replica.json.`;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names.filter((n) => n.startsWith(prefix) && /^\d+\.tmp$/.test(n.slice(prefix.length)))) await rm(join(this.dir, name), { force: true });
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** The committed record as stored: JSON, version 1. */
export function serializeCommitted(replica: CommittedReplica): string {
  return JSON.stringify({
    version: 1,
    manifest: replica.manifest.toJSON(),
    location: replica.location,
    targetState: replica.targetState,
    ...(replica.changeToken === undefined ? {} : { changeToken: replica.changeToken }),
    passes: replica.passes,
    ...(replica.lastPass === undefined ? {} : { lastPass: replica.lastPass }),
  });
}

/** A stored committed record, validated (REPLICA_STATE_INVALID otherwise). */
export function parseCommitted(text: string, key: string): CommittedReplica {
  const parsed = committedSchema.safeParse(parseJson(text, key));
  if (!parsed.success) {
    throw new InvalidArgsError("REPLICA_STATE_INVALID", `replica ${key}: the committed state is not valid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  const { manifest, location, targetState, changeToken, passes, lastPass } = parsed.data;
  return { manifest: BlockManifest.fromJSON(manifest), location, targetState, ...(changeToken === undefined ? {} : { changeToken }), passes, ...(lastPass === undefined ? {} : { lastPass }) };
}

function parseJson(text: string, key: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidArgsError("REPLICA_STATE_INVALID", `replica ${key}: the committed state is not JSON: ${(error as Error).message}`);
  }
}

/**
 * Adds the read-back verification of the last pass to its record: blocks checked and seconds,
 * opening the read-back included (what a plan estimates a cutover's verify from).
 */
export async function recordVerification(store: ReplicaStore, key: string, verify: { readonly blocksChecked: number; readonly seconds: number }): Promise<void> {
  const committed = await store.loadCommitted(key);
  if (committed?.lastPass === undefined || verify.blocksChecked === 0) return;
  await store.commit(key, { ...committed, lastPass: { ...committed.lastPass, verify: { blocksChecked: verify.blocksChecked, seconds: verify.seconds } } });
}
