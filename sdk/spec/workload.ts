// The Workload: one hypervisor-neutral description of a virtual machine (DESIGN.md, "Pulumi
// layer"). OVF, OVA and VMX files are read into it; the mappings in ./mappings/ render it for
// each target. zod validates it at every boundary, and every issue is reported at once with
// its path (STYLE.md, "Validation").
import { z } from "zod";
import { InvalidArgsError } from "../errors.ts";

/** Operating system families every mapping table must cover (tests/spec/mappings.test.ts). */
export const GUEST_OS_FAMILIES = ["linux", "windows", "freebsd", "solaris", "other"] as const;
export type GuestOsFamily = (typeof GUEST_OS_FAMILIES)[number];

/** Instruction sets, named as AWS names them (`x86_64`, `i386`, `arm64`). */
export const ARCHITECTURES = ["x86_64", "i386", "arm64"] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export const DISK_BUSES = ["scsi", "sata", "nvme", "ide"] as const;
export type DiskBus = (typeof DISK_BUSES)[number];

export const FIRMWARE_TYPES = ["bios", "uefi"] as const;
export type FirmwareType = (typeof FIRMWARE_TYPES)[number];

/**
 * vSphere allows 768 vCPUs (vSphere 8 configuration maximums) and the largest EC2 and Azure
 * sizes are below that, so 1024 leaves room without admitting nonsense.
 */
export const WORKLOAD_MAX_VCPUS = 1024;
/** 24 TiB, the vSphere 8 per-VM memory maximum, in MiB. */
export const WORKLOAD_MAX_MEMORY_MIB = 24 * 1024 * 1024;
/** 64 TiB: the VMFS virtual disk maximum; EBS (64 TiB io2) and Azure (64 TiB Ultra) agree. */
export const WORKLOAD_MAX_DISK_BYTES = 64 * 2 ** 40;

const MAC_ADDRESS = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** An IPv4 or IPv6 address with its prefix length, e.g. `10.0.0.5/24`. */
const CIDR = /^(\d{1,3}(\.\d{1,3}){3}\/\d{1,2}|[0-9a-f:]+\/\d{1,3})$/i;
const IP_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-f:]+)$/i;
/** Disk and NIC ids become file names and cloud tags, so they stay short and plain. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const cpuSchema = z
  .object({
    sockets: z.number().int().min(1).max(WORKLOAD_MAX_VCPUS).default(1),
    coresPerSocket: z.number().int().min(1).max(WORKLOAD_MAX_VCPUS).default(1),
  })
  .strict()
  .refine((cpu) => cpu.sockets * cpu.coresPerSocket <= WORKLOAD_MAX_VCPUS, {
    message: `sockets × coresPerSocket must not exceed ${WORKLOAD_MAX_VCPUS}`,
  });

const firmwareSchema = z
  .object({
    type: z.enum(FIRMWARE_TYPES).default("bios"),
    secureBoot: z.boolean().default(false),
    /** A virtual TPM 2.0 (vSphere vTPM, AWS NitroTPM, Azure Trusted Launch vTPM). */
    vtpm: z.boolean().default(false),
  })
  .strict()
  .superRefine((firmware, ctx) => {
    // Secure boot is a UEFI feature (UEFI 2.x §32); every target also ties vTPM to UEFI.
    if (firmware.secureBoot && firmware.type !== "uefi") {
      ctx.addIssue({ code: "custom", path: ["secureBoot"], message: "secure boot needs uefi firmware" });
    }
    if (firmware.vtpm && firmware.type !== "uefi") {
      ctx.addIssue({ code: "custom", path: ["vtpm"], message: "a vTPM needs uefi firmware" });
    }
  });

/** Where a disk's bytes come from. A disk without a source is created blank. */
export const diskSourceSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("file"), path: z.string().min(1), format: z.string().min(1).optional() }).strict(),
  z.object({ kind: z.literal("url"), url: z.url() }).strict(),
  z
    .object({
      kind: z.literal("cloud"),
      provider: z.enum(["aws", "azure", "vsphere"]),
      /**
       * An EBS snapshot id, an Azure blob URL or managed disk id; for vSphere a VM's disk
       * (vsphere://host/vm/<name>?dc=<dc>&disk=<index>) or a datastore disk
       * (vsphere://host/<folder>/<disk>.vmdk?dc=<dc>&ds=<ds>), sdk/clouds/vsphere/source-url.ts.
       */
      reference: z.string().min(1),
    })
    .strict(),
  /** A disk inside an OVA: the package and the tar entry name. */
  z.object({ kind: z.literal("ova"), path: z.string().min(1), entry: z.string().min(1) }).strict(),
]);
export type DiskSourceRef = z.infer<typeof diskSourceSchema>;

const diskSchema = z
  .object({
    id: z.string().regex(ID, "must be 1-63 letters, digits, '.', '_' or '-'"),
    sizeBytes: z.number().int().positive().max(WORKLOAD_MAX_DISK_BYTES),
    source: diskSourceSchema.optional(),
    bus: z.enum(DISK_BUSES).default("scsi"),
    /** Lower boots first; disks without one are not boot candidates. */
    bootOrder: z.number().int().min(0).optional(),
  })
  .strict();

const macPolicySchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("generated") }).strict(),
  z.object({ kind: z.literal("static"), address: z.string().regex(MAC_ADDRESS, "must be six hex octets separated by ':'") }).strict(),
]);

const addressingSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("dhcp") }).strict(),
  z
    .object({
      kind: z.literal("static"),
      addresses: z.array(z.string().regex(CIDR, "must be an address with a prefix length, e.g. 10.0.0.5/24")).min(1),
      gateway: z.string().regex(IP_ADDRESS, "must be an IP address").optional(),
      dns: z.array(z.string().regex(IP_ADDRESS, "must be an IP address")).optional(),
    })
    .strict(),
]);

const nicSchema = z
  .object({
    network: z.string().min(1),
    macPolicy: macPolicySchema.default({ kind: "generated" }),
    addressing: addressingSchema.default({ kind: "dhcp" }),
    /** The emulated adapter the source used (e1000, vmxnet3, virtio); informational. */
    model: z.string().min(1).optional(),
  })
  .strict();

const guestOsSchema = z
  .object({
    family: z.enum(GUEST_OS_FAMILIES),
    /** e.g. "ubuntu", "rhel", "centos", "debian", "windows-server". */
    distribution: z.string().min(1).optional(),
    /** e.g. "22.04", "9", "2019". */
    version: z.string().min(1).optional(),
    architecture: z.enum(ARCHITECTURES).default("x86_64"),
  })
  .strict();

export const workloadSchema = z
  .object({
    name: z.string().min(1).max(255),
    cpu: cpuSchema.default({ sockets: 1, coresPerSocket: 1 }),
    memoryMiB: z.number().int().min(1).max(WORKLOAD_MAX_MEMORY_MIB),
    firmware: firmwareSchema.default({ type: "bios", secureBoot: false, vtpm: false }),
    disks: z.array(diskSchema).default([]),
    nics: z.array(nicSchema).default([]),
    guestOs: guestOsSchema,
    tags: z.record(z.string().min(1).max(128), z.string().max(256)).default({}),
  })
  .strict()
  // Cross-field checks run even when other fields failed (`when`), so one report holds every
  // issue; they read the raw value, so each disk may still be malformed here.
  .superRefine((workload, ctx) => {
    const ids = new Map<string, number>();
    const boots = new Map<number, number>();
    (workload.disks as unknown[]).forEach((value, index) => {
      const disk = value as Partial<Workload["disks"][number]> | null;
      if (typeof disk !== "object" || disk === null) return;
      if (typeof disk.id !== "string") return;
      const first = ids.get(disk.id);
      if (first !== undefined) ctx.addIssue({ code: "custom", path: ["disks", index, "id"], message: `duplicates disks[${first}].id "${disk.id}"` });
      else ids.set(disk.id, index);
      if (typeof disk.bootOrder === "number") {
        const other = boots.get(disk.bootOrder);
        if (other !== undefined) {
          ctx.addIssue({ code: "custom", path: ["disks", index, "bootOrder"], message: `duplicates disks[${other}].bootOrder ${disk.bootOrder}` });
        } else boots.set(disk.bootOrder, index);
      }
    });
  }, { when: (payload) => Array.isArray((payload.value as { disks?: unknown } | undefined)?.disks) });

export type Workload = z.infer<typeof workloadSchema>;
/** What callers write: defaults may be left out. */
export type WorkloadInput = z.input<typeof workloadSchema>;
export type WorkloadDisk = Workload["disks"][number];
export type WorkloadNic = Workload["nics"][number];
export type GuestOs = Workload["guestOs"];
export type Firmware = Workload["firmware"];

/** One validation problem, zod-shaped: a stable code, where, and what. */
export interface SpecIssue {
  readonly code: string;
  /** e.g. "disks.0.sizeBytes"; "" for the whole value. */
  readonly path: string;
  readonly message: string;
}

/** Every issue found in one value, reported together. */
export class WorkloadValidationError extends InvalidArgsError {
  readonly issues: readonly SpecIssue[];
  constructor(what: string, issues: readonly SpecIssue[]) {
    super("WORKLOAD_INVALID", `${what}: ${issues.length} problem(s): ${issues.map((i) => `${i.path || "(workload)"}: ${i.message}`).join("; ")}`, {
      context: { issues: issues.length },
    });
    this.issues = issues;
  }
}

export function issuesOf(error: z.ZodError): SpecIssue[] {
  return error.issues.flatMap((issue) => flatten(issue, []));
}

/**
 * A union none of whose options took the value: when exactly one option accepted its type (the
 * others failed at their root with invalid_type or invalid_value), that option's issues are the
 * useful ones, with their own paths ("fixups.0.drivers.0", not "fixups: invalid input").
 */
function flatten(issue: z.core.$ZodIssue, prefix: readonly PropertyKey[]): SpecIssue[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === "invalid_union" && issue.errors.length > 0) {
    const typed = issue.errors.filter((branch) => !branch.every((i) => i.path.length === 0 && (i.code === "invalid_type" || i.code === "invalid_value")));
    if (typed.length === 1) return typed[0]!.flatMap((inner) => flatten(inner, path));
  }
  return [{ code: issue.code, path: path.map(String).join("."), message: issue.message }];
}

export type SafeWorkload = { readonly success: true; readonly workload: Workload } | { readonly success: false; readonly issues: readonly SpecIssue[] };

/** Validates without throwing: for provider check() and for readers that collect problems. */
export function safeParseWorkload(value: unknown): SafeWorkload {
  const parsed = workloadSchema.safeParse(value);
  return parsed.success ? { success: true, workload: parsed.data } : { success: false, issues: issuesOf(parsed.error) };
}

/** Validates and fills defaults; throws WorkloadValidationError (code WORKLOAD_INVALID) listing every issue. */
export function parseWorkload(value: unknown, what = "workload"): Workload {
  const result = safeParseWorkload(value);
  if (!result.success) throw new WorkloadValidationError(what, result.issues);
  return result.workload;
}

/** The disk the machine boots from: the lowest bootOrder, else the first disk. */
export function bootDiskOf(workload: Pick<Workload, "disks">): Workload["disks"][number] | undefined {
  const ordered = workload.disks.filter((d) => d.bootOrder !== undefined).sort((a, b) => a.bootOrder! - b.bootOrder!);
  return ordered[0] ?? workload.disks[0];
}

/**
 * The disks with the boot disk first, the others in their order: how a cloud that boots its
 * first disk (an AMI's root device, an Azure VM's OS disk) lists them.
 */
export function disksBootFirst(workload: Pick<Workload, "disks">): Workload["disks"] {
  const boot = bootDiskOf(workload);
  return boot === undefined ? [] : [boot, ...workload.disks.filter((d) => d !== boot)];
}

/** Total virtual CPUs. */
export function vcpuCount(workload: Pick<Workload, "cpu">): number {
  return workload.cpu.sockets * workload.cpu.coresPerSocket;
}
