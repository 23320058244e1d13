// `ebs://` URLs: how the CLI (and anything else taking a disk location as text) names an EBS
// snapshot to read or a new one to write. Parsing and the small amount of orchestration around
// a URL live here, so the CLI stays a thin face.
//
//   ebs://snap-0123abcd?region=eu-west-1                 a snapshot to read
//   ebs://?region=eu-west-1&description=web&tag=app=web  a new snapshot to write
//
// Parameters (all optional):
//   region, endpoint            the AWS region, and an endpoint override (an emulator)
//   description, tag=k=v (repeat), kms (a key ARN), timeout (minutes)   for a new snapshot
//   parent=snap-…&parent-manifest=FILE   an incremental child: FILE is the parent's manifest JSON
//   manifest-out=FILE           where to save the new snapshot's manifest (for the next child)
//   image=NAME, arch, boot, ena, root, volume-type   register an AMI from the new snapshot
//   size=BYTES                  for a snapshot to read: the disk size when below whole GiB
// Credentials never go in a URL: they come from the default AWS credential chain.
//
// This module loads no AWS SDK code, so a CLI can recognise and check a URL cheaply; the calls
// that use one live in open-url.ts.
import { InvalidArgsError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import type { RegisterImageOptions } from "./register-image.ts";

export const EBS_URL_SCHEME = "ebs:";

/** A new snapshot chain for disk `diskId` of `workload` on an aws placement: a target. */
export function ebsDiskTarget(placement: Extract<Placement, { kind: "aws" }>, workload: string, diskId: string): string {
  const params = new URLSearchParams({ region: placement.region });
  if (placement.endpoint !== undefined) params.set("endpoint", placement.endpoint);
  if (placement.kmsKeyArn !== undefined) params.set("kms", placement.kmsKeyArn);
  if (placement.stateBucket !== undefined) params.set("state-bucket", placement.stateBucket);
  params.set("description", `portable-workload ${workload} ${diskId}`);
  return `ebs://?${params.toString()}`;
}

export function isEbsUrl(text: string): boolean {
  return text.toLowerCase().startsWith("ebs://");
}

/** An S3 bucket name (3–63 lower-case letters, digits, dots and hyphens). */
export const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const CREDENTIAL_PARAMS = /^(access[-_]?key|secret|session[-_]?token|password|aws_access_key_id|aws_secret_access_key)/i;
const KNOWN_PARAMS = new Set([
  "region", "endpoint", "description", "tag", "kms", "timeout", "parent", "parent-manifest", "manifest-out",
  "image", "arch", "boot", "ena", "root", "volume-type", "size", "state-bucket",
]);

export interface EbsUrl {
  /** Present for a snapshot to read, absent for a new one. */
  readonly snapshotId?: string;
  readonly region?: string;
  readonly endpoint?: string;
  readonly description?: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly kmsKeyArn?: string;
  readonly timeoutMinutes?: number;
  readonly parentSnapshotId?: string;
  readonly parentManifestPath?: string;
  readonly manifestOutPath?: string;
  readonly image?: Omit<RegisterImageOptions, "snapshotId">;
  readonly virtualSizeBytes?: number;
  /** The S3 bucket that keeps the replica state of a target (the aws placement's stateBucket). */
  readonly stateBucket?: string;
}

export function invalidEbsUrl(text: string, why: string): never {
  // The URL is echoed without its query: a query value could be anything the user typed.
  throw new InvalidArgsError("EBS_URL_INVALID", `ebs url ${text.split("?")[0]}: ${why}`);
}

export function parseEbsUrl(text: string): EbsUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    invalidEbsUrl(text, "not a URL");
  }
  if (url.protocol !== EBS_URL_SCHEME) invalidEbsUrl(text, `scheme must be ebs://, got ${url.protocol}//`);
  if (url.username !== "" || url.password !== "") invalidEbsUrl(text, "credentials do not belong in the URL; use the AWS credential chain");
  if (url.pathname !== "" && url.pathname !== "/") invalidEbsUrl(text, `unexpected path ${url.pathname}`);
  const snapshotId = url.hostname === "" ? undefined : url.hostname.toLowerCase();
  if (snapshotId !== undefined && !/^snap-[0-9a-f]+$/.test(snapshotId)) invalidEbsUrl(text, `"${snapshotId}" is not a snapshot id such as snap-0123abcd`);
  const params = url.searchParams;
  for (const key of params.keys()) {
    if (CREDENTIAL_PARAMS.test(key)) invalidEbsUrl(text, `parameter "${key}" looks like a credential; use the AWS credential chain`);
    if (!KNOWN_PARAMS.has(key)) invalidEbsUrl(text, `unknown parameter "${key}" (known: ${[...KNOWN_PARAMS].join(", ")})`);
  }
  const one = (key: string): string | undefined => {
    const values = params.getAll(key);
    if (values.length > 1) invalidEbsUrl(text, `parameter "${key}" given ${values.length} times`);
    return values[0];
  };
  const integer = (key: string): number | undefined => {
    const value = one(key);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value)) invalidEbsUrl(text, `${key} must be a whole number, got "${value}"`);
    return Number(value);
  };
  const tags: Record<string, string> = {};
  for (const tag of params.getAll("tag")) {
    const eq = tag.indexOf("=");
    if (eq <= 0) invalidEbsUrl(text, `tag must be key=value, got "${tag}"`);
    tags[tag.slice(0, eq)] = tag.slice(eq + 1);
  }
  const endpoint = one("endpoint");
  if (endpoint !== undefined && !/^https?:\/\/[^/@]+(\/.*)?$/.test(endpoint)) invalidEbsUrl(text, "endpoint must be an http(s) URL without credentials");
  const parentSnapshotId = one("parent");
  const parentManifestPath = one("parent-manifest");
  if ((parentSnapshotId === undefined) !== (parentManifestPath === undefined)) {
    invalidEbsUrl(text, "parent and parent-manifest go together: the delta comes from our manifest of the parent");
  }
  const stateBucket = one("state-bucket");
  if (stateBucket !== undefined && !S3_BUCKET.test(stateBucket)) invalidEbsUrl(text, `state-bucket "${stateBucket}" is not an S3 bucket name`);
  const writeOnly = ["description", "tag", "kms", "timeout", "parent", "manifest-out", "image", "state-bucket"].filter((k) => params.has(k));
  if (snapshotId !== undefined && writeOnly.length > 0) invalidEbsUrl(text, `${writeOnly.join(", ")} only apply to a new snapshot (ebs://?…)`);
  if (snapshotId === undefined && params.has("size")) invalidEbsUrl(text, "size only applies to a snapshot to read");
  const imageName = one("image");
  const ena = one("ena");
  if (ena !== undefined && ena !== "true" && ena !== "false") invalidEbsUrl(text, `ena must be true or false, got "${ena}"`);
  const image =
    imageName === undefined
      ? undefined
      : {
          name: imageName,
          ...(one("arch") === undefined ? {} : { architecture: one("arch") as RegisterImageOptions["architecture"] }),
          ...(one("boot") === undefined ? {} : { bootMode: one("boot") as RegisterImageOptions["bootMode"] }),
          ...(ena === undefined ? {} : { enaSupport: ena === "true" }),
          ...(one("root") === undefined ? {} : { rootDeviceName: one("root")! }),
          ...(one("volume-type") === undefined ? {} : { volumeType: one("volume-type") as RegisterImageOptions["volumeType"] }),
        };
  if (imageName === undefined && ["arch", "boot", "ena", "root", "volume-type"].some((k) => params.has(k))) invalidEbsUrl(text, "arch, boot, ena, root and volume-type need image=NAME");

  const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } => (value === undefined ? {} : ({ [key]: value } as { [P in K]?: V }));
  return {
    tags,
    ...optional("snapshotId", snapshotId),
    ...optional("region", one("region")),
    ...optional("endpoint", endpoint),
    ...optional("description", one("description")),
    ...optional("kmsKeyArn", one("kms")),
    ...optional("timeoutMinutes", integer("timeout")),
    ...optional("parentSnapshotId", parentSnapshotId),
    ...optional("parentManifestPath", parentManifestPath),
    ...optional("manifestOutPath", one("manifest-out")),
    ...optional("image", image),
    ...optional("virtualSizeBytes", integer("size")),
    ...optional("stateBucket", stateBucket),
  };
}
