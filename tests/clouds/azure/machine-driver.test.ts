// The Azure machine driver (sdk/clouds/azure/machine-driver.ts) and point-in-time reads of a
// workload's managed disks (sdk/clouds/azure/live-disk.ts).
//
// ARM cannot run here (DESIGN.md, "Real parts"), so ARM is a recording fake of exactly the
// operations the code calls: virtualMachines get / instanceView / powerOff / start, disks get,
// snapshots createOrUpdate / grantAccess / revokeAccess / delete. Bytes are real: each managed
// disk is an Azurite page blob holding a fixed VHD of known content; the fake's snapshot copies
// that blob's page ranges into a new page blob, and its grant answers a SAS URL to the copy that
// goes through a recording proxy (helpers.ts startRecordingProxy), so every read our page-blob
// reader makes is counted, and the order of ARM calls against those reads is asserted.
//
// What the fake stands in for, and so cannot show: Azure's power-state machine (here a VM moves
// to its next state after a set number of instance-view polls), the guest's own shutdown, the
// preemption of a graceful power off by a forced one (the fake rejects the earlier call with
// OperationPreempted, as Azure documents), that Azure's snapshot holds the guest's writes up to
// the power off, the real timings, ARM's own refusals and throttling, and a revoked SAS ceasing to
// work (Azurite's SAS stays valid until it expires).
import assert from "node:assert/strict";
import { createHash, createCipheriv } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { AccessUri, Disk, GrantAccessData, Snapshot, VirtualMachine, VirtualMachineInstanceView } from "@azure/arm-compute";
import { BlobSASPermissions, type ContainerClient } from "@azure/storage-blob";
import { isPortableError } from "../../../sdk/errors.ts";
import type { MachineRequest } from "../../../sdk/contracts/machine-driver.ts";
import type { DiskSource, Extent } from "../../../sdk/disk/types.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { placementSchema } from "../../../sdk/spec/placement.ts";
import { parseWorkload, type Workload } from "../../../sdk/spec/workload.ts";
import { createPageBlobSink } from "../../../sdk/clouds/azure/page-blob-sink.ts";
import type { AzureComputeApi, AzurePlacement, ArmLroOptions } from "../../../sdk/clouds/azure/compute.ts";
import { provideComputeClient, subscriptionIdOf } from "../../../sdk/clouds/azure/compute.ts";
import { moveMachine, placeWorkload } from "../../../sdk/migrate/machine-placement.ts";
import { diskTargetFor } from "../../../sdk/migrate/targets.ts";
import { fileSha256, withTempDir } from "../../harness/disk.ts";
import { azureMachineDriver, createAzureMachineDriver, powerStateOf, type AzurePowerState } from "../../../sdk/clouds/azure/machine-driver.ts";
import { openWorkloadManagedDisk, pointInTimeSnapshotName, POINT_IN_TIME_PURPOSE, POINT_IN_TIME_TAG, sasDurationFor } from "../../../sdk/clouds/azure/live-disk.ts";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { containerFor, MiB, startRecordingProxy, type RecordingProxy } from "./helpers.ts";

const SUBSCRIPTION = "00000000-1111-2222-3333-444444444444";
const RG = "rg-move";
const LOCATION = "westeurope";
const DISK_BYTES = 8 * MiB;

// ---------------------------------------------------------------------------------------------
// Known disk content: deterministic bytes, sparse (written regions and never-written zeros).

function keystream(seed: number, lengthBytes: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(seed, 0);
  return createCipheriv("aes-256-ctr", Buffer.alloc(32, seed), iv).update(Buffer.alloc(lengthBytes));
}

/** The whole disk as bytes: random first MiB, a constant MiB at 5 MiB, one sector at the end. */
function knownDisk(seed: number): Buffer {
  const data = Buffer.alloc(DISK_BYTES);
  keystream(seed, MiB).copy(data, 0);
  data.fill(seed, 5 * MiB, 6 * MiB);
  data.fill(0xee, DISK_BYTES - 512);
  return data;
}

function memorySource(data: Buffer): DiskSource {
  return {
    format: "raw",
    virtualSizeBytes: data.length,
    async *extents(): AsyncGenerator<Extent> {
      yield { offsetBytes: 0, lengthBytes: data.length, kind: "data" };
    },
    read: async (o, l) => Buffer.from(data.subarray(o, o + l)),
    close: async () => {},
  };
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/** Reads a whole source the way a pass does (extents, then data reads) and hashes it. */
async function hashThrough(source: DiskSource): Promise<string> {
  const out = Buffer.alloc(source.virtualSizeBytes);
  for await (const extent of source.extents()) {
    if (extent.kind !== "data") continue;
    for (let at = extent.offsetBytes; at < extent.offsetBytes + extent.lengthBytes; at += 4 * MiB) {
      const length = Math.min(4 * MiB, extent.offsetBytes + extent.lengthBytes - at);
      (await source.read(at, length)).copy(out, at);
    }
  }
  return sha256(out);
}

// ---------------------------------------------------------------------------------------------
// The recording fake of ARM.

interface ArmCall {
  readonly op: string;
  readonly args: readonly unknown[];
  /** Reads of any SAS through the proxy before this call. */
  readonly readsBefore: number;
  /** Each VM's power state when the call came in. */
  readonly vmStates: Readonly<Record<string, AzurePowerState>>;
}

interface FakeVm {
  readonly name: string;
  readonly id: string;
  readonly tags: Record<string, string>;
  state: AzurePowerState;
  /** A guest that shuts down when asked (powerOff without skipShutdown). */
  guestShutsDown: boolean;
  /** A forced power off that completes. */
  forcedWorks: boolean;
  pending?: { to: AzurePowerState; polls: number; resolve: () => void; reject: (e: unknown) => void; what: string };
}

interface FakeDisk {
  readonly name: string;
  readonly id: string;
  readonly tags: Record<string, string>;
  readonly blob: string;
}

const armError = (statusCode: number, code: string, message: string) => Object.assign(new Error(message), { statusCode, code });

class FakeArm {
  readonly calls: ArmCall[] = [];
  readonly vms = new Map<string, FakeVm>();
  readonly disks = new Map<string, FakeDisk>();
  readonly snapshotsMade = new Map<string, { blob: string; source: string }>();
  readonly aborted: string[] = [];
  /** The next call of an op fails with this. */
  readonly failNext = new Map<string, Error>();
  /** Grants answer a SAS to a blob that does not exist. */
  brokenSas = false;

  private readonly direct: ContainerClient;
  private readonly viaProxy: ContainerClient;
  private readonly reads: () => number;
  private readonly prefix: string;

  constructor(direct: ContainerClient, viaProxy: ContainerClient, reads: () => number, prefix: string) {
    this.direct = direct;
    this.viaProxy = viaProxy;
    this.reads = reads;
    this.prefix = prefix;
  }

  addVm(name: string, state: AzurePowerState, tags: Record<string, string> = { "portable-workload": name }): FakeVm {
    const vm: FakeVm = { name, id: `/subscriptions/${SUBSCRIPTION}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines/${name}`, tags, state, guestShutsDown: true, forcedWorks: true };
    this.vms.set(name, vm);
    return vm;
  }

  /** A managed disk: a fixed VHD page blob holding `data`. */
  async addDisk(name: string, data: Buffer, workload: string): Promise<FakeDisk> {
    const blob = `${this.prefix}/disks/${name}.vhd`;
    await convert(memorySource(data), await createPageBlobSink(this.direct.getPageBlobClient(blob), { virtualSizeBytes: data.length }));
    const disk = { name, id: `/subscriptions/${SUBSCRIPTION}/resourceGroups/${RG}/providers/Microsoft.Compute/disks/${name}`, tags: { "portable-workload": workload }, blob };
    this.disks.set(name, disk);
    return disk;
  }

  ops(...names: string[]): ArmCall[] {
    return this.calls.filter((c) => names.includes(c.op));
  }

  private record(op: string, args: unknown[]): void {
    const vmStates = Object.fromEntries([...this.vms.values()].map((vm) => [vm.name, vm.state]));
    this.calls.push({ op, args, readsBefore: this.reads(), vmStates });
    const failure = this.failNext.get(op);
    if (failure !== undefined) {
      this.failNext.delete(op);
      throw failure;
    }
  }

  private vm(rg: string, name: string): FakeVm {
    const vm = rg === RG ? this.vms.get(name) : undefined;
    if (vm === undefined) throw armError(404, "ResourceNotFound", `The Resource 'Microsoft.Compute/virtualMachines/${name}' under resource group '${rg}' was not found.`);
    return vm;
  }

  /** A long-running operation that ends when the VM reaches `to` after `polls` instance views. */
  private operation(vm: FakeVm, what: string, to: AzurePowerState, polls: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      vm.pending = { to, polls, resolve, reject, what };
      signal?.addEventListener("abort", () => {
        this.aborted.push(what);
        reject(Object.assign(new Error("The operation was aborted."), { name: "AbortError" }));
      }, { once: true });
    });
  }

  readonly virtualMachines = {
    get: async (rg: string, name: string): Promise<VirtualMachine> => {
      this.record("vm.get", [rg, name]);
      const vm = this.vm(rg, name);
      return { id: vm.id, name: vm.name, location: LOCATION, tags: vm.tags };
    },
    instanceView: async (rg: string, name: string): Promise<VirtualMachineInstanceView> => {
      this.record("vm.instanceView", [rg, name]);
      const vm = this.vm(rg, name);
      const pending = vm.pending;
      if (pending !== undefined && --pending.polls <= 0) {
        vm.state = pending.to;
        vm.pending = undefined;
        pending.resolve();
      }
      return { statuses: [{ code: "ProvisioningState/succeeded" }, { code: `PowerState/${vm.state}` }] };
    },
    powerOff: async (rg: string, name: string, options: ArmLroOptions & { readonly skipShutdown?: boolean } = {}): Promise<void> => {
      this.record("vm.powerOff", [rg, name, { skipShutdown: options.skipShutdown }]);
      const vm = this.vm(rg, name);
      // Azure: a later operation preempts the one under way.
      vm.pending?.reject(armError(409, "OperationPreempted", `Operation '${vm.pending.what}' was preempted by a more recent operation.`));
      vm.state = "stopping";
      const skip = options.skipShutdown === true;
      const works = skip ? vm.forcedWorks : vm.guestShutsDown;
      return this.operation(vm, skip ? "powerOff(skipShutdown)" : "powerOff", "stopped", works ? 2 : Number.POSITIVE_INFINITY, options.abortSignal);
    },
    start: async (rg: string, name: string, options: ArmLroOptions = {}): Promise<void> => {
      this.record("vm.start", [rg, name]);
      const vm = this.vm(rg, name);
      vm.state = "starting";
      return this.operation(vm, "start", "running", 2, options.abortSignal);
    },
  };

  readonly disksApi = {
    get: async (rg: string, name: string): Promise<Disk> => {
      this.record("disks.get", [rg, name]);
      const disk = rg === RG ? this.disks.get(name) : undefined;
      if (disk === undefined) throw armError(404, "ResourceNotFound", `The Resource 'Microsoft.Compute/disks/${name}' under resource group '${rg}' was not found.`);
      return { id: disk.id, name: disk.name, location: LOCATION, tags: disk.tags, diskSizeBytes: DISK_BYTES, diskState: "Attached", creationData: { createOption: "Import" } };
    },
  };

  readonly snapshots = {
    createOrUpdate: async (rg: string, name: string, snapshot: Snapshot): Promise<Snapshot> => {
      this.record("snapshots.createOrUpdate", [rg, name, snapshot]);
      const sourceId = snapshot.creationData?.sourceResourceId;
      const source = [...this.disks.values()].find((d) => d.id === sourceId);
      if (source === undefined) throw armError(404, "NotFound", `source ${sourceId} not found`);
      // The point in time: the source disk's written pages copied into a blob of its own.
      const from = this.direct.getPageBlobClient(source.blob);
      const to = this.direct.getPageBlobClient(`${this.prefix}/snapshots/${name}.vhd`);
      const size = (await from.getProperties()).contentLength!;
      await to.create(size);
      for await (const range of from.listPageRanges(0, size)) {
        const data = await from.downloadToBuffer(range.start, range.end + 1 - range.start);
        for (let at = 0; at < data.length; at += 4 * MiB) {
          const chunk = data.subarray(at, at + 4 * MiB);
          await to.uploadPages(chunk, range.start + at, chunk.length);
        }
      }
      this.snapshotsMade.set(name, { blob: to.name, source: source.id });
      return { ...snapshot, id: `/subscriptions/${SUBSCRIPTION}/resourceGroups/${rg}/providers/Microsoft.Compute/snapshots/${name}`, name, provisioningState: "Succeeded" };
    },
    grantAccess: async (rg: string, name: string, data: GrantAccessData): Promise<AccessUri> => {
      this.record("snapshots.grantAccess", [rg, name, data]);
      const made = this.snapshotsMade.get(name);
      if (made === undefined) throw armError(404, "NotFound", `snapshot ${name} not found`);
      const blob = this.viaProxy.getPageBlobClient(this.brokenSas ? `${made.blob}.missing` : made.blob);
      return { accessSAS: await blob.generateSasUrl({ permissions: BlobSASPermissions.parse("r"), expiresOn: new Date(Date.now() + data.durationInSeconds * 1000) }) };
    },
    revokeAccess: async (rg: string, name: string): Promise<void> => {
      this.record("snapshots.revokeAccess", [rg, name]);
    },
    delete: async (rg: string, name: string): Promise<void> => {
      this.record("snapshots.delete", [rg, name]);
      const made = this.snapshotsMade.get(name);
      if (made === undefined) return;
      this.snapshotsMade.delete(name);
      await this.direct.getPageBlobClient(made.blob).deleteIfExists();
    },
  };
}

/** FakeArm with its disks under the name the interface expects. */
function computeOf(arm: FakeArm): AzureComputeApi {
  return { virtualMachines: arm.virtualMachines, disks: arm.disksApi, snapshots: arm.snapshots };
}

// ---------------------------------------------------------------------------------------------

function workloadNamed(name: string): Workload {
  return parseWorkload({
    name,
    memoryMiB: 512,
    firmware: { type: "bios" },
    guestOs: { family: "linux" },
    disks: [
      { id: "root", sizeBytes: DISK_BYTES, source: { kind: "file", path: "/nonexistent/root.raw", format: "raw" }, bus: "nvme", bootOrder: 0 },
      { id: "data", sizeBytes: DISK_BYTES, source: { kind: "file", path: "/nonexistent/data.raw", format: "raw" }, bus: "nvme" },
    ],
  });
}

function placementFor(overrides: Record<string, unknown> = {}): AzurePlacement {
  return placementSchema.parse({
    kind: "azure",
    location: LOCATION,
    resourceGroupName: RG,
    storageAccount: "devstoreaccount1",
    container: "placed",
    storageAccountId: `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-storage/providers/Microsoft.Storage/storageAccounts/devstoreaccount1`,
    ...overrides,
  }) as AzurePlacement;
}

function requestFor(name: string, placement: AzurePlacement = placementFor()): MachineRequest {
  return { workload: workloadNamed(name), placement, disks: [] };
}

const coded = (code: string, text?: string) => (e: unknown) => isPortableError(e) && e.code === code && (text === undefined || e.message.includes(text));

describe("Azure machine driver and managed-disk point-in-time reads (fake ARM, Azurite bytes)", { timeout: 120_000 }, () => {
  let azurite: Azurite;
  let proxy: RecordingProxy;
  let direct: ContainerClient;
  let viaProxy: ContainerClient;
  let fakes = 0;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);

  /** Reads of a SAS through the proxy (Get Blob Properties, Get Page Ranges, Get Blob). */
  const reads = () => [...proxy.requests].filter(([key]) => key.startsWith("GET ") || key.startsWith("HEAD ")).reduce((n, [, count]) => n + count, 0);

  function newArm(): FakeArm {
    return new FakeArm(direct, viaProxy, reads, `t${++fakes}`);
  }

  /** A driver on `arm` polling every 10 ms; it records each placement it is asked for. */
  function driverOn(arm: FakeArm, placements: AzurePlacement[] = [], timing: { forceStopTimeoutMs?: number; startTimeoutMs?: number } = {}) {
    return createAzureMachineDriver({
      compute: (placement) => {
        placements.push(placement);
        return computeOf(arm);
      },
      pollIntervalMs: 10,
      forceStopTimeoutMs: timing.forceStopTimeoutMs ?? 2_000,
      startTimeoutMs: timing.startTimeoutMs ?? 2_000,
    });
  }

  before(async () => {
    process.on("unhandledRejection", onUnhandled);
    azurite = await startAzurite();
    proxy = await startRecordingProxy(azurite.blobEndpoint.replace(/\/[^/]+$/, ""));
    direct = await containerFor(azurite, "arm");
    viaProxy = await containerFor(azurite, "arm", proxy.endpoint);
    proxy.reset();
  });
  after(async () => {
    process.off("unhandledRejection", onUnhandled);
    await proxy?.stop();
    await azurite?.stop();
  });

  it("GIVEN placements WHEN asked THEN wantsRunning follows launch, the VM is created after the cutover, other kinds are refused, and the subscription comes from storageAccountId", async () => {
    assert.equal(azureMachineDriver.createdAfterCutover, true);
    assert.equal(azureMachineDriver.wantsRunning(placementFor()), true);
    assert.equal(azureMachineDriver.wantsRunning(placementFor({ launch: false })), false);
    assert.equal(azureMachineDriver.wantsRunning(placementSchema.parse({ kind: "local", dir: "/tmp/x" })), false);
    assert.equal(subscriptionIdOf(placementFor()), SUBSCRIPTION);

    const arm = newArm();
    const placements: AzurePlacement[] = [];
    const driver = driverOn(arm, placements);
    await assert.rejects(driver.isRunning({ ...requestFor("w"), placement: placementSchema.parse({ kind: "local", dir: "/tmp/x" }) }, ""), coded("MACHINE_DRIVER_MISMATCH"));
    // A storage account named without its ARM id: no subscription, so no client is even made.
    const bare = placementFor({ storageAccountId: "devstoreaccount1" });
    await assert.rejects(driver.stop(requestFor("w", bare), "", 1_000), coded("AZURE_SUBSCRIPTION_UNKNOWN", "devstoreaccount1"));
    await assert.rejects(driver.isRunning(requestFor("w", bare), ""), coded("AZURE_SUBSCRIPTION_UNKNOWN"));
    assert.deepEqual(placements, []);
    assert.deepEqual(arm.calls, []);
    assert.equal(powerStateOf({ statuses: [{ code: "ProvisioningState/updating" }] }), "unknown");
  });

  it("GIVEN a running VM WHEN found, stopped, started THEN create reports its id, the stop is graceful (skipShutdown false) and bounded by state, start waits for running, destroy calls nothing", async () => {
    const arm = newArm();
    const vm = arm.addVm("web", "running");
    const placements: AzurePlacement[] = [];
    const driver = driverOn(arm, placements);
    const request = requestFor("web");

    assert.deepEqual(await driver.create(request, "web"), { kind: "azure", machineId: vm.id, running: true });
    assert.equal(await driver.isRunning(request, ""), true);
    assert.equal(await driver.isRunning(request, vm.id), true);
    assert.deepEqual(arm.ops("vm.get").map((c) => c.args), [[RG, "web"], [RG, "web"], [RG, "web"]]);
    assert.equal(placements[0], request.placement);

    arm.calls.length = 0;
    assert.deepEqual(await driver.stop(request, "", 5_000), { graceful: true });
    assert.deepEqual(arm.ops("vm.powerOff").map((c) => c.args), [[RG, "web", { skipShutdown: false }]]);
    assert.equal(vm.state, "stopped");
    assert.equal(await driver.isRunning(request, ""), false);

    // Stopping a stopped VM sends nothing; a deallocated one is down too.
    arm.calls.length = 0;
    assert.deepEqual(await driver.stop(request, vm.id, 5_000), { graceful: true });
    vm.state = "deallocated";
    assert.deepEqual(await driver.stop(request, "", 5_000), { graceful: true });
    assert.equal(await driver.isRunning(request, ""), false);
    assert.deepEqual(arm.ops("vm.powerOff"), []);

    arm.calls.length = 0;
    await driver.start(request, "");
    assert.deepEqual(arm.ops("vm.start").map((c) => c.args), [[RG, "web"]]);
    assert.equal(vm.state, "running", "start returned only once the instance view said running");
    assert.equal(await driver.isRunning(request, ""), true);
    // Starting a running VM sends nothing.
    arm.calls.length = 0;
    await driver.start(request, vm.id);
    assert.deepEqual(arm.ops("vm.start"), []);

    // destroy leaves the official resource to Pulumi: no ARM call, not even a client.
    arm.calls.length = 0;
    placements.length = 0;
    await driver.destroy(request, vm.id, {});
    assert.deepEqual(arm.calls, []);
    assert.deepEqual(placements, []);
    assert.equal(vm.state, "running");
  });

  it("GIVEN a guest that ignores the shutdown WHEN stopped THEN the grace is waited out, a forced power off follows (graceful false), and the graceful call's polling is abandoned without an unhandled rejection", async () => {
    const arm = newArm();
    const vm = arm.addVm("slow", "running");
    vm.guestShutsDown = false;
    const driver = driverOn(arm);
    const request = requestFor("slow");

    const began = Date.now();
    assert.deepEqual(await driver.stop(request, "", 300), { graceful: false });
    const took = Date.now() - began;
    assert.ok(took >= 300, `the graceful shutdown had its 300 ms (took ${took} ms)`);
    assert.deepEqual(arm.ops("vm.powerOff").map((c) => (c.args[2] as { skipShutdown: boolean }).skipShutdown), [false, true]);
    const forcedAt = arm.calls.findIndex((c) => c.op === "vm.powerOff" && (c.args[2] as { skipShutdown: boolean }).skipShutdown);
    assert.ok(arm.calls.slice(1, forcedAt).filter((c) => c.op === "vm.instanceView").length >= 5, "the grace was spent polling the instance view");
    assert.equal(vm.state, "stopped");
    // The graceful call's client polling was abandoned before the forced call (which would
    // preempt it in Azure); its rejection was handled.
    assert.deepEqual(arm.aborted, ["powerOff"]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(unhandled, []);

    // A grace of 0 goes straight to the forced power off.
    vm.state = "running";
    arm.calls.length = 0;
    assert.deepEqual(await driver.stop(request, "", 0), { graceful: false });
    assert.deepEqual(arm.ops("vm.powerOff").map((c) => (c.args[2] as { skipShutdown: boolean }).skipShutdown), [true]);

    // A forced power off that never ends is bounded, and its polling abandoned.
    vm.state = "running";
    vm.forcedWorks = false;
    arm.aborted.length = 0;
    const bounded = driverOn(arm, [], { forceStopTimeoutMs: 200 });
    await assert.rejects(bounded.stop(request, "", 100), coded("AZURE_STOP_TIMEOUT", "slow"));
    assert.deepEqual(arm.aborted, ["powerOff", "powerOff(skipShutdown)"]);

    // A refused forced power off is reported with ARM's answer.
    vm.state = "running";
    vm.pending = undefined;
    arm.failNext.set("vm.powerOff", armError(403, "AuthorizationFailed", "no permission Microsoft.Compute/virtualMachines/powerOff/action"));
    await assert.rejects(driver.stop(request, "", 0), coded("AZURE_VM_POWER_OFF_FAILED", "HTTP 403 AuthorizationFailed"));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(unhandled, []);
  });

  it("GIVEN no VM of the workload's name, or one not tagged for it WHEN the driver looks THEN nothing is stopped: stop is graceful and isRunning false, or AZURE_VM_NOT_THE_WORKLOADS; start is AZURE_VM_NOT_FOUND", async () => {
    const arm = newArm();
    const other = arm.addVm("someone-else", "running");
    const driver = driverOn(arm);
    const ghost = requestFor("ghost");
    assert.deepEqual(await driver.create(ghost, "ghost"), { kind: "azure", machineId: "", running: false });
    assert.equal(await driver.isRunning(ghost, ""), false);
    assert.deepEqual(await driver.stop(ghost, "", 1_000), { graceful: true });
    await assert.rejects(driver.start(ghost, ""), coded("AZURE_VM_NOT_FOUND", "ghost"));
    assert.deepEqual(arm.ops("vm.get").map((c) => c.args[1]), ["ghost", "ghost", "ghost", "ghost"]);

    // Same name in the same group, but not the placement's VM: left alone.
    arm.addVm("twin", "running", { "portable-workload": "another-workload" });
    await assert.rejects(driver.stop(requestFor("twin"), "", 1_000), coded("AZURE_VM_NOT_THE_WORKLOADS", "another-workload"));
    await assert.rejects(driver.isRunning(requestFor("twin"), ""), coded("AZURE_VM_NOT_THE_WORKLOADS"));
    assert.deepEqual(arm.ops("vm.powerOff", "vm.start"), []);
    assert.equal(other.state, "running");
    assert.equal(arm.vms.get("twin")!.state, "running");
  });

  it("GIVEN a cutover reading a stopped VM WHEN its data disk is opened and released THEN power off, a snapshot of that very disk, grant, reads of the SAS, revoke, delete — and the bytes are the disk's", async () => {
    const arm = newArm();
    const vm = arm.addVm("db", "running");
    const rootBytes = knownDisk(0x31);
    const dataBytes = knownDisk(0x52);
    assert.notEqual(sha256(rootBytes), sha256(dataBytes));
    const root = await arm.addDisk("db-root", rootBytes, "db");
    const data = await arm.addDisk("db-data", dataBytes, "db");
    const driver = driverOn(arm);
    const request = requestFor("db");
    proxy.reset();

    assert.deepEqual(await driver.stop(request, "", 5_000), { graceful: true });
    const view = await openWorkloadManagedDisk({ compute: computeOf(arm), placement: placementFor(), workload: request.workload, diskId: "data" });
    assert.ok(view !== undefined);
    assert.equal(view.diskName, "db-data");
    assert.equal(view.diskResourceId, data.id);
    assert.equal(view.source.format, "vhd");
    assert.equal(view.source.subformat, "fixed");
    assert.equal(view.source.virtualSizeBytes, DISK_BYTES);
    assert.equal(await hashThrough(view.source), sha256(dataBytes), "the bytes read are the data disk's");
    const readsDone = reads();
    assert.ok((proxy.requests.get("GET -") ?? 0) >= 2, "ranged Get Blob reads went through the SAS");
    assert.ok((proxy.requests.get("GET pagelist") ?? 0) >= 1, "allocation came from Get Page Ranges on the SAS");
    await view.release();
    await view.release();

    const sequence = arm.ops("vm.powerOff", "disks.get", "snapshots.createOrUpdate", "snapshots.grantAccess", "snapshots.revokeAccess", "snapshots.delete")
      .map((c) => `${c.op} ${String(c.args[1])} vm=${c.vmStates.db} reads=${c.readsBefore}`);
    const snap = view.snapshotName;
    assert.deepEqual(sequence, [
      "vm.powerOff db vm=running reads=0",
      "disks.get db-data vm=stopped reads=0",
      `snapshots.createOrUpdate ${snap} vm=stopped reads=0`,
      `snapshots.grantAccess ${snap} vm=stopped reads=0`,
      `snapshots.revokeAccess ${snap} vm=stopped reads=${readsDone}`,
      `snapshots.delete ${snap} vm=stopped reads=${readsDone}`,
    ]);
    assert.ok(readsDone > 0);
    assert.equal(vm.state, "stopped");

    const created = arm.ops("snapshots.createOrUpdate")[0]!.args;
    assert.equal(created[0], RG);
    const body = created[2] as Snapshot;
    assert.deepEqual(body.creationData, { createOption: "Copy", sourceResourceId: data.id }, "the snapshot is of the VM's own data disk");
    assert.notEqual(body.creationData?.sourceResourceId, root.id);
    assert.equal(body.location, LOCATION);
    assert.equal(body.incremental, false);
    assert.equal(body.tags?.[POINT_IN_TIME_TAG], POINT_IN_TIME_PURPOSE);
    assert.equal(body.tags?.["portable-workload"], "db");
    assert.deepEqual(arm.ops("snapshots.grantAccess")[0]!.args[2], { access: "Read", durationInSeconds: sasDurationFor(DISK_BYTES) });
    assert.equal(sasDurationFor(DISK_BYTES), 3601);
    assert.equal(arm.snapshotsMade.size, 0, "release deleted the snapshot");
  });

  it("GIVEN a workload without a managed disk, or a disk of its name not tagged for it WHEN opened THEN undefined or AZURE_DISK_NOT_THE_WORKLOADS, and no snapshot is made", async () => {
    const arm = newArm();
    assert.equal(await openWorkloadManagedDisk({ compute: computeOf(arm), placement: placementFor(), workload: workloadNamed("nobody"), diskId: "root" }), undefined);
    assert.deepEqual(arm.ops("disks.get").map((c) => c.args), [[RG, "nobody-root"]]);
    await arm.addDisk("stray-root", knownDisk(1), "not-stray");
    await assert.rejects(openWorkloadManagedDisk({ compute: computeOf(arm), placement: placementFor(), workload: workloadNamed("stray"), diskId: "root" }), coded("AZURE_DISK_NOT_THE_WORKLOADS", "not-stray"));
    assert.deepEqual(arm.ops("snapshots.createOrUpdate"), []);
  });

  it("GIVEN ARM failing after the snapshot exists (grant refused, SAS unreadable) or during its creation WHEN opened THEN the snapshot is revoked and deleted before the error comes through", async () => {
    const arm = newArm();
    await arm.addDisk("app-root", knownDisk(7), "app");
    const open = () => openWorkloadManagedDisk({ compute: computeOf(arm), placement: placementFor(), workload: workloadNamed("app"), diskId: "root", attempts: 1 });
    const lifecycle = () => arm.calls.filter((c) => c.op.startsWith("snapshots.")).map((c) => c.op.replace("snapshots.", ""));

    arm.failNext.set("snapshots.grantAccess", armError(409, "OperationNotAllowed", "The snapshot is busy"));
    await assert.rejects(open(), coded("AZURE_SNAPSHOT_CALL_FAILED", "HTTP 409 OperationNotAllowed"));
    assert.deepEqual(lifecycle(), ["createOrUpdate", "grantAccess", "revokeAccess", "delete"]);
    assert.equal(arm.snapshotsMade.size, 0);

    arm.calls.length = 0;
    arm.brokenSas = true;
    await assert.rejects(open(), (e: unknown) => isPortableError(e) && e.message.includes("Get Blob Properties"));
    assert.deepEqual(lifecycle(), ["createOrUpdate", "grantAccess", "revokeAccess", "delete"]);
    assert.equal(arm.snapshotsMade.size, 0);
    arm.brokenSas = false;

    arm.calls.length = 0;
    arm.failNext.set("snapshots.createOrUpdate", armError(500, "InternalServerError", "lost answer"));
    await assert.rejects(open(), coded("AZURE_SNAPSHOT_CALL_FAILED", "InternalServerError"));
    assert.deepEqual(lifecycle(), ["createOrUpdate", "delete"], "a Create whose answer was lost is deleted by name; nothing was granted");
    const names = arm.calls.filter((c) => c.op.startsWith("snapshots.")).map((c) => c.args[1]);
    assert.equal(names[0], names[1]);
  });

  it("GIVEN long disk names WHEN snapshots are named THEN each name is a valid Azure name of at most 80 characters and unique", () => {
    const long = `${"w".repeat(70)}-data`;
    const a = pointInTimeSnapshotName(long);
    const b = pointInTimeSnapshotName(long);
    assert.notEqual(a, b);
    for (const name of [a, b, pointInTimeSnapshotName("db-data")]) {
      assert.ok(name.length <= 80, name);
      assert.match(name, /^[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9_]$/);
    }
  });
  it("GIVEN a workload running on Azure WHEN the whole move to local runs through the registry's drivers THEN warm passes snapshot the running VM's own disks, then the power off, then the final snapshots (grant, reads, revoke, delete), and local holds the managed disks' bytes, not the placed blobs'", { timeout: 300_000 }, async () => {
    await withTempDir(async (dir) => {
      const stateDir = join(dir, "state");
      const placedBytes = { root: knownDisk(0x61), data: knownDisk(0x62) };
      const sources = { root: join(dir, "root.raw"), data: join(dir, "data.raw") };
      for (const id of ["root", "data"] as const) await writeFile(sources[id], placedBytes[id]);
      const workload = parseWorkload({
        name: "mover",
        memoryMiB: 512,
        firmware: { type: "bios" },
        guestOs: { family: "linux" },
        disks: [
          { id: "root", sizeBytes: DISK_BYTES, source: { kind: "file", path: sources.root, format: "raw" }, bus: "nvme", bootOrder: 0 },
          { id: "data", sizeBytes: DISK_BYTES, source: { kind: "file", path: sources.data, format: "raw" }, bus: "nvme" },
        ],
      });
      await containerFor(azurite, "placed");
      const azure = placementFor({ storageAccount: azurite.accountName, launch: true });
      const local = placementSchema.parse({ kind: "local", dir: join(dir, "local"), start: false });
      const arm = newArm();
      const withdraw = provideComputeClient(SUBSCRIPTION, computeOf(arm));
      const connection = process.env.AZURE_STORAGE_CONNECTION_STRING;
      process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString;
      // The stand-in for the page-range diff of two snapshots (Azurite ignores the previous
      // snapshot): computed from both snapshots' real bytes, block by block, and answered in the
      // documented PageList shape (PageRange written, ClearRange cleared, inclusive offsets).
      const direct = await containerFor(azurite, "arm");
      const blobOf = (path: string) => decodeURIComponent(path).replace(/^\/[^/]+\/arm\//, "");
      const diffs: Array<{ blob: string; previous: string }> = [];
      proxy.intercept = async (req, url) => {
        const previousUrl = req.headers["x-ms-previous-snapshot-url"];
        if (url.searchParams.get("comp") !== "pagelist" || typeof previousUrl !== "string") return undefined;
        const blob = blobOf(url.pathname);
        const previous = blobOf(new URL(previousUrl).pathname);
        diffs.push({ blob, previous });
        const [now, before] = await Promise.all([direct.getPageBlobClient(blob).downloadToBuffer(), direct.getPageBlobClient(previous).downloadToBuffer()]);
        const range = /bytes=(\d+)-(\d+)/.exec(String(req.headers["x-ms-range"] ?? ""));
        const [from, to] = range === null ? [0, now.length] : [Number(range[1]), Number(range[2]) + 1];
        const parts: string[] = [];
        for (let at = from; at < to; at += 512 * 1024) {
          const end = Math.min(to, at + 512 * 1024);
          const a = now.subarray(at, end);
          if (a.equals(before.subarray(at, end))) continue;
          const tag = a.every((b) => b === 0) ? "ClearRange" : "PageRange";
          parts.push(`<${tag}><Start>${at}</Start><End>${end - 1}</End></${tag}>`);
        }
        return { status: 200, headers: { "content-type": "application/xml", "x-ms-blob-content-length": String(now.length), "x-ms-version": "2025-01-05" }, body: `<?xml version="1.0" encoding="utf-8"?><PageList>${parts.join("")}</PageList>` };
      };
      try {
        const ids = ["root", "data"] as const;
        const placed = await placeWorkload({ workload, placement: azure, disks: [], stateDir }, { stateDir, verify: "none" }, ids.map((id) => ({ id, source: sources[id], sourceFormat: "raw", target: diskTargetFor(azure, "mover", id) })));
        // What the official resources would be, after the guest ran: the VM and its managed disks,
        // whose data disk holds writes our placed blob never saw.
        const live = { root: placedBytes.root, data: Buffer.from(placedBytes.data) };
        live.data.fill(0x99, 2 * MiB, 2 * MiB + 300_000);
        arm.addVm("mover", "running");
        const disks = { root: await arm.addDisk("mover-root", live.root, "mover"), data: await arm.addDisk("mover-data", live.data, "mover") };
        arm.calls.length = 0;

        const result = await moveMachine({
          from: { workload, placement: azure, disks: placed.disks, stateDir, machineId: placed.state.machineId },
          to: { workload, placement: local, disks: ids.map((id) => ({ id, target: diskTargetFor(local, "mover", id), location: "" })), stateDir },
          stateDir,
          verify: "full",
          mode: "warm",
          maxPasses: 2,
          deleteSource: false,
          gracefulTimeoutMs: 60_000,
        });
        assert.equal(result.record.state, "completed");
        assert.deepEqual(result.record.steps.map((step) => step.name), ["warm-passes", "stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
        for (const disk of result.disks) assert.equal(await fileSha256(disk.location), sha256(live[disk.id as "root" | "data"]), `${disk.id} on local holds the managed disk's bytes`);
        assert.notEqual(sha256(live.data), sha256(placedBytes.data), "the guest's writes are only on the managed disk");

        const ops = arm.ops("vm.powerOff", "snapshots.createOrUpdate", "snapshots.grantAccess", "snapshots.revokeAccess", "snapshots.delete");
        const off = ops.findIndex((c) => c.op === "vm.powerOff");
        assert.equal(ops.filter((c) => c.op === "vm.powerOff").length, 1);
        assert.deepEqual(ops[off]!.args[2], { skipShutdown: false }, "a graceful power off");
        const snapshotsOf = (list: ArmCall[]) => list.filter((c) => c.op === "snapshots.createOrUpdate").map((c) => ({ source: (c.args[2] as Snapshot).creationData?.sourceResourceId, vm: c.vmStates.mover }));
        const warm = snapshotsOf(ops.slice(0, off));
        const final = snapshotsOf(ops.slice(off + 1));
        assert.ok(warm.length >= 2 && warm.every((w) => w.vm === "running" && (w.source === disks.root.id || w.source === disks.data.id)), `warm passes snapshot the running VM's own disks: ${JSON.stringify(warm)}`);
        assert.deepEqual(final.map((f) => f.source).sort(), [disks.root.id, disks.data.id].sort(), "the final pass snapshots each disk once, after the power off");
        assert.ok(final.every((f) => f.vm === "stopped"), JSON.stringify(final));
        // Each snapshot: made (incremental, for change tracking), granted, read (reads go up
        // between grant and revoke), revoked; then, kept for the next pass's diff, granted and
        // revoked once more; deleted once no later pass needs it.
        const creates = ops.filter((c) => c.op === "snapshots.createOrUpdate").map((c) => ({ name: String(c.args[1]), body: c.args[2] as Snapshot }));
        for (const [i, { name, body }] of creates.entries()) {
          const life = ops.filter((c) => String(c.args[1]) === name);
          // The last snapshot of each disk is the final pass's: nothing diffs against it.
          const last = !creates.slice(i + 1).some((later) => later.body.creationData?.sourceResourceId === body.creationData?.sourceResourceId);
          assert.deepEqual(life.map((c) => c.op.replace("snapshots.", "")), ["createOrUpdate", "grantAccess", "revokeAccess", ...(last ? [] : ["grantAccess", "revokeAccess"]), "delete"], name);
          assert.ok(life[2]!.readsBefore > life[1]!.readsBefore, `${name} was read through its SAS`);
          assert.equal(body.incremental, true, `${name} is incremental`);
        }
        assert.equal(arm.snapshotsMade.size, 0, "no snapshot is left");
        // Change tracking: each pass after the first asks for the page-range diff against the
        // previous pass's snapshot of the same disk, and reads only that (nothing changed here).
        assert.ok(diffs.length >= 4, `a diff for the later warm pass and the final pass of each disk (${diffs.length})`);
        const laterPasses = [...(result.record.warmPasses ?? []).slice(1), result.record.finalPass!];
        assert.ok(laterPasses.every((p) => p.disks.every((d) => d.scan === "tracked" && d.bytesRead === 0)), "every pass after the first read only the diff (nothing)");
      } finally {
        delete proxy.intercept;
        withdraw();
        if (connection === undefined) delete process.env.AZURE_STORAGE_CONNECTION_STRING;
        else process.env.AZURE_STORAGE_CONNECTION_STRING = connection;
      }
    });
  });
});
