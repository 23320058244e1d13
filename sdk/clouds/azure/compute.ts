// The ARM side of an azure placement's machine and its managed disks: the narrow part of
// ComputeManagementClient (@azure/arm-compute 24) that machine-driver.ts and live-disk.ts call,
// the subscription taken from the placement, and the one way ARM errors become ours.
//
// ARM cannot run here (DESIGN.md, "Real parts"), so callers take these interfaces, not the
// client: ComputeManagementClient satisfies them (computeClientFor), tests pass a recording
// stand-in. The long-running operations (powerOff, start, snapshots.createOrUpdate, grantAccess,
// revokeAccess, delete) are arm-compute 24's PollerLike: the request is sent when the call is
// made and awaiting it polls to the end. Their `begin…` twins are deprecated in that version.
import type { AccessUri, Disk, GrantAccessData, Snapshot, VirtualMachine, VirtualMachineInstanceView } from "@azure/arm-compute";
import { CloudError, InvalidArgsError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import { describeAzureError, statusOf } from "./call.ts";

export type AzurePlacement = Extract<Placement, { kind: "azure" }>;

/** Options every long-running call takes: stop polling (the operation itself goes on in Azure). */
export interface ArmLroOptions {
  readonly abortSignal?: AbortSignal;
  /** The client's poll interval when the service names none. */
  readonly updateIntervalInMs?: number;
}

export interface AzureVirtualMachinesApi {
  get(resourceGroupName: string, vmName: string): PromiseLike<VirtualMachine>;
  instanceView(resourceGroupName: string, vmName: string): PromiseLike<VirtualMachineInstanceView>;
  /** skipShutdown false: the guest is asked to shut down first; true: power is cut. */
  powerOff(resourceGroupName: string, vmName: string, options?: ArmLroOptions & { readonly skipShutdown?: boolean }): PromiseLike<void>;
  start(resourceGroupName: string, vmName: string, options?: ArmLroOptions): PromiseLike<void>;
}

export interface AzureDisksApi {
  get(resourceGroupName: string, diskName: string): PromiseLike<Disk>;
}

export interface AzureSnapshotsApi {
  createOrUpdate(resourceGroupName: string, snapshotName: string, snapshot: Snapshot, options?: ArmLroOptions): PromiseLike<Snapshot>;
  grantAccess(resourceGroupName: string, snapshotName: string, grantAccessData: GrantAccessData, options?: ArmLroOptions): PromiseLike<AccessUri>;
  revokeAccess(resourceGroupName: string, snapshotName: string, options?: ArmLroOptions): PromiseLike<void>;
  delete(resourceGroupName: string, snapshotName: string, options?: ArmLroOptions): PromiseLike<void>;
  /** Polled while an incremental snapshot's background copy runs (completionPercent < 100). */
  get?(resourceGroupName: string, snapshotName: string): PromiseLike<Snapshot>;
}

/** The part of ComputeManagementClient used by the Azure machine driver and live-disk reads. */
export interface AzureComputeApi {
  readonly virtualMachines: AzureVirtualMachinesApi;
  readonly disks: AzureDisksApi;
  readonly snapshots: AzureSnapshotsApi;
}

/** What makes the compute client of a placement; tests pass a stand-in. */
export type AzureComputeFactory = (placement: AzurePlacement) => AzureComputeApi | Promise<AzureComputeApi>;

/** The tag the azure placement puts on its VM and managed disks (components/placements/azure.ts). */
export const AZURE_WORKLOAD_TAG = "portable-workload";

/**
 * The subscription of a placement: ARM ids carry it (`/subscriptions/<id>/resourceGroups/…`),
 * and storageAccountId is the one ARM id every azure placement has.
 */
export function subscriptionIdOf(placement: AzurePlacement): string {
  const match = /^\/subscriptions\/([^/]+)\//i.exec(placement.storageAccountId);
  if (match === null || match[1]!.trim() === "") {
    throw new InvalidArgsError("AZURE_SUBSCRIPTION_UNKNOWN", `placement.storageAccountId "${placement.storageAccountId}" is not an ARM id (/subscriptions/<subscription id>/resourceGroups/…/providers/Microsoft.Storage/storageAccounts/<name>); the subscription of the VM and its disks is taken from it`, {
      context: { storageAccountId: placement.storageAccountId },
    });
  }
  return match[1]!;
}

const clients = new Map<string, Promise<AzureComputeApi>>();

/**
 * ComputeManagementClient for the placement's subscription, with DefaultAzureCredential as
 * managed-disk.ts's callers use it; one per subscription per process, so the credential's token
 * cache serves every call of a move.
 */
export function computeClientFor(placement: AzurePlacement): Promise<AzureComputeApi> {
  const subscriptionId = subscriptionIdOf(placement);
  let client = clients.get(subscriptionId);
  if (client === undefined) {
    client = (async () => {
      const [{ ComputeManagementClient }, { DefaultAzureCredential }] = await Promise.all([import("@azure/arm-compute"), import("@azure/identity")]);
      const api: AzureComputeApi = new ComputeManagementClient(new DefaultAzureCredential(), subscriptionId);
      return api;
    })();
    client.catch(() => clients.delete(subscriptionId));
    clients.set(subscriptionId, client);
  }
  return client;
}

/**
 * Makes `client` the one computeClientFor() answers for `subscriptionId`, until the returned
 * function is called. For a stand-in of ARM, which nothing runs here: a test moves a workload
 * through the registry's own drivers with a recording fake (tests/clouds/azure/machine-driver.test.ts).
 */
export function provideComputeClient(subscriptionId: string, client: AzureComputeApi): () => void {
  const provided = Promise.resolve(client);
  clients.set(subscriptionId, provided);
  return () => {
    if (clients.get(subscriptionId) === provided) clients.delete(subscriptionId);
  };
}

/** An ARM answer that the resource is not there (a deleted VM, a disk never created). */
export function isArmNotFound(error: unknown): boolean {
  if (statusOf(error) === 404) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return code === "ResourceNotFound" || code === "NotFound" || code === "ResourceGroupNotFound";
}

/**
 * Runs one ARM call. ARM's own client retries throttling and 5xx; what reaches here is final,
 * and becomes `code` naming the operation and the resource.
 */
export async function armCall<T>(code: string, operation: string, resource: string, fn: () => PromiseLike<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new CloudError(code, `${operation} ${resource} failed: ${describeAzureError(error)}`, {
      context: { operation, resource, status: statusOf(error), azureCode: String((error as { code?: unknown } | null)?.code ?? "") },
      cause: error,
    });
  }
}

/** Like armCall, but a resource that is not there is undefined. */
export async function armFind<T>(code: string, operation: string, resource: string, fn: () => PromiseLike<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (error) {
    if (isArmNotFound(error)) return undefined;
    return armCall(code, operation, resource, () => Promise.reject(error));
  }
}

/** The value of the placement's workload tag (tag names are case-insensitive in Azure). */
export function workloadTagOf(tags: Readonly<Record<string, string>> | undefined): string | undefined {
  if (tags === undefined) return undefined;
  for (const [key, value] of Object.entries(tags)) if (key.toLowerCase() === AZURE_WORKLOAD_TAG) return value;
  return undefined;
}
