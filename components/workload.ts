// portable:index:Workload — the component users compose. Its args are the neutral spec, a
// placement and a migration policy. Each disk is a portable:Disk whose name does not depend on
// the placement, so changing the placement updates it (a move) instead of replacing it; the
// machine is the official provider's resources (aws, azure) or our portable:Machine (local,
// vsphere). The plan of what a run will move is logged on the component, so `pulumi preview`
// shows it.
import { resolve } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parseWorkloadArgs, type MigrationPolicyInput, type PlacementInput } from "../sdk/spec/placement.ts";
import type { WorkloadInput } from "../sdk/spec/workload.ts";
import { diskSourceText, diskTargetFor } from "../sdk/migrate/targets.ts";
import { planWorkload, type WorkloadPlan } from "../sdk/migrate/workload-plan.ts";
import { Disk } from "./providers/disk.ts";
import { Machine } from "./providers/machine.ts";
import { AwsPlacement } from "./placements/aws.ts";
import { AzurePlacement } from "./placements/azure.ts";

export interface WorkloadArgs {
  readonly spec: WorkloadInput;
  readonly placement: PlacementInput;
  readonly migration?: MigrationPolicyInput;
  /** The vCenter password for a vsphere placement; kept a secret. */
  readonly vspherePassword?: pulumi.Input<string>;
  /**
   * Replica manifests, journals and placement records. @default ".portable" in the program's
   * working directory. Pulumi state keeps only references into it and digests.
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
  /** The plan this run carries out (also logged on the component); undefined if it could not be made. */
  readonly plan: pulumi.Output<WorkloadPlan | undefined>;

  constructor(name: string, args: WorkloadArgs, opts?: pulumi.ComponentResourceOptions) {
    super("portable:index:Workload", name, {}, opts);
    // Throws WorkloadValidationError listing every issue with its path: the preview fails.
    const { spec, placement, migration } = parseWorkloadArgs(args, `Workload ${name}`);
    const stateDir = resolve(args.stateDir ?? ".portable");
    const diskInputs = spec.disks.map((disk) => {
      const source = diskSourceText(disk.source!);
      return { id: disk.id, sizeBytes: disk.sizeBytes, ...source, target: diskTargetFor(placement, spec.name, disk.id) };
    });

    // The plan is computed while the program runs, so the preview shows it. It never fails the
    // program: a disk that cannot be read for planning is reported, and the update will say why.
    this.plan = pulumi.all([pulumi.output(args.vspherePassword), pulumi.output(args.diskSources ?? {})]).apply(([vspherePassword, overrides]) =>
      planWorkload({
        workload: spec,
        placement,
        mode: migration.mode,
        stateDir,
        ...(vspherePassword === undefined ? {} : { vspherePassword }),
        disks: diskInputs.map((d) => {
          const override = (overrides as Record<string, string>)[d.id];
          return { id: d.id, source: override ?? d.text, ...(override === undefined && d.format !== undefined ? { sourceFormat: d.format } : {}), target: d.target };
        }),
      }).then(
        (plan) => {
          void pulumi.log.info(plan.summary, this);
          for (const finding of plan.findings.filter((f) => f.severity === "error")) void pulumi.log.warn(`readiness: ${finding.code}: ${finding.message}`, this);
          return plan;
        },
        (error: unknown) => {
          void pulumi.log.warn(`${spec.name}: no migration plan: ${(error as Error).message}`, this);
          return undefined;
        },
      ),
    );

    // The vCenter connection without its password (that one travels as a secret of its own).
    const vsphere = placement.kind === "vsphere"
      ? JSON.stringify({ url: placement.url, username: placement.username, insecure: placement.insecure, ...(placement.caPem ? { caPem: placement.caPem } : {}), ...(placement.thumbprint ? { thumbprint: placement.thumbprint } : {}) })
      : undefined;
    const disks = diskInputs.map(
      (d) =>
        new Disk(`${name}-${d.id}`, {
          workload: spec.name,
          disk: d.id,
          source: args.diskSources?.[d.id] ?? d.text,
          ...(d.format === undefined || args.diskSources?.[d.id] !== undefined ? {} : { sourceFormat: d.format }),
          target: d.target,
          stateDir,
          verify: migration.verify,
          keepPrevious: migration.source === "keep",
          ...(vsphere === undefined ? {} : { vsphere }),
          ...(args.vspherePassword === undefined ? {} : { vspherePassword: pulumi.secret(args.vspherePassword) }),
        }, { parent: this }),
    );
    this.disks = pulumi.all(disks.map((d) => d.location)).apply((locations) => Object.fromEntries(diskInputs.map((d, i) => [d.id, locations[i]!])));

    if (placement.kind === "aws") {
      const aws = new AwsPlacement(`${name}-aws`, {
        workload: spec,
        placement,
        disks: disks.map((d, i) => ({ id: diskInputs[i]!.id, sizeBytes: diskInputs[i]!.sizeBytes, snapshotId: d.location })),
      }, { parent: this });
      this.machineId = aws.instance?.id ?? aws.ami.id;
      this.addresses = aws.instance ? pulumi.all([aws.instance.privateIp]).apply((ips) => ips.filter((ip) => ip !== undefined && ip !== "")) : pulumi.output([]);
    } else if (placement.kind === "azure") {
      const azure = new AzurePlacement(`${name}-azure`, {
        workload: spec,
        placement,
        disks: disks.map((d, i) => ({
          id: diskInputs[i]!.id,
          sizeBytes: diskInputs[i]!.sizeBytes,
          blobUrl: d.location.apply((l) => (l.startsWith("http") ? l : `https://${placement.storageAccount}.blob.core.windows.net/${placement.container}/${l.split("/").pop()}`)),
        })),
      }, { parent: this });
      this.machineId = azure.vm?.id ?? pulumi.output("");
      this.addresses = pulumi.output([]);
    } else {
      const machine = new Machine(`${name}-machine`, {
        workload: spec.name,
        spec: JSON.stringify(spec),
        placement: JSON.stringify(placement),
        disks: pulumi.all(disks.map((d) => d.location)).apply((locations) => JSON.stringify(diskInputs.map((d, i) => ({ id: d.id, location: locations[i], target: d.target })))),
        stateDir,
        keepPrevious: migration.source === "keep",
        verify: migration.verify,
        ...(args.vspherePassword === undefined ? {} : { vspherePassword: pulumi.secret(args.vspherePassword) }),
      }, { parent: this, dependsOn: disks });
      this.machineId = machine.machineId;
      this.addresses = machine.addresses;
    }
    this.registerOutputs({ machineId: this.machineId, addresses: this.addresses, disks: this.disks });
  }
}
