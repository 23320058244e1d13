// The local platform's machines (machine-driver.ts): QEMU guests in a local datastore folder.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { PortableError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import type { MachineDriver, MachineRequest } from "../../contracts/machine-driver.ts";
import { defineMachine } from "./machine.ts";
import { openDatastore } from "./datastore.ts";
import { machineFiles, machineStatus, removeMachine, startMachine, stopMachine } from "./lifecycle.ts";

type LocalPlacement = Extract<Placement, { kind: "local" }>;

function localPlacement(request: MachineRequest): LocalPlacement {
  if (request.placement.kind !== "local") throw new PortableError("MACHINE_DRIVER_MISMATCH", `the local machine driver was given a ${request.placement.kind} placement`);
  return request.placement;
}

function definitionFor(request: MachineRequest, name: string): ReturnType<typeof defineMachine> {
  return defineMachine(request.workload, { name, disks: Object.fromEntries(request.disks.map((d) => [d.id, { path: d.location, format: "raw" as const }])) });
}

async function waitForMarker(serialLog: string, marker: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = await readFile(serialLog, "utf8").catch(() => "");
    if (text.split(/\r?\n/).some((line) => line.trim() === marker)) return true;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
}

export const localMachineDriver: MachineDriver = {
  async create(request, name) {
    const placement = localPlacement(request);
    const store = await openDatastore(placement.dir);
    const definition = definitionFor(request, name);
    if (!placement.start) return { kind: "local", machineId: definition.name, running: false };
    const started = performance.now();
    const running = await startMachine(store, definition);
    // A guest that prints no marker is up once QEMU runs. (A placement recorded before
    // bootTimeoutSeconds existed has none.)
    if (placement.bootMarker !== undefined && !(await waitForMarker(running.files.serialLog, placement.bootMarker, (placement.bootTimeoutSeconds ?? 180) * 1000))) {
      await stopMachine(store, definition.name, { graceMs: 0 });
      throw new PortableError("HEALTH_CHECK_FAILED", `local machine ${definition.name}: no "${placement.bootMarker}" on the serial console within ${placement.bootTimeoutSeconds ?? 180} s`);
    }
    return { kind: "local", machineId: definition.name, running: true, bootSeconds: (performance.now() - started) / 1000 };
  },
  async stop(request, machineId, gracefulTimeoutMs) {
    const result = await stopMachine(await openDatastore(localPlacement(request).dir), machineId, { graceMs: gracefulTimeoutMs });
    return { graceful: result.method === "powerdown" || result.method === "not-running" };
  },
  async isRunning(request, machineId) {
    return (await machineStatus(await openDatastore(localPlacement(request).dir), machineId)).state === "running";
  },
  async start(request, machineId) {
    await startMachine(await openDatastore(localPlacement(request).dir), definitionFor(request, machineId));
  },
  async destroy(request, machineId, options) {
    const store = await openDatastore(localPlacement(request).dir);
    await stopMachine(store, machineId, { graceMs: 0 });
    if (options.keepLocalState !== true) await removeMachine(store, machineId);
  },
  wantsRunning: (placement) => placement.kind === "local" && placement.start,
  async find(request, name) {
    const store = await openDatastore(localPlacement(request).dir);
    const files = await machineFiles(store, name);
    return existsSync(files.dir) ? name : undefined;
  },
};
