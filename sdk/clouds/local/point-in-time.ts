// A point-in-time view of a running local machine's disk, for warm replication: a frozen
// overlay. QMP `blockdev-snapshot-sync` puts a new qcow2 overlay on top of the disk, so the guest's
// writes go to the overlay and the disk file itself stops changing; we read it; then
// `block-commit` folds the overlay back (an active commit: the job becomes ready, then
// `block-job-complete` pivots the guest back onto the disk) and the overlay file is removed.
// A machine that is not running needs none of this: its disk file is already still.
//
// With `track` (a replica key), the view carries change tracking (change-tracking.ts): a new
// dirty bitmap is added before the freeze, and the last pass's bitmap (or a stop's harvest of
// it) says what changed since that pass.
import { readdir, readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CloudError } from "../../errors.ts";
import type { PointInTime } from "../../contracts/point-in-time.ts";
import type { ChangeTracking, DiskSource } from "../../disk/types.ts";
import { openDisk } from "../../disk/open.ts";
import type { LocalDatastore } from "./datastore.ts";
import { machineFiles, machineStatus, type MachineFiles } from "./lifecycle.ts";
import type { LocalMachineDefinition } from "./machine.ts";
import { connectQmp, type QmpClient } from "./qmp.ts";
import { addBitmap, bitmapOf, bitmapToken, changedBytesSince, exportBitmap, retireBitmaps, stoppedTracking, trackedNode, usableBitmap } from "./change-tracking.ts";

/** How long an active commit may take to become ready and to pivot back. */
export const COMMIT_TIMEOUT_MS = 120_000;
const POLL_MS = 100;

/** A point in time of a local disk; release() closes the view and folds the guest's writes back. */
export interface FrozenDisk extends PointInTime {
  /** True when the disk was frozen under a running guest (false: the machine was stopped). */
  readonly frozen: boolean;
}

interface BlockJob {
  readonly device: string;
  readonly ready?: boolean;
  readonly status?: string;
}

async function waitJob(qmp: QmpClient, job: string, until: (j: BlockJob | undefined) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + COMMIT_TIMEOUT_MS;
  for (;;) {
    const jobs = (await qmp.execute("query-block-jobs")) as BlockJob[];
    if (until(jobs.find((j) => j.device === job))) return;
    if (Date.now() > deadline) throw new CloudError("LOCAL_COMMIT_TIMEOUT", `local: ${what} did not finish within ${COMMIT_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

interface BlockInfo {
  readonly device: string;
  readonly inserted?: { readonly file?: string };
}

/**
 * Freezes the disk file at `path` if a running machine of the datastore has it open (found by
 * its QEMU argv, then its QMP block list); otherwise opens the file as it is.
 */
export async function freezeFile(store: LocalDatastore, path: string, format: "raw" | "qcow2" = "raw", track?: TrackOptions): Promise<FrozenDisk> {
  const wanted = resolve(path);
  const running = await machineRunningOn(store, wanted);
  if (running !== undefined) return freezeDrive(running.files, running.drive, wanted, format, track);
  return openStill(store, wanted, format, track);
}

/** The running machine of the datastore with the disk file open, and its drive (by QEMU argv, then QMP's block list). */
async function machineRunningOn(store: LocalDatastore, wanted: string): Promise<{ files: MachineFiles; drive: string } | undefined> {
  const names = await readdir(join(store.root, "machines")).catch(() => [] as string[]);
  for (const name of names) {
    if ((await machineStatus(store, name).catch(() => undefined))?.state !== "running") continue;
    const files = await machineFiles(store, name);
    if (!(await readFile(files.args, "utf8").catch(() => "")).includes(wanted)) continue;
    const blocks = (await withQmp(files.qmpSocket, (qmp) => qmp.execute("query-block"))) as BlockInfo[];
    const drive = blocks.find((b) => b.inserted?.file !== undefined && resolve(b.inserted.file) === wanted)?.device;
    if (drive !== undefined) return { files, drive };
  }
  return undefined;
}

/**
 * Bytes the disk file at `path` changed since `token`, from the bitmap of the machine running on
 * it, or a stop's harvest: nothing of the disk is read.
 */
export async function trackedChangedBytes(store: LocalDatastore, path: string, token: string): Promise<number | undefined> {
  const wanted = resolve(path);
  const running = await machineRunningOn(store, wanted);
  const qmp = running === undefined ? undefined : <T>(fn: (client: QmpClient) => Promise<T>) => withQmp(running.files.qmpSocket, fn);
  return changedBytesSince(token, wanted, await machineDirs(store), qmp);
}

/** Change tracking for replica `key`: the pass that reads the view commits under this key. */
export interface TrackOptions {
  readonly key: string;
  /** Runs once the new bitmap records and before the freeze (tests write in that window). */
  readonly afterStart?: () => Promise<void>;
}

/** A disk no machine runs on: read as it is; its tracking is its stamp and a stop's harvest. */
async function openStill(store: LocalDatastore, path: string, format: "raw" | "qcow2" | "vmdk" | "vhd" | "vhdx", track: TrackOptions | undefined): Promise<FrozenDisk> {
  const source = await openDisk(path, { format });
  if (track === undefined) return { source, frozen: false, release: () => source.close() };
  const dirs = await machineDirs(store);
  const changes = await stoppedTracking(path, dirs);
  return { source: withChanges(source, changes), frozen: false, release: () => source.close() };
}

async function machineDirs(store: LocalDatastore): Promise<string[]> {
  const names = await readdir(join(store.root, "machines")).catch(() => [] as string[]);
  return names.map((n) => join(store.root, "machines", n));
}

function withChanges(source: DiskSource, changes: ChangeTracking): DiskSource {
  return { ...source, extents: () => source.extents(), read: (o, l, into) => source.read(o, l, into), ...(source.fileSpan ? { fileSpan: (o: number, l: number) => source.fileSpan!(o, l) } : {}), changes, close: () => source.close() };
}

/**
 * Freezes disk `diskId` of `machine` (QEMU drive `drive<index>`, as qemu-args.ts names them) and
 * opens it read-only. The overlay lives in the machine's state folder.
 */
export async function freezeDisk(store: LocalDatastore, machine: LocalMachineDefinition, diskId: string, track?: TrackOptions): Promise<FrozenDisk> {
  const index = machine.disks.findIndex((d) => d.id === diskId);
  const disk = machine.disks[index];
  if (disk === undefined) throw new CloudError("LOCAL_DISK_UNKNOWN", `local: machine "${machine.name}" has no disk "${diskId}"`);
  const format = disk.format === "vpc" ? "vhd" : disk.format;
  const status = await machineStatus(store, machine.name);
  if (status.state !== "running") return openStill(store, resolve(disk.path), format, track);
  return freezeDrive(await machineFiles(store, machine.name), `drive${index}`, resolve(disk.path), format, track);
}

async function freezeDrive(files: { readonly dir: string; readonly qmpSocket: string }, drive: string, path: string, format: "raw" | "qcow2" | "vmdk" | "vhd" | "vhdx", track?: TrackOptions): Promise<FrozenDisk> {
  const job = `portable-commit-${drive}`;
  const overlay = join(files.dir, `${drive}-overlay.qcow2`);
  const qmp = <T>(fn: (client: QmpClient) => Promise<T>) => withQmp(files.qmpSocket, fn);
  // QMP serves one client at a time: connect per step, never hold the monitor while frozen.
  await rm(overlay, { force: true });
  // Tracking starts before the freeze: a write after this point is in the new bitmap.
  const tracked = track === undefined ? undefined : await qmp(async (client) => {
    const node = await trackedNode(client, drive);
    if (node === undefined) return undefined;
    return { node, bitmap: await addBitmap(client, node.node, track.key, format === "qcow2") };
  });
  await track?.afterStart?.();
  await qmp((client) => client.execute("blockdev-snapshot-sync", { device: drive, "snapshot-file": overlay, format: "qcow2", mode: "absolute-paths" }));
  let source: DiskSource;
  try {
    source = await openDisk(path, { format });
  } catch (error) {
    await qmp((client) => commit(client, drive, job, overlay));
    throw error;
  }
  const exports: Array<{ close(): Promise<void> }> = [];
  let committed = false;
  let since: string | undefined;
  const changes: ChangeTracking | undefined = tracked === undefined ? undefined : {
    token: bitmapToken(tracked.bitmap),
    async changedSince(token) {
      since = token;
      const name = bitmapOf(token);
      if (name !== undefined && usableBitmap(tracked.node, name)) {
        // An export QEMU refuses is a tracker that cannot say: the pass scans instead.
        const exported = await exportBitmap(qmp, files.dir, tracked.node.node, name).catch(() => undefined);
        if (exported === undefined) return undefined;
        exports.push(exported);
        return exported.ranges;
      }
      // Not in this QEMU (restarted since, or stopped in between): a stop's harvest may answer.
      return (await stoppedTracking(path, [files.dir])).changedSince(token);
    },
    committed() {
      committed = true;
    },
  };
  return {
    source: changes === undefined ? source : withChanges(source, changes),
    frozen: true,
    async release() {
      await source.close();
      for (const e of exports.splice(0)) await e.close().catch(() => {});
      await qmp((client) => commit(client, drive, job, overlay));
      // The committed pass's bitmap stays (the next pass reads it); every other one of this key goes.
      // A pass that did not commit leaves the record on the bitmap it read from.
      if (tracked !== undefined && track !== undefined) {
        const keep = committed ? tracked.bitmap : since === undefined ? undefined : bitmapOf(since);
        await qmp((client) => retireBitmaps(client, tracked.node.node, track.key, keep));
      }
    },
  };
}

async function withQmp<T>(socket: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await connectQmp(socket);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}

async function commit(qmp: QmpClient, drive: string, job: string, overlay: string): Promise<void> {
  await qmp.execute("block-commit", { "job-id": job, device: drive });
  await waitJob(qmp, job, (j) => j?.ready === true || j?.status === "ready", `the commit of ${drive}'s overlay`);
  await qmp.execute("block-job-complete", { device: job });
  await waitJob(qmp, job, (j) => j === undefined, `the pivot of ${drive} back onto its disk`);
  await rm(overlay, { force: true });
}
