// Datastore files over HTTPS: `/folder/<path>?dcPath=<datacenter>&dsName=<datastore>`, the
// interface vCenter and ESXi serve (and vcsim), authenticated by the session cookie.
//
// - Reading: a ByteSource of Range GETs, so the VMDK reader opens a disk in place (descriptor
//   plus extents, each extent another ranged file beside the descriptor).
// - Writing: a PUT is one streaming request that replaces the whole file; there is no write at
//   an offset. A monolithicSparse VMDK needs to seek back (its grain tables precede its grains),
//   so it cannot be streamed. The sink writes either
//     "flat": ESXi's own layout, a text descriptor plus `<name>-flat.vmdk` holding every byte
//       (zeros included: a datastore PUT cannot leave holes, though VMFS/NFS may store them
//       thin). This is what a VM can attach directly (CreateVM, vmkfstools) — the default.
//     "streamOptimized": one compressed, sequential file, compact on the wire, which vSphere
//       imports (NFC, ovftool) but does not run without conversion.
//   The descriptor is written last, so an interrupted flat upload never looks like a disk.
import { randomBytes } from "node:crypto";
import { dirname, posix } from "node:path";
import { CloudError, InvalidArgsError, isPortableError } from "../../errors.ts";
import { detect } from "../../disk/open.ts";
import { createVmdkWriter } from "../../disk/formats/vmdk/writer.ts";
import { checkExtentPath } from "../../disk/formats/vmdk/reader.ts";
import { formatDescriptor, type AdapterType } from "../../disk/formats/vmdk/descriptor.ts";
import { SinkWriteGuard } from "../../disk/sink-guard.ts";
import type { ByteSource, DiskSink, DiskSource, SinkResult } from "../../disk/types.ts";
import { isTransientError, withRetry } from "../../retry.ts";
import { drain, type VsphereClient } from "./client.ts";
import { findDatacenter, findDatastore } from "./inventory.ts";
import { getProperties, runTask } from "./property-collector.ts";
import { startUpload, type UploadTarget } from "./upload.ts";
import { expect, xs } from "./xml.ts";

/** A file on a datastore: `[datastore] folder/file.vmdk` inside a datacenter. */
export interface DatastoreFile {
  /** Datacenter inventory path, e.g. "DC0". */
  readonly datacenter: string;
  readonly datastore: string;
  /** Path inside the datastore, "/"-separated, no leading slash. */
  readonly path: string;
}

/** Parses "[datastore] folder/file" (the vSphere datastore path syntax). */
export function parseDatastorePath(datastorePath: string, datacenter: string): DatastoreFile {
  const match = /^\[([^\]]+)\]\s*(.*)$/.exec(datastorePath.trim());
  if (match === null) throw new InvalidArgsError("VSPHERE_DATASTORE_PATH", `vsphere: "${datastorePath}" is not a datastore path like "[datastore] folder/file.vmdk"`);
  return { datacenter, datastore: match[1] as string, path: checkedPath(match[2] as string) };
}

export function datastorePathOf(file: Pick<DatastoreFile, "datastore" | "path">): string {
  return `[${file.datastore}] ${file.path}`;
}

function checkedPath(path: string): string {
  const clean = path.replace(/^\/+/, "");
  if (clean === "" || clean.includes("\0") || clean.split("/").some((s) => s === ".." || s === ".")) {
    throw new InvalidArgsError("VSPHERE_DATASTORE_PATH", `vsphere: datastore path "${path}" is empty or climbs out of its folder`);
  }
  return clean;
}

/** The HTTPS URL of a datastore file. */
export function datastoreUrl(client: VsphereClient, file: DatastoreFile): URL {
  const url = new URL(client.url.origin);
  url.pathname = `/folder/${checkedPath(file.path).split("/").map(encodeURIComponent).join("/")}`;
  url.search = `dcPath=${encodeURIComponent(file.datacenter)}&dsName=${encodeURIComponent(file.datastore)}`;
  return url;
}

/** Range reads retried on network errors and 5xx: a GET is safe to repeat. */
export const DATASTORE_READ_ATTEMPTS = 5;

function cookieHeader(client: VsphereClient): Record<string, string> {
  return client.cookie === undefined ? {} : { cookie: client.cookie };
}

/** The size of a datastore file, or undefined when it does not exist. */
export async function statDatastoreFile(client: VsphereClient, file: DatastoreFile): Promise<number | undefined> {
  const url = datastoreUrl(client, file);
  const what = `HEAD ${datastorePathOf(file)}`;
  const res = await withRetry(() => client.send({ method: "HEAD", headers: cookieHeader(client) }, url, what), {
    operation: what,
    attempts: DATASTORE_READ_ATTEMPTS,
    isRetryable: retryable,
  });
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new CloudError("VSPHERE_HTTP_ERROR", `vsphere: ${what}: HTTP ${res.status}`, { context: { status: res.status } });
  const length = Number(res.headers["content-length"]);
  if (!Number.isSafeInteger(length) || length < 0) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: ${what}: no usable Content-Length`);
  return length;
}

function retryable(err: unknown): boolean {
  if (isPortableError(err)) return err.code === "VSPHERE_NETWORK" || (err.code === "VSPHERE_HTTP_ERROR" && Number(err.context.status) >= 500);
  return isTransientError(err);
}

/** A ByteSource over a datastore file: each read is one Range GET. */
export async function openDatastoreFile(client: VsphereClient, file: DatastoreFile): Promise<ByteSource> {
  const sizeBytes = await statDatastoreFile(client, file);
  const name = datastorePathOf(file);
  if (sizeBytes === undefined) throw new CloudError("VSPHERE_FILE_NOT_FOUND", `vsphere: ${name} does not exist`, { context: { file: name } });
  const url = datastoreUrl(client, file);
  return {
    name,
    sizeBytes,
    async read(offsetBytes, lengthBytes, into) {
      const length = Math.max(0, Math.min(lengthBytes, sizeBytes - offsetBytes));
      if (length === 0) return Buffer.alloc(0);
      const what = `GET ${name} at ${offsetBytes} (+${length})`;
      return withRetry(
        async () => {
          const res = await client.open("GET", url, { ...cookieHeader(client), range: `bytes=${offsetBytes}-${offsetBytes + length - 1}` }, what);
          const status = res.statusCode ?? 0;
          if (status !== 206 && !(status === 200 && offsetBytes === 0)) {
            const body = await drain(res);
            throw new CloudError(status === 404 ? "VSPHERE_FILE_NOT_FOUND" : "VSPHERE_HTTP_ERROR", `vsphere: ${what}: HTTP ${status} ${body.slice(0, 120)}`, {
              context: { status, offsetBytes, lengthBytes: length },
            });
          }
          const out = into !== undefined && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
          let done = 0;
          try {
            for await (const chunk of res as AsyncIterable<Buffer>) {
              const take = Math.min(chunk.length, length - done);
              chunk.copy(out, done, 0, take);
              done += take;
              if (done === length) break;
            }
          } finally {
            res.destroy();
          }
          if (done !== length) throw new CloudError("VSPHERE_NETWORK", `vsphere: ${what}: body ended after ${done} bytes`, { context: { offsetBytes, got: done } });
          return out;
        },
        { operation: what, attempts: DATASTORE_READ_ATTEMPTS, isRetryable: retryable },
      );
    },
    close: async () => {},
  };
}

/** Delta disks followed down to their base at most this deep (ESXi keeps at most 32 snapshots). */
export const MAX_DELTA_CHAIN = 64;

/**
 * A disk on a datastore as a DiskSource, of whatever format its bytes are (VMDK descriptors
 * open their extents from the same folder; names with "/" or ".." are refused). A delta disk
 * (a snapshot's, or a replica layer's) reads through its parents, named by parentFileNameHint
 * in the same folder.
 */
export async function openDatastoreDisk(client: VsphereClient, file: DatastoreFile, depth = 0): Promise<DiskSource> {
  const bytes = await openDatastoreFile(client, file);
  const folder = dirname(`/${file.path}`).slice(1);
  const beside = (name: string): DatastoreFile => {
    checkExtentPath(name, bytes.name);
    if (name.includes("/") || name.includes("\\")) {
      throw new InvalidArgsError("VSPHERE_DATASTORE_PATH", `vsphere: ${bytes.name} names "${name}" outside its folder`);
    }
    return { ...file, path: folder === "" ? name : posix.join(folder, name) };
  };
  let parent: DiskSource | undefined;
  try {
    const format = await detect(bytes);
    const options = { openRelative: (name: string) => openDatastoreFile(client, beside(name)) };
    try {
      return await format.open(bytes, options);
    } catch (err) {
      const hint = isPortableError(err) && err.code === "VMDK_DIFFERENCING" ? err.context.parentFileNameHint : undefined;
      if (typeof hint !== "string") throw err;
      if (depth >= MAX_DELTA_CHAIN) throw new CloudError("VSPHERE_DELTA_CHAIN_TOO_DEEP", `vsphere: ${bytes.name} is more than ${MAX_DELTA_CHAIN} delta disks above its base`);
      parent = await openDatastoreDisk(client, beside(hint), depth + 1);
      const disk = await format.open(bytes, { ...options, backing: parent });
      const below = parent;
      return { ...disk, extents: () => disk.extents(), read: (o, l, into) => disk.read(o, l, into), close: async () => { await disk.close(); await below.close(); } };
    }
  } catch (err) {
    await parent?.close().catch(() => {});
    await bytes.close();
    throw err;
  }
}

export type DatastoreDiskFormat = "flat" | "streamOptimized";

export interface DatastoreSinkOptions {
  readonly virtualSizeBytes: number;
  /** @default "flat" */
  readonly subformat?: DatastoreDiskFormat;
  /** ddb.adapterType of the descriptor. @default "lsilogic" */
  readonly adapterType?: AdapterType;
  /** Replace existing files. Off by default, so a typo never clobbers a disk. */
  readonly overwrite?: boolean;
  readonly signal?: AbortSignal;
}

const SECTOR_BYTES = 512;
/** The flat sink's allocation unit for convert(): 1 MiB pieces, a multiple of every grain. */
const FLAT_BLOCK_BYTES = 1024 * 1024;
const ZEROS = Buffer.alloc(FLAT_BLOCK_BYTES);

/** A descriptor for a flat (VMFS) extent, in the shape ESXi writes (VDF5 §"The Descriptor File"). */
export function flatDescriptor(flatFileName: string, capacitySectors: number, adapterType: AdapterType): string {
  return formatDescriptor({
    createType: "vmfs",
    fileName: flatFileName,
    capacitySectors,
    adapterType,
    hwVersion: 11,
    cid: randomBytes(4).toString("hex"),
    longContentId: randomBytes(16).toString("hex"),
  });
}

export async function deleteDatastoreFile(client: VsphereClient, file: DatastoreFile): Promise<void> {
  const fileManager = client.serviceContent.fileManager;
  if (fileManager === undefined) return;
  const dc = await findDatacenter(client, file.datacenter);
  try {
    await runTask(client, "DeleteDatastoreFile_Task", fileManager, { name: datastorePathOf(file), datacenter: dc.ref }, { timeoutMs: 60_000 });
  } catch (err) {
    if (!(isPortableError(err) && (err.code === "VSPHERE_FILE_NOT_FOUND" || err.code === "VSPHERE_NOT_FOUND"))) throw err;
  }
}

/** Deletes a VMDK and, for a flat one, its extent (FileManager.DeleteDatastoreFile_Task); absent files are fine. */
export async function deleteDatastoreDisk(client: VsphereClient, file: DatastoreFile): Promise<void> {
  await deleteDatastoreFile(client, { ...file, path: flatNameFor(file.path) });
  await deleteDatastoreFile(client, file);
}

/** A datastore search answers within seconds; a minute allows a busy vCenter. */
const FOLDER_SEARCH_TIMEOUT_MS = 60_000;

const searchResultsSchema = xs.object({ file: xs.many(xs.object({ path: xs.string() })) });

/**
 * The names in a datastore folder, files and subfolders alike, or undefined when the folder does
 * not exist (HostDatastoreBrowser.SearchDatastore_Task, not recursive). `matchPattern` "*" is
 * given because vcsim matches nothing without one; vSphere matches everything either way.
 */
export async function listDatastoreFolder(client: VsphereClient, folder: DatastoreFile): Promise<string[] | undefined> {
  const dc = await findDatacenter(client, folder.datacenter);
  const datastore = await findDatastore(client, dc, folder.datastore);
  const browser = expect(xs.ref(), (await getProperties(client, datastore, ["browser"])).get("browser"), `browser of datastore ${folder.datastore}`);
  const folderPath = folder.path === "" ? `[${folder.datastore}]` : datastorePathOf({ ...folder, path: checkedPath(folder.path) });
  let result: unknown;
  try {
    result = await runTask(client, "SearchDatastore_Task", browser, { datastorePath: folderPath, searchSpec: { matchPattern: ["*"] } }, { timeoutMs: FOLDER_SEARCH_TIMEOUT_MS });
  } catch (err) {
    if (isPortableError(err) && err.code === "VSPHERE_FILE_NOT_FOUND") return undefined;
    throw err;
  }
  return expect(searchResultsSchema, result, `SearchDatastore_Task result for ${folderPath}`).file.map((f) => f.path);
}

/**
 * Deletes a datastore folder if it holds nothing, and says whether it did; a folder that is
 * absent or holds anything stays as it is. DeleteDatastoreFile_Task on a folder deletes it with
 * its contents (vcsim: os.RemoveAll), so the listing comes first; a file written into the folder
 * between the two would go with it, which is why only a folder a workload owns is passed here.
 */
export async function removeEmptyDatastoreFolder(client: VsphereClient, folder: DatastoreFile): Promise<boolean> {
  const path = checkedPath(folder.path);
  const names = await listDatastoreFolder(client, { ...folder, path });
  if (names === undefined || names.length > 0) return false;
  await deleteDatastoreFile(client, { ...folder, path });
  return true;
}

function flatNameFor(path: string): string {
  return path.replace(/(\.vmdk)?$/i, "-flat.vmdk");
}

class FlatDatastoreSink implements DiskSink {
  readonly format = "vmdk";
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes = FLAT_BLOCK_BYTES;
  readonly #client: VsphereClient;
  readonly #file: DatastoreFile;
  readonly #flat: DatastoreFile;
  readonly #upload: UploadTarget;
  readonly #guard: SinkWriteGuard;
  readonly #adapterType: AdapterType;
  #position = 0;
  #dataBytes = 0;

  constructor(client: VsphereClient, file: DatastoreFile, options: DatastoreSinkOptions) {
    this.#client = client;
    this.#file = file;
    this.#flat = { ...file, path: flatNameFor(file.path) };
    this.virtualSizeBytes = Math.ceil(options.virtualSizeBytes / SECTOR_BYTES) * SECTOR_BYTES;
    this.#adapterType = options.adapterType ?? "lsilogic";
    this.#guard = new SinkWriteGuard("vmdk (flat)", datastorePathOf(file), this.virtualSizeBytes);
    this.#upload = startUpload(client, datastoreUrl(client, this.#flat), {
      what: `PUT ${datastorePathOf(this.#flat)}`,
      headers: { "content-length": this.virtualSizeBytes },
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  private async zerosTo(offsetBytes: number): Promise<void> {
    while (this.#position < offsetBytes) {
      const length = Math.min(FLAT_BLOCK_BYTES, offsetBytes - this.#position);
      await this.#upload.write(this.#position, ZEROS.subarray(0, length));
      this.#position += length;
    }
  }

  async write(offsetBytes: number, data: Buffer): Promise<void> {
    this.#guard.accept(offsetBytes, data.length);
    await this.zerosTo(offsetBytes);
    await this.#upload.write(offsetBytes, data);
    this.#position += data.length;
    this.#dataBytes += data.length;
  }

  async finish(): Promise<SinkResult> {
    this.#guard.finishing();
    try {
      await this.zerosTo(this.virtualSizeBytes);
      await this.#upload.close();
      const descriptor = flatDescriptor(posix.basename(this.#flat.path), this.virtualSizeBytes / SECTOR_BYTES, this.#adapterType);
      const put = startUpload(this.#client, datastoreUrl(this.#client, this.#file), { what: `PUT ${datastorePathOf(this.#file)}`, headers: { "content-length": Buffer.byteLength(descriptor) } });
      await put.write(0, Buffer.from(descriptor));
      await put.close();
    } catch (err) {
      this.#upload.abort();
      await deleteDatastoreDisk(this.#client, this.#file).catch(() => {});
      throw err;
    }
    return { location: datastorePathOf(this.#file), dataBytesWritten: this.#dataBytes, details: { subformat: "flat", extent: datastorePathOf(this.#flat), bytesSent: this.#upload.bytesSent } };
  }

  async abort(): Promise<void> {
    if (!this.#guard.close()) return;
    this.#upload.abort();
    await deleteDatastoreDisk(this.#client, this.#file).catch(() => {});
  }
}

/**
 * A DiskSink that writes a VMDK to a datastore (see the module comment for the two layouts).
 * Existing files are refused unless `overwrite` is set.
 */
export async function createDatastoreDiskSink(client: VsphereClient, file: DatastoreFile, options: DatastoreSinkOptions): Promise<DiskSink> {
  if (!/\.vmdk$/i.test(file.path)) throw new InvalidArgsError("VSPHERE_DATASTORE_PATH", `vsphere: ${datastorePathOf(file)}: a disk's name must end in .vmdk`);
  if (options.overwrite !== true && (await statDatastoreFile(client, file)) !== undefined) {
    throw new CloudError("VSPHERE_FILE_ALREADY_EXISTS", `vsphere: ${datastorePathOf(file)} already exists (pass overwrite to replace it)`, { context: { file: datastorePathOf(file) } });
  }
  if ((options.subformat ?? "flat") === "flat") return new FlatDatastoreSink(client, file, options);
  const upload = startUpload(client, datastoreUrl(client, file), {
    what: `PUT ${datastorePathOf(file)}`,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  const inner = await createVmdkWriter(upload, { virtualSizeBytes: options.virtualSizeBytes, subformat: "streamOptimized", adapterType: options.adapterType ?? "lsilogic" });
  return {
    format: inner.format,
    virtualSizeBytes: inner.virtualSizeBytes,
    blockSizeBytes: inner.blockSizeBytes,
    write: (offsetBytes, data) => inner.write(offsetBytes, data),
    async finish() {
      const result = await inner.finish();
      return { ...result, location: datastorePathOf(file), details: { ...result.details, subformat: "streamOptimized" } };
    },
    async abort() {
      upload.abort();
      await inner.abort().catch(() => {});
      await deleteDatastoreFile(client, file).catch(() => {});
    },
  };
}
