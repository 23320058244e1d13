// Opening `ebs://` URLs: the AWS clients, the snapshot source, and convert() into a new snapshot
// with its manifest and AMI. Kept apart from url.ts so that recognising a URL loads no SDK.
import { readFile, writeFile } from "node:fs/promises";
import { InvalidArgsError } from "../../errors.ts";
import { convert, type ConvertOptions, type ConvertResult } from "../../disk/convert.ts";
import type { DiskSource } from "../../disk/types.ts";
import { BlockManifest, type ManifestJson } from "../../disk/manifest.ts";
import { createAwsClients, type AwsClients } from "./clients.ts";
import { registerImage } from "./register-image.ts";
import { createEbsSnapshotSink } from "./snapshot-sink.ts";
import { openEbsSnapshot } from "./snapshot-source.ts";
import { invalidEbsUrl, parseEbsUrl, type EbsUrl } from "./url.ts";

export function clientsFor(url: EbsUrl): AwsClients {
  return createAwsClients({ ...(url.region === undefined ? {} : { region: url.region }), ...(url.endpoint === undefined ? {} : { endpoint: url.endpoint }) });
}

/** Opens `ebs://snap-…` as a DiskSource; closing it releases the clients. */
export async function openEbsUrl(text: string): Promise<DiskSource> {
  const url = parseEbsUrl(text);
  if (url.snapshotId === undefined) invalidEbsUrl(text, "a snapshot to read needs its id: ebs://snap-…");
  const clients = clientsFor(url);
  try {
    const source = await openEbsSnapshot(clients.ebs, url.snapshotId, url.virtualSizeBytes === undefined ? {} : { virtualSizeBytes: url.virtualSizeBytes });
    return {
      format: source.format,
      virtualSizeBytes: source.virtualSizeBytes,
      extents: () => source.extents(),
      read: (offsetBytes, lengthBytes) => source.read(offsetBytes, lengthBytes),
      close: async () => clients.destroy(),
    };
  } catch (err) {
    clients.destroy();
    throw err;
  }
}

async function readManifest(path: string): Promise<BlockManifest> {
  try {
    return BlockManifest.fromJSON(JSON.parse(await readFile(path, "utf8")) as ManifestJson);
  } catch (err) {
    throw new InvalidArgsError("EBS_PARENT_MANIFEST", `${path}: cannot read the parent manifest: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

export interface EbsUploadResult extends ConvertResult {
  readonly snapshotId: string;
  readonly imageId?: string;
}

/**
 * convert() from any source into a new snapshot named by `ebs://?…`, waits for it to complete,
 * then saves its manifest and registers an AMI when the URL asks for them.
 */
export async function convertToEbsUrl(source: DiskSource, text: string, options: ConvertOptions = {}): Promise<EbsUploadResult> {
  const url = parseEbsUrl(text);
  if (url.snapshotId !== undefined) invalidEbsUrl(text, "the output must be a new snapshot (ebs://?region=…), not an existing one");
  const parent =
    url.parentSnapshotId === undefined || url.parentManifestPath === undefined
      ? undefined
      : { snapshotId: url.parentSnapshotId, manifest: await readManifest(url.parentManifestPath) };
  const clients = clientsFor(url);
  try {
    const sink = await createEbsSnapshotSink(clients.ebs, {
      virtualSizeBytes: source.virtualSizeBytes,
      ec2: clients.ec2,
      tags: url.tags,
      ...(url.description === undefined ? {} : { description: url.description }),
      ...(url.kmsKeyArn === undefined ? {} : { kmsKeyArn: url.kmsKeyArn }),
      ...(url.timeoutMinutes === undefined ? {} : { timeoutMinutes: url.timeoutMinutes }),
      ...(parent === undefined ? {} : { parent }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const result = await convert(source, sink, options);
    if (url.manifestOutPath !== undefined) await writeFile(url.manifestOutPath, `${JSON.stringify(sink.manifest().toJSON())}\n`);
    const imageId = url.image === undefined ? undefined : await registerImage(clients.ec2, { ...url.image, snapshotId: sink.snapshotId });
    return { ...result, snapshotId: sink.snapshotId, ...(imageId === undefined ? {} : { imageId }) };
  } finally {
    clients.destroy();
  }
}
