// portable:index:Workload — the component users compose. Its args are the neutral spec, a
// placement and a migration policy. A portable:Machine is the placement and its cutover on every
// platform: it copies the disks, and a placement change updates it (a move: warm passes, then
// the cutover) instead of replacing it. Each disk is a portable:Disk that records where the
// Machine placed it. The machine itself is our Machine (local, vsphere) or the official
// provider's resources (aws, azure), which depend on the cutover. The plan of what a run will
// move is logged on the component by the Machine, so `pulumi preview` shows it on any machine.
import { resolve } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parseWorkloadArgs, type MigrationPolicyInput, type PlacementInput, type ValidWorkloadArgs } from "../sdk/spec/placement.ts";
import { bootDiskOf, disksBootFirst, WorkloadValidationError, type WorkloadInput } from "../sdk/spec/workload.ts";
import { diskSourceText, diskTargetFor } from "../sdk/migrate/targets.ts";
import { planWorkload, type WorkloadPlan } from "../sdk/migrate/workload-plan.ts";
import { Disk } from "./providers/disk.ts";
import { Machine } from "./providers/machine.ts";
import { Readiness } from "./providers/readiness.ts";
import { AwsPlacement } from "./placements/aws.ts";
import { AzurePlacement } from "./placements/azure.ts";
import { urnOf } from "./runtime.ts";

export interface WorkloadArgs {
  readonly spec: WorkloadInput;
  readonly placement: PlacementInput;
  /**
   * How it moves. The vCenter password of a vsphere placement is no argument: the program and the
   * engine's provider processes read it from the environment variable the placement names
   * (passwordEnv, default VSPHERE_PASSWORD), so it never becomes a resource input.
   */
  readonly migration?: MigrationPolicyInput;
  /**
   * This machine's cache: pass journals, measured timings, and the replica state of targets that
   * keep none beside them (vSphere; aws without stateBucket). @default ".portable" in the
   * program's working directory. The replica state of local, azure and aws (with stateBucket)
   * targets is kept beside them, so any machine plans and moves from it; Pulumi state keeps its
   * references and digests.
   */
  readonly stateDir?: string;
  /** Per disk id, a source that overrides the spec's: e.g. a StackReference output (cross-stack). */
  readonly diskSources?: Readonly<Record<string, pulumi.Input<string>>>;
}

export class Workload extends pulumi.ComponentResource {
  /** The machine: a QEMU machine name, a vSphere VM moref, an EC2 instance id, an Azure VM id. */
  readonly machineId: pulumi.Output<string>;
  readonly addresses: pulumi.Output<string[]>;
  /** Per disk id, where it is: a file path, snap-…, a blob URL, a datastore path. */
  readonly disks: pulumi.Output<Record<string, string>>;
  /**
   * The plan as this machine's state folder sees it (what the readiness gate judges); undefined if
   * it could not be made. The plan a preview shows is the Machine's, from Pulumi state and the
   * replica state beside the targets, logged on this component.
   */
  readonly plan: pulumi.Output<WorkloadPlan | undefined>;

  constructor(name: string, args: WorkloadArgs, opts?: pulumi.ComponentResourceOptions) {
    super("portable:index:Workload", name, {}, opts);
    const valid = validate(args, name, this);
    if (valid === undefined) {
      // The run fails with the one error logged on this component; nothing is registered.
      this.machineId = pulumi.output("");
      this.addresses = pulumi.output([]);
      this.disks = pulumi.output<Record<string, string>>({});
      this.plan = pulumi.output(undefined);
      this.registerOutputs({});
      return;
    }
    const { spec, placement, migration } = valid;
    const stateDir = resolve(args.stateDir ?? ".portable");
    const diskInputs = spec.disks.map((disk) => {
      const source = diskSourceText(disk.source!);
      return { id: disk.id, sizeBytes: disk.sizeBytes, ...source, target: diskTargetFor(placement, spec.name, disk.id) };
    });

    // The plan is computed while the program runs, so the preview shows it. It never fails the
    // program: a disk that cannot be read for planning is reported, and the update will say why.
    this.plan = pulumi.output(args.diskSources ?? {}).apply((overrides) =>
      planWorkload({
        workload: spec,
        placement,
        mode: migration.mode,
        cutover: migration.cutover,
        maxPasses: migration.maxPasses,
        verify: migration.verify,
        stateDir,
        stopGraceSeconds: migration.stopGraceSeconds,
        fixups: migration.fixups,
        ...(migration.testBoot === undefined ? {} : { testBoot: migration.testBoot }),
        disks: diskInputs.map((d) => {
          const override = (overrides as Record<string, string>)[d.id];
          return { id: d.id, source: override ?? d.text, ...(override === undefined && d.format !== undefined ? { sourceFormat: d.format } : {}), target: d.target };
        }),
      }).then(
        (plan) => {
          // The summary (bytes, downtime) is the Machine's to log: it plans from where Pulumi
          // state has the workload (components/providers/machine.ts logPlan). This plan, from this
          // machine's state folder, gates readiness.
          const blocking = migration.readiness === "block" ? " (blocks `up`; migration.readiness: \"warn\" lets it through)" : "";
          for (const finding of plan.findings.filter((f) => f.severity === "error")) void pulumi.log.warn(`readiness: ${finding.code}: ${finding.message}${blocking}`, this);
          return plan;
        },
        () => undefined,
      ),
    );

    // Readiness errors stop `up` before any disk moves, unless the policy says "warn": the Machine
    // depends on this gate, which fails its update (never the preview) while errors block.
    const gate = new Readiness(`${name}-readiness`, {
      workload: spec.name,
      target: placement.kind,
      policy: migration.readiness,
      errors: this.plan.apply((plan) => (plan?.findings ?? []).filter((f) => f.severity === "error").map((f) => `${f.code}: ${f.message}`)),
    }, { parent: this });

    // The boot disk's guest fixups, as the Machine applies them to each copy (the cutover's final pass included).
    const bootDisk = bootDiskOf(spec);
    const fixups = bootDisk === undefined || (migration.fixups === "none" && migration.testBoot === undefined)
      ? undefined
      : JSON.stringify({ disk: bootDisk.id, policy: migration.fixups, target: placement.kind, firmware: spec.firmware.type, bus: bootDisk.bus, ...(migration.testBoot === undefined ? {} : { testBoot: migration.testBoot }) });
    // The placement and its cutover: it copies the disks and moves them. The disk records and the
    // official shells (aws, azure) depend on it, so they change only after a committed move.
    const plans = pulumi.all(diskInputs.map((d) => pulumi.output(args.diskSources?.[d.id] ?? d.text))).apply((sources) =>
      JSON.stringify(diskInputs.map((d, i) => ({ id: d.id, source: sources[i], ...(d.format === undefined || args.diskSources?.[d.id] !== undefined ? {} : { sourceFormat: d.format }), target: d.target }))),
    );
    const machine = new Machine(`${name}-machine`, {
      workload: spec.name,
      spec: JSON.stringify(spec),
      placement: JSON.stringify(placement),
      disks: plans,
      stateDir,
      keepPrevious: migration.source === "keep",
      verify: migration.verify,
      stopGraceSeconds: migration.stopGraceSeconds,
      migration: JSON.stringify({ mode: migration.mode, cutover: migration.cutover, maxPasses: migration.maxPasses }),
      ...(fixups === undefined ? {} : { fixups }),
      planUrn: urnOf(this),
    }, { parent: this, dependsOn: [gate] });
    const disks = diskInputs.map(
      (d) =>
        new Disk(`${name}-${d.id}`, {
          workload: spec.name,
          disk: d.id,
          stateDir,
          placed: machine.placed.apply((placed) => JSON.stringify((JSON.parse(placed) as Array<{ id: string }>).find((p) => p.id === d.id))),
        }, { parent: this }),
    );
    this.disks = pulumi.all(disks.map((d) => d.location)).apply((locations) => Object.fromEntries(diskInputs.map((d, i) => [d.id, locations[i]!])));

    // The clouds boot their first disk (an AMI's root device, a VM's OS disk): the boot disk goes first.
    const bootFirst = disksBootFirst(spec).map((d) => {
      const i = diskInputs.findIndex((input) => input.id === d.id);
      return { input: diskInputs[i]!, placed: disks[i]! };
    });
    // `launch: false` places the disks only: no AMI or instance, no managed disk or VM.
    if (placement.kind === "aws" && placement.launch) {
      const aws = new AwsPlacement(`${name}-aws`, {
        workload: spec,
        placement,
        disks: bootFirst.map(({ input, placed }) => ({ id: input.id, sizeBytes: input.sizeBytes, snapshotId: placed.location })),
        keep: migration.source === "keep",
      }, { parent: this });
      this.machineId = aws.instance?.id ?? aws.ami.id;
      this.addresses = aws.instance ? pulumi.all([aws.instance.privateIp]).apply((ips) => ips.filter((ip) => ip !== undefined && ip !== "")) : pulumi.output([]);
    } else if (placement.kind === "azure" && placement.launch) {
      const azure = new AzurePlacement(`${name}-azure`, {
        workload: spec,
        placement,
        disks: bootFirst.map(({ input, placed }) => ({
          id: input.id,
          sizeBytes: input.sizeBytes,
          blobUrl: placed.location.apply((l) => (l.startsWith("http") ? l : `https://${placement.storageAccount}.blob.core.windows.net/${placement.container}/${l.split("/").pop()}`)),
        })),
        keep: migration.source === "keep",
      }, { parent: this });
      this.machineId = azure.vm?.id ?? pulumi.output("");
      this.addresses = pulumi.output([]);
    } else {
      this.machineId = machine.machineId;
      this.addresses = machine.addresses;
    }
    this.registerOutputs({ machineId: this.machineId, addresses: this.addresses, disks: this.disks });
  }
}

/**
 * The args, validated. Bad args are logged as one error on the component that names every issue
 * and its path, and fail the run; nothing is thrown, so the engine shows the message once and
 * without a stack trace (a user's input is wrong, not our code).
 */
function validate(args: WorkloadArgs, name: string, component: pulumi.ComponentResource): ValidWorkloadArgs | undefined {
  try {
    return parseWorkloadArgs(args, `Workload ${name}`);
  } catch (error) {
    if (!(error instanceof WorkloadValidationError)) throw error;
    const lines = error.issues.map((i) => `  ${i.path || "(workload)"}: ${i.message}`);
    void pulumi.log.error(`Workload ${name}: ${error.issues.length} problem(s) in its arguments (${error.code}):\n${lines.join("\n")}`, component);
    return undefined;
  }
}
