// Contracts floor (sdk/contracts): the shapes the platform drivers (sdk/clouds) implement and
// sdk/transfer and sdk/migrate use. It imports only sdk/disk, sdk/spec and sdk/errors.
//
// The machine half of a platform driver: what sdk/migrate's create, cutover and removal need of
// a machine. The warm loop and the cutover are written once, over this contract; each
// platform's driver (clouds/<kind>/machine-driver.ts) knows how its machines start, stop and go
// away: local QEMU and vSphere VMs that we create, an EC2 instance or an Azure VM that the
// official provider creates (we stop and start it when it is a move's source).
import type { Placement } from "../spec/placement.ts";
import type { Workload } from "../spec/workload.ts";
import type { VsphereConnection } from "./vsphere-connection.ts";

export interface PlacedDiskRef {
  readonly id: string;
  /** Where the disk is: a file path (local) or a datastore path (vsphere). */
  readonly location: string;
  /** The target string it was placed with (migrate/targets.ts). */
  readonly target: string;
}

export interface MachineRequest {
  readonly workload: Workload;
  /** Where measured boot and stop times are kept for the next plan. */
  readonly stateDir?: string;
  readonly placement: Placement;
  readonly disks: readonly PlacedDiskRef[];
  readonly vsphere?: VsphereConnection;
}

export interface MachineState {
  readonly kind: Placement["kind"];
  /** The local machine name or the vSphere VM's managed object id; "" for clouds. */
  readonly machineId: string;
  readonly running: boolean;
  /** Seconds from start to a passing health check, when one ran. */
  readonly bootSeconds?: number;
}

export interface DestroyMachineOptions {
  /**
   * Keep a local machine's folder: its UEFI variable store (the NVRAM that holds boot entries)
   * and logs. For a machine recreated at once on the same placement and disks (a new shape);
   * a machine that goes away for good leaves nothing. @default false
   */
  readonly keepLocalState?: boolean;
}

export interface MachineDriver {
  /**
   * Creates the machine on its placed disks, named `name` where the platform takes a name, and
   * starts it (health-checked: a boot marker on a local serial console) when the placement says so.
   */
  create(request: MachineRequest, name: string): Promise<MachineState>;
  /** Stops it: graceful first (ACPI, guest shutdown) for up to `gracefulTimeoutMs`, then hard. */
  stop(request: MachineRequest, machineId: string, gracefulTimeoutMs: number): Promise<{ graceful: boolean }>;
  isRunning(request: MachineRequest, machineId: string): Promise<boolean>;
  /** Starts a stopped machine again (a rollback). */
  start(request: MachineRequest, machineId: string): Promise<void>;
  /** Deletes the machine, not its disks (those are portable:Disk resources). */
  destroy(request: MachineRequest, machineId: string, options: DestroyMachineOptions): Promise<void>;
  /** True when the placement asks for a running machine, so a health check expects one. */
  wantsRunning(placement: Placement): boolean;
  /**
   * The machine is the official provider's resource, created by Pulumi after the cutover from
   * the disks it placed (an EC2 instance): a move's target has none yet, so this driver only
   * stops, starts and reads the machine of a source.
   */
  readonly createdAfterCutover?: boolean;
  /**
   * The workload's machine on this placement by its name, when there is one: what an
   * interrupted cutover may have left there. Only where it is ours without doubt (a local
   * datastore folder; a vSphere VM whose every disk is one of the workload's); absent on the
   * clouds, whose machines Pulumi creates.
   */
  find?(request: MachineRequest, name: string): Promise<string | undefined>;
}
