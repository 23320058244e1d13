// The local datastore: a folder that holds qcow2 or raw disks (disks/<name>.<format>) and the
// state of each machine (machines/<name>/: pid file, QMP socket, serial log, UEFI variables).
// Names are validated and every path is checked to stay inside the folder, so a disk or machine
// name can never reach another file. disks/ and machines/ are made when something is written
// there and removed once the last disk or machine is, so a datastore that held a workload and
// lost it is left as it was before; looking (listing, status) never creates a folder.
import { mkdir, readdir, rm, rmdir, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { InvalidArgsError } from "../../errors.ts";
import { convert, type ConvertOptions, type ConvertResult } from "../../disk/convert.ts";
import { formatByName } from "../../disk/formats/index.ts";
import { createFileTarget } from "../../disk/io.ts";
import type { ByteTarget, DiskSource } from "../../disk/types.ts";
import { checkLocalName } from "./machine.ts";

export const DATASTORE_DISK_FORMATS = ["qcow2", "raw"] as const;
export type DatastoreDiskFormat = (typeof DATASTORE_DISK_FORMATS)[number];

export interface DatastoreDisk {
  readonly name: string;
  readonly format: DatastoreDiskFormat;
  readonly path: string;
  /** Bytes the file takes on the host (allocated), not the virtual size. */
  readonly fileBytes: number;
}

export interface ImportDiskOptions extends ConvertOptions {
  /** @default "qcow2" */
  readonly format?: DatastoreDiskFormat;
  /** Replace a disk of the same name. @default false */
  readonly overwrite?: boolean;
}

export interface LocalDatastore {
  readonly root: string;
  /** Where a disk of that name and format is (checked to stay inside); its folder is made by importDisk/createDisk. */
  diskPath(name: string, format: DatastoreDiskFormat): string;
  /** The disk of that name, whichever format it is stored in, or undefined. */
  findDisk(name: string): Promise<DatastoreDisk | undefined>;
  listDisks(): Promise<DatastoreDisk[]>;
  /** Writes any DiskSource into the datastore with the engine's own writers. */
  importDisk(name: string, source: DiskSource, options?: ImportDiskOptions): Promise<DatastoreDisk & { readonly result: ConvertResult }>;
  /** A blank (all-zero, sparse) disk. */
  createDisk(name: string, virtualSizeBytes: number, options?: { readonly format?: DatastoreDiskFormat; readonly overwrite?: boolean }): Promise<DatastoreDisk>;
  /** Deletes the disk (whichever format), then disks/ if no other disk is left. */
  removeDisk(name: string): Promise<void>;
  /** Where the machine's state folder is; nothing is created. */
  machinePath(name: string): string;
  /** The machine's state folder, created on first use. */
  machineDir(name: string): Promise<string>;
  /**
   * Deletes the machine's state folder and everything in it (logs, QEMU arguments, UEFI
   * variables, overlays, pid file, QMP socket), then machines/ if no other machine is left.
   * Whether QEMU still runs is the caller's check (lifecycle.ts removeMachine).
   */
  removeMachineDir(name: string): Promise<void>;
}

function checkFormat(format: string): asserts format is DatastoreDiskFormat {
  if (!(DATASTORE_DISK_FORMATS as readonly string[]).includes(format)) {
    throw new InvalidArgsError("LOCAL_DATASTORE_FORMAT", `local datastore: disks are qcow2 or raw, not "${format}"`, { context: { format } });
  }
}

function inside(root: string, ...parts: string[]): string {
  const path = resolve(root, ...parts);
  const rel = relative(root, path);
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) {
    throw new InvalidArgsError("PATH_ESCAPE", `local datastore: ${parts.join("/")} lies outside ${root}`, { context: { root } });
  }
  return path;
}

/**
 * Removes `dir` if it is empty. rmdir(2) itself refuses a folder that holds anything
 * (ENOTEMPTY), so a file another workload adds at the same moment is never lost.
 */
async function removeIfEmpty(dir: string): Promise<void> {
  try {
    await rmdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
  }
}

/**
 * Removes the datastore's disks/ and machines/ folders where they are empty; the datastore
 * folder itself stays. Creates nothing, so it is safe on a datastore that is already gone.
 */
export async function removeEmptyDatastoreFolders(folder: string): Promise<void> {
  const root = resolve(folder);
  await removeIfEmpty(join(root, "disks"));
  await removeIfEmpty(join(root, "machines"));
}

/** Opens (creating if needed) a datastore folder. */
export async function openDatastore(folder: string): Promise<LocalDatastore> {
  const root = resolve(folder);
  const disksDir = join(root, "disks");
  const machinesDir = join(root, "machines");
  await mkdir(root, { recursive: true });

  function diskPath(name: string, format: DatastoreDiskFormat): string {
    checkLocalName("disk", name);
    checkFormat(format);
    return inside(disksDir, `${name}.${format}`);
  }

  async function describe(name: string, format: DatastoreDiskFormat): Promise<DatastoreDisk | undefined> {
    const path = diskPath(name, format);
    const info = await stat(path).catch(() => undefined);
    return info?.isFile() === true ? { name, format, path, fileBytes: info.blocks * 512 } : undefined;
  }

  async function findDisk(name: string): Promise<DatastoreDisk | undefined> {
    for (const format of DATASTORE_DISK_FORMATS) {
      const disk = await describe(name, format);
      if (disk !== undefined) return disk;
    }
    return undefined;
  }

  async function prepare(name: string, format: DatastoreDiskFormat, overwrite: boolean): Promise<string> {
    const existing = await findDisk(name);
    if (existing !== undefined) {
      if (!overwrite) throw new InvalidArgsError("LOCAL_DISK_EXISTS", `local datastore: disk "${name}" already exists (${existing.path})`, { context: { name } });
      await rm(existing.path, { force: true });
    }
    return diskPath(name, format);
  }

  /**
   * A new disk file. A removeDisk of the last other disk may take disks/ away between our mkdir
   * and the open: then it is made once more.
   */
  async function createDiskFile(path: string): Promise<ByteTarget> {
    for (let attempt = 0; ; attempt++) {
      await mkdir(disksDir, { recursive: true });
      try {
        return await createFileTarget(path);
      } catch (error) {
        if (attempt > 0 || (error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
    }
  }

  function machinePath(name: string): string {
    checkLocalName("machine", name);
    return inside(machinesDir, name);
  }

  return {
    root,
    diskPath,
    findDisk,
    async listDisks() {
      const disks: DatastoreDisk[] = [];
      const files = await readdir(disksDir).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return [];
        throw error;
      });
      for (const file of files.sort()) {
        const dot = file.lastIndexOf(".");
        const name = file.slice(0, dot);
        const format = file.slice(dot + 1);
        if (dot <= 0 || !(DATASTORE_DISK_FORMATS as readonly string[]).includes(format)) continue;
        try {
          checkLocalName("disk", name);
        } catch {
          continue;
        }
        const disk = await describe(name, format as DatastoreDiskFormat);
        if (disk !== undefined) disks.push(disk);
      }
      return disks;
    },
    async importDisk(name, source, options = {}) {
      const format = options.format ?? "qcow2";
      checkFormat(format);
      const path = await prepare(name, format, options.overwrite === true);
      const target = await createDiskFile(path);
      try {
        const sink = await formatByName(format).createWriter(target, { virtualSizeBytes: source.virtualSizeBytes });
        const result = await convert(source, sink, options);
        const disk = await describe(name, format);
        if (disk === undefined) throw new InvalidArgsError("LOCAL_DISK_VANISHED", `local datastore: ${path} vanished after writing`);
        return { ...disk, result };
      } catch (err) {
        await target.close().catch(() => {});
        // A half-written disk must not look like a finished one.
        await rm(path, { force: true });
        await removeIfEmpty(disksDir);
        throw err;
      }
    },
    async createDisk(name, virtualSizeBytes, options = {}) {
      const format = options.format ?? "qcow2";
      checkFormat(format);
      if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes <= 0 || virtualSizeBytes % 512 !== 0) {
        throw new InvalidArgsError("LOCAL_DISK_SIZE", `local datastore: disk size must be a positive multiple of 512 bytes, got ${virtualSizeBytes}`);
      }
      const path = await prepare(name, format, options.overwrite === true);
      const target = await createDiskFile(path);
      try {
        const sink = await formatByName(format).createWriter(target, { virtualSizeBytes });
        await sink.finish();
      } catch (err) {
        await target.close().catch(() => {});
        await rm(path, { force: true });
        await removeIfEmpty(disksDir);
        throw err;
      }
      const disk = await describe(name, format);
      if (disk === undefined) throw new InvalidArgsError("LOCAL_DISK_VANISHED", `local datastore: ${path} vanished after writing`);
      return disk;
    },
    async removeDisk(name) {
      const disk = await findDisk(name);
      if (disk !== undefined) await rm(disk.path, { force: true });
      await removeIfEmpty(disksDir);
    },
    machinePath,
    async machineDir(name) {
      const dir = machinePath(name);
      await mkdir(dir, { recursive: true });
      return dir;
    },
    async removeMachineDir(name) {
      await rm(machinePath(name), { recursive: true, force: true });
      await removeIfEmpty(machinesDir);
    },
  };
}
