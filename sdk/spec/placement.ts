// Where a workload runs (its placement) and how it moves (its migration policy): the rest of the
// Workload component's arguments, validated with zod like the spec itself so that a preview
// fails with every problem and its path at once.
//
// Credentials are not part of a placement, nor of any resource input: AWS and Azure come from
// their SDKs' default chains (environment, profiles, managed identity), the vCenter password from
// an environment variable (passwordEnv) that the program and the provider processes read.
import { fixupsPolicySchema, testBootPolicySchema } from "./fixups.ts";
import { z } from "zod";
import { issuesOf, workloadSchema, WorkloadValidationError, type SpecIssue, type Workload } from "./workload.ts";

const absoluteOrRelativePath = z.string().min(1).refine((p) => !p.includes("\0"), "must be a path");

export const localPlacementSchema = z
  .object({
    kind: z.literal("local"),
    /** The local datastore: disks (raw), machine definitions, pid files and QMP sockets. */
    dir: absoluteOrRelativePath,
    /** Start the machine after placing its disks. @default true */
    start: z.boolean().default(true),
    /** Text the guest prints on its serial console once up: the health check. */
    bootMarker: z.string().min(1).optional(),
    /** Seconds the health check waits for bootMarker before the start fails (a cutover rolls back). @default 180 */
    bootTimeoutSeconds: z.number().int().min(1).max(3600).default(180),
  })
  .strict();

export const vspherePlacementSchema = z
  .object({
    kind: z.literal("vsphere"),
    /** The SDK endpoint, e.g. https://vcenter.example.com/sdk */
    url: z.url(),
    username: z.string().min(1),
    /**
     * The environment variable that holds the password, read at run time by the program and the
     * providers (never a resource input). @default "VSPHERE_PASSWORD"
     */
    passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").default("VSPHERE_PASSWORD"),
    datacenter: z.string().min(1),
    datastore: z.string().min(1),
    /** Path on the datastore for this workload's files. @default the workload name */
    folder: z.string().min(1).optional(),
    resourcePool: z.string().min(1).optional(),
    host: z.string().min(1).optional(),
    /** Workload network name → vSphere port group; names not listed are used as they are. */
    networks: z.record(z.string(), z.string()).default({}),
    /** PEM of a CA or the server certificate to trust (TLS verification stays on). */
    caPem: z.string().min(1).optional(),
    /** SHA-256 (or SHA-1) fingerprint to pin, hex with or without colons. */
    thumbprint: z.string().min(1).optional(),
    /** Turns TLS verification off. Never the default. */
    insecure: z.boolean().default(false),
    powerOn: z.boolean().default(true),
  })
  .strict();

export const awsPlacementSchema = z
  .object({
    kind: z.literal("aws"),
    region: z.string().min(1),
    /** An endpoint override (an emulator, a VPC endpoint). */
    endpoint: z.url().optional(),
    /** Overrides the mapped instance type. */
    instanceType: z.string().min(1).optional(),
    subnetId: z.string().min(1).optional(),
    securityGroupIds: z.array(z.string().min(1)).default([]),
    keyName: z.string().min(1).optional(),
    kmsKeyArn: z.string().min(1).optional(),
    /** Create the AMI and the instance (off: only the snapshots, no official resource at all). @default true */
    launch: z.boolean().default(true),
    /**
     * The S3 bucket (created if missing) that keeps this placement's replica state beside the
     * snapshots: manifests, pass markers and the move lease, under `portable-state/`. Without
     * it the state stays in the program's stateDir, and only that machine can plan or resume.
     */
    stateBucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be an S3 bucket name").optional(),
  })
  .strict();

export const azurePlacementSchema = z
  .object({
    kind: z.literal("azure"),
    location: z.string().min(1),
    resourceGroupName: z.string().min(1),
    /** The storage account and container the page blobs go to (Import flow). */
    storageAccount: z.string().min(1),
    container: z.string().min(1),
    /** ARM id of the storage account, for the Import disk's storageAccountId. */
    storageAccountId: z.string().min(1),
    /** Overrides the mapped VM size. */
    vmSize: z.string().min(1).optional(),
    /** ARM id of the NIC the VM uses. */
    networkInterfaceId: z.string().min(1).optional(),
    /** Create the managed disks and the VM (off: only the blobs, no official resource at all). @default true */
    launch: z.boolean().default(true),
  })
  .strict();

export const placementSchema = z.discriminatedUnion("kind", [localPlacementSchema, vspherePlacementSchema, awsPlacementSchema, azurePlacementSchema]);
export type Placement = z.infer<typeof placementSchema>;
export type PlacementInput = z.input<typeof placementSchema>;
export type PlacementKind = Placement["kind"];

export const migrationPolicySchema = z
  .object({
    /** warm: copy while the source runs, then a short cutover; cold: stop first, copy once. */
    mode: z.enum(["warm", "cold"]).default("warm"),
    /** Run the cutover (stop the source, final delta, start the target). Off: copy only. */
    cutover: z.boolean().default(true),
    /** After a migration the source is kept stopped (flipping back is incremental) or deleted. */
    source: z.enum(["keep", "delete"]).default("keep"),
    /** Warm passes before cutover at most. */
    maxPasses: z.number().int().min(1).max(20).default(3),
    /** Read-back verification after each copy. */
    verify: z.enum(["full", "sampled", "none"]).default("sampled"),
    /**
     * Seconds a graceful stop (ACPI, guest shutdown) may take before the source is powered off
     * hard; also the plan's stop estimate until a stop has been measured. @default 30
     */
    stopGraceSeconds: z.number().int().min(0).max(3600).default(30),
    /** Readiness errors found in the guest stop `up` (block) or are only reported (warn). */
    readiness: z.enum(["block", "warn"]).default("block"),
    /**
     * Changes made inside the guest so it boots on the target (spec/fixups.ts): "auto" derives
     * them from the readiness findings, or a list names them. They go into a copy-on-write
     * overlay of the source (libguestfs), never into the source. @default "none"
     */
    fixups: fixupsPolicySchema,
    /**
     * Boot the fixed-up disk in a throw-away local QEMU on the target's bus and firmware before
     * anything is copied, and fail the move if `marker` does not appear on its serial console.
     */
    testBoot: testBootPolicySchema.optional(),
  })
  .strict();
export type MigrationPolicy = z.infer<typeof migrationPolicySchema>;
export type MigrationPolicyInput = z.input<typeof migrationPolicySchema>;

export interface WorkloadArgsInput {
  readonly spec: unknown;
  readonly placement: unknown;
  readonly migration?: unknown;
}

export interface ValidWorkloadArgs {
  readonly spec: Workload;
  readonly placement: Placement;
  readonly migration: MigrationPolicy;
}

/** Validates all three parts and reports every issue, each with its path (spec.…, placement.…). */
export function parseWorkloadArgs(args: WorkloadArgsInput, what = "Workload"): ValidWorkloadArgs {
  const issues: SpecIssue[] = [];
  const prefix = (p: string, list: readonly SpecIssue[]) => list.map((i) => ({ ...i, path: i.path === "" ? p : `${p}.${i.path}` }));
  const spec = workloadSchema.safeParse(args.spec);
  if (!spec.success) issues.push(...prefix("spec", issuesOf(spec.error)));
  const placement = placementSchema.safeParse(args.placement);
  if (!placement.success) issues.push(...prefix("placement", issuesOf(placement.error)));
  const migration = migrationPolicySchema.safeParse(args.migration ?? {});
  if (!migration.success) issues.push(...prefix("migration", issuesOf(migration.error)));
  // Read from the raw value, so a missing source is reported beside every other issue.
  const rawDisks = (args.spec as { disks?: unknown } | null | undefined)?.disks;
  if (Array.isArray(rawDisks)) {
    rawDisks.forEach((disk: unknown, index) => {
      if (typeof disk === "object" && disk !== null && (disk as { source?: unknown }).source === undefined) {
        issues.push({ code: "custom", path: `spec.disks.${index}.source`, message: "a disk to place needs a source (blank disks are not supported yet)" });
      }
    });
  }
  if (issues.length > 0 || !spec.success || !placement.success || !migration.success) throw new WorkloadValidationError(what, issues);
  return { spec: spec.data, placement: placement.data, migration: migration.data };
}
