// Guest fixups (issue 21) through the real engine, on a real Debian 12 guest as VMware leaves it
// (tests/harness/debian-guest.ts: its initramfs has no NVMe driver, its fstab and grub name the
// root /dev/sda1), placed on a local NVMe disk where it does not boot as it is:
// 1. preview: the plan lists the fixups "auto" derives (initramfs-drivers with nvme,
//    device-names), their time in the downtime, and the test boot; the readiness findings they
//    answer are info, so nothing blocks `up`;
// 2. up: the Disk applies them to an overlay of the source, test-boots it on NVMe, and copies
//    it; `fixupsApplied` names both and their time; the machine passes its boot check (the
//    marker on its serial console); the source file is byte for byte what it was;
// 3. up with the placement moved to another local datastore and the same two fixups declared
//    (declared ones always run; "auto" would find nothing left on the fixed guest): the cutover
//    completes, its record (the Machine's `lastMove`) carries the fixups of the final pass and
//    their time, the new machine boots, and the source is still untouched;
// 4. back on A with "auto": the guest is fixed already, so nothing is applied again, and it boots;
// 5. destroy leaves nothing in either datastore or in the state folder.
import assert from "node:assert/strict";
import { copyFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload } from "../../components/workload.ts";
import type { WorkloadPlan } from "../../sdk/migrate/workload-plan.ts";
import type { MigrationPolicyInput, PlacementInput } from "../../sdk/spec/placement.ts";
import { buildDebianGuest, DEBIAN_GUEST_MARKER, type DebianGuest } from "../harness/debian-guest.ts";
import { fileSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";

const DISK = "pulumi-nodejs:dynamic/portable:Disk";
const MACHINE = "pulumi-nodejs:dynamic/portable:Machine";

interface StateResource {
  readonly type: string;
  readonly urn: string;
  readonly outputs: Record<string, unknown>;
}

interface AppliedJson {
  readonly seconds: number;
  readonly testBootSeconds?: number;
  readonly applied: ReadonlyArray<{ readonly kind: string; readonly detail: string; readonly seconds: number }>;
}

describe("Guest fixups through the Pulumi engine: a VMware Debian guest placed on local NVMe", { timeout: 1_800_000 }, () => {
  let env: InlineStack;
  let guest: DebianGuest;
  let source = "";
  let sourceHash = "";
  let placement: PlacementInput;
  let migration: MigrationPolicyInput = { fixups: "auto", testBoot: { marker: DEBIAN_GUEST_MARKER, timeoutSeconds: 300 } };
  /** The plan the program made on its last run. */
  const seen: { plan?: WorkloadPlan } = {};
  const planMade = (): WorkloadPlan | undefined => seen.plan;
  let dirA = "";
  let dirB = "";

  before(async () => {
    guest = await buildDebianGuest();
    env = await createInlineStack("pw-fixups", async () => {
      const app = new Workload("app", {
        spec: {
          name: "app",
          memoryMiB: 512,
          firmware: { type: "bios" },
          disks: [{ id: "disk0", sizeBytes: guest.sizeBytes, source: { kind: "file", path: source, format: "raw" }, bus: "nvme", bootOrder: 0 }],
          guestOs: { family: "linux", distribution: "debian", version: "12" },
        },
        placement,
        migration,
        stateDir: join(env.dir, "state"),
      });
      // The inline program runs in this process: the plan it logged is the one checked here.
      app.plan.apply((p) => {
        if (p !== undefined) seen.plan = p;
      });
      return { disks: app.disks };
    });
    // The shared image is copied: this file is the workload's source, and must never change.
    source = join(env.dir, "source.raw");
    await copyFile(guest.path, source);
    sourceHash = await fileSha256(source);
    dirA = join(env.dir, "local-a");
    dirB = join(env.dir, "local-b");
    placement = { kind: "local", dir: dirA, start: true, bootMarker: DEBIAN_GUEST_MARKER };
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
  });

  const resource = async (type: string): Promise<StateResource> => {
    const state = await env.stack.exportStack();
    const found = (state.deployment.resources as StateResource[]).find((r) => r.type === type);
    assert.ok(found, `${type} is in the state`);
    return found;
  };

  it("GIVEN fixups auto and a test boot WHEN previewed THEN the plan lists the fixups and the test boot, and nothing blocks", async () => {
    let output = "";
    delete seen.plan;
    const preview = await env.stack.preview({ onOutput: (text) => (output += text) });
    assert.equal(preview.changeSummary.create, 5, `stack, workload, readiness gate, disk and machine: ${JSON.stringify(preview.changeSummary)}`);
    assert.match(output, /app: image → local \(warm\), 1 disk\(s\)/, output);
    assert.match(output, /guest fixups \(2, estimated [\d.]+ s, on a copy-on-write overlay; the source is not changed\):/);
    assert.match(output, /initramfs-drivers: add [^\n]*\bnvme\b[^\n]* to the initramfs and rebuild it/);
    assert.match(output, /device-names: name the root and \/etc\/fstab filesystems by UUID/);
    assert.match(output, /test boot before copying: wait up to 300 s for "PORTABLE-GUEST-UP" on the serial console/);
    const downtime = /estimated downtime [\d.]+ s \(stop [\d.]+, fixups ([\d.]+), scan /.exec(output);
    assert.ok(downtime, `the fixups' time is in the downtime:\n${output}`);
    assert.ok(Number(downtime[1]) > 0);
    assert.doesNotMatch(output, /fixups cannot run here/);
    // The guest was inspected: it lacks the NVMe driver and names its root /dev/sda1; the fixups
    // answer both, so they are info and neither the plan nor the gate calls them errors.
    // (read through a function: TypeScript does not see the program set it meanwhile)
    const plan = planMade();
    assert.ok(plan, "the program made a plan");
    const codes = plan.findings.map((f) => `${f.code}:${f.severity}`);
    assert.ok(codes.includes("INSPECT_INITRAMFS_DRIVER_MISSING:info"), codes.join(", "));
    assert.ok(plan.findings.some((f) => (f.code === "INSPECT_FSTAB_DEVICE_NAME" || f.code === "INSPECT_GRUB_DEVICE_NAME") && f.severity === "info"), codes.join(", "));
    assert.deepEqual(plan.findings.filter((f) => f.severity === "error").map((f) => f.code), [], "no readiness error is left");
    assert.doesNotMatch(output, /readiness error:/);
    assert.doesNotMatch(output, /blocks `up`/);
  });

  it("WHEN up THEN the placement copies the fixed-up, test-booted overlay, the machine boots on NVMe, and the source is unchanged", async () => {
    const steps: string[] = [];
    const result = await env.stack.up({
      onEvent: (event) => {
        const diag = event.diagnosticEvent;
        if (diag?.urn?.endsWith("::app-machine")) steps.push(diag.message.trim());
      },
    });
    assert.equal(result.summary.result, "succeeded");
    const location = (result.outputs.disks!.value as Record<string, string>).disk0!;
    assert.equal(location, join(dirA, "disks", "app-disk0.raw"));

    const disk = await resource(DISK);
    const fixups = JSON.parse(disk.outputs.fixupsApplied as string) as AppliedJson;
    assert.deepEqual(fixups.applied.map((a) => a.kind), ["initramfs-drivers", "device-names"]);
    assert.match(fixups.applied[0]!.detail, /\bnvme\b/, "the NVMe driver was listed and the initramfs rebuilt");
    assert.match(fixups.applied[1]!.detail, /fstab \/dev\/sda1 → UUID=/);
    assert.ok(fixups.seconds > 0, `fixups took time: ${fixups.seconds}`);
    assert.ok(fixups.applied.every((a) => a.seconds > 0), JSON.stringify(fixups.applied));
    assert.equal(typeof fixups.testBootSeconds, "number", "the test boot ran and saw the marker");
    assert.ok(fixups.testBootSeconds! > 0);
    // Each fixup and the test boot are lines on the placement (Machine) in `pulumi up`; the Disk records them.
    assert.ok(steps.some((s) => /^disk disk0: fixup initramfs-drivers: /.test(s)), steps.join("\n"));
    assert.ok(steps.some((s) => /^disk disk0: test boot on nvme \(bios\)/.test(s)), steps.join("\n"));

    const machine = await resource(MACHINE);
    assert.equal(machine.outputs.running, true, "the marker appeared on the serial console of the NVMe machine");
    assert.ok((machine.outputs.bootSeconds as number) > 0);

    assert.notEqual(await fileSha256(location), sourceHash, "the placed disk carries the fixups");
    assert.equal(await fileSha256(source), sourceHash, "the source file was not written");
  });

  it("GIVEN the placement moves to another local datastore, the fixups declared WHEN up THEN the cutover records the final pass's fixups and the machine boots there", async () => {
    // "auto" would find nothing left to fix on the guest in datastore A (the next test shows it):
    // declared fixups always apply, so the final pass inside the cutover must run them.
    placement = { kind: "local", dir: dirB, start: true, bootMarker: DEBIAN_GUEST_MARKER };
    migration = { fixups: [{ kind: "initramfs-drivers", drivers: ["nvme"] }, { kind: "device-names" }], testBoot: { marker: DEBIAN_GUEST_MARKER, timeoutSeconds: 300 } };
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal((result.outputs.disks!.value as Record<string, string>).disk0, join(dirB, "disks", "app-disk0.raw"));

    const machine = await resource(MACHINE);
    const move = JSON.parse(machine.outputs.lastMove as string) as { state: string; fixups?: { disk: string } & AppliedJson };
    assert.equal(move.state, "completed");
    assert.ok(move.fixups, `the cutover record carries the fixups: ${machine.outputs.lastMove as string}`);
    assert.equal(move.fixups.disk, "disk0");
    assert.ok(move.fixups.seconds > 0, `the final pass's fixups took time: ${JSON.stringify(move.fixups)}`);
    assert.deepEqual(move.fixups.applied.map((a) => a.kind), ["initramfs-drivers", "device-names"]);
    assert.match(move.fixups.applied[0]!.detail, /already listed; rebuilt for /, "nvme was already in the initramfs list on A");
    assert.equal(machine.outputs.running, true, "the machine on the new datastore booted");
    // The move's first (warm) pass applied them too, and test-booted the result: the Disk records it.
    const disk = await resource(DISK);
    const warm = JSON.parse(disk.outputs.fixupsApplied as string) as AppliedJson;
    assert.deepEqual(warm.applied.map((a) => a.kind), ["initramfs-drivers", "device-names"]);
    assert.ok((warm.testBootSeconds ?? 0) > 0, disk.outputs.fixupsApplied as string);

    assert.equal(await fileSha256(source), sourceHash, "the source file is still unchanged");
  });

  it("GIVEN fixups auto on a guest already fixed WHEN it moves back THEN nothing is applied again and the machine boots", async () => {
    placement = { kind: "local", dir: dirA, start: true, bootMarker: DEBIAN_GUEST_MARKER };
    migration = { fixups: "auto", testBoot: { marker: DEBIAN_GUEST_MARKER, timeoutSeconds: 300 } };
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal((result.outputs.disks!.value as Record<string, string>).disk0, join(dirA, "disks", "app-disk0.raw"));

    const machine = await resource(MACHINE);
    const move = JSON.parse(machine.outputs.lastMove as string) as { state: string; fixups?: { disk: string } & AppliedJson };
    assert.equal(move.state, "completed");
    // The guest on B has the NVMe driver and UUID names: inspection finds nothing for auto to do.
    assert.deepEqual(move.fixups, { disk: "disk0", seconds: 0, applied: [] });
    const disk = await resource(DISK);
    const warm = JSON.parse(disk.outputs.fixupsApplied as string) as AppliedJson;
    assert.deepEqual(warm.applied, [], "the warm pass applied nothing either");
    assert.ok((warm.testBootSeconds ?? 0) > 0, "the test boot still ran, on the guest as it is");
    assert.equal(machine.outputs.running, true, "the machine on A booted again");

    assert.equal(await fileSha256(source), sourceHash, "the source file is still unchanged");
  });
  it("WHEN destroyed THEN nothing is left in either datastore or in the state folder (no fixups overlay either)", async () => {
    const result = await env.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    assert.deepEqual(await readdir(dirA), [], "datastore A: no disk, no machine folder");
    assert.deepEqual(await readdir(dirB), [], "datastore B: no disk, no machine folder");
    assert.deepEqual(await readdir(join(env.dir, "state")), [], "no manifest, journal, placement record, timings or overlay");
    assert.equal(await fileSha256(source), sourceHash, "the source file outlives the stack, unchanged");
  });
});
