// npm run demo — the README's main job, on the embedded default target:
//   1. build the sample guest (a small Debian system from Debian packages, BIOS, one disk);
//   2. `up` on the local target: its disk in a local datastore, booted under QEMU;
//   3. change the placement to vSphere (vcsim on loopback): preview prints the migration plan,
//      `up` migrates it (warm copy, cutover) and prints the measured downtime;
//   4. change it back to local: the same, incrementally;
//   5. destroy everything.
// It drives the real Pulumi engine through the Automation API (inline program, file:// backend)
// because the Node language host cannot be built here (README). It reuses the test harness to
// start vcsim and to build the guest image.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { PlacementInput } from "../../sdk/spec/placement.ts";
import { buildBootImage } from "../../tests/harness/boot-image.ts";
import { createInlineStack } from "../../tests/harness/pulumi.ts";
import { startVcsim } from "../../tests/harness/vcsim.ts";
import { quickstart } from "./program.ts";

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
const say = (text: string) => console.log(`==> ${text}`);

say("building the sample guest from Debian packages (kernel, busybox, GRUB)");
const image = await buildBootImage({ firmware: "bios" });
say(`guest image: ${image.path} (${image.sizeBytes / 2 ** 20} MiB, kernel ${image.kernelVersion}, prints ${image.marker} when up)`);

const sim = await startVcsim();
say(`vcsim (vSphere simulator) on ${new URL(sim.url).host}`);
// The vCenter password reaches this program and the engine's provider processes through the
// environment, never as a resource input (README, "Credentials").
process.env.VSPHERE_PASSWORD = sim.password;
let placement: PlacementInput = { kind: "local", dir: "", bootMarker: image.marker };
let stateDir = "";
const stack = await createInlineStack("quickstart", async () =>
  quickstart({ image, placement, stateDir }),
);
const local: PlacementInput = { kind: "local", dir: join(stack.dir, "local"), bootMarker: image.marker };
const vsphere: PlacementInput = { kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, folder: "web" };
placement = local;
stateDir = join(stack.dir, "state");

interface MachineState {
  readonly running?: boolean;
  readonly bootSeconds?: number;
  readonly lastMove?: string;
}
async function machineState(): Promise<MachineState> {
  const state = await stack.stack.exportStack();
  const machine = (state.deployment.resources ?? []).find((r: { type: string }) => r.type === "pulumi-nodejs:dynamic/portable:Machine");
  return (machine?.outputs ?? {}) as MachineState;
}

/** Preview (printing the plan the Workload logs), then up; returns the cutover record. */
async function move(to: PlacementInput, label: string): Promise<void> {
  placement = to;
  say(`preview: ${label}`);
  await stack.stack.preview({
    onEvent: (event) => {
      const diag = event.diagnosticEvent;
      if (diag?.severity === "info" && diag.urn?.includes("portable:index:Workload")) console.log(diag.message.trimEnd().replace(/^/gm, "    "));
    },
  });
  say(`up: ${label}`);
  const result = await stack.stack.up();
  const machine = await machineState();
  const record = machine.lastMove ? (JSON.parse(machine.lastMove) as { state: string; downtimeMs?: number; steps: Array<{ name: string; startedAt: string; endedAt: string; detail?: string }> }) : undefined;
  console.log(`    ${result.summary.result}: ${JSON.stringify(result.summary.resourceChanges)}; disk now at ${JSON.stringify(result.outputs.disks?.value)}`);
  if (record !== undefined) {
    for (const step of record.steps) console.log(`    ${step.name.padEnd(14)} ${((Date.parse(step.endedAt) - Date.parse(step.startedAt)) / 1000).toFixed(2)} s${step.detail ? `  ${step.detail}` : ""}`);
    console.log(`    cutover ${record.state}: measured downtime ${((record.downtimeMs ?? 0) / 1000).toFixed(1)} s`);
  }
}

try {
  say("up: the workload on the local target (QEMU)");
  const first = await stack.stack.up();
  const machine = await machineState();
  console.log(`    ${first.summary.result}: disk at ${JSON.stringify(first.outputs.disks?.value)}; booted under QEMU in ${machine.bootSeconds?.toFixed(1)} s (serial console printed ${image.marker})`);
  await move(vsphere, "local → vSphere (vcsim)");
  await move(local, "vSphere → local");
  say("destroy");
  await stack.stack.destroy();
  say(`done in ${elapsed()}`);
} finally {
  await stack.cleanup();
  await sim.stop();
  await rm(join(stack.dir), { recursive: true, force: true });
}
