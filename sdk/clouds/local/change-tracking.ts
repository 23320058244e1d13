// Change tracking of a local machine's disks (contracts: DiskSource.changes), so that a pass
// reads only what the guest wrote since the last one, and the final pass of a cutover does not
// grow with the disk.
//
// - While the machine runs: a QEMU dirty bitmap per replica (named `pw-<key hash>-<random>`),
//   added on the disk's node before the pass freezes the disk (point-in-time.ts), so no write
//   between the start of tracking and the first read is missed. The next pass reads the bitmap's
//   dirty ranges over NBD (nbd-block-status.ts) while the disk is frozen; the guest's writes to
//   the overlay reach the bitmap when the overlay is folded back (block-commit writes them).
// - When the machine stops: QEMU's bitmaps die with it (a raw file cannot hold them), so the stop
//   pauses the guest, saves every `pw-` bitmap's ranges beside the machine (harvest), and after
//   QEMU exited records the disk file's identity and times (its stamp). A pass on the stopped
//   disk trusts the saved ranges only while the file's stamp is unchanged.
// - A stopped disk's own token is its stamp: nothing changed while the stamp is the same.
// Anything else (a bitmap gone after a restart, inconsistent, a stamp that moved, a token of
// another disk) answers "unknown", and the pass scans the whole disk.
import { createHash, randomBytes } from "node:crypto";
import { open, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { ChangeTracking, DirtyRange } from "../../disk/types.ts";
import type { QmpClient } from "./qmp.ts";
import { DEFAULT_MANIFEST_BLOCK_BYTES } from "../../disk/manifest.ts";
import { openDirtyBitmap } from "./nbd-block-status.ts";

const BITMAP_TOKEN = "qemu-bitmap:";
const FILE_TOKEN = "file:";
/** The bitmap's granularity: the manifest's block, so its count is what a pass sends. */
export const BITMAP_GRANULARITY_BYTES = DEFAULT_MANIFEST_BLOCK_BYTES;
const RANGE_RECORD_BYTES = 16;

/** The prefix of every bitmap tracking replica `key`. */
export function bitmapPrefix(key: string): string {
  return `pw-${createHash("sha256").update(key).digest("hex").slice(0, 12)}-`;
}

export function isTrackingBitmap(name: string): boolean {
  return /^pw-[0-9a-f]{12}-[0-9a-f]{16}$/.test(name);
}

export function bitmapToken(name: string): string {
  return `${BITMAP_TOKEN}${name}`;
}

/** The bitmap a token names, when it is one of ours. */
export function bitmapOf(token: string): string | undefined {
  const name = token.startsWith(BITMAP_TOKEN) ? token.slice(BITMAP_TOKEN.length) : undefined;
  return name !== undefined && isTrackingBitmap(name) ? name : undefined;
}

/** The identity and times of a disk file: equal stamps mean nothing wrote to it in between. */
export async function fileStamp(path: string): Promise<string> {
  const s = await stat(path, { bigint: true });
  return `${resolve(path)}:${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

interface BlockBitmap {
  readonly name: string;
  readonly recording?: boolean;
  readonly inconsistent?: boolean;
  readonly busy?: boolean;
}

export interface TrackedNode {
  readonly node: string;
  readonly bitmaps: readonly BlockBitmap[];
}

/** The node QEMU has `drive` on, and its dirty bitmaps (query-block, before any overlay). */
export async function trackedNode(qmp: QmpClient, drive: string): Promise<TrackedNode | undefined> {
  const blocks = (await qmp.execute("query-block")) as Array<{ device: string; inserted?: { "node-name"?: string; "dirty-bitmaps"?: BlockBitmap[] } }>;
  const inserted = blocks.find((b) => b.device === drive)?.inserted;
  if (inserted?.["node-name"] === undefined) return undefined;
  return { node: inserted["node-name"], bitmaps: inserted["dirty-bitmaps"] ?? [] };
}

/** Adds a new bitmap for `key` on `node`: persistent where the format keeps it (qcow2). */
export async function addBitmap(qmp: QmpClient, node: string, key: string, persistent: boolean): Promise<string> {
  const name = `${bitmapPrefix(key)}${randomBytes(8).toString("hex")}`;
  await qmp.execute("block-dirty-bitmap-add", { node, name, granularity: BITMAP_GRANULARITY_BYTES, persistent });
  return name;
}

/** Removes `key`'s bitmaps on `node` except `keep`. */
export async function retireBitmaps(qmp: QmpClient, node: string, key: string, keep: string | undefined): Promise<void> {
  const current = await qmp.execute("query-named-block-nodes", { flat: true }) as Array<{ "node-name": string; "dirty-bitmaps"?: BlockBitmap[] }>;
  const bitmaps = current.find((n) => n["node-name"] === node)?.["dirty-bitmaps"] ?? [];
  for (const b of bitmaps) {
    if (b.name.startsWith(bitmapPrefix(key)) && b.name !== keep) await qmp.execute("block-dirty-bitmap-remove", { node, name: b.name }).catch(() => {});
  }
}

/** A bitmap QEMU still keeps faithfully: present, recording, consistent. */
export function usableBitmap(node: TrackedNode, name: string): boolean {
  const bitmap = node.bitmaps.find((b) => b.name === name);
  return bitmap !== undefined && bitmap.recording !== false && bitmap.inconsistent !== true;
}

/**
 * Exports `node` with `bitmap` over QEMU's NBD server (a socket in `dir`) and opens its dirty
 * ranges. The node must be read-only (a frozen disk under its overlay) or the bitmap disabled.
 */
export async function exportBitmap(withQmp: <T>(fn: (qmp: QmpClient) => Promise<T>) => Promise<T>, dir: string, node: string, bitmap: string): Promise<{ ranges: AsyncIterable<DirtyRange>; close(): Promise<void> }> {
  const socket = join(dir, "nbd.sock");
  const id = `pw-export-${randomBytes(6).toString("hex")}`;
  await withQmp(async (qmp) => {
    await qmp.execute("nbd-server-start", { addr: { type: "unix", data: { path: socket } } }).catch((error: Error) => {
      if (!/already running/i.test(error.message)) throw error;
    });
    await qmp.execute("block-export-add", { type: "nbd", id, "node-name": node, name: id, writable: false, bitmaps: [bitmap] });
  });
  let reader;
  try {
    reader = await openDirtyBitmap(socket, id, bitmap);
  } catch (error) {
    await withQmp((qmp) => unexport(qmp, id));
    throw error;
  }
  const opened = reader;
  return {
    ranges: opened.dirty(),
    async close() {
      opened.close();
      await withQmp((qmp) => unexport(qmp, id));
    },
  };
}

async function unexport(qmp: QmpClient, id: string): Promise<void> {
  await qmp.execute("block-export-del", { id, mode: "hard" }).catch(() => {});
  // The server goes once its last export is gone; another export keeps it.
  const exports = (await qmp.execute("query-block-exports").catch(() => [])) as Array<{ id: string }>;
  if (exports.every((e) => e.id === id)) await qmp.execute("nbd-server-stop").catch(() => {});
}

/** Where a stopped machine keeps the ranges of its bitmaps. */
function harvestDir(machineDir: string): string {
  return join(machineDir, "tracking");
}

/**
 * Saves the dirty ranges of every tracking bitmap of the machine's disks, while the guest is
 * paused or shut down (QEMU still up); sealHarvest() seals them once QEMU has exited. Best effort: a bitmap that cannot be saved is simply not
 * there later, and its next pass scans.
 */
export async function harvestBitmaps(withQmp: <T>(fn: (qmp: QmpClient) => Promise<T>) => Promise<T>, machineDir: string): Promise<void> {
  const blocks = (await withQmp((qmp) => qmp.execute("query-block"))) as Array<{ inserted?: { "node-name"?: string; file?: string; image?: { "backing-image"?: unknown }; "dirty-bitmaps"?: BlockBitmap[] } }>;
  for (const block of blocks) {
    const inserted = block.inserted;
    const node = inserted?.["node-name"];
    const ours = (inserted?.["dirty-bitmaps"] ?? []).filter((b) => isTrackingBitmap(b.name) && b.inconsistent !== true && b.recording !== false);
    // A disk under an overlay (a pass still running) is left: its bitmaps are not complete yet.
    if (node === undefined || inserted?.file === undefined || ours.length === 0 || inserted.image?.["backing-image"] !== undefined) continue;
    await mkdir(harvestDir(machineDir), { recursive: true });
    // The guest is paused (its I/O drained): from here to QEMU's exit nothing may write the file.
    const before = await fileStamp(inserted.file);
    for (const bitmap of ours) {
      await withQmp((qmp) => qmp.execute("block-dirty-bitmap-disable", { node, name: bitmap.name }));
      const exported = await exportBitmap(withQmp, machineDir, node, bitmap.name);
      const path = join(harvestDir(machineDir), `${bitmap.name}.ranges`);
      const handle = await open(`${path}.tmp`, "w");
      try {
        const record = Buffer.alloc(RANGE_RECORD_BYTES);
        for await (const range of exported.ranges) {
          record.writeBigUInt64BE(BigInt(range.offsetBytes), 0);
          record.writeBigUInt64BE(BigInt(range.lengthBytes), 8);
          await handle.write(record);
        }
      } finally {
        await handle.close();
        await exported.close();
      }
      await rename(`${path}.tmp`, path);
      await writeFile(join(harvestDir(machineDir), `${bitmap.name}.disk`), JSON.stringify({ path: resolve(inserted.file), before }));
    }
  }
}

/**
 * After QEMU exited: each harvested bitmap is valid for its disk file as it is now, if nothing
 * wrote the file since the guest was paused (anything that did, a monitor command or another
 * tool, makes the saved ranges incomplete: they are dropped, and the next pass scans). A qcow2
 * file that QEMU rewrote on exit (its persistent bitmaps) is dropped the same way.
 */
export async function sealHarvest(machineDir: string): Promise<void> {
  const dir = harvestDir(machineDir);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith(".disk")) continue;
    const base = join(dir, name.replace(/\.disk$/, ""));
    let disk: { path: string; before: string } | undefined;
    try {
      disk = JSON.parse(await readFile(join(dir, name), "utf8")) as { path: string; before: string };
    } catch {
      disk = undefined;
    }
    const stamp = disk === undefined ? undefined : await fileStamp(disk.path).catch(() => undefined);
    if (stamp !== undefined && stamp === disk?.before) await writeFile(`${base}.stamp`, stamp);
    else await rm(`${base}.ranges`, { force: true });
    await rm(join(dir, name), { force: true });
  }
}

/** Drops what a stop saved (the machine starts again, or goes). */
export async function clearHarvest(machineDir: string): Promise<void> {
  await rm(harvestDir(machineDir), { recursive: true, force: true });
}

/**
 * The saved ranges of `bitmap` for the disk file at `path`, when a stop harvested it and the
 * file has not changed since QEMU exited. `machineDirs` are the datastore's machine folders.
 */
async function harvested(machineDirs: readonly string[], bitmap: string, path: string): Promise<AsyncIterable<DirtyRange> | undefined> {
  const stampNow = await fileStamp(path).catch(() => undefined);
  for (const dir of machineDirs) {
    const base = join(harvestDir(dir), bitmap);
    const stamp = await readFile(`${base}.stamp`, "utf8").catch(() => undefined);
    if (stamp === undefined) continue;
    if (stamp !== stampNow) return undefined;
    return readRanges(`${base}.ranges`);
  }
  return undefined;
}

async function* readRanges(path: string): AsyncGenerator<DirtyRange> {
  const handle = await open(path, "r");
  try {
    const chunk = Buffer.alloc(RANGE_RECORD_BYTES * 4096);
    for (let at = 0; ; ) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, at);
      if (bytesRead < RANGE_RECORD_BYTES) return;
      for (let p = 0; p + RANGE_RECORD_BYTES <= bytesRead; p += RANGE_RECORD_BYTES) {
        yield { offsetBytes: Number(chunk.readBigUInt64BE(p)), lengthBytes: Number(chunk.readBigUInt64BE(p + 8)) };
      }
      at += bytesRead - (bytesRead % RANGE_RECORD_BYTES);
    }
  } finally {
    await handle.close();
  }
}

async function sumRanges(ranges: AsyncIterable<DirtyRange>): Promise<number> {
  let sum = 0;
  for await (const r of ranges) sum += r.lengthBytes;
  return sum;
}

/**
 * Change tracking of a disk file no machine runs on: its token is its stamp; it answers for
 * a harvested bitmap's token, or its own stamp.
 */
export async function stoppedTracking(path: string, machineDirs: readonly string[]): Promise<ChangeTracking> {
  const token = `${FILE_TOKEN}${await fileStamp(path)}`;
  return {
    token,
    async changedSince(since) {
      if (since === token) return emptyRanges();
      const bitmap = bitmapOf(since);
      return bitmap === undefined ? undefined : harvested(machineDirs, bitmap, path);
    },
    committed() {},
  };
}

async function* emptyRanges(): AsyncGenerator<DirtyRange> {}

/**
 * How many bytes changed since `token` on the disk file at `path`, without reading the disk:
 * from the bitmap's count in the QEMU running on it (`qmp`), a harvest, or the stamp. Undefined
 * when nothing can say.
 */
export async function changedBytesSince(token: string, path: string, machineDirs: readonly string[], qmp?: <T>(fn: (qmp: QmpClient) => Promise<T>) => Promise<T>): Promise<number | undefined> {
  if (token.startsWith(FILE_TOKEN)) return token === `${FILE_TOKEN}${await fileStamp(path).catch(() => "")}` ? 0 : undefined;
  const bitmap = bitmapOf(token);
  if (bitmap === undefined) return undefined;
  if (qmp !== undefined) {
    const blocks = (await qmp((client) => client.execute("query-block")).catch(() => [])) as Array<{ inserted?: { "dirty-bitmaps"?: Array<BlockBitmap & { count?: number }> } }>;
    for (const block of blocks) {
      const found = block.inserted?.["dirty-bitmaps"]?.find((b) => b.name === bitmap);
      if (found !== undefined && found.recording !== false && found.inconsistent !== true && typeof found.count === "number") return found.count;
    }
  }
  const ranges = await harvested(machineDirs, bitmap, path);
  return ranges === undefined ? undefined : sumRanges(ranges);
}
