// The Azure platform's machines (machine-driver.ts): the workload's VM, so that a move away
// from Azure stops it and reads its managed disks (live-disk.ts) instead of our last page blob.
//
// The VM is the official `azure.compute.VirtualMachine` (components/placements/azure.ts), which
// Pulumi creates after our cutover, named like the workload in the placement's resource group
// and tagged `portable-workload: <workload name>`; this driver never creates or deletes one. It
// finds it by that name (a VM of that name without that tag is AZURE_VM_NOT_THE_WORKLOADS and is
// left alone), stops it, starts it again (a rollback) and reports whether it runs, from the power
// state of its instance view. An empty machineId means "the workload's VM, by name"; create
// reports the VM's ARM id, which the other calls accept too.
//
// Stopping: VirtualMachines.powerOff, never deallocate. Both keep the managed disks (what a move
// reads), but deallocating also releases the host: the temporary (resource) disk is wiped, a
// dynamic public IP is released, and starting it again (a rollback) needs capacity the region may
// no longer have (AllocationFailed). A powered-off VM keeps all three, at the price of compute
// billing while it stays stopped: a source kept after a move (`source: keep`) should be
// deallocated by whoever decides to keep it off.
// - graceful: powerOff with skipShutdown false (Azure asks the guest to shut down), waited for
//   until `gracefulTimeoutMs`; then
// - forced: powerOff with skipShutdown true (power cut). Azure lets the later operation preempt
//   the graceful one, which then fails with OperationPreempted: that answer is expected and
//   dropped, and the graceful call's client-side polling is aborted when we stop waiting for it.
// Progress is read from the instance view (PowerState/…), polled every `pollIntervalMs`: that is
// what tells a graceful shutdown that ended from one still under way.
//
// ARM cannot run here: the calls go through the narrow AzureComputeApi (compute.ts) that
// ComputeManagementClient satisfies; tests/clouds/azure/machine-driver.test.ts passes a
// recording stand-in and says what it cannot show.
import type { VirtualMachineInstanceView } from "@azure/arm-compute";
import { CloudError, PortableError } from "../../errors.ts";
import type { MachineDriver, MachineRequest } from "../../contracts/machine-driver.ts";
import { describeAzureError } from "./call.ts";
import {
  AZURE_WORKLOAD_TAG, armFind, computeClientFor, subscriptionIdOf, workloadTagOf,
  type AzureComputeApi, type AzureComputeFactory, type AzurePlacement,
} from "./compute.ts";

/** Instance-view polls while waiting for a power state; an Azure stop or start takes tens of seconds. */
export const AZURE_VM_POLL_INTERVAL_MS = 5_000;
/** How long a forced power off may take before the cutover fails (the source is left as it is). */
export const AZURE_FORCE_STOP_TIMEOUT_MS = 10 * 60_000;
/** How long a start may take to reach PowerState/running. */
export const AZURE_START_TIMEOUT_MS = 10 * 60_000;

export type AzurePowerState = "starting" | "running" | "stopping" | "stopped" | "deallocating" | "deallocated" | "unknown";
const POWER_STATES: readonly AzurePowerState[] = ["starting", "running", "stopping", "stopped", "deallocating", "deallocated"];
const DOWN: readonly AzurePowerState[] = ["stopped", "deallocated"];

/** The power state an instance view reports (its `PowerState/<state>` status). */
export function powerStateOf(view: VirtualMachineInstanceView): AzurePowerState {
  const code = view.statuses?.find((s) => s.code?.toLowerCase().startsWith("powerstate/") === true)?.code;
  const state = code?.slice("PowerState/".length).toLowerCase();
  return POWER_STATES.find((s) => s === state) ?? "unknown";
}

export interface AzureMachineDriverOptions {
  /** The compute client of a placement. @default computeClientFor (DefaultAzureCredential) */
  readonly compute?: AzureComputeFactory;
  /** @default AZURE_VM_POLL_INTERVAL_MS */
  readonly pollIntervalMs?: number;
  /** @default AZURE_FORCE_STOP_TIMEOUT_MS */
  readonly forceStopTimeoutMs?: number;
  /** @default AZURE_START_TIMEOUT_MS */
  readonly startTimeoutMs?: number;
}

interface VmRef {
  readonly resourceGroupName: string;
  readonly vmName: string;
}

interface AzureVm extends VmRef {
  readonly id: string;
  readonly powerState: AzurePowerState;
}

const VM_ID = /^\/subscriptions\/[^/]+\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachines\/([^/]+)$/i;

function azurePlacement(request: MachineRequest): AzurePlacement {
  if (request.placement.kind !== "azure") throw new PortableError("MACHINE_DRIVER_MISMATCH", `the Azure machine driver was given a ${request.placement.kind} placement`);
  return request.placement;
}

/** "" is the workload's VM (named like the workload); an ARM id names its group and VM; else a VM name. */
function vmRefOf(request: MachineRequest, placement: AzurePlacement, machineId: string): VmRef {
  if (machineId === "") return { resourceGroupName: placement.resourceGroupName, vmName: request.workload.name };
  const id = VM_ID.exec(machineId);
  if (id !== null) return { resourceGroupName: id[1]!, vmName: id[2]! };
  return { resourceGroupName: placement.resourceGroupName, vmName: machineId };
}

const where = (ref: VmRef) => `VM ${ref.vmName} in resource group ${ref.resourceGroupName}`;

/** An ARM long-running call under way: its outcome, and a way to stop polling it. */
interface Submitted {
  /** Resolves (never rejects) when the call settles; `error` is then set if it failed. */
  readonly settled: Promise<void>;
  readonly done: () => boolean;
  readonly error: () => unknown;
  /** Stops the client polling a call we no longer wait for; the operation goes on in Azure. */
  abandon(): void;
}

function submit(call: (abortSignal: AbortSignal) => PromiseLike<unknown>): Submitted {
  const controller = new AbortController();
  let done = false;
  let failed = false;
  let error: unknown;
  let started: Promise<unknown>;
  try {
    started = Promise.resolve(call(controller.signal));
  } catch (thrown) {
    started = Promise.reject(thrown);
  }
  // Always handled: a preempted or abandoned call rejects after nobody waits for it any more.
  const settled = started.then(
    () => void (done = true),
    (e: unknown) => {
      done = true;
      failed = true;
      error = e;
    },
  );
  return {
    settled,
    done: () => done,
    error: () => (failed ? error ?? new Error("failed") : undefined),
    abandon: () => {
      if (!done) controller.abort();
    },
  };
}

type WaitResult =
  | { readonly kind: "reached"; readonly state: AzurePowerState }
  | { readonly kind: "failed"; readonly error: unknown; readonly state: AzurePowerState }
  | { readonly kind: "timeout"; readonly state: AzurePowerState };

/** A driver with its own clients and timing (tests poll in milliseconds); `azureMachineDriver` is the default. */
export function createAzureMachineDriver(options: AzureMachineDriverOptions = {}): MachineDriver {
  const computeFor = options.compute ?? computeClientFor;
  const pollIntervalMs = options.pollIntervalMs ?? AZURE_VM_POLL_INTERVAL_MS;
  const forceStopTimeoutMs = options.forceStopTimeoutMs ?? AZURE_FORCE_STOP_TIMEOUT_MS;
  const startTimeoutMs = options.startTimeoutMs ?? AZURE_START_TIMEOUT_MS;

  async function clientFor(request: MachineRequest, machineId: string): Promise<{ compute: AzureComputeApi; ref: VmRef }> {
    const placement = azurePlacement(request);
    // Checked before any client exists, so a placement without it fails the same way in tests.
    subscriptionIdOf(placement);
    return { compute: await computeFor(placement), ref: vmRefOf(request, placement, machineId) };
  }

  async function powerState(compute: AzureComputeApi, ref: VmRef): Promise<AzurePowerState | undefined> {
    const view = await armFind("AZURE_VM_CALL_FAILED", "Instance view of", where(ref), () => compute.virtualMachines.instanceView(ref.resourceGroupName, ref.vmName));
    return view === undefined ? undefined : powerStateOf(view);
  }

  /** The workload's VM, or undefined when there is none; one that is not tagged for it is an error. */
  async function findVm(compute: AzureComputeApi, request: MachineRequest, ref: VmRef): Promise<AzureVm | undefined> {
    // `launch: false` places the disks only: no VM of the workload's can exist, and no ARM call is made.
    if (!azurePlacement(request).launch) return undefined;
    const vm = await armFind("AZURE_VM_CALL_FAILED", "Get", where(ref), () => compute.virtualMachines.get(ref.resourceGroupName, ref.vmName));
    if (vm === undefined) return undefined;
    const tagged = workloadTagOf(vm.tags);
    if (tagged !== request.workload.name) {
      throw new CloudError("AZURE_VM_NOT_THE_WORKLOADS", `${where(ref)} is not tagged ${AZURE_WORKLOAD_TAG}=${request.workload.name} (${tagged === undefined ? "no such tag" : `it says ${tagged}`}); it is not workload ${request.workload.name}'s machine and is left alone`, {
        context: { workload: request.workload.name, vm: ref.vmName, resourceGroup: ref.resourceGroupName, tag: tagged ?? "" },
      });
    }
    const state = await powerState(compute, ref);
    if (state === undefined) return undefined;
    return { ...ref, id: vm.id ?? "", powerState: state };
  }

  /**
   * Polls the instance view until one of `wanted`, until `timeoutMs`, or until `call` (when
   * given) fails; a wanted state wins over a failure seen at the same time.
   */
  async function waitFor(compute: AzureComputeApi, ref: VmRef, wanted: readonly AzurePowerState[], timeoutMs: number, call?: Submitted): Promise<WaitResult> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await powerState(compute, ref);
      if (state === undefined) {
        throw new CloudError("AZURE_VM_NOT_FOUND", `${where(ref)} no longer exists while waiting for ${wanted.join(" or ")}`, { context: { vm: ref.vmName, resourceGroup: ref.resourceGroupName } });
      }
      if (wanted.includes(state)) return { kind: "reached", state };
      if (call?.error() !== undefined) return { kind: "failed", error: call.error(), state };
      if (Date.now() >= deadline) return { kind: "timeout", state };
      const pause = new Promise<void>((resolve) => setTimeout(resolve, Math.min(pollIntervalMs, Math.max(0, deadline - Date.now()))));
      await (call === undefined || call.done() ? pause : Promise.race([pause, call.settled]));
    }
  }

  const stopTimeout = (ref: VmRef, state: AzurePowerState, what: string) =>
    new CloudError("AZURE_STOP_TIMEOUT", `${where(ref)}: still ${state} ${forceStopTimeoutMs} ms ${what}`, { context: { vm: ref.vmName, resourceGroup: ref.resourceGroupName, state, timeoutMs: forceStopTimeoutMs } });
  const startTimeout = (ref: VmRef, state: AzurePowerState, what: string) =>
    new CloudError("AZURE_START_TIMEOUT", `${where(ref)}: still ${state} ${startTimeoutMs} ms ${what}`, { context: { vm: ref.vmName, resourceGroup: ref.resourceGroupName, state, timeoutMs: startTimeoutMs } });

  return {
    // The VM is the official resource, created by Pulumi after the cutover: report the one that
    // exists (a kept one, or after `up`), else nothing yet. Never creates a VM.
    async create(request) {
      const { compute, ref } = await clientFor(request, "");
      const vm = await findVm(compute, request, ref);
      return { kind: "azure" as const, machineId: vm?.id ?? "", running: vm !== undefined && (vm.powerState === "running" || vm.powerState === "starting") };
    },

    async stop(request, machineId, gracefulTimeoutMs) {
      const { compute, ref } = await clientFor(request, machineId);
      const vm = await findVm(compute, request, ref);
      if (vm === undefined || DOWN.includes(vm.powerState)) return { graceful: true };
      let state = vm.powerState;
      if (state === "deallocating") {
        // Someone's deallocate (a guest shutdown first, by default) is taking it down already.
        const ended = await waitFor(compute, ref, DOWN, forceStopTimeoutMs);
        if (ended.kind !== "reached") throw stopTimeout(ref, ended.state, "after it began deallocating");
        return { graceful: true };
      }
      if (state === "starting") {
        // Let a start finish before stopping, as a stop in the middle of it may be refused.
        const started = await waitFor(compute, ref, ["running", ...DOWN], startTimeoutMs);
        if (started.kind !== "reached") throw startTimeout(ref, started.state, "after it began starting; cannot stop it");
        if (DOWN.includes(started.state)) return { graceful: true };
        state = started.state;
      }
      let gracefulError: unknown;
      if (gracefulTimeoutMs > 0) {
        // One already `stopping` is on its way down: wait for it rather than ask again.
        const graceful = state === "stopping"
          ? undefined
          : submit((abortSignal) => compute.virtualMachines.powerOff(ref.resourceGroupName, ref.vmName, { skipShutdown: false, abortSignal }));
        const ended = await waitFor(compute, ref, DOWN, gracefulTimeoutMs, graceful);
        graceful?.abandon();
        if (ended.kind === "reached") return { graceful: true };
        // Timed out, or the graceful call was refused: cut the power.
        if (ended.kind === "failed") gracefulError = ended.error;
      }
      const forced = submit((abortSignal) => compute.virtualMachines.powerOff(ref.resourceGroupName, ref.vmName, { skipShutdown: true, abortSignal }));
      const ended = await waitFor(compute, ref, DOWN, forceStopTimeoutMs, forced);
      forced.abandon();
      if (ended.kind === "failed") {
        throw new CloudError("AZURE_VM_POWER_OFF_FAILED", `Power off (skipShutdown) ${where(ref)} failed: ${describeAzureError(ended.error)}${gracefulError === undefined ? "" : `; the graceful power off had failed too: ${describeAzureError(gracefulError)}`}`, {
          context: { vm: ref.vmName, resourceGroup: ref.resourceGroupName, state: ended.state },
          cause: ended.error,
        });
      }
      if (ended.kind === "timeout") throw stopTimeout(ref, ended.state, "after a forced power off");
      return { graceful: false };
    },

    async isRunning(request, machineId) {
      const { compute, ref } = await clientFor(request, machineId);
      const vm = await findVm(compute, request, ref);
      return vm !== undefined && (vm.powerState === "running" || vm.powerState === "starting");
    },

    async start(request, machineId) {
      const { compute, ref } = await clientFor(request, machineId);
      const vm = await findVm(compute, request, ref);
      if (vm === undefined) {
        throw new CloudError("AZURE_VM_NOT_FOUND", `workload ${request.workload.name}: no ${where(ref)} to start`, {
          context: { workload: request.workload.name, vm: ref.vmName, resourceGroup: ref.resourceGroupName },
        });
      }
      if (vm.powerState === "running") return;
      if (vm.powerState === "stopping" || vm.powerState === "deallocating") {
        // A start in the middle of a stop may be refused or undone: let the stop end first.
        const stopped = await waitFor(compute, ref, DOWN, forceStopTimeoutMs);
        if (stopped.kind !== "reached") throw stopTimeout(ref, stopped.state, "after it began stopping; cannot start it");
      }
      const call = vm.powerState === "starting" ? undefined : submit((abortSignal) => compute.virtualMachines.start(ref.resourceGroupName, ref.vmName, { abortSignal }));
      const ended = await waitFor(compute, ref, ["running"], startTimeoutMs, call);
      call?.abandon();
      if (ended.kind === "failed") {
        throw new CloudError("AZURE_VM_START_FAILED", `Start ${where(ref)} failed: ${describeAzureError(ended.error)}`, {
          context: { vm: ref.vmName, resourceGroup: ref.resourceGroupName, state: ended.state },
          cause: ended.error,
        });
      }
      if (ended.kind === "timeout") throw startTimeout(ref, ended.state, "after Start");
    },

    // Nothing to do: the VM is the official azure-native VirtualMachine, and Pulumi deletes it
    // (with its managed disks) when the placement leaves Azure. Deleting it here would race the
    // engine.
    async destroy(request) {
      azurePlacement(request);
    },

    wantsRunning: (placement) => placement.kind === "azure" && placement.launch,
    createdAfterCutover: true,
  };
}

export const azureMachineDriver: MachineDriver = createAzureMachineDriver();
