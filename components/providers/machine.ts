// portable:Machine — a workload's placement and its cutover, on every platform. create copies
// each disk onto the placement and starts the machine on them (local, vSphere; on AWS and Azure
// the machine is the official resources, which depend on this one). An update whose placement
// changed is the whole move (sdk/migrate/machine-placement moveMachine): warm passes while the
// old machine runs, then stop it, final delta of every disk, verify, start the new one, health
// check, commit; rollback on failure, which leaves this resource's record on the old placement.
// The portable:Disk resources record what this one placed and depend on it, so they change only
// after a committed move. The old placement stays stopped (listed in `retained`) or is deleted,
// per the policy; delete removes the machine, its disks and every retained placement.
// Its check (a first placement) and diff (a move) log the plan on the Workload from where Pulumi
// state has the workload and the replica state beside the targets, so every machine previews the
// same; create, update and delete hold the workload's lease beside every target they touch.
import * as pulumi from "@pulumi/pulumi";
import type * as Machines from "../../sdk/migrate/machine-placement.ts";
import type * as Specs from "../../sdk/spec/placement.ts";
import type * as Placement from "../../sdk/migrate/disk-placement.ts";
import type * as Plans from "../../sdk/migrate/workload-plan.ts";
import type * as EngineLog from "./engine-log.ts";
import { providerModule, sdkModule, urnFor } from "../runtime.ts";

export interface MachineInputs {
  readonly workload: string;
  /** The validated Workload spec, as JSON (flat in the preview's diff). */
  readonly spec: string;
  /** The validated placement asked for, as JSON. */
  readonly placement: string;
  /** The disks, [{ id, source, sourceFormat?, target }] (sdk DiskPlan) as JSON. */
  readonly disks: string;
  readonly stateDir: string;
  readonly keepPrevious: boolean;
  readonly verify: "full" | "sampled" | "none";
  /** How a placement change runs: { mode, cutover, maxPasses } as JSON. @default warm, cutover, 3 passes */
  readonly migration?: string;
  /** Seconds a graceful stop of the source may take before a hard power-off. @default 30 */
  readonly stopGraceSeconds?: number;
  /**
   * The boot disk's guest fixups, { disk, ...DiskFixups } as JSON: applied to each copy of it,
   * the final pass of a cutover included (inside the downtime). Not part of the diff.
   */
  readonly fixups?: string;
  /** This resource's URN, for progress of copies and passes (not part of the diff). */
  readonly progressUrn?: string;
  /** The Workload component's URN: the plan a preview shows is logged on it (not part of the diff). */
  readonly planUrn?: string;
}

export interface MachineOutputs extends MachineInputs {
  readonly kind: string;
  readonly machineId: string;
  readonly running: boolean;
  readonly addresses: string[];
  readonly bootSeconds?: number;
  /** The placement the workload runs on, as JSON: the one asked for once a cutover committed it. */
  readonly live: string;
  /** Its disks there, [sdk PlacedDiskRecord] as JSON: what each portable:Disk records. */
  readonly placed: string;
  /** Without a cutover (migration.cutover false): the replicas staged on the new placement, as JSON; "" otherwise. */
  readonly staged: string;
  /** The last cutover's record (steps with timestamps, downtime), as JSON; "" before any move. */
  readonly lastMove: string;
  /** Earlier placements kept, their machines stopped: [{ placement, disks, machineId }] as JSON. */
  readonly retained: string;
  /**
   * Measured boot, stop and fixup seconds per placement kind, as JSON: what the next plan
   * estimates from, on any machine. "" before any measurement.
   */
  readonly timings?: string;
}

interface Retained {
  readonly placement: string;
  /** [PlacedDiskRecord] as JSON. */
  readonly disks: string;
  readonly machineId: string;
}

interface MigrationSettings {
  readonly mode: "warm" | "cold";
  readonly cutover: boolean;
  readonly maxPasses: number;
}

const MACHINES = sdkModule("migrate/machine-placement");
const PLAN = sdkModule("migrate/workload-plan");
const SPECS = sdkModule("spec/placement");
const PLACEMENT = sdkModule("migrate/disk-placement");
const ENGINE_LOG = providerModule("engine-log");
/** How the engine hands a dynamic provider an input that is not known yet (a preview). */
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

const machineProvider: pulumi.dynamic.ResourceProvider<MachineInputs, MachineOutputs> = {
  async check(olds, news) {
    const { parseWorkloadArgs } = require(SPECS) as typeof Specs;
    try {
      parseWorkloadArgs({ spec: JSON.parse(news.spec), placement: JSON.parse(news.placement), ...(news.migration ? { migration: JSON.parse(news.migration) } : {}) }, `Machine ${news.workload}`);
    } catch (error) {
      return { inputs: news, failures: [{ property: "spec", reason: (error as Error).message }] };
    }
    // A first placement: the plan copies every disk from its source.
    if (olds.workload === undefined) await logPlan(news, undefined);
    return { inputs: news };
  },

  async diff(_id, olds, news) {
    // The move policy matters only to a move: alone, it changes nothing to do. The state folder
    // is a cache (the replica state is beside the targets): another one changes nothing either.
    const changed = (["spec", "placement", "disks", "keepPrevious", "verify", "stopGraceSeconds", "migration"] as const)
      .filter((k) => olds[k] !== news[k])
      .filter((k) => k !== "migration" || movePending(olds, news));
    if (movePending(olds, news)) await logPlan(news, olds);
    return { changes: changed.length > 0, replaces: olds.workload !== news.workload ? ["workload"] : [] };
  },

  async create(inputs) {
    const machines = require(MACHINES) as typeof Machines;
    const request = requestOf(inputs, inputs.placement, "[]", machines);
    const targets = plansOf(inputs).map((d) => d.target);
    const placed = await machines.withWorkloadLease(request.workload.name, targets, inputs.stateDir, `place ${request.workload.name} on ${request.placement.kind}`, request.vsphere, () => machines.placeWorkload(request, policyOf(inputs), plansOf(inputs)));
    return { id: `${inputs.workload}`, outs: { ...outputsOf(inputs, placed.state, { live: inputs.placement, placed: placed.disks, staged: "", lastMove: "", retained: [] }), timings: timingsOf(undefined, inputs) } };
  },

  async update(_id, olds, news) {
    const machines = require(MACHINES) as typeof Machines;
    const targets = [...recordedTargets(olds), ...plansOf(news).map((d) => d.target)];
    const live = JSON.parse(liveOf(olds).live) as Specs.Placement;
    const purpose = `update ${news.workload} on ${live.kind}${movePending(olds, news) ? ` → ${(JSON.parse(news.placement) as Specs.Placement).kind}` : ""}`;
    const vsphere = machines.vsphereConnectionFor(JSON.parse(news.placement) as Specs.Placement) ?? machines.vsphereConnectionFor(live);
    const outs = await machines.withWorkloadLease(news.workload, targets, news.stateDir, purpose, vsphere, () => updateNow(olds, news, machines));
    return { outs: { ...outs, timings: timingsOf(olds, news) } };
  },

  async delete(_id, olds) {
    const machines = require(MACHINES) as typeof Machines;
    const vsphere = machines.vsphereConnectionFor(JSON.parse(liveOf(olds).live) as Specs.Placement);
    await machines.withWorkloadLease(olds.workload, recordedTargets(olds), olds.stateDir, `delete ${olds.workload}`, vsphere, () => deleteNow(olds, machines));
  },
};

/** An update under the lease: a move, a reshape on the same placement, or only new settings. */
async function updateNow(olds: MachineOutputs, news: MachineInputs, machines: typeof Machines): Promise<MachineOutputs> {
  // Where the workload runs: the last committed placement (a staged move has not cut over).
  const { live, placed } = liveOf(olds);
  const from = { ...requestOf(olds, live, placed, machines), machineId: olds.machineId };
  const liveDisks = JSON.parse(placed) as Machines.PlacedDiskRecord[];
  const kept = JSON.parse(olds.retained || "[]") as Retained[];
  // A kept placement is the new one when its disks are where the new one puts them (its JSON
  // may lack a setting added since).
  const isNew = (r: Retained) => sameTargets(JSON.parse(r.disks) as Machines.PlacedDiskRecord[], plansOf(news));
  const retained = kept.filter((r) => !isNew(r));
  // A move is a disk going somewhere else; another setting of the same placement is a reshape.
  if (movePending(olds, news)) {
    const settings = settingsOf(news);
    const keptThere = kept.find(isNew);
    const moved = await machines.moveMachine({
      ...policyOf(news),
      from: { ...from, disks: liveDisks },
      to: requestOf(news, news.placement, "", machines),
      mode: settings.mode,
      cutover: settings.cutover,
      maxPasses: settings.maxPasses,
      deleteSource: !news.keepPrevious,
      targetWasKept: keptThere !== undefined,
      ...(keptThere?.machineId ? { keptMachineId: keptThere.machineId } : {}),
      gracefulTimeoutMs: (news.stopGraceSeconds ?? 30) * 1000,
      ...(recordedAt(olds) === undefined ? {} : { recordedAt: recordedAt(olds)! }),
    });
    if (moved.staged !== undefined) {
      return outputsOf(news, moved.state, { live, placed: moved.disks, staged: JSON.stringify(moved.staged), lastMove: JSON.stringify(moved.record), retained: kept });
    }
    // Replicas staged earlier for a placement other than this one are no one's now.
    if (olds.staged && olds.placement !== news.placement) await machines.removeWorkload(requestOf(olds, olds.placement, olds.staged, machines), "", olds.stateDir);
    if (news.keepPrevious) retained.push({ placement: live, disks: placed, machineId: olds.machineId });
    return outputsOf(news, moved.state, { live: news.placement, placed: moved.disks, staged: "", lastMove: JSON.stringify(moved.record), retained });
  }
  if (olds.spec !== news.spec || olds.disks !== news.disks || live !== news.placement) {
    // Same placement, new shape, settings or disk sources: the machine is recreated on its disks.
    const previous = (JSON.parse(olds.disks) as Machines.DiskPlan[]).map((plan) => ({ ...plan, ...liveDisks.find((d) => d.id === plan.id) }));
    const reshaped = await machines.reshapeWorkload(from, requestOf(news, news.placement, "[]", machines), policyOf(news), plansOf(news), previous);
    return outputsOf(news, reshaped.state, { live: news.placement, placed: reshaped.disks, staged: olds.staged ?? "", lastMove: olds.lastMove, retained });
  }
  return { ...olds, ...news, retained: JSON.stringify(retained) };
}

/** A delete under the lease: the machine and disks where it runs, kept and staged. */
async function deleteNow(olds: MachineOutputs, machines: typeof Machines): Promise<void> {
  const { live, placed } = liveOf(olds);
  await machines.removeWorkload(requestOf(olds, live, placed, machines), olds.machineId, olds.stateDir);
  for (const kept of JSON.parse(olds.retained || "[]") as Retained[]) {
    await machines.removeWorkload(requestOf(olds, kept.placement, kept.disks, machines), kept.machineId, olds.stateDir);
  }
  if (olds.staged) await machines.removeWorkload(requestOf(olds, olds.placement, olds.staged, machines), "", olds.stateDir);
  // The measured timings of this workload's machines: the last thing of it in the state folder.
  const { forgetWorkload } = require(PLACEMENT) as typeof Placement;
  await forgetWorkload(olds.stateDir, (JSON.parse(olds.spec) as { name: string }).name);
}

/**
 * Logs the plan of this run on the Workload, as `pulumi preview` shows it: from where Pulumi
 * state has the workload (`olds`; a first placement without) and the replica state beside the
 * targets, so every machine with the backend and the credentials shows the same plan. State that
 * is not what Pulumi recorded is named instead (REPLICA_STATE_MISMATCH), as `up` would refuse it.
 */
async function logPlan(news: MachineInputs, olds: MachineOutputs | undefined): Promise<void> {
  const { logToEngine } = require(ENGINE_LOG) as typeof EngineLog;
  if (news.planUrn === undefined || news.planUrn === "" || news.planUrn === UNKNOWN) return;
  // An input another resource computes is unknown in a preview: `up` plans once it is known.
  if ([news.spec, news.placement, news.disks, news.fixups].includes(UNKNOWN)) {
    await logToEngine(news.planUrn, `${news.workload}: the plan is made when up runs: its disks come from resources this run creates or changes`);
    return;
  }
  const machines = require(MACHINES) as typeof Machines;
  const { planWorkload } = require(PLAN) as typeof Plans;
  const { checkRecordedState } = require(PLACEMENT) as typeof Placement;
  try {
    const workload = JSON.parse(news.spec) as Specs.ValidWorkloadArgs["spec"];
    const placement = JSON.parse(news.placement) as Specs.Placement;
    const settings = settingsOf(news);
    const fixups = news.fixups ? (JSON.parse(news.fixups) as NonNullable<Machines.CopyPolicy["fixups"]>) : undefined;
    const current: Record<string, Placement.CurrentPlacement> = {};
    if (olds !== undefined) {
      const { live, placed } = liveOf(olds);
      const vsphere = machines.vsphereConnectionFor(JSON.parse(live) as Specs.Placement);
      const disks = JSON.parse(placed) as Machines.PlacedDiskRecord[];
      await checkRecordedState(workload.name, disks, news.stateDir, vsphere);
      const connection = vsphere === undefined ? undefined : (({ password: _password, ...rest }) => rest)(vsphere);
      for (const d of disks) current[d.id] = { target: d.target, location: d.location, virtualSizeBytes: d.virtualSizeBytes ?? 0, ...(connection === undefined ? {} : { vsphere: connection }) };
    }
    const plan = await planWorkload({
      workload,
      placement,
      mode: settings.mode,
      cutover: settings.cutover,
      maxPasses: settings.maxPasses,
      verify: news.verify,
      stateDir: news.stateDir,
      current,
      ...(olds?.timings ? { timings: JSON.parse(olds.timings) as Record<string, Placement.MachineTimings> } : {}),
      ...(news.stopGraceSeconds === undefined ? {} : { stopGraceSeconds: news.stopGraceSeconds }),
      ...(fixups === undefined ? {} : { fixups: fixups.policy, ...(fixups.testBoot === undefined ? {} : { testBoot: fixups.testBoot }) }),
      disks: plansOf(news).map((d) => ({ id: d.id, source: d.source, ...(d.sourceFormat === undefined ? {} : { sourceFormat: d.sourceFormat }), target: d.target })),
    });
    await logToEngine(news.planUrn, plan.summary);
  } catch (error) {
    await logToEngine(news.planUrn, `${news.workload}: no migration plan: ${(error as Error).message}`, { severity: "warning" });
  }
}

/** The measured timings: Pulumi state's, with this run's measurements (the state folder's) over them. */
function timingsOf(olds: MachineOutputs | undefined, inputs: MachineInputs): string {
  const { readTimings } = require(PLACEMENT) as typeof Placement;
  const recorded = olds?.timings ? (JSON.parse(olds.timings) as Record<string, Placement.MachineTimings>) : {};
  const measured = readTimings(inputs.stateDir, (JSON.parse(inputs.spec) as { name: string }).name);
  const all: Record<string, Placement.MachineTimings> = { ...recorded };
  for (const [kind, timings] of Object.entries(measured)) all[kind] = { ...all[kind], ...timings };
  return Object.keys(all).length === 0 ? "" : JSON.stringify(all);
}

/**
 * The placement the workload runs on and its disks there. State written before `live` and
 * `placed` existed kept the placed disks ([{ id, location, target }]) in `disks`.
 */
function liveOf(olds: MachineOutputs): { live: string; placed: string } {
  return { live: olds.live ?? olds.placement, placed: olds.placed ?? olds.disks };
}

/** Every target Pulumi state has the workload's disks on: where it runs, what was kept or staged (what the lease covers). */
function recordedTargets(olds: MachineOutputs): string[] {
  return [liveOf(olds).placed, ...(JSON.parse(olds.retained || "[]") as Retained[]).map((r) => r.disks), olds.staged || "[]"]
    .flatMap((disks) => (JSON.parse(disks) as Machines.PlacedDiskRef[]).map((d) => d.target));
}

/** When the last move Pulumi state recorded ended; undefined before any move. */
function recordedAt(olds: MachineOutputs): string | undefined {
  if (!olds.lastMove) return undefined;
  const move = JSON.parse(olds.lastMove) as { endedAt?: string };
  return move.endedAt;
}

/** Whether every planned disk is at its target among `disks`. */
function sameTargets(disks: readonly Machines.PlacedDiskRef[], plans: readonly Machines.DiskPlan[]): boolean {
  return plans.every((plan) => disks.find((d) => d.id === plan.id)?.target === plan.target);
}

/** Whether some disk is to go elsewhere than where it is (unknown inputs in a preview count as yes). */
function movePending(olds: MachineOutputs, news: MachineInputs): boolean {
  try {
    return !sameTargets(JSON.parse(liveOf(olds).placed) as Machines.PlacedDiskRecord[], plansOf(news));
  } catch {
    return true;
  }
}

function settingsOf(inputs: MachineInputs): MigrationSettings {
  return { mode: "warm", cutover: true, maxPasses: 3, ...(inputs.migration ? (JSON.parse(inputs.migration) as Partial<MigrationSettings>) : {}) };
}

function plansOf(inputs: MachineInputs): Machines.DiskPlan[] {
  return JSON.parse(inputs.disks) as Machines.DiskPlan[];
}

/** Copies report their progress and steps on this resource. */
function policyOf(inputs: MachineInputs): Machines.CopyPolicy {
  const { progressOnResource, stepsOnResource } = require(ENGINE_LOG) as typeof EngineLog;
  const fixups = inputs.fixups ? (JSON.parse(inputs.fixups) as NonNullable<Machines.CopyPolicy["fixups"]>) : undefined;
  const onStep = fixups === undefined ? undefined : stepsOnResource(inputs.progressUrn, `disk ${fixups.disk}`);
  const onCutoverStep = stepsOnResource(inputs.progressUrn, "cutover");
  return {
    stateDir: inputs.stateDir,
    verify: inputs.verify,
    onDiskProgress: (disk, phase) => progressOnResource(inputs.progressUrn, `${phase}, disk ${disk}`),
    ...(fixups ? { fixups } : {}),
    ...(onStep ? { onStep } : {}),
    ...(onCutoverStep ? { onCutoverStep } : {}),
  };
}

/** The machine request on `placement` with `disks` ([PlacedDiskRecord] JSON; "" for the plans' targets). */
function requestOf(inputs: MachineInputs, placementJson: string, disks: string, machines: typeof Machines): Machines.MachineRequest {
  const placement = JSON.parse(placementJson) as Specs.Placement;
  // The vCenter password comes from the provider's environment (placement.passwordEnv), never an input.
  const vsphere = machines.vsphereConnectionFor(placement);
  const placed = disks === "" ? plansOf(inputs).map((d) => ({ id: d.id, target: d.target, location: "" })) : (JSON.parse(disks) as Machines.PlacedDiskRef[]);
  return { workload: JSON.parse(inputs.spec), placement, disks: placed, stateDir: inputs.stateDir, ...(vsphere ? { vsphere } : {}) };
}

function outputsOf(
  inputs: MachineInputs,
  state: Machines.MachineState,
  rest: { live: string; placed: readonly Machines.PlacedDiskRecord[]; staged: string; lastMove: string; retained: readonly Retained[] },
): MachineOutputs {
  return {
    ...inputs,
    kind: state.kind,
    machineId: state.machineId,
    running: state.running,
    addresses: [],
    ...(state.bootSeconds === undefined ? {} : { bootSeconds: state.bootSeconds }),
    live: rest.live,
    placed: JSON.stringify(rest.placed),
    staged: rest.staged,
    lastMove: rest.lastMove,
    retained: JSON.stringify(rest.retained),
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
  readonly migration?: pulumi.Input<string>;
  readonly planUrn?: pulumi.Input<string>;
}

/** A workload's placement and cutover (type token `pulumi-nodejs:dynamic/portable:Machine`). */
export class Machine extends pulumi.dynamic.Resource {
  declare readonly machineId: pulumi.Output<string>;
  declare readonly running: pulumi.Output<boolean>;
  declare readonly addresses: pulumi.Output<string[]>;
  declare readonly bootSeconds: pulumi.Output<number | undefined>;
  declare readonly lastMove: pulumi.Output<string>;
  declare readonly retained: pulumi.Output<string>;
  declare readonly live: pulumi.Output<string>;
  declare readonly placed: pulumi.Output<string>;
  declare readonly staged: pulumi.Output<string>;
  declare readonly timings: pulumi.Output<string>;

  constructor(name: string, args: MachineArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      machineProvider,
      name,
      { verify: "sampled", ...args, progressUrn: urnFor(name, "pulumi-nodejs:dynamic/portable:Machine", opts?.parent), kind: undefined, machineId: undefined, running: undefined, addresses: undefined, bootSeconds: undefined, live: undefined, placed: undefined, staged: undefined, lastMove: undefined, retained: undefined, timings: undefined },
      opts,
      "portable",
      "Machine",
    );
  }
}
