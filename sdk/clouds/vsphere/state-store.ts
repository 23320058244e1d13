// The vSphere placement's replica state beside its disks: small files in `portable-state/` of
// the VM's folder on the datastore (contracts/state-store.ts), read and written through the
// datastore's /folder HTTP interface. A datastore PUT has no conditions, so a conditional write
// holds a lock first: a folder made with FileManager.MakeDirectory, which fails when the folder
// exists (FileAlreadyExists). Inside it the record is read, compared and written. A lock a dead
// writer left is broken after LOCK_WAIT_MS.
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { isPortableError, PortableError } from "../../errors.ts";
import { checkName, StateConflictError, type StateStore } from "../../contracts/state-store.ts";
import type { VsphereConnection } from "../../contracts/vsphere-connection.ts";
import type { VsphereClient } from "./client.ts";
import { datastorePathOf, datastoreUrl, deleteDatastoreFile, openDatastoreFile, removeEmptyDatastoreFolder, statDatastoreFile, type DatastoreFile } from "./datastore.ts";
import { connectVsphere } from "./disk-url.ts";
import { findDatacenter } from "./inventory.ts";
import { startUpload } from "./upload.ts";

/** How long a conditional write waits for another's lock before taking it as a dead writer's. */
const LOCK_WAIT_MS = 30_000;
/** A record is small: a manifest holds one 64-hex hash per 512 KiB data block (about 280 MiB for 2 TiB full). */
const MAX_RECORD_BYTES = 512 * 1024 * 1024;

/** The store in `<folder>/portable-state/` on the datastore of `folder` (the VM's folder). */
export function vsphereStateStore(connection: VsphereConnection, folder: DatastoreFile): StateStore {
  const dir: DatastoreFile = { ...folder, path: folder.path === "" ? "portable-state" : `${folder.path}/portable-state` };
  const at = (name: string): DatastoreFile => ({ ...dir, path: `${dir.path}/${checkName(name)}` });
  const etagOf = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 32);
  const reference = `vsphere://${new URL(connection.url).host}/${dir.datacenter}/[${dir.datastore}] ${dir.path}/`;
  // One session per operation, logged out after it: a store lives as long as its caller likes.
  const session = async <T>(work: (client: VsphereClient) => Promise<T>): Promise<T> => {
    const client = await connectVsphere(connection);
    try {
      return await work(client);
    } finally {
      await client.logout().catch(() => {});
    }
  };
  const read = async (client: VsphereClient, name: string) => {
    if ((await statDatastoreFile(client, at(name))) === undefined) return undefined;
    const bytes = await openDatastoreFile(client, at(name));
    try {
      if (bytes.sizeBytes > MAX_RECORD_BYTES) throw new PortableError("STATE_RECORD_TOO_LARGE", `${reference}${name}: ${bytes.sizeBytes} bytes is not a state record`);
      const text = (await bytes.read(0, bytes.sizeBytes)).toString("utf8");
      return { text, etag: etagOf(text) };
    } finally {
      await bytes.close();
    }
  };
  const write = async (client: VsphereClient, name: string, text: string) => {
    await makeDirectory(client, dir);
    const body = Buffer.from(text);
    const upload = startUpload(client, datastoreUrl(client, at(name)), { what: `PUT ${datastorePathOf(at(name))}`, headers: { "content-length": body.length } });
    await upload.write(0, body);
    await upload.close();
    return etagOf(text);
  };

  return {
    reference,
    get: (name) => session((client) => read(client, name)),
    put: (name, text, condition = {}) =>
      session(async (client) => {
        if (condition.ifAbsent !== true && condition.ifMatch === undefined) return write(client, name, text);
        await makeDirectory(client, dir);
        const lock = at(`${name}.lock`);
        const started = Date.now();
        while (!(await makeDirectory(client, lock, { exclusive: true }))) {
          if (Date.now() - started > LOCK_WAIT_MS) await deleteDatastoreFile(client, lock);
          await new Promise((r) => setTimeout(r, 200));
        }
        try {
          const current = await read(client, name);
          if (condition.ifAbsent === true ? current !== undefined : current?.etag !== condition.ifMatch) throw new StateConflictError(reference, name, condition);
          return await write(client, name, text);
        } finally {
          await deleteDatastoreFile(client, lock);
        }
      }),
    delete: (name) => session((client) => deleteDatastoreFile(client, at(name))),
    tidy: () =>
      session(async (client) => {
        // The state folder once empty, then the VM's folder if that was the last thing in it.
        const parent = posix.dirname(dir.path);
        if (await removeEmptyDatastoreFolder(client, dir)) await removeEmptyDatastoreFolder(client, { ...dir, path: parent === "." ? "" : parent }).catch(() => false);
      }),
  };
}

/**
 * FileManager.MakeDirectory; with `exclusive`, false when the folder exists already (the lock is
 * someone else's). Without it, an existing folder is fine.
 */
async function makeDirectory(client: VsphereClient, folder: DatastoreFile, options: { readonly exclusive?: boolean } = {}): Promise<boolean> {
  const fileManager = client.serviceContent.fileManager;
  const dc = await findDatacenter(client, folder.datacenter);
  try {
    await client.call("MakeDirectory", fileManager!, { name: datastorePathOf(folder), datacenter: dc.ref, createParentDirectories: options.exclusive !== true });
    return true;
  } catch (error) {
    if (isPortableError(error) && error.code === "VSPHERE_FILE_ALREADY_EXISTS") return options.exclusive !== true;
    throw error;
  }
}
