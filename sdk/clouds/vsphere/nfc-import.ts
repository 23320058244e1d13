// NFC import: a Workload and its disks become a VM the way ovftool and `govc import.ovf` do it.
//
//   OvfManager.CreateImportSpec(our OVF descriptor) → ResourcePool.ImportVApp → HttpNfcLease:
//   wait until ready → stream each disk as a streamOptimized VMDK, straight from convert(), to
//   its device URL → HttpNfcLeaseProgress every few seconds (it also keeps the lease alive) →
//   HttpNfcLeaseComplete; on any failure HttpNfcLeaseAbort, and a VM the server left behind is
//   destroyed.
//
// No temporary file: the VMDK writer's sequential stream target is the request body. Each
// upload is hashed (SHA-1) on the way, and where the server offers HttpNfcLeaseGetManifest
// (vcsim does) the server's hash and size of what it received are checked against ours.
import { createHash } from "node:crypto";
import type { Writable } from "node:stream";
import { CloudError, InvalidArgsError, isPortableError } from "../../errors.ts";
import { convert } from "../../disk/convert.ts";
import { createVmdkWriter } from "../../disk/formats/vmdk/writer.ts";
import type { DiskSource } from "../../disk/types.ts";
import { writeOvf } from "../../ovf/ovf-writer.ts";
import { parseWorkload, type Workload, type WorkloadInput } from "../../spec/workload.ts";
import type { VsphereClient } from "./client.ts";
import { faultFromTask } from "./faults.ts";
import { findDatacenter, findDatastore, findFolder, findHost, findNetwork, findResourcePool } from "./inventory.ts";
import { getProperties, watchObject } from "./property-collector.ts";
import { startUpload } from "./upload.ts";
import { destroyVm } from "./vm.ts";
import { expect, textOf, xs, type MoRef, type SoapInput } from "./xml.ts";

/** Lease progress is reported this often; vSphere expires an idle lease after its leaseTimeout (300 s by default). */
export const NFC_PROGRESS_INTERVAL_MS = 5_000;
/** How long ImportVApp may take to make its lease ready (it creates the VM first). */
export const NFC_LEASE_READY_TIMEOUT_MS = 5 * 60_000;

export interface ImportDisk {
  /** The Workload disk id. */
  readonly diskId: string;
  readonly source: DiskSource;
}

export interface NfcProgress {
  /** 0..100, as reported to the lease. */
  readonly percent: number;
  readonly doneBytes: number;
  readonly totalBytes: number;
}

export interface NfcImportOptions {
  readonly datacenter?: string;
  readonly datastore: string;
  readonly resourcePool?: string;
  readonly folder?: string;
  readonly host?: string;
  /** Workload network name → vSphere network name, when they differ. */
  readonly networks?: Readonly<Record<string, string>>;
  /** VM name; the Workload's name when omitted. */
  readonly name?: string;
  readonly onProgress?: (progress: NfcProgress) => void;
  /** A copy of each uploaded VMDK stream, e.g. for a check; ended when the upload ends. */
  readonly tee?: (diskId: string) => Writable | undefined;
  readonly leaseReadyTimeoutMs?: number;
  readonly progressIntervalMs?: number;
  readonly signal?: AbortSignal;
}

export interface NfcUpload {
  readonly diskId: string;
  readonly deviceKey: string;
  readonly bytesSent: number;
  readonly sha1: string;
  /** True when the server's manifest (HttpNfcLeaseGetManifest) matched our size and SHA-1. */
  readonly verifiedByServer: boolean;
}

export interface NfcImportResult {
  readonly vm: MoRef;
  readonly name: string;
  readonly uploads: readonly NfcUpload[];
}

const importSpecResultSchema = xs.object({
  importSpec: xs.any().optional(),
  fileItem: xs.many(xs.object({ deviceId: xs.string(), path: xs.string(), create: xs.bool().optional() })),
  error: xs.many(xs.any()),
  warning: xs.many(xs.any()),
});

const leaseInfoSchema = xs.object({
  entity: xs.ref().optional(),
  deviceUrl: xs.many(xs.object({ key: xs.string(), importKey: xs.string(), url: xs.string(), disk: xs.bool().optional() })),
});

function faultMessages(faults: readonly unknown[]): string {
  return faults
    .map((f) => {
      const record = (typeof f === "object" && f !== null ? f : {}) as Record<string, unknown>;
      return textOf(record.localizedMessage) ?? textOf(record.msg) ?? (record.$type as string | undefined) ?? "unknown";
    })
    .join("; ");
}

/** Imports a Workload with its disks as a new VM through an NFC lease. */
export async function importWorkload(client: VsphereClient, input: Workload | WorkloadInput, disks: readonly ImportDisk[], options: NfcImportOptions): Promise<NfcImportResult> {
  const workload = parseWorkload(input);
  const name = options.name ?? workload.name;
  for (const disk of workload.disks) {
    const given = disks.find((d) => d.diskId === disk.id);
    if (given === undefined) continue;
    if (given.source.virtualSizeBytes > disk.sizeBytes) {
      throw new InvalidArgsError("VSPHERE_DISK_TOO_SMALL", `vsphere: disk "${disk.id}" is ${disk.sizeBytes} bytes but its source holds ${given.source.virtualSizeBytes}`, {
        context: { diskId: disk.id },
      });
    }
  }
  const unknown = disks.find((d) => !workload.disks.some((w) => w.id === d.diskId));
  if (unknown !== undefined) throw new InvalidArgsError("VSPHERE_DISK_NOT_FOUND", `vsphere: the workload has no disk "${unknown.diskId}"`);

  const dc = await findDatacenter(client, options.datacenter);
  const datastore = await findDatastore(client, dc, options.datastore);
  const pool = await findResourcePool(client, dc, options.resourcePool);
  const folder = await findFolder(client, dc, options.folder);
  const host = options.host === undefined ? undefined : await findHost(client, dc, options.host);
  const networkMapping: SoapInput[] = [];
  for (const network of new Set(workload.nics.map((n) => n.network))) {
    networkMapping.push({ name: network, network: await findNetwork(client, dc, options.networks?.[network] ?? network) });
  }

  const hrefs = new Map(workload.disks.map((d, i) => [`${name}-disk${i + 1}.vmdk`, d.id]));
  const files = [...hrefs].filter(([, id]) => disks.some((d) => d.diskId === id)).map(([href, diskId]) => ({ diskId, href }));
  const ovf = writeOvf({ ...workload, name }, files);
  const specResult = expect(
    importSpecResultSchema,
    await client.call("CreateImportSpec", client.serviceContent.ovfManager ?? missing("OvfManager"), {
      ovfDescriptor: ovf,
      resourcePool: pool,
      datastore,
      cisp: { locale: "", deploymentOption: "", entityName: name, hostSystem: host, networkMapping, diskProvisioning: "thin" },
    }),
    "OvfCreateImportSpecResult",
  );
  if (specResult.error.length > 0 || specResult.importSpec === undefined) {
    throw new CloudError("VSPHERE_IMPORT_SPEC_INVALID", `vsphere: CreateImportSpec refused the descriptor for "${name}": ${faultMessages(specResult.error)}`, { context: { vm: name } });
  }

  const lease = expect(xs.ref(), await client.call("ImportVApp", pool, { spec: specResult.importSpec as SoapInput, folder, host }), "HttpNfcLease");
  let entity: MoRef | undefined;
  try {
    await watchObject(
      client,
      lease,
      ["state", "error"],
      (props) => {
        const state = textOf(props.get("state"));
        if (state === "ready") return true;
        if (state === "error") throw faultFromTask(props.get("error"), "ImportVApp", lease.value);
        return undefined;
      },
      { timeoutMs: options.leaseReadyTimeoutMs ?? NFC_LEASE_READY_TIMEOUT_MS, what: `NFC lease ${lease.value} for "${name}"`, timeoutCode: "VSPHERE_LEASE_TIMEOUT", ...(options.signal === undefined ? {} : { signal: options.signal }) },
    );
    const info = expect(leaseInfoSchema, (await getProperties(client, lease, ["info"])).get("info"), "HttpNfcLeaseInfo");
    entity = info.entity;
    const uploads = await uploadAll(client, lease, workload, disks, specResult.fileItem, info.deviceUrl, hrefs, options);
    await client.call("HttpNfcLeaseProgress", lease, { percent: 100 });
    options.onProgress?.({ percent: 100, doneBytes: total(disks), totalBytes: total(disks) });
    const verified = await verifyManifest(client, lease, uploads);
    await client.call("HttpNfcLeaseComplete", lease);
    if (entity === undefined) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: the lease for "${name}" names no VM`);
    return { vm: entity, name, uploads: verified };
  } catch (err) {
    await client.call("HttpNfcLeaseAbort", lease).catch(() => {});
    // vCenter deletes the VM of an aborted import itself; a server that does not (vcsim) must
    // not be left with a half-imported VM either.
    if (entity !== undefined) {
      const exists = await getProperties(client, entity, ["name"]).then(() => true, () => false);
      if (exists) await destroyVm(client, entity).catch(() => {});
    }
    throw err;
  }
}

function missing(what: string): never {
  throw new CloudError("VSPHERE_NOT_SUPPORTED", `vsphere: this endpoint has no ${what}`);
}

function total(disks: readonly ImportDisk[]): number {
  return disks.reduce((sum, d) => sum + d.source.virtualSizeBytes, 0);
}

async function uploadAll(
  client: VsphereClient,
  lease: MoRef,
  workload: Workload,
  disks: readonly ImportDisk[],
  fileItems: readonly { deviceId: string; path: string; create?: boolean | undefined }[],
  deviceUrls: readonly { key: string; importKey: string; url: string }[],
  hrefs: ReadonlyMap<string, string>,
  options: NfcImportOptions,
): Promise<{ diskId: string; deviceKey: string; bytesSent: number; sha1: string }[]> {
  const totalBytes = total(disks);
  const done = new Map<string, number>();
  let lastPercent = 0;
  const percent = (): number => Math.min(99, Math.floor(([...done.values()].reduce((a, b) => a + b, 0) * 100) / Math.max(1, totalBytes)));
  const timer = setInterval(() => {
    lastPercent = percent();
    client.call("HttpNfcLeaseProgress", lease, { percent: lastPercent }).catch(() => {});
  }, options.progressIntervalMs ?? NFC_PROGRESS_INTERVAL_MS);
  try {
    const results = [];
    for (const item of fileItems) {
      const diskId = hrefs.get(item.path);
      const disk = workload.disks.find((d) => d.id === diskId);
      const given = disks.find((d) => d.diskId === diskId);
      const device = deviceUrls.find((u) => u.importKey === item.deviceId);
      if (disk === undefined || given === undefined) continue;
      if (device === undefined) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: the lease has no device URL for ${item.path} (${item.deviceId})`);
      // The device URL names the host as "*": it means the endpoint we are talking to.
      const url = new URL(device.url.replace(/^(https?:\/\/)\*(?=[:/])/, `$1${client.url.host}`));
      if (url.host !== client.url.host) {
        throw new CloudError("VSPHERE_NFC_HOST", `vsphere: device URL host ${url.host} differs from the endpoint ${client.url.host}; ESXi-direct NFC is not supported`, { context: { url: url.origin } });
      }
      const sha1 = createHash("sha1");
      const tee = options.tee?.(disk.id);
      const upload = startUpload(client, url, {
        what: `NFC upload of disk "${disk.id}"`,
        method: item.create === true ? "PUT" : "POST",
        headers: item.create === true ? { overwrite: "t" } : { "content-type": "application/x-vnd.vmware-streamVmdk" },
        ...(tee === undefined ? {} : { tee }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
      const hashing = {
        ...upload,
        name: upload.name,
        sequential: true,
        write: async (offsetBytes: number, data: Buffer) => {
          sha1.update(data);
          await upload.write(offsetBytes, data);
        },
        truncate: (lengthBytes: number) => upload.truncate(lengthBytes),
        close: () => upload.close(),
      };
      const sink = await createVmdkWriter(hashing, { virtualSizeBytes: disk.sizeBytes, subformat: "streamOptimized", adapterType: disk.bus === "ide" ? "ide" : "lsilogic" });
      try {
        await convert(given.source, sink, {
          progress: (p) => {
            done.set(disk.id, p.doneBytes);
            options.onProgress?.({ percent: percent(), doneBytes: [...done.values()].reduce((a, b) => a + b, 0), totalBytes });
          },
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
      } catch (err) {
        upload.abort();
        throw isPortableError(err) ? err : new CloudError("VSPHERE_NFC_UPLOAD_FAILED", `vsphere: NFC upload of disk "${disk.id}" failed: ${String(err)}`, { context: { diskId: disk.id }, cause: err });
      }
      results.push({ diskId: disk.id, deviceKey: device.key, bytesSent: upload.bytesSent, sha1: sha1.digest("hex") });
    }
    return results;
  } finally {
    clearInterval(timer);
  }
}

const manifestSchema = xs.many(xs.object({ key: xs.string(), sha1: xs.string(), size: xs.int() }));

async function verifyManifest(client: VsphereClient, lease: MoRef, uploads: readonly { diskId: string; deviceKey: string; bytesSent: number; sha1: string }[]): Promise<NfcUpload[]> {
  let entries: { key: string; sha1: string; size: number }[];
  try {
    const value = await client.call("HttpNfcLeaseGetManifest", lease);
    entries = expect(manifestSchema, value === undefined ? [] : Array.isArray(value) ? value : [value], "HttpNfcLeaseManifestEntry");
  } catch (err) {
    if (isPortableError(err) && ["VSPHERE_NOT_SUPPORTED", "VSPHERE_INVALID_STATE", "VSPHERE_FAULT"].includes(err.code)) return uploads.map((u) => ({ ...u, verifiedByServer: false }));
    throw err;
  }
  return uploads.map((u) => {
    const entry = entries.find((e) => e.key === u.deviceKey);
    if (entry === undefined) return { ...u, verifiedByServer: false };
    if (entry.size !== u.bytesSent || entry.sha1.toLowerCase() !== u.sha1) {
      throw new CloudError("VSPHERE_NFC_MISMATCH", `vsphere: the server received ${entry.size} bytes (sha1 ${entry.sha1}) for disk "${u.diskId}", we sent ${u.bytesSent} (sha1 ${u.sha1})`, {
        context: { diskId: u.diskId, serverBytes: entry.size, sentBytes: u.bytesSent },
      });
    }
    return { ...u, verifiedByServer: true };
  });
}
