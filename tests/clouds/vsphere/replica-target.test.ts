// A disk on a vcsim datastore as a block replica: the first pass writes a flat base, every later
// pass only its changed blocks as an ESXi delta disk over it. The chain is read back by our
// reader and, downloaded, by qemu-img (whose VMDK driver follows parentFileNameHint on its own),
// and both must equal the source after every pass.
import assert from "node:assert/strict";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { datastoreUrl, listDatastoreFolder, openDatastoreFile, statDatastoreFile, type DatastoreFile } from "../../../sdk/clouds/vsphere/datastore.ts";
import { startUpload } from "../../../sdk/clouds/vsphere/upload.ts";
import { formatDescriptor } from "../../../sdk/disk/formats/vmdk/descriptor.ts";
import { MAX_LAYERS, vsphereReplicaTarget } from "../../../sdk/clouds/vsphere/replica-target.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { FileReplicaStore } from "../../../sdk/transfer/checkpoint.ts";
import { replicate } from "../../../sdk/transfer/replicate.ts";
import { qemuRawSha256, sourceSha256 } from "../../harness/disk.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { buildSparseRaw, connect, MiB } from "./helpers.ts";

const FILE: DatastoreFile = { datacenter: "DC0", datastore: "LocalDS_0", path: "replica/web-disk0.vmdk" };

describe("vSphere replica target: a flat base and ESXi delta disks (vcsim)", { timeout: 600_000 }, () => {
  let sim: Vcsim;
  let client: VsphereClient;
  let dir: string;
  let raw: string;
  let store: FileReplicaStore;
  before(async () => {
    sim = await startVcsim();
    client = await connect(sim);
    dir = await mkdtemp(join(tmpdir(), "pw-vsphere-replica-"));
    raw = join(dir, "source.raw");
    await buildSparseRaw(raw, 32 * MiB, 5);
    store = new FileReplicaStore(join(dir, "state"));
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const folder = async () => ((await listDatastoreFolder(client, { ...FILE, path: "replica" })) ?? []).sort();

  /** One pass; `failAtRead` makes the source's read of that number (1-based) fail; `final` is a cutover's final pass. */
  async function pass(failAtRead?: number, final = false) {
    const opened = await openDisk(raw, { format: "raw" });
    let reads = 0;
    const source = {
      ...opened,
      extents: () => opened.extents(),
      read: (offset: number, length: number, into?: Buffer) => (++reads === failAtRead ? Promise.reject(new Error("the source went away")) : opened.read(offset, length, into)),
    };
    try {
      return await replicate(source, vsphereReplicaTarget({ client, file: FILE, virtualSizeBytes: source.virtualSizeBytes }), { store, key: "web-disk0", final });
    } finally {
      await opened.close();
      scanReads = reads;
    }
  }
  let scanReads = 0;
  const layerOfRecord = (committed: { targetState: Record<string, unknown> } | undefined) => Number(committed?.targetState.layer ?? 0);

  /** Our reading of the chain, and qemu-img's of the same files downloaded, both equal the source. */
  async function assertHolds(label: string): Promise<void> {
    const want = await qemuRawSha256(raw, "raw");
    const target = vsphereReplicaTarget({ client, file: FILE, virtualSizeBytes: 32 * MiB });
    const back = await target.openReadBack((await store.loadCommitted("web-disk0"))!);
    try {
      assert.equal(await sourceSha256(back), want, `${label}: our reader`);
    } finally {
      await back.close();
    }
    const local = await mkdtemp(join(dir, "download-"));
    for (const name of await folder()) {
      const remote = await openDatastoreFile(client, { ...FILE, path: `replica/${name}` });
      await writeFile(join(local, name), await remote.read(0, remote.sizeBytes));
    }
    assert.equal(await qemuRawSha256(join(local, "web-disk0.vmdk"), "vmdk"), want, `${label}: qemu-img`);
    await rm(local, { recursive: true });
  }

  async function scribble(offset: number, bytes: Buffer): Promise<void> {
    const file = await open(raw, "r+");
    await file.write(bytes, 0, bytes.length, offset);
    await file.close();
  }

  it("GIVEN no replica WHEN a pass runs THEN a flat base holds the disk", async () => {
    const result = await pass();
    assert.equal(result.location, "[LocalDS_0] replica/web-disk0.vmdk");
    assert.deepEqual(await folder(), ["web-disk0-flat.vmdk", "web-disk0-pw1.vmdk", "web-disk0.vmdk"]);
    await assertHolds("base");
  });

  it("GIVEN changed blocks, one of them now zeros WHEN the next pass runs THEN only they are sent, as a delta disk of about their size", async () => {
    await scribble(5 * MiB + 100, Buffer.alloc(300_000, 0x77));
    await scribble(0, Buffer.alloc(512 * 1024)); // a block of the base's random data becomes zeros
    const result = await pass();
    assert.equal(result.blocksSent, 2, "one changed block and one cleared");
    assert.equal(result.bytesSent, 512 * 1024);
    const delta = await statDatastoreFile(client, { ...FILE, path: "replica/web-disk0-pw2-delta.vmdk" });
    assert.ok(delta !== undefined && delta >= 1024 * 1024 && delta < 1024 * 1024 + 64 * 1024, `delta file of ${delta} bytes: two blocks and their tables`);
    await assertHolds("delta");
  });

  it("GIVEN nothing changed WHEN a pass runs THEN it sends nothing and adds no layer", async () => {
    const before = await folder();
    const result = await pass();
    assert.equal(result.blocksSent, 0);
    assert.deepEqual(await folder(), before);
  });

  it("GIVEN a pass whose source fails while its delta is uploading WHEN it fails THEN the partial delta is removed, the disk is as it was, and the next pass writes the layer", async () => {
    const before = await folder();
    const scan = scanReads; // the reads of a pass that sent nothing: the scan alone
    await scribble(2 * MiB, Buffer.alloc(8192, 0x31));
    await assert.rejects(pass(scan + 1), /the source went away/);
    assert.deepEqual(await folder(), before, "no partial layer is left");
    const result = await pass();
    assert.equal(result.blocksSent, 1);
    assert.ok((await folder()).includes("web-disk0-pw3-delta.vmdk"));
    await assertHolds("after a failed pass");
  });

  it("GIVEN a pass committed on the datastore whose record was lost (a run killed between the two) WHEN the next pass runs THEN the disk falls back to the recorded layer and the pass replaces the lost one", async () => {
    const recorded = (await store.loadCommitted("web-disk0"))!;
    await scribble(4 * MiB, Buffer.alloc(4096, 0x44));
    await pass();
    assert.equal(layerOfRecord(await store.loadCommitted("web-disk0")), recorded.targetState.layer! as number + 1);
    await store.commit("web-disk0", recorded); // the record as the killed run left it
    await scribble(6 * MiB, Buffer.alloc(4096, 0x66));
    const result = await pass();
    assert.equal(result.blocksSent, 2, "both changes since the recorded layer");
    assert.equal(layerOfRecord(await store.loadCommitted("web-disk0")), recorded.targetState.layer! as number + 1, "the lost layer's number is reused");
    await assertHolds("after a lost record");
  });

  it(`GIVEN a chain of ${MAX_LAYERS} layers WHEN a cutover's final pass runs THEN it still adds a delta; the next warm pass collapses the chain into one flat base, the one after deletes the old layers, and deltas follow again`, async () => {
    for (let i = 0; layerOfRecord(await store.loadCommitted("web-disk0")) < MAX_LAYERS; i++) {
      await scribble((8 + i) * MiB, Buffer.alloc(4096, i + 1));
      assert.equal((await pass()).blocksSent, 1);
    }
    assert.ok((await folder()).includes(`web-disk0-pw${MAX_LAYERS}-delta.vmdk`));
    await scribble(29 * MiB, Buffer.alloc(4096, 0xdd));
    assert.equal((await pass(undefined, true)).blocksSent, 1);
    assert.ok((await folder()).includes(`web-disk0-pw${MAX_LAYERS + 1}-delta.vmdk`), "the downtime holds no whole-disk write");
    await scribble(30 * MiB, Buffer.alloc(4096, 0xee));
    const result = await pass();
    assert.equal(result.blocksSent, 1, "a collapse still takes only the changed block from the source");
    const base = MAX_LAYERS + 2;
    assert.ok((await folder()).includes(`web-disk0-pw${base}-flat.vmdk`));
    assert.ok((await folder()).includes(`web-disk0-pw${MAX_LAYERS}-delta.vmdk`), "the old chain stays until the record names the new base");
    await assertHolds("collapsed");
    assert.equal((await pass()).blocksSent, 0);
    assert.deepEqual(await folder(), [`web-disk0-pw${base}-flat.vmdk`, `web-disk0-pw${base}.vmdk`, "web-disk0.vmdk"]);
    await scribble(31 * MiB, Buffer.alloc(4096, 0xcc));
    assert.equal((await pass()).blocksSent, 1);
    assert.ok((await folder()).includes(`web-disk0-pw${base + 1}-delta.vmdk`), "a delta over the new base, not another collapse");
    await assertHolds("a delta over the collapsed base");
  });

  it("GIVEN the chain consolidated outside us (the top names another extent) WHEN a pass runs THEN it is refused with a coded error and nothing is written", async () => {
    const top = { ...FILE, path: "replica/web-disk0.vmdk" };
    const text = Buffer.from(formatDescriptor({ createType: "vmfs", fileName: "web-disk0-consolidated-flat.vmdk", capacitySectors: (32 * MiB) / 512, adapterType: "lsilogic", hwVersion: 11, cid: "01234567", longContentId: "0".repeat(32) }));
    const put = startUpload(client, datastoreUrl(client, top), { what: "PUT top", headers: { "content-length": text.length } });
    await put.write(0, text);
    await put.close();
    const files = await folder();
    await scribble(31 * MiB, Buffer.alloc(4096, 0x42));
    await assert.rejects(pass(), (error: Error & { code?: string }) => error.code === "VSPHERE_CHAIN_CHANGED" && /consolidated or changed outside/.test(error.message));
    assert.deepEqual(await folder(), files, "no layer was added");
  });

  it("WHEN destroyed THEN every layer is gone", async () => {
    const committed = await store.loadCommitted("web-disk0");
    await vsphereReplicaTarget({ client, file: FILE, virtualSizeBytes: 32 * MiB }).destroy(committed);
    assert.deepEqual(await folder(), []);
  });
});
