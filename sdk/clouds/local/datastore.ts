// The local datastore: a folder that holds qcow2 or raw disks (disks/<name>.<format>) and the
// state of each machine (machines/<name>/: pid file, QMP socket, serial log, UEFI variables).
// Names are validated and every path is checked to stay inside the folder, so a disk or machine
// name can never reach another file.
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { InvalidArgsError } from "../../errors.ts";
import { convert, type ConvertOptions, type ConvertResult } from "../../disk/convert.ts";
import { formatByName } from "../../disk/formats/index.ts";
import { createFileTarget } from "../../disk/io.ts";
import type { DiskSource } from "../../disk/types.ts";
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
  diskPath(name: string, format: DatastoreDiskFormat): string;
  /** The disk of that name, whichever format it is stored in, or undefined. */
  findDisk(name: string): Promise<DatastoreDisk | undefined>;
  listDisks(): Promise<DatastoreDisk[]>;
  /** Writes any DiskSource into the datastore with the engine's own writers. */
  importDisk(name: string, source: DiskSource, options?: ImportDiskOptions): Promise<DatastoreDisk & { readonly result: ConvertResult }>;
  /** A blank (all-zero, sparse) disk. */
  createDisk(name: string, virtualSizeBytes: number, options?: { readonly format?: DatastoreDiskFormat; readonly overwrite?: boolean }): Promise<DatastoreDisk>;
  removeDisk(name: string): Promise<void>;
  /** The machine's state folder, created on first use. */
  machineDir(name: string): Promise<string>;
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

/** Opens (creating if needed) a datastore folder. */
export async function openDatastore(folder: string): Promise<LocalDatastore> {
  const root = resolve(folder);
  const disksDir = join(root, "disks");
  const machinesDir = join(root, "machines");
  await mkdir(disksDir, { recursive: true });
  await mkdir(machinesDir, { recursive: true });

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

  return {
    root,
    diskPath,
    findDisk,
    async listDisks() {
      const disks: DatastoreDisk[] = [];
      for (const file of (await readdir(disksDir)).sort()) {
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
      const target = await createFileTarget(path);
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
      const target = await createFileTarget(path);
      try {
        const sink = await formatByName(format).createWriter(target, { virtualSizeBytes });
        await sink.finish();
      } catch (err) {
        await target.close().catch(() => {});
        await rm(path, { force: true });
        throw err;
      }
      const disk = await describe(name, format);
      if (disk === undefined) throw new InvalidArgsError("LOCAL_DISK_VANISHED", `local datastore: ${path} vanished after writing`);
      return disk;
    },
    async removeDisk(name) {
      const disk = await findDisk(name);
      if (disk !== undefined) await rm(disk.path, { force: true });
    },
    async machineDir(name) {
      checkLocalName("machine", name);
      const dir = inside(machinesDir, name);
      await mkdir(dir, { recursive: true });
      return dir;
    },
  };
}
