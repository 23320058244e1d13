// The machine half of a placement, written once over the platforms' machine drivers
// (clouds/machine-driver.ts, chosen in clouds/registry.ts): create and start it on its placed
// disks, check it came up, stop, destroy, and move it: the cutover from the machine on the old
// placement to a new one (sdk/migrate's cutover: stop the source, final delta of every disk,
// verify, start the target, health check, rollback on failure). Platforms without a machine
// driver (AWS, Azure: the official providers' resources) have no machine here.
import { PortableError } from "../errors.ts";
import type { Placement } from "../spec/placement.ts";
import type { Workload } from "../spec/workload.ts";
import { machineDriver } from "../clouds/registry.ts";
import type { DestroyMachineOptions, MachineRequest, MachineState, PlacedDiskRef } from "../clouds/machine-driver.ts";
import { vsphereConnectionFromEnv, type VsphereConnection, type VsphereSettings } from "../clouds/vsphere/disk-url.ts";
import { placeDisk, recordTimings, removeDisk, type AppliedFixups, type DiskFixups } from "./disk-placement.ts";
import { cutover, CutoverError, type CutoverRecord } from "./migrate.ts";
import { plainName } from "./targets.ts";
import type { DiskReplication, HealthResult, Machine } from "./types.ts";
import type { ReplicateProgress } from "../transfer/replicate.ts";

export type { DestroyMachineOptions, MachineRequest, MachineState, PlacedDiskRef } from "../clouds/machine-driver.ts";

/** A machine's name where the platform takes one (a local machine's folder and QEMU name). */
function machineName(workload: Workload): string {
  return plainName(workload.name).slice(0, 63);
}

/** Creates the machine on its placed disks and starts it (health-checked) when the placement says so. */
export async function createMachine(request: MachineRequest): Promise<MachineState> {
  const driver = await machineDriver(request.placement.kind);
  if (driver === undefined) return { kind: request.placement.kind, machineId: "", running: false };
  const state = await driver.create(request, machineName(request.workload));
  if (request.stateDir !== undefined && state.bootSeconds !== undefined) await recordTimings(request.stateDir, request.workload.name, state.kind, { bootSeconds: state.bootSeconds });
  return state;
}

/** Stops the machine: graceful first (ACPI / guest shutdown), then hard. */
export async function stopMachine(request: MachineRequest, machineId: string, gracefulTimeoutMs = 30_000): Promise<{ graceful: boolean }> {
  const started = performance.now();
  const result = await stopMachineOnly(request, machineId, gracefulTimeoutMs);
  if (request.stateDir !== undefined) await recordTimings(request.stateDir, request.workload.name, request.placement.kind, { stopSeconds: (performance.now() - started) / 1000 });
  return result;
}

async function stopMachineOnly(request: MachineRequest, machineId: string, gracefulTimeoutMs: number): Promise<{ graceful: boolean }> {
  const driver = await machineDriver(request.placement.kind);
  return driver === undefined ? { graceful: true } : driver.stop(request, machineId, gracefulTimeoutMs);
}

export async function isRunning(request: MachineRequest, machineId: string): Promise<boolean> {
  const driver = await machineDriver(request.placement.kind);
  return driver !== undefined && (await driver.isRunning(request, machineId));
}

/** Starts a stopped machine again (a rollback). */
export async function restartMachine(request: MachineRequest, machineId: string): Promise<void> {
  await (await machineDriver(request.placement.kind))?.start(request, machineId);
}

/**
 * Deletes the machine (not its disks: those are portable:Disk resources). A local machine is
 * stopped and its folder (logs, QEMU arguments, UEFI variables, sockets) removed with it.
 */
export async function destroyMachine(request: MachineRequest, machineId: string, options: DestroyMachineOptions = {}): Promise<void> {
  if (machineId === "") return;
  await (await machineDriver(request.placement.kind))?.destroy(request, machineId, options);
}

export interface MoveRequest {
  readonly from: MachineRequest & { readonly machineId: string };
  /** The new placement; its disks' `location` is filled in by the final pass. */
  readonly to: MachineRequest;
  readonly stateDir: string;
  readonly verify: "full" | "sampled" | "none";
  /** Delete the old machine and its disks after a successful move (else they stay, stopped). */
  readonly deleteSource: boolean;
  readonly gracefulTimeoutMs?: number;
  /** A progress callback for each disk's final pass (it runs while the source is down). */
  readonly onDiskProgress?: (diskId: string) => ((progress: ReplicateProgress) => void) | undefined;
  /** The boot disk's guest fixups: applied to the final state, and their time recorded. */
  readonly fixups?: DiskFixups & { readonly disk: string };
  /** Steps worth a log line (each fixup). */
  readonly onStep?: (line: string) => void;
}

export interface MoveResult {
  readonly record: CutoverRecord;
  readonly state: MachineState;
  readonly disks: readonly PlacedDiskRef[];
}

/**
 * The cutover of a placement change. The disks were pre-copied (warm) by their own resources;
 * here the source stops, each disk gets its final delta (placeDisk from the old replica: a
 * block delta, or a full copy for vSphere) and is verified, and the new machine starts and must
 * pass its health check. Any failure rolls back: the new machine is removed, the old one
 * started again, and the record says so.
 */
export async function moveMachine(request: MoveRequest): Promise<MoveResult> {
  const { from, to } = request;
  const placed = new Map<string, PlacedDiskRef>();
  let state: MachineState | undefined;
  const verifiedBlocks = new Map<string, number>();
  const fixupsApplied = new Map<string, AppliedFixups>();
  const disks: DiskReplication[] = to.disks.map((disk) => {
    const old = from.disks.find((d) => d.id === disk.id);
    if (old === undefined) throw new PortableError("MOVE_DISK_UNKNOWN", `move ${to.workload.name}: disk ${disk.id} has no copy on the old placement`);
    return {
      key: disk.id,
      async pass() {
        const onProgress = request.onDiskProgress?.(disk.id);
        const result = await placeDisk({
          workload: to.workload.name,
          disk: disk.id,
          ...(onProgress === undefined ? {} : { onProgress }),
          source: { replicaOf: old.target },
          target: disk.target,
          stateDir: request.stateDir,
          verify: request.verify === "full" ? { mode: "full" } : request.verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: 64 },
          ...(from.vsphere ?? to.vsphere ? { vsphere: (to.vsphere ?? from.vsphere)! } : {}),
          // The final state gets the fixups again (no test boot: the real boot follows at once).
          ...(request.fixups?.disk === disk.id ? { fixups: { ...request.fixups, testBoot: undefined } } : {}),
          ...(request.onStep ? { onStep: request.onStep } : {}),
        });
        if (result.fixups !== undefined) fixupsApplied.set(disk.id, result.fixups);
        placed.set(disk.id, { id: disk.id, location: result.location, target: disk.target });
        verifiedBlocks.set(disk.id, result.verifiedBlocks);
        return result;
      },
      // placeDisk read the target back already; report what it checked.
      async verify(policy) {
        return { mode: policy.mode, blocksChecked: verifiedBlocks.get(disk.id) ?? 0, bytesRead: 0, mismatches: [], ok: true, seconds: 0 };
      },
    };
  });
  const source: Machine = {
    name: `${from.placement.kind}:${from.machineId}`,
    isRunning: () => isRunning(from, from.machineId),
    start: () => restartMachine(from, from.machineId),
    stop: (options) => stopMachine(from, from.machineId, options?.gracefulTimeoutMs),
  };
  const target: Machine = {
    name: `${to.placement.kind}:${to.workload.name}`,
    isRunning: async () => state !== undefined && state.running,
    async start() {
      state = await createMachine({ ...to, disks: to.disks.map((d) => placed.get(d.id) ?? d) });
    },
    async stop() {
      if (state !== undefined) await destroyMachine(to, state.machineId);
      return { graceful: true };
    },
  };
  const withFixups = (record: CutoverRecord): CutoverRecord => {
    const [disk, applied] = [...fixupsApplied.entries()][0] ?? [];
    if (disk !== undefined && applied !== undefined) record.fixups = { disk, seconds: applied.seconds, applied: applied.outcomes.map((o) => ({ kind: o.kind, detail: o.detail, seconds: o.seconds })) };
    return record;
  };
  const record = withFixups(await cutover({
    source,
    target,
    disks,
    verify: request.verify === "full" ? { mode: "full" } : request.verify === "none" ? { mode: "none" } : { mode: "sampled", blocks: 64 },
    gracefulTimeoutMs: request.gracefulTimeoutMs ?? 30_000,
    healthCheck: async (): Promise<HealthResult> => {
      if (state === undefined) return { ok: false, detail: "the target machine was not created" };
      if ((await machineDriver(to.placement.kind))?.wantsRunning(to.placement) !== true) return { ok: true, detail: "created (not started, as the placement asks)" };
      // A local guest that printed its marker may have powered off by itself: the marker is the proof.
      return { ok: state.running, detail: state.bootSeconds === undefined ? "running" : `up in ${state.bootSeconds.toFixed(1)} s` };
    },
  }).catch((error: unknown) => {
    if (error instanceof CutoverError) withFixups(error.record);
    throw error;
  }));
  if (request.deleteSource) {
    await destroyMachine(from, from.machineId);
    for (const disk of from.disks) {
      await removeDisk({ workload: from.workload.name, disk: disk.id, target: disk.target, stateDir: request.stateDir, virtualSizeBytes: 0, ...(from.vsphere ? { vsphere: from.vsphere } : {}) });
    }
  }
  return { record, state: state!, disks: to.disks.map((d) => placed.get(d.id) ?? d) };
}

/** The vCenter connection of a vsphere placement, without its password. */
export function vsphereSettingsFor(placement: Placement): VsphereSettings | undefined {
  if (placement.kind !== "vsphere") return undefined;
  return {
    url: placement.url,
    username: placement.username,
    insecure: placement.insecure,
    passwordEnv: placement.passwordEnv,
    ...(placement.caPem === undefined ? {} : { caPem: placement.caPem }),
    ...(placement.thumbprint === undefined ? {} : { thumbprint: placement.thumbprint }),
  };
}

/** The vCenter connection of a vsphere placement, its password read from the environment now. */
export function vsphereConnectionFor(placement: Placement, env: NodeJS.ProcessEnv = process.env): VsphereConnection | undefined {
  const settings = vsphereSettingsFor(placement);
  return settings === undefined ? undefined : vsphereConnectionFromEnv(settings, env);
}
