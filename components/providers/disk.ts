// portable:Disk — one workload disk placed on a target. On its own, create copies it from its
// source; an update whose target changed migrates it: the source is where the disk is now (the
// previous target), so the copy carries the guest's changes, and it is incremental when a
// replica on the new target exists (flipping back). The previous target is kept (a stopped
// source) or deleted, per the migration policy; kept targets are listed in `retained` and
// removed on delete.
//
// In a Workload, the disk is placed and moved by the workload's portable:Machine (its placement
// and cutover) and this resource records it: given `placed`, it copies nothing, records where the
// Machine put the disk, and leaves removal to the Machine. It depends on the Machine, so it
// changes only after a committed move: a rolled-back one leaves it on the source.
import * as pulumi from "@pulumi/pulumi";
import type * as Placement from "../../sdk/migrate/disk-placement.ts";
import type * as Machines from "../../sdk/migrate/machine-placement.ts";
import type * as VsphereUrls from "../../sdk/clouds/vsphere/location.ts";
import type { VsphereSettings } from "../../sdk/contracts/vsphere-connection.ts";
import type * as EngineLog from "./engine-log.ts";
import { providerModule, sdkModule, urnFor } from "../runtime.ts";

export interface DiskInputs {
  readonly workload: string;
  readonly disk: string;
  /** Where the bytes come from on create: an image path, ebs://snap-…, azblob://…. */
  readonly source: string;
  readonly sourceFormat?: string;
  /** Where they go: a raw file path (local), ebs://?region=R, azblob://…, vsphere://…. */
  readonly target: string;
  /**
   * The record of this disk as the workload's portable:Machine placed it (sdk
   * PlacedDiskRecord, JSON). Given, this resource copies and removes nothing: it records.
   */
  readonly placed?: string;
  readonly stateDir: string;
  readonly verify: "full" | "sampled" | "none";
  /**
   * Keep the previous target when the disk moves. Kept targets are listed in `retained`;
   * deleting them after a move is the machine's cutover's job (it reads them for the final delta).
   */
  readonly keepPrevious: boolean;
  /**
   * vCenter connection for vsphere:// targets or sources, without its password: { url, username,
   * caPem?, thumbprint?, insecure, passwordEnv } as JSON. The provider reads the password from the
   * environment variable passwordEnv at run time, so no credential is an input or output here.
   */
  readonly vsphere?: string;
  /**
   * The boot disk's guest fixups (sdk/migrate/disk-placement DiskFixups) as JSON, or "" for
   * none. Not part of the diff: a new policy applies from the next copy, never by re-copying.
   */
  readonly fixups?: string;
  /**
   * This resource's URN, so the provider can report progress on it (not part of the diff; `urn`
   * itself is a name every resource reserves).
   */
  readonly progressUrn?: string;
}

export interface DiskOutputs extends DiskInputs, Omit<Placement.PlacedDisk, "key" | "resumed" | "verifiedBlocks" | "fixups" | "bytesRead" | "scan"> {
  /** What the last copy's guest fixups did (JSON: seconds, testBootSeconds, applied), "" when none ran. */
  readonly fixupsApplied: string;
  /** Earlier targets kept after a move. */
  readonly retained: string[];
}

const PLACEMENT = sdkModule("migrate/disk-placement");
const VSPHERE = sdkModule("clouds/vsphere/location");
const ENGINE_LOG = providerModule("engine-log");

/** Progress of a long copy, every few seconds, on the resource in `pulumi up` and engine events. */
function progressOf(inputs: DiskInputs, verb: string): Placement.PlaceDiskArgs["onProgress"] {
  const { progressOnResource } = require(ENGINE_LOG) as typeof EngineLog;
  return progressOnResource(inputs.progressUrn, `${verb} disk ${inputs.disk}`);
}

function fixupsOf(inputs: DiskInputs): Pick<Placement.PlaceDiskArgs, "fixups" | "onStep"> {
  if (inputs.fixups === undefined || inputs.fixups === "") return {};
  const { stepsOnResource } = require(ENGINE_LOG) as typeof EngineLog;
  const onStep = stepsOnResource(inputs.progressUrn, `disk ${inputs.disk}`);
  return { fixups: JSON.parse(inputs.fixups) as Placement.DiskFixups, ...(onStep ? { onStep } : {}) };
}

/** What the fixups did, for the outputs: { seconds, testBootSeconds, applied: [{ kind, detail, seconds }] } as JSON, "" when none ran. */
function fixupsDone(fixups: Placement.AppliedFixups | undefined): string {
  return fixups === undefined ? "" : JSON.stringify({ seconds: fixups.seconds, testBootSeconds: fixups.testBootSeconds, applied: fixups.outcomes.map((o) => ({ kind: o.kind, detail: o.detail, seconds: o.seconds })) });
}

function connectionOf(inputs: DiskInputs): Placement.PlaceDiskArgs["vsphere"] {
  if (inputs.vsphere === undefined || inputs.vsphere === "") return undefined;
  const { vsphereConnectionFromEnv } = require(VSPHERE) as typeof VsphereUrls;
  return vsphereConnectionFromEnv(JSON.parse(inputs.vsphere) as VsphereSettings);
}

/** The outputs of a disk the workload's Machine placed: its record, nothing copied here. */
function recorded(inputs: DiskInputs): DiskOutputs {
  const placed = JSON.parse(inputs.placed!) as Machines.PlacedDiskRecord;
  return {
    ...inputs,
    target: placed.target,
    location: placed.location,
    virtualSizeBytes: placed.virtualSizeBytes,
    digest: placed.digest,
    reference: placed.reference,
    passes: placed.passes,
    bytesSent: placed.bytesSent,
    blocksSent: placed.blocksSent,
    fixupsApplied: fixupsDone(placed.fixups),
    retained: [],
  };
}

const diskProvider: pulumi.dynamic.ResourceProvider<DiskInputs, DiskOutputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    const required = news.placed === undefined ? (["workload", "disk", "source", "target", "stateDir"] as const) : (["workload", "disk", "stateDir"] as const);
    for (const key of required) {
      if (typeof news[key] !== "string" || news[key] === "") failures.push({ property: key, reason: `${key} must be a non-empty string` });
    }
    if (!["full", "sampled", "none"].includes(news.verify)) failures.push({ property: "verify", reason: "verify is full, sampled or none" });
    return { inputs: news, failures };
  },

  async diff(_id, olds, news) {
    // A recorded disk changes when its record does (where the Machine placed it), nothing else.
    // The state folder is this machine's cache: another machine's changes nothing.
    const keys = news.placed !== undefined ? (["placed"] as const) : (["source", "sourceFormat", "target", "verify", "keepPrevious", "vsphere", "placed"] as const);
    const changed = keys.filter((k) => olds[k] !== news[k]);
    const replaces = olds.workload !== news.workload || olds.disk !== news.disk ? ["workload", "disk"] : [];
    return { changes: changed.length > 0 || replaces.length > 0, replaces, deleteBeforeReplace: false };
  },

  async create(inputs) {
    if (inputs.placed !== undefined) return { id: `${inputs.workload}/${inputs.disk}`, outs: recorded(inputs) };
    const { placeDisk } = require(PLACEMENT) as typeof Placement;
    const onProgress = progressOf(inputs, "copy");
    const placed = await placeDisk({
      workload: inputs.workload,
      disk: inputs.disk,
      source: inputs.source,
      ...(inputs.sourceFormat ? { sourceFormat: inputs.sourceFormat } : {}),
      target: inputs.target,
      stateDir: inputs.stateDir,
      verify: inputs.verify === "full" ? { mode: "full" } : inputs.verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: 64 },
      ...(connectionOf(inputs) ? { vsphere: connectionOf(inputs)! } : {}),
      ...(onProgress ? { onProgress } : {}),
      ...fixupsOf(inputs),
    });
    return {
      id: `${inputs.workload}/${inputs.disk}`,
      outs: { ...inputs, fixupsApplied: fixupsDone(placed.fixups), location: placed.location, virtualSizeBytes: placed.virtualSizeBytes, digest: placed.digest, reference: placed.reference, passes: placed.passes, bytesSent: placed.bytesSent, blocksSent: placed.blocksSent, retained: [] },
    };
  },

  async update(_id, olds, news) {
    if (news.placed !== undefined) return { outs: recorded(news) };
    const { placeDisk } = require(PLACEMENT) as typeof Placement;
    const moved = olds.target !== news.target;
    const vsphere = connectionOf(news) ?? connectionOf(olds);
    // A move copies the disk from where it is now; otherwise from the (possibly new) source.
    const from = moved ? { replicaOf: olds.target } : news.source;
    const onProgress = progressOf(news, moved ? "move" : "copy");
    const placed = await placeDisk({
      workload: news.workload,
      disk: news.disk,
      source: from,
      ...(!moved && news.sourceFormat ? { sourceFormat: news.sourceFormat } : {}),
      target: news.target,
      stateDir: news.stateDir,
      verify: news.verify === "full" ? { mode: "full" } : news.verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: 64 },
      ...(vsphere ? { vsphere } : {}),
      ...(onProgress ? { onProgress } : {}),
      ...fixupsOf(news),
    });
    const retained = [...(olds.retained ?? []).filter((t) => t !== news.target), ...(moved ? [olds.target] : [])];
    // A vCenter connection outlives the move away from vSphere: the kept disk there is still
    // deleted with this resource.
    const carried = news.vsphere ?? olds.vsphere ? { vsphere: (news.vsphere ?? olds.vsphere)! } : {};
    return {
      outs: { ...news, ...carried, fixupsApplied: fixupsDone(placed.fixups), location: placed.location, virtualSizeBytes: placed.virtualSizeBytes, digest: placed.digest, reference: placed.reference, passes: placed.passes, bytesSent: placed.bytesSent, blocksSent: placed.blocksSent, retained },
    };
  },

  async delete(_id, olds) {
    // A recorded disk goes with its Machine, which deletes its machine before its disks.
    if (olds.placed !== undefined) return;
    const { removeDisk } = require(PLACEMENT) as typeof Placement;
    const vsphere = connectionOf(olds);
    for (const target of [olds.target, ...(olds.retained ?? [])]) {
      await removeDisk({ workload: olds.workload, disk: olds.disk, target, stateDir: olds.stateDir, virtualSizeBytes: olds.virtualSizeBytes, ...(vsphere ? { vsphere } : {}) });
    }
  },
};

export interface DiskArgs {
  readonly workload: pulumi.Input<string>;
  readonly disk: pulumi.Input<string>;
  /** Required unless `placed` is given. */
  readonly source?: pulumi.Input<string>;
  readonly sourceFormat?: pulumi.Input<string>;
  /** Required unless `placed` is given. */
  readonly target?: pulumi.Input<string>;
  readonly stateDir: pulumi.Input<string>;
  readonly verify?: pulumi.Input<"full" | "sampled" | "none">;
  readonly keepPrevious?: pulumi.Input<boolean>;
  readonly vsphere?: pulumi.Input<string>;
  readonly fixups?: pulumi.Input<string>;
  readonly placed?: pulumi.Input<string>;
}

/** A workload disk on its target (type token `pulumi-nodejs:dynamic/portable:Disk`). */
export class Disk extends pulumi.dynamic.Resource {
  declare readonly location: pulumi.Output<string>;
  declare readonly virtualSizeBytes: pulumi.Output<number>;
  declare readonly digest: pulumi.Output<string>;
  declare readonly reference: pulumi.Output<string>;
  declare readonly bytesSent: pulumi.Output<number>;
  declare readonly blocksSent: pulumi.Output<number>;
  declare readonly passes: pulumi.Output<number>;
  declare readonly retained: pulumi.Output<string[]>;
  declare readonly fixupsApplied: pulumi.Output<string>;

  constructor(name: string, args: DiskArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      diskProvider,
      name,
      {
        verify: "sampled",
        keepPrevious: true,
        ...args,
        progressUrn: urnFor(name, "pulumi-nodejs:dynamic/portable:Disk", opts?.parent),
        location: undefined,
        virtualSizeBytes: undefined,
        digest: undefined,
        reference: undefined,
        bytesSent: undefined,
        blocksSent: undefined,
        passes: undefined,
        retained: undefined,
        fixupsApplied: undefined,
      },
      opts,
      "portable",
      "Disk",
    );
  }
}
