// portable:Machine — the machine of a local or vsphere placement. create starts it on its
// placed disks; an update whose placement changed is the cutover (sdk/migrate/machine-placement:
// stop the old machine, final delta of every disk, verify, start the new one, health check,
// rollback on failure). The old machine stays stopped (listed in `retained`) or is deleted with
// its disks, per the policy; delete removes the current machine and every retained one.
import * as pulumi from "@pulumi/pulumi";
import type * as Machines from "../../sdk/migrate/machine-placement.ts";
import type * as Specs from "../../sdk/spec/placement.ts";
import type * as Placement from "../../sdk/migrate/disk-placement.ts";
import type * as EngineLog from "./engine-log.ts";
import { providerModule, sdkModule, urnFor } from "../runtime.ts";

export interface MachineInputs {
  readonly workload: string;
  /** The validated Workload spec, as JSON (flat in the preview's diff). */
  readonly spec: string;
  /** The validated placement, as JSON. */
  readonly placement: string;
  /** [{ id, location, target }] as JSON. */
  readonly disks: string;
  readonly stateDir: string;
  readonly keepPrevious: boolean;
  readonly verify: "full" | "sampled" | "none";
  /** Seconds a graceful stop of the source may take before a hard power-off. @default 30 */
  readonly stopGraceSeconds?: number;
  /**
   * The boot disk's guest fixups, { disk, ...DiskFixups } as JSON: the cutover applies them to the
   * final state, inside the downtime. Not part of the diff.
   */
  readonly fixups?: string;
  /** This resource's URN, for progress of the cutover's final passes (not part of the diff). */
  readonly progressUrn?: string;
}

export interface MachineOutputs extends MachineInputs {
  readonly kind: string;
  readonly machineId: string;
  readonly running: boolean;
  readonly addresses: string[];
  readonly bootSeconds?: number;
  /** The last cutover's record (steps with timestamps, downtime), as JSON; "" before any move. */
  readonly lastMove: string;
  /** Earlier machines kept stopped: [{ placement, disks, machineId }] as JSON. */
  readonly retained: string;
}

const MACHINES = sdkModule("migrate/machine-placement");
const SPECS = sdkModule("spec/placement");
const PLACEMENT = sdkModule("migrate/disk-placement");
const ENGINE_LOG = providerModule("engine-log");

const machineProvider: pulumi.dynamic.ResourceProvider<MachineInputs, MachineOutputs> = {
  async check(_olds, news) {
    const { parseWorkloadArgs } = require(SPECS) as typeof Specs;
    try {
      parseWorkloadArgs({ spec: JSON.parse(news.spec), placement: JSON.parse(news.placement) }, `Machine ${news.workload}`);
      return { inputs: news };
    } catch (error) {
      return { inputs: news, failures: [{ property: "spec", reason: (error as Error).message }] };
    }
  },

  async diff(_id, olds, news) {
    const changed = (["spec", "placement", "disks", "keepPrevious", "verify", "stateDir", "stopGraceSeconds"] as const).filter((k) => olds[k] !== news[k]);
    return { changes: changed.length > 0, replaces: olds.workload !== news.workload ? ["workload"] : [] };
  },

  async create(inputs) {
    const machines = require(MACHINES) as typeof Machines;
    const request = requestOf(inputs, machines);
    const state = await machines.createMachine(request);
    return { id: `${inputs.workload}`, outs: outputsOf(inputs, state, "", "[]") };
  },

  async update(_id, olds, news) {
    const machines = require(MACHINES) as typeof Machines;
    const from = { ...requestOf(olds, machines), machineId: olds.machineId };
    const to = requestOf(news, machines);
    const retained = (JSON.parse(olds.retained || "[]") as Array<{ placement: string; disks: string; machineId: string }>)
      .filter((r) => !(r.placement === news.placement));
    if (olds.placement !== news.placement) {
      const moved = await machines.moveMachine({
        from,
        to,
        stateDir: news.stateDir,
        verify: news.verify,
        deleteSource: !news.keepPrevious,
        gracefulTimeoutMs: (news.stopGraceSeconds ?? 30) * 1000,
        onDiskProgress: (disk) => finalPassProgress(news, disk),
        ...(news.fixups ? { fixups: JSON.parse(news.fixups) as Machines.MoveRequest["fixups"] } : {}),
        ...(stepsOf(news) ? { onStep: stepsOf(news)! } : {}),
      });
      if (news.keepPrevious) retained.push({ placement: olds.placement, disks: olds.disks, machineId: olds.machineId });
      return { outs: outputsOf({ ...news, disks: JSON.stringify(moved.disks) }, moved.state, JSON.stringify(moved.record), JSON.stringify(retained)) };
    }
    if (olds.spec !== news.spec || olds.disks !== news.disks) {
      // Same placement, new shape: recreate the machine on the same disks.
      await machines.destroyMachine(from, olds.machineId, { keepLocalState: true });
      const state = await machines.createMachine(to);
      return { outs: outputsOf(news, state, olds.lastMove, JSON.stringify(retained)) };
    }
    return { outs: { ...olds, ...news, retained: JSON.stringify(retained) } };
  },

  async delete(_id, olds) {
    const machines = require(MACHINES) as typeof Machines;
    await machines.destroyMachine(requestOf(olds, machines), olds.machineId);
    for (const kept of JSON.parse(olds.retained || "[]") as Array<{ placement: string; disks: string; machineId: string }>) {
      await machines.destroyMachine(requestOf({ ...olds, placement: kept.placement, disks: kept.disks }, machines), kept.machineId);
    }
    // The measured timings of this workload's machines: the last thing of it in the state folder.
    const { forgetWorkload } = require(PLACEMENT) as typeof Placement;
    await forgetWorkload(olds.stateDir, (JSON.parse(olds.spec) as { name: string }).name);
  },
};

/** The final pass of each disk, reported on the machine while the source is down. */
function finalPassProgress(inputs: MachineInputs, disk: string): ReturnType<typeof EngineLog.progressOnResource> {
  const { progressOnResource } = require(ENGINE_LOG) as typeof EngineLog;
  return progressOnResource(inputs.progressUrn, `final pass, disk ${disk}`);
}

function stepsOf(inputs: MachineInputs): ((line: string) => void) | undefined {
  const { stepsOnResource } = require(ENGINE_LOG) as typeof EngineLog;
  return stepsOnResource(inputs.progressUrn, "cutover");
}

function requestOf(inputs: MachineInputs, machines: typeof Machines): Machines.MachineRequest {
  const placement = JSON.parse(inputs.placement) as Specs.Placement;
  // The vCenter password comes from the provider's environment (placement.passwordEnv), never an input.
  const vsphere = machines.vsphereConnectionFor(placement);
  return { workload: JSON.parse(inputs.spec), placement, disks: JSON.parse(inputs.disks), stateDir: inputs.stateDir, ...(vsphere ? { vsphere } : {}) };
}

function outputsOf(inputs: MachineInputs, state: Machines.MachineState, lastMove: string, retained: string): MachineOutputs {
  return {
    ...inputs,
    kind: state.kind,
    machineId: state.machineId,
    running: state.running,
    addresses: [],
    ...(state.bootSeconds === undefined ? {} : { bootSeconds: state.bootSeconds }),
    lastMove,
    retained,
  };
}

export interface MachineArgs {
  readonly workload: pulumi.Input<string>;
  readonly spec: pulumi.Input<string>;
  readonly placement: pulumi.Input<string>;
  readonly disks: pulumi.Input<string>;
  readonly stateDir: pulumi.Input<string>;
  readonly keepPrevious: pulumi.Input<boolean>;
  readonly verify?: pulumi.Input<"full" | "sampled" | "none">;
  readonly stopGraceSeconds?: pulumi.Input<number>;
  readonly fixups?: pulumi.Input<string>;
}

/** The machine of a local or vsphere placement (type token `pulumi-nodejs:dynamic/portable:Machine`). */
export class Machine extends pulumi.dynamic.Resource {
  declare readonly machineId: pulumi.Output<string>;
  declare readonly running: pulumi.Output<boolean>;
  declare readonly addresses: pulumi.Output<string[]>;
  declare readonly bootSeconds: pulumi.Output<number | undefined>;
  declare readonly lastMove: pulumi.Output<string>;
  declare readonly retained: pulumi.Output<string>;

  constructor(name: string, args: MachineArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      machineProvider,
      name,
      { verify: "sampled", ...args, progressUrn: urnFor(name, "pulumi-nodejs:dynamic/portable:Machine", opts?.parent), kind: undefined, machineId: undefined, running: undefined, addresses: undefined, bootSeconds: undefined, lastMove: undefined, retained: undefined },
      opts,
      "portable",
      "Machine",
    );
  }
}
