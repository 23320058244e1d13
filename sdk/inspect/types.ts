// Guest readiness inspection: the data a report carries (issue 11). Plain JSON-able objects, so
// the CLI prints them and a Pulumi preview can log them unchanged.

export type Severity = "error" | "warning" | "info";

/** One thing the inspection found, with where it saw it and what to do about it. */
export interface Finding {
  readonly severity: Severity;
  /** Stable UPPER_SNAKE code, e.g. `INSPECT_DRIVER_MISSING`; tests assert on it. */
  readonly code: string;
  readonly message: string;
  /** Where the evidence is: `disk:gpt`, `p2:/etc/fstab`, `p1:/lib/modules/6.1.0/…`. */
  readonly evidencePath?: string;
  readonly fixHint?: string;
  /** The target this finding is about, for target rules. */
  readonly target?: InspectTarget;
  /** The kernel modules it is about (INSPECT_INITRAMFS_DRIVER_MISSING): what a fixup adds. */
  readonly drivers?: readonly string[];
}

/** Targets the readiness rules know. `local` is the project's QEMU/KVM host, `kvm` any KVM host. */
export const INSPECT_TARGETS = ["aws", "azure", "vsphere", "local", "kvm"] as const;
export type InspectTarget = (typeof INSPECT_TARGETS)[number];

export type BootMode = "bios" | "uefi" | "hybrid" | "unknown";

export type FilesystemType = "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "ntfs" | "vfat" | "swap" | "lvm2-pv" | "unknown";

export interface PartitionInfo {
  /** 1-based, as Linux numbers them (logical MBR partitions start at 5). */
  readonly number: number;
  readonly scheme: "mbr" | "gpt" | "none";
  readonly startBytes: number;
  readonly lengthBytes: number;
  /** `0x83` for MBR, the type GUID (upper case) for GPT, `whole-disk` without a table. */
  readonly type: string;
  /** e.g. `linux`, `efi-system`, `bios-boot`, `extended`, `microsoft-basic-data`. */
  readonly typeName: string;
  readonly name?: string;
  readonly bootable?: boolean;
}

export interface FilesystemInfo {
  readonly partition: number;
  readonly type: FilesystemType;
  readonly uuid?: string;
  readonly label?: string;
  /** Where the inspection decided this filesystem is mounted in the guest, if it knows. */
  readonly role?: "root" | "boot" | "esp" | "windows" | "swap";
}

export interface KernelInfo {
  readonly version: string;
  /** Evidence path of the modules directory. */
  readonly modulesPath: string;
  readonly builtinCount: number;
  readonly moduleFileCount: number;
  /** True when this is the kernel the boot loader starts by default (or the newest). */
  readonly default: boolean;
  /** The readiness drivers this kernel has, and how. */
  readonly drivers: Readonly<Record<string, "builtin" | "module">>;
}

export interface OsInfo {
  readonly family: "linux" | "windows" | "unknown";
  /** os-release ID, e.g. `debian`, or `windows`. */
  readonly distro?: string;
  readonly version?: string;
  readonly prettyName?: string;
}

export interface TargetReadiness {
  readonly target: InspectTarget;
  readonly ready: boolean;
  /** Each missing requirement as its alternatives, e.g. `virtio_blk|virtio_scsi`. */
  readonly missingDrivers: readonly string[];
}

export interface ReadinessReport {
  readonly os: OsInfo;
  readonly bootMode: BootMode;
  readonly partitionScheme: "mbr" | "gpt" | "none";
  readonly partitions: readonly PartitionInfo[];
  readonly filesystems: readonly FilesystemInfo[];
  readonly kernels: readonly KernelInfo[];
  readonly readiness: readonly TargetReadiness[];
  readonly findings: readonly Finding[];
}
