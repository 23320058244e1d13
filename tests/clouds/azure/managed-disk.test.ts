// Managed-disk control calls. ARM cannot run here (DESIGN.md, "Real parts"), so the disks API
// is a recording stand-in for ComputeManagementClient.disks; its write SAS points at a real
// Azurite page blob of the disk's upload size, as a managed disk's SAS points at its blob.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { AccessUri, Disk, GrantAccessData } from "@azure/arm-compute";
import { AnonymousCredential, BlobSASPermissions, newPipeline, PageBlobClient, type ContainerClient } from "@azure/storage-blob";
import { createUploadDisk, grantDiskAccess, uploadSizeBytesFor, withUploadDisk, type ManagedDisksApi } from "../../../sdk/clouds/azure/managed-disk.ts";
import { createPageBlobSink } from "../../../sdk/clouds/azure/page-blob-sink.ts";
import { openPageBlobSource } from "../../../sdk/clouds/azure/page-blob-source.ts";
import { AZURE_PIPELINE_OPTIONS, createAzureDiskSink, openAzureDiskSource } from "../../../sdk/clouds/azure/open-url.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import type { DiskSource, Extent } from "../../../sdk/disk/types.ts";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { containerFor, MiB } from "./helpers.ts";

type Call = { readonly op: string; readonly args: readonly unknown[] };

/** Records calls; on grantAccess it makes the disk's blob (uploadSizeBytes long) and returns a SAS to it. */
function fakeDisks(container: ContainerClient, calls: Call[]): ManagedDisksApi {
  const sizes = new Map<string, number>();
  return {
    async createOrUpdate(resourceGroupName: string, diskName: string, disk: Disk) {
      calls.push({ op: "createOrUpdate", args: [resourceGroupName, diskName, disk] });
      sizes.set(diskName, disk.creationData?.uploadSizeBytes ?? 0);
      return { ...disk, name: diskName, diskState: "ReadyToUpload" } as Disk;
    },
    async grantAccess(resourceGroupName: string, diskName: string, data: GrantAccessData): Promise<AccessUri> {
      calls.push({ op: "grantAccess", args: [resourceGroupName, diskName, data] });
      const blob = container.getPageBlobClient(`md-${diskName}/abcd`);
      if (data.access === "Write") await blob.create(sizes.get(diskName)!);
      const accessSAS = await blob.generateSasUrl({ permissions: BlobSASPermissions.parse("rw"), expiresOn: new Date(Date.now() + data.durationInSeconds * 1000) });
      return { accessSAS };
    },
    async revokeAccess(resourceGroupName: string, diskName: string) {
      calls.push({ op: "revokeAccess", args: [resourceGroupName, diskName] });
    },
  };
}

function smallDisk(sizeBytes: number): DiskSource {
  const data = Buffer.alloc(sizeBytes);
  data.fill(0x5c, MiB, 2 * MiB);
  return {
    format: "raw",
    virtualSizeBytes: sizeBytes,
    async *extents(): AsyncGenerator<Extent> {
      yield { offsetBytes: 0, lengthBytes: sizeBytes, kind: "data" };
    },
    read: async (o, l) => Buffer.from(data.subarray(o, o + l)),
    close: async () => {},
  };
}

describe("azure managed-disk Upload flow", { timeout: 60_000 }, () => {
  let azurite: Azurite;
  let container: ContainerClient;
  before(async () => {
    azurite = await startAzurite();
    container = await containerFor(azurite, "managed");
  });
  after(async () => {
    await azurite?.stop();
  });

  it("GIVEN a 20 MiB + 3 KiB disk WHEN uploaded through withUploadDisk THEN the disk is created for Upload with the VHD's size, written through the SAS, and access revoked", async () => {
    const calls: Call[] = [];
    const source = smallDisk(20 * MiB + 3 * 1024);
    const uploadSizeBytes = uploadSizeBytesFor(source.virtualSizeBytes);
    assert.equal(uploadSizeBytes, 21 * MiB + 512);
    const { disk, result } = await withUploadDisk(
      fakeDisks(container, calls),
      { resourceGroupName: "rg", diskName: "data0", location: "westeurope", uploadSizeBytes, osType: "Linux", hyperVGeneration: "V2" },
      async (sasUrl) => {
        const client = new PageBlobClient(sasUrl, newPipeline(new AnonymousCredential(), AZURE_PIPELINE_OPTIONS));
        return convert(source, await createPageBlobSink(client, { virtualSizeBytes: source.virtualSizeBytes, mode: "upload" }));
      },
    );
    assert.equal(disk.diskState, "ReadyToUpload");
    assert.deepEqual(calls.map((c) => c.op), ["createOrUpdate", "grantAccess", "revokeAccess"]);
    const created = calls[0]!.args[2] as Disk;
    assert.deepEqual(created.creationData, { createOption: "Upload", uploadSizeBytes });
    assert.deepEqual(created.sku, { name: "Standard_LRS" });
    assert.equal(created.osType, "Linux");
    assert.equal(created.hyperVGeneration, "V2");
    assert.deepEqual(calls[1]!.args[2], { access: "Write", durationInSeconds: 3600 });
    assert.equal(result.dataBytesWritten, MiB);
    const remote = await openPageBlobSource(container.getPageBlobClient("md-data0/abcd"));
    assert.equal(remote.subformat, "fixed");
    assert.equal(remote.virtualSizeBytes, 21 * MiB);
  });

  it("GIVEN an upload that fails WHEN run through withUploadDisk THEN access is still revoked and the error comes through", async () => {
    const calls: Call[] = [];
    await assert.rejects(
      withUploadDisk(fakeDisks(container, calls), { resourceGroupName: "rg", diskName: "data1", location: "westeurope", uploadSizeBytes: 8 * MiB + 512 }, async () => {
        throw new Error("upload broke");
      }),
      /upload broke/,
    );
    assert.deepEqual(calls.map((c) => c.op), ["createOrUpdate", "grantAccess", "revokeAccess"]);
  });

  it("GIVEN bad arguments WHEN creating an Upload disk THEN INVALID_ARGS lists every issue and ARM is not called", async () => {
    const calls: Call[] = [];
    await assert.rejects(createUploadDisk(fakeDisks(container, calls), { resourceGroupName: "", diskName: "d", location: "x", uploadSizeBytes: 8 * MiB }), (err: Error & { code?: string }) => {
      assert.equal(err.code, "INVALID_ARGS");
      assert.match(err.message, /resourceGroupName/);
      assert.match(err.message, /uploadSizeBytes: must be a whole number of MiB plus the 512-byte VHD footer/);
      return true;
    });
    assert.equal(calls.length, 0);
  });

  it("GIVEN ARM refusing a grant WHEN granting access THEN AZURE_DISK_CALL_FAILED names the disk", async () => {
    const failing: ManagedDisksApi = {
      createOrUpdate: async () => ({}) as Disk,
      grantAccess: async () => {
        throw Object.assign(new Error("The disk is attached to a VM"), { statusCode: 409, code: "OperationNotAllowed" });
      },
      revokeAccess: async () => {},
    };
    await assert.rejects(grantDiskAccess(failing, { resourceGroupName: "rg", diskName: "os0", access: "Read" }), (err: Error & { code?: string }) => {
      assert.equal(err.code, "AZURE_DISK_CALL_FAILED");
      assert.match(err.message, /Grant Read access to disk os0 failed: HTTP 409 OperationNotAllowed/);
      return true;
    });
  });

  it("GIVEN an azdisk:// URL WHEN converted to and read back THEN the disk is created for Upload, written, and every SAS revoked", async () => {
    const calls: Call[] = [];
    const disks = fakeDisks(container, calls);
    const url = "azdisk://00000000-1111-2222-3333-444444444444/rg1/data2";
    const source = smallDisk(12 * MiB);
    const sink = await createAzureDiskSink(`${url}?location=westeurope&sku=Premium_LRS`, { virtualSizeBytes: source.virtualSizeBytes }, {}, { disks: () => disks });
    const result = await convert(source, sink);
    assert.equal(result.location, url);
    assert.deepEqual(calls.map((c) => c.op), ["createOrUpdate", "grantAccess", "revokeAccess"]);
    assert.deepEqual((calls[0]!.args[2] as Disk).sku, { name: "Premium_LRS" });
    assert.deepEqual((calls[0]!.args[2] as Disk).creationData, { createOption: "Upload", uploadSizeBytes: 12 * MiB + 512 });

    calls.length = 0;
    const remote = await openAzureDiskSource(url, {}, { disks: () => disks });
    assert.deepEqual(calls.map((c) => [c.op, (c.args[2] as GrantAccessData | undefined)?.access]), [["grantAccess", "Read"]]);
    assert.equal(remote.subformat, "fixed");
    assert.ok((await remote.read(0, 12 * MiB)).equals(await source.read(0, 12 * MiB)));
    await remote.close();
    assert.deepEqual(calls.map((c) => c.op), ["grantAccess", "revokeAccess"]);
  });

  it("GIVEN an azdisk:// output without a location WHEN a sink is made THEN INVALID_ARGS and no disk is created", async () => {
    const calls: Call[] = [];
    await assert.rejects(
      createAzureDiskSink("azdisk://00000000-1111-2222-3333-444444444444/rg1/data3", { virtualSizeBytes: MiB }, {}, { disks: () => fakeDisks(container, calls) }),
      { code: "INVALID_ARGS" },
    );
    assert.equal(calls.length, 0);
  });
});
