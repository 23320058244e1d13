// A point-in-time view of a running local machine's disk, for warm replication: a frozen
// overlay. QMP `blockdev-snapshot-sync` puts a new qcow2 overlay on top of the disk, so the guest's
// writes go to the overlay and the disk file itself stops changing; we read it; then
// `block-commit` folds the overlay back (an active commit: the job becomes ready, then
// `block-job-complete` pivots the guest back onto the disk) and the overlay file is removed.
// A machine that is not running needs none of this: its disk file is already still.
import { readdir, readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CloudError } from "../../errors.ts";
import type { PointInTime } from "../../contracts/point-in-time.ts";
import type { DiskSource } from "../../disk/types.ts";
import { openDisk } from "../../disk/open.ts";
import type { LocalDatastore } from "./datastore.ts";
import { machineFiles, machineStatus } from "./lifecycle.ts";
import type { LocalMachineDefinition } from "./machine.ts";
import { connectQmp, type QmpClient } from "./qmp.ts";

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
export async function freezeFile(store: LocalDatastore, path: string, format: "raw" | "qcow2" = "raw"): Promise<FrozenDisk> {
  const wanted = resolve(path);
  const names = await readdir(join(store.root, "machines")).catch(() => [] as string[]);
  for (const name of names) {
    if ((await machineStatus(store, name).catch(() => undefined))?.state !== "running") continue;
    const files = await machineFiles(store, name);
    if (!(await readFile(files.args, "utf8").catch(() => "")).includes(wanted)) continue;
    const blocks = (await withQmp(files.qmpSocket, (qmp) => qmp.execute("query-block"))) as BlockInfo[];
    const drive = blocks.find((b) => b.inserted?.file !== undefined && resolve(b.inserted.file) === wanted)?.device;
    if (drive !== undefined) return freezeDrive(files, drive, wanted, format);
  }
  const source = await openDisk(wanted, { format });
  return { source, frozen: false, release: () => source.close() };
}

/**
 * Freezes disk `diskId` of `machine` (QEMU drive `drive<index>`, as qemu-args.ts names them) and
 * opens it read-only. The overlay lives in the machine's state folder.
 */
export async function freezeDisk(store: LocalDatastore, machine: LocalMachineDefinition, diskId: string): Promise<FrozenDisk> {
  const index = machine.disks.findIndex((d) => d.id === diskId);
  const disk = machine.disks[index];
  if (disk === undefined) throw new CloudError("LOCAL_DISK_UNKNOWN", `local: machine "${machine.name}" has no disk "${diskId}"`);
  const format = disk.format === "vpc" ? "vhd" : disk.format;
  const status = await machineStatus(store, machine.name);
  if (status.state !== "running") {
    const source = await openDisk(disk.path, { format });
    return { source, frozen: false, release: () => source.close() };
  }
  return freezeDrive(await machineFiles(store, machine.name), `drive${index}`, disk.path, format);
}

async function freezeDrive(files: { readonly dir: string; readonly qmpSocket: string }, drive: string, path: string, format: "raw" | "qcow2" | "vmdk" | "vhd" | "vhdx"): Promise<FrozenDisk> {
  const job = `portable-commit-${drive}`;
  const overlay = join(files.dir, `${drive}-overlay.qcow2`);
  // QMP serves one client at a time: connect per step, never hold the monitor while frozen.
  await rm(overlay, { force: true });
  await withQmp(files.qmpSocket, (qmp) => qmp.execute("blockdev-snapshot-sync", { device: drive, "snapshot-file": overlay, format: "qcow2", mode: "absolute-paths" }));
  let source: DiskSource;
  try {
    source = await openDisk(path, { format });
  } catch (error) {
    await withQmp(files.qmpSocket, (qmp) => commit(qmp, drive, job, overlay));
    throw error;
  }
  return {
    source,
    frozen: true,
    async release() {
      await source.close();
      await withQmp(files.qmpSocket, (qmp) => commit(qmp, drive, job, overlay));
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
