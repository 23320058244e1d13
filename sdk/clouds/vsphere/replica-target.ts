// A workload disk on a vSphere datastore as a block replica target (contracts/replica-target.ts).
// A datastore PUT writes a whole file, never at an offset, so a pass cannot patch the disk in
// place: it adds a layer. The first pass writes a flat base; every later pass writes only its
// blocks, as an ESXi delta disk (COWD, vmfsSparse: disk/formats/vmdk/cowd.ts) whose parent is
// the layer below. That is the chain ESXi keeps for snapshots: a VM runs from it, and vSphere
// can consolidate it ("Consolidate" on the VM) when the chain should go.
//
// Files, beside the disk its location names (`<stem>.vmdk`):
//   <stem>-pw<k>.vmdk          layer k's descriptor; a delta names layer k-1 as its parent
//   <stem>-pw<k>-delta.vmdk    a delta layer's COWD extent
//   <stem>-flat.vmdk           the first base's flat extent (ESXi's own name for it; vcsim
//                              attaches an existing disk only when this file exists)
//   <stem>-pw<k>-flat.vmdk     the flat extent of a base a collapse wrote
//   <stem>.vmdk                a copy of the top layer's descriptor: what the VM and every reader
//                              open. It is written last, so a pass cut off before its commit
//                              leaves the disk as it was, and the next pass overwrites its files.
// A pass that finds nothing changed adds no layer. The pass after MAX_LAYERS layers (or one over a
// disk this code did not lay out; a cutover's final pass waits up to MAX_LAYERS_FINAL, so the
// downtime never holds a whole-disk write) collapses the chain: it writes a new flat base, taking the
// blocks it does not send from the chain; the layers below go when the next pass begins, once the
// record names the new base. A delta past COWD's 2 TiB limit is written the same way. A top one
// layer above the record (a run killed between the two) is put back to the recorded layer.
//
// The delta's tables precede its grains and the PUT is sequential, so the target asks for planned
// writes: replicate() gives the pass every block first, then sends them in order.
import { randomBytes } from "node:crypto";
import { posix } from "node:path";
import { CloudError, isPortableError } from "../../errors.ts";
import type { DiskSource } from "../../disk/types.ts";
import { layoutCowdDelta, type SectorRun } from "../../disk/formats/vmdk/cowd.ts";
import { formatDescriptor, parseDescriptor, VMDK_MAX_DESCRIPTOR_BYTES, type Descriptor } from "../../disk/formats/vmdk/descriptor.ts";
import type { CommittedReplica, ReplicaPass, ReplicaTarget, TargetState } from "../../contracts/replica-target.ts";
import type { VsphereClient } from "./client.ts";
import { datastorePathOf, datastoreUrl, deleteDatastoreFile, listDatastoreFolder, openDatastoreDisk, openDatastoreFile, type DatastoreFile } from "./datastore.ts";
import { startUpload, type UploadTarget } from "./upload.ts";

/** Layers a chain may reach before the next pass collapses it. */
export const MAX_LAYERS = 16;
/**
 * A final pass (inside a cutover's downtime) adds a delta rather than collapse, up to this many
 * layers: ESXi allows 32 deltas in a chain. The next warm pass collapses.
 */
export const MAX_LAYERS_FINAL = 30;
const SECTOR = 512;
/** Bytes of the chain read at a time while a collapse fills the blocks it does not send. */
const FILL_BYTES = 4 * 1024 * 1024;

interface Layer {
  readonly layer: number;
  readonly cid: string;
  /** The layer of the chain's flat base. */
  readonly base: number;
}

function layerOf(state: TargetState | undefined): Layer | undefined {
  const { layer, cid, base } = state ?? {};
  return typeof layer === "number" && typeof cid === "string" ? { layer, cid, base: typeof base === "number" ? base : 1 } : undefined;
}

export interface VsphereReplicaOptions {
  readonly client: VsphereClient;
  /** The disk every reader opens: `<folder>/<stem>.vmdk`. */
  readonly file: DatastoreFile;
  readonly virtualSizeBytes: number;
}

export function vsphereReplicaTarget(options: VsphereReplicaOptions): ReplicaTarget {
  const { client, file, virtualSizeBytes } = options;
  const folder = posix.dirname(file.path) === "." ? "" : posix.dirname(file.path);
  const stem = posix.basename(file.path).replace(/\.vmdk$/i, "");
  const at = (name: string): DatastoreFile => ({ ...file, path: folder === "" ? name : `${folder}/${name}` });
  const descriptorName = (layer: number) => `${stem}-pw${layer}.vmdk`;
  const sectors = Math.ceil(virtualSizeBytes / SECTOR);
  const ours = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?:-flat|-pw(\\d+)(?:-delta|-flat)?)?\\.vmdk$`);

  /** `<stem>-flat.vmdk` is layer 1's extent. */
  const layerNumber = (match: RegExpExecArray): number => (match[1] === undefined ? 1 : Number(match[1]));

  async function put(target: DatastoreFile, text: string): Promise<void> {
    const body = Buffer.from(text);
    const upload = startUpload(client, datastoreUrl(client, target), { what: `PUT ${datastorePathOf(target)}`, headers: { "content-length": body.length } });
    await upload.write(0, body);
    await upload.close();
  }

  /** Deletes this disk's files, keeping layers from `keepFrom` up and the top copy when given. */
  async function deleteLayers(keepFrom: number | undefined): Promise<void> {
    const names = (await listDatastoreFolder(client, { ...file, path: folder })) ?? [];
    for (const name of names) {
      const match = ours.exec(name);
      if (match === null) continue;
      if (keepFrom !== undefined && (name === `${stem}.vmdk` || layerNumber(match) >= keepFrom)) continue;
      await deleteDatastoreFile(client, at(name));
    }
  }

  const extentsOf = (layer: number) => [`${stem}-pw${layer}-delta.vmdk`, `${stem}-pw${layer}-flat.vmdk`, ...(layer === 1 ? [`${stem}-flat.vmdk`] : [])];

  /**
   * The layer a new delta goes on must still be what `<stem>.vmdk` opens. A layer above it that
   * is ours was committed on the datastore by a run cut off before its record: the top goes back
   * to the recorded layer (kept until a later record says otherwise), and the new pass replaces
   * it. A chain consolidated or edited outside us (vSphere's "Consolidate" renames and deletes
   * layers) is refused, not guessed.
   */
  async function checkTop(below: Layer): Promise<void> {
    const extent = await readDescriptor(file).then((d) => d?.extents[0]?.fileName, () => undefined);
    if (extent !== undefined && extentsOf(below.layer).includes(extent)) return;
    if (extent !== undefined && extentsOf(below.layer + 1).includes(extent)) {
      const recorded = at(descriptorName(below.layer));
      const text = await openDatastoreFile(client, recorded).then((bytes) => bytes.read(0, Math.min(bytes.sizeBytes, VMDK_MAX_DESCRIPTOR_BYTES)));
      await put(file, text.toString("utf8"));
      return;
    }
    throw new CloudError("VSPHERE_CHAIN_CHANGED", `vsphere: ${datastorePathOf(file)} no longer opens the layer ${below.layer} this replica wrote (${extent === undefined ? "it is gone" : `it names "${extent}"`}): the disk was consolidated or changed outside portable-workload. Use the disk as a source, or remove its files to place it again`, { context: { file: datastorePathOf(file), layer: below.layer } });
  }

  async function readDescriptor(at: DatastoreFile): Promise<Descriptor | undefined> {
    const bytes = await openDatastoreFile(client, at);
    try {
      return bytes.sizeBytes > VMDK_MAX_DESCRIPTOR_BYTES ? undefined : parseDescriptor(await bytes.read(0, bytes.sizeBytes), bytes.name);
    } finally {
      await bytes.close();
    }
  }

  async function begin(base: CommittedReplica | undefined, options: { readonly final?: boolean } = {}): Promise<ReplicaPass> {
    const below = base === undefined ? undefined : layerOf(base.targetState);
    if (below !== undefined) {
      await checkTop(below);
      // The chain a collapse replaced goes once the record names the new base (never earlier:
      // a run cut off before its record falls back on it).
      if (below.base === below.layer && below.layer > 1) await deleteLayers(below.base);
    }
    // A disk laid out otherwise (a flat copy from before chains) is collapsed into layer 2, so
    // the new base never overwrites the extent it reads from.
    const layer = below !== undefined ? below.layer + 1 : base === undefined ? 1 : 2;
    const cid = randomBytes(4).toString("hex");
    let upload: UploadTarget | undefined;
    let extentName = "";
    let flat = false;
    /** For a flat layer: where the chain's blocks come from for the gaps (undefined: zeros). */
    let fill: DiskSource | undefined;
    /** For a delta: where the next block's data goes in its file (blocks come in disk order). */
    let expected = 0;
    let nothing = false;

    async function fillTo(offset: number): Promise<void> {
      if (fill === undefined) {
        await upload!.truncate!(offset);
        return;
      }
      for (let position = upload!.bytesSent; position < offset; ) {
        const length = Math.min(FILL_BYTES, offset - position);
        await upload!.write(position, await fill.read(position, length));
        position += length;
      }
    }

    return {
      state: { layer },
      async plan(blocks, blockBytes) {
        if (blocks.length === 0 && below !== undefined) {
          nothing = true;
          return;
        }
        const runs: SectorRun[] = [];
        for (const index of blocks) {
          const start = (index * blockBytes) / SECTOR;
          const length = Math.ceil(Math.min(blockBytes, virtualSizeBytes - index * blockBytes) / SECTOR);
          const last = runs[runs.length - 1];
          if (last !== undefined && last.startSector + last.sectors === start) runs[runs.length - 1] = { startSector: last.startSector, sectors: last.sectors + length };
          else runs.push({ startSector: start, sectors: length });
        }
        const limit = options.final === true ? MAX_LAYERS_FINAL : MAX_LAYERS;
        const layout = below === undefined || below.layer - below.base + 1 >= limit ? undefined : layoutCowdDelta(sectors, runs);
        flat = layout === undefined;
        extentName = flat && layer === 1 ? `${stem}-flat.vmdk` : `${stem}-pw${layer}-${flat ? "flat" : "delta"}.vmdk`;
        const extent = at(extentName);
        upload = startUpload(client, datastoreUrl(client, extent), { what: `PUT ${datastorePathOf(extent)}`, headers: { "content-length": flat ? sectors * SECTOR : layout!.totalBytes } });
        if (flat) {
          // A collapse (or a first pass over a disk laid out otherwise) keeps what the chain holds.
          if (base !== undefined) fill = await openDatastoreDisk(client, file);
          return;
        }
        await upload.write(0, layout!.head);
        for (const table of layout!.tables()) await upload.write(upload.bytesSent, table);
        expected = upload.bytesSent;
      },
      async write(_blockIndex, offsetBytes, data) {
        if (flat) {
          await fillTo(offsetBytes);
          await upload!.write(offsetBytes, data);
        } else {
          await upload!.write(expected, data);
          expected += data.length;
        }
        return undefined;
      },
      async commit() {
        const top = datastorePathOf(file);
        if (nothing) return { location: top, state: base!.targetState };
        if (flat) await fillTo(sectors * SECTOR);
        await upload!.close();
        await fill?.close();
        fill = undefined;
        const text = formatDescriptor({
          createType: flat ? "vmfs" : "vmfsSparse",
          fileName: extentName,
          capacitySectors: sectors,
          adapterType: "lsilogic",
          hwVersion: 11,
          cid,
          longContentId: randomBytes(16).toString("hex"),
          ...(flat ? {} : { parent: { cid: below!.cid, fileNameHint: descriptorName(below!.layer) } }),
        });
        await put(at(descriptorName(layer)), text);
        await put(file, text);
        return { location: top, state: { layer, cid, base: flat ? layer : below!.base } };
      },
      async abort() {
        upload?.abort();
        await fill?.close().catch(() => {});
        if (extentName !== "") await deleteDatastoreFile(client, at(extentName)).catch(() => {});
      },
    };
  }

  return {
    name: datastorePathOf(file),
    virtualSizeBytes,
    alignmentBytes: SECTOR,
    plannedWrites: true,
    begin,
    // An upload cut off cannot be continued: the rerun writes the layer again from its base.
    resume: async () => undefined,
    openReadBack: async () => openDatastoreDisk(client, file),
    async destroy() {
      try {
        await deleteLayers(undefined);
      } catch (error) {
        if (!(isPortableError(error) && error.code === "VSPHERE_FILE_NOT_FOUND")) throw error;
      }
    },
  };
}
