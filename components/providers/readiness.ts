// portable:Readiness — the gate between a Workload's plan and its placement (Machine). Its inputs are the
// readiness errors the plan found in the guest for the target, and the policy: with "block",
// create or update fails with those errors, and the placement and disks that depend on it are not
// touched; with "warn", it passes. A preview never fails here (the engine does not call create
// or update during a preview), so a pull request still shows the plan and the errors in it.
import * as pulumi from "@pulumi/pulumi";

export interface ReadinessInputs {
  readonly workload: string;
  /** The target placement kind the findings are for. */
  readonly target: string;
  readonly policy: "block" | "warn";
  /** Each readiness error as "CODE: message". */
  readonly errors: string[];
}

function enforce(inputs: ReadinessInputs): void {
  if (inputs.policy !== "block" || inputs.errors.length === 0) return;
  throw new Error(
    `READINESS_BLOCKED: ${inputs.workload}: ${inputs.errors.length} readiness error(s) for ${inputs.target}, nothing was moved:\n` +
      `${inputs.errors.map((e) => `  ${e}`).join("\n")}\n` +
      `Fix the guest, or set migration.readiness: "warn" to move anyway.`,
  );
}

const readinessProvider: pulumi.dynamic.ResourceProvider<ReadinessInputs, ReadinessInputs> = {
  async diff(_id, olds, news) {
    // The target alone changes nothing to check: a gate that blocked was never recorded (its
    // create or update failed), so recorded errors passed, and the same errors pass again. A
    // rolled-back move, run again on the old placement, leaves the gate as it is.
    const changed = olds.policy !== news.policy || JSON.stringify(olds.errors) !== JSON.stringify(news.errors);
    return { changes: changed, replaces: olds.workload !== news.workload ? ["workload"] : [] };
  },
  async create(inputs) {
    enforce(inputs);
    return { id: inputs.workload, outs: inputs };
  },
  async update(_id, _olds, news) {
    enforce(news);
    return { outs: news };
  },
};

export interface ReadinessArgs {
  readonly workload: pulumi.Input<string>;
  readonly target: pulumi.Input<string>;
  readonly policy: pulumi.Input<"block" | "warn">;
  readonly errors: pulumi.Input<pulumi.Input<string>[]>;
}

/** The readiness gate of a workload (type token `pulumi-nodejs:dynamic/portable:Readiness`). */
export class Readiness extends pulumi.dynamic.Resource {
  constructor(name: string, args: ReadinessArgs, opts?: pulumi.CustomResourceOptions) {
    super(readinessProvider, name, args, opts, "portable", "Readiness");
  }
}
