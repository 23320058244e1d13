// portable:Disk — one workload disk placed on a target. create copies it from its source;
// an update whose target changed migrates it: the source is where the disk is now (the previous
// target), so the copy carries the guest's changes, and it is incremental when a replica on the
// new target exists (flipping back). The previous target is kept (a stopped source) or deleted,
// per the migration policy; kept targets are listed in `retained` and removed on delete.
import * as pulumi from "@pulumi/pulumi";
import type * as Placement from "../../sdk/migrate/disk-placement.ts";
import { sdkModule } from "../runtime.ts";

export interface DiskInputs {
  readonly workload: string;
  readonly disk: string;
  /** Where the bytes come from on create: an image path, ebs://snap-…, azblob://…. */
  readonly source: string;
  readonly sourceFormat?: string;
  /** Where they go: a raw file path (local), ebs://?region=R, azblob://…, vsphere://…. */
  readonly target: string;
  readonly stateDir: string;
  readonly verify: "full" | "sampled" | "none";
  /** Keep the previous target when the disk moves. */
  readonly keepPrevious: boolean;
}

export interface DiskOutputs extends DiskInputs {
  readonly location: string;
  readonly virtualSizeBytes: number;
  readonly digest: string;
  readonly reference: string;
  readonly passes: number;
  readonly bytesSent: number;
  readonly blocksSent: number;
  /** Earlier targets kept after a move. */
  readonly retained: string[];
}

const PLACEMENT = sdkModule("migrate/disk-placement");

const diskProvider: pulumi.dynamic.ResourceProvider<DiskInputs, DiskOutputs> = {
  async check(_olds, news) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    for (const key of ["workload", "disk", "source", "target", "stateDir"] as const) {
      if (typeof news[key] !== "string" || news[key] === "") failures.push({ property: key, reason: `${key} must be a non-empty string` });
    }
    if (!["full", "sampled", "none"].includes(news.verify)) failures.push({ property: "verify", reason: "verify is full, sampled or none" });
    return { inputs: news, failures };
  },

  async diff(_id, olds, news) {
    const keys = ["source", "sourceFormat", "target", "verify", "keepPrevious", "stateDir"] as const;
    const changed = keys.filter((k) => olds[k] !== news[k]);
    const replaces = olds.workload !== news.workload || olds.disk !== news.disk ? ["workload", "disk"] : [];
    return { changes: changed.length > 0 || replaces.length > 0, replaces, deleteBeforeReplace: false };
  },

  async create(inputs) {
    const { placeDisk } = require(PLACEMENT) as typeof Placement;
    const placed = await placeDisk({
      workload: inputs.workload,
      disk: inputs.disk,
      source: inputs.source,
      ...(inputs.sourceFormat ? { sourceFormat: inputs.sourceFormat } : {}),
      target: inputs.target,
      stateDir: inputs.stateDir,
      verify: inputs.verify === "full" ? { mode: "full" } : inputs.verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: 64 },
    });
    return {
      id: `${inputs.workload}/${inputs.disk}`,
      outs: { ...inputs, location: placed.location, virtualSizeBytes: placed.virtualSizeBytes, digest: placed.digest, reference: placed.reference, passes: placed.passes, bytesSent: placed.bytesSent, blocksSent: placed.blocksSent, retained: [] },
    };
  },

  async update(_id, olds, news) {
    const { placeDisk, removeDisk } = require(PLACEMENT) as typeof Placement;
    const moved = olds.target !== news.target;
    // A move copies the disk from where it is now; otherwise from the (possibly new) source.
    const from = moved ? { replicaOf: olds.target } : news.source;
    const placed = await placeDisk({
      workload: news.workload,
      disk: news.disk,
      source: from,
      ...(!moved && news.sourceFormat ? { sourceFormat: news.sourceFormat } : {}),
      target: news.target,
      stateDir: news.stateDir,
      verify: news.verify === "full" ? { mode: "full" } : news.verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: 64 },
    });
    let retained = (olds.retained ?? []).filter((t) => t !== news.target);
    if (moved) {
      if (news.keepPrevious) retained = [...retained, olds.target];
      else await removeDisk({ workload: olds.workload, disk: olds.disk, target: olds.target, stateDir: olds.stateDir, virtualSizeBytes: olds.virtualSizeBytes });
    }
    return {
      outs: { ...news, location: placed.location, virtualSizeBytes: placed.virtualSizeBytes, digest: placed.digest, reference: placed.reference, passes: placed.passes, bytesSent: placed.bytesSent, blocksSent: placed.blocksSent, retained },
    };
  },

  async delete(_id, olds) {
    const { removeDisk } = require(PLACEMENT) as typeof Placement;
    for (const target of [olds.target, ...(olds.retained ?? [])]) {
      await removeDisk({ workload: olds.workload, disk: olds.disk, target, stateDir: olds.stateDir, virtualSizeBytes: olds.virtualSizeBytes });
    }
  },
};

export interface DiskArgs {
  readonly workload: pulumi.Input<string>;
  readonly disk: pulumi.Input<string>;
  readonly source: pulumi.Input<string>;
  readonly sourceFormat?: pulumi.Input<string>;
  readonly target: pulumi.Input<string>;
  readonly stateDir: pulumi.Input<string>;
  readonly verify?: pulumi.Input<"full" | "sampled" | "none">;
  readonly keepPrevious?: pulumi.Input<boolean>;
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

  constructor(name: string, args: DiskArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      diskProvider,
      name,
      {
        verify: "sampled",
        keepPrevious: true,
        ...args,
        location: undefined,
        virtualSizeBytes: undefined,
        digest: undefined,
        reference: undefined,
        bytesSent: undefined,
        blocksSent: undefined,
        passes: undefined,
        retained: undefined,
      },
      opts,
      "portable",
      "Disk",
    );
  }
}
