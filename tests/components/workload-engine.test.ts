// The Workload component through the real engine: local → vSphere (vcsim) → local.
// 1. up on local: the disk lands in the local datastore and the machine boots under QEMU (its
//    marker on the serial console is the health check);
// 2. preview with the placement changed to vsphere: the plan summary names the bytes, the
//    conversion and a downtime estimate;
// 3. up migrates: the VM exists in vcsim with the spec's CPUs, memory and firmware, and its
//    disk on the datastore hashes equal to the source;
// 4. back to local: up migrates back (a delta into the kept local replica) and the machine
//    passes its boot check again;
// 5. destroy leaves nothing in vcsim or in the local datastore directory.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload } from "../../components/workload.ts";
import { listVms } from "../../sdk/clouds/vsphere/inventory.ts";
import { readVmConfig } from "../../sdk/clouds/vsphere/vm.ts";
import { listDatastoreFolder } from "../../sdk/clouds/vsphere/datastore.ts";
import { openVsphereDisk } from "../../sdk/clouds/vsphere/disk-url.ts";
import type { PlacementInput } from "../../sdk/spec/placement.ts";
import { buildBootImage, type BootImage } from "../harness/boot-image.ts";
import { fileSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { connect, vsphereDiskSha256 } from "../clouds/vsphere/helpers.ts";
import { REPO_ROOT } from "../harness/tools.ts";

const exec = promisify(execFile);

describe("Workload: local → vSphere → local through the Pulumi engine", { timeout: 900_000 }, () => {
  let sim: Vcsim;
  let env: InlineStack;
  let image: BootImage;
  let placement: PlacementInput;
  let localDir = "";
  let stateDir = "";
  let expected = "";

  before(async () => {
    [sim, image] = await Promise.all([startVcsim(), buildBootImage({ firmware: "bios" })]);
    expected = await fileSha256(image.path);
    // The password reaches the program and the provider processes through the environment.
    process.env.VSPHERE_PASSWORD = sim.password;
    env = await createInlineStack("pw-workload", async () => {
      const web = new Workload("web", {
        spec: {
          name: "web",
          cpu: { sockets: 1, coresPerSocket: 2 },
          memoryMiB: 256,
          firmware: { type: "bios" },
          disks: [{ id: "disk0", sizeBytes: image.sizeBytes, source: { kind: "file", path: image.path, format: "raw" }, bus: "sata", bootOrder: 0 }],
          nics: [{ network: "VM Network" }],
          guestOs: { family: "linux", distribution: "debian", version: "12" },
        },
        placement,
        migration: { mode: "warm", source: "keep", verify: "full" },
        stateDir,
      });
      return { machineId: web.machineId, disks: web.disks };
    });
    localDir = join(env.dir, "local");
    stateDir = join(env.dir, "state");
    placement = { kind: "local", dir: localDir, bootMarker: image.marker };
  });
  after(async () => {
    await env?.cleanup();
    await sim?.stop();
  });

  const vspherePlacement = (): PlacementInput => ({
    kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, folder: "web",
  });

  it("GIVEN a local placement WHEN up THEN the disk is in the local datastore and the machine boots", async () => {
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const disk = (result.outputs.disks!.value as Record<string, string>).disk0!;
    assert.equal(disk, join(localDir, "disks", "web-disk0.raw"));
    assert.equal(await fileSha256(disk), expected);
    const state = await env.stack.exportStack();
    const machine = state.deployment.resources.find((r: { type: string }) => r.type === "pulumi-nodejs:dynamic/portable:Machine");
    assert.equal(machine.outputs.running, true, "the marker appeared on the serial console");
  });

  it("GIVEN the placement changes to vsphere WHEN previewed THEN the plan names bytes, conversion and downtime", async () => {
    placement = vspherePlacement();
    let output = "";
    // The engine's events, in the shape `pulumi preview --json` writes them (steps, diagnostics).
    const steps: Array<{ op: string; urn: string; diffReasons?: string[] }> = [];
    const diagnostics: Array<{ urn?: string; message: string; severity: string }> = [];
    const preview = await env.stack.preview({
      onOutput: (text) => (output += text),
      onEvent: (event) => {
        const pre = event.resourcePreEvent?.metadata;
        if (pre) steps.push({ op: pre.op, urn: pre.urn, ...(pre.diffs ? { diffReasons: pre.diffs } : {}) });
        const diag = event.diagnosticEvent;
        if (diag) diagnostics.push({ ...(diag.urn ? { urn: diag.urn } : {}), message: diag.message, severity: diag.severity });
      },
    });
    assert.equal(preview.changeSummary.update, 2, "the placement (Machine) and the disk's record update in place; nothing is replaced, and the readiness gate has no new error to check");
    const summary = /web: local → vsphere \(warm\), 1 disk\(s\), ([\d.]+) MiB to move/.exec(output);
    assert.ok(summary, `the plan summary is in the preview output:\n${output}`);
    assert.ok(Number(summary[1]) > 1, "the allocated data of the boot image");
    assert.match(output, /disk0: raw → vsphere/);
    assert.match(output, /estimated downtime [\d.]+ s \(stop [\d.]+, scan [\d.]+, send [\d.]+, verify [\d.]+, boot [\d.]+\)/);

    const json = join(env.dir, "preview.json");
    await writeFile(json, JSON.stringify({ steps, diagnostics, changeSummary: preview.changeSummary }));
    const { stdout } = await exec(process.execPath, [join(REPO_ROOT, "sdk/cli/portable.ts"), "plan-comment", json]);
    assert.match(stdout, /^## Migration plan\n\n### web\n\n```\nweb: local → vsphere \(warm\)/);
    assert.match(stdout, /\| `~` update \| `pulumi-nodejs:dynamic\/portable:Disk` \| web-disk0 \|/);
    // The guest was inspected for vSphere: its kernel has AHCI (the sata bus) but no vmxnet3/e1000.
    assert.doesNotMatch(stdout, /no storage driver/);
    assert.match(stdout, /readiness warning: INSPECT_DRIVER_MISSING: vsphere: no network driver/);
    assert.match(stdout, /\| `~` update \| `pulumi-nodejs:dynamic\/portable:Machine` \| web-machine \|/);
  });

  it("WHEN up THEN the VM exists in vcsim with the spec's CPUs, memory and firmware, and its disk hashes equal to the source", async () => {
    const progress: Array<{ urn: string; message: string }> = [];
    const result = await env.stack.up({
      onEvent: (event) => {
        const diag = event.diagnosticEvent;
        if (diag?.urn !== undefined && / disk disk0: \d+% /.test(diag.message)) progress.push({ urn: diag.urn, message: diag.message });
      },
    });
    assert.equal(result.summary.result, "succeeded");
    // Each long copy reports on the placement resource: the warm pass while the source runs, then the final pass.
    assert.ok(progress.some((p) => p.urn.endsWith("::web-machine") && /^warm pass 1, disk disk0: 100% .*done\s*$/.test(p.message)), JSON.stringify(progress));
    assert.ok(progress.some((p) => p.urn.endsWith("::web-machine") && /^final pass, disk disk0: 100% .*done\s*$/.test(p.message)), JSON.stringify(progress));
    const client = await connect(sim);
    try {
      const vms = (await listVms(client)).filter((vm) => vm.name === "web");
      assert.equal(vms.length, 1);
      const config = await readVmConfig(client, vms[0]!.ref);
      assert.equal(config.cpus, 2);
      assert.equal(config.disks.length, 1);
      assert.equal(config.nics.length, 1);
      assert.equal(config.memoryMiB, 256);
      assert.equal(config.firmware, "bios");
      assert.equal(await vsphereDiskSha256(client, "vsphere://x/web/web-disk0.vmdk?dc=DC0&ds=LocalDS_0"), expected);
    } finally {
      await client.logout();
    }
    const state = await env.stack.exportStack();
    const machine = state.deployment.resources.find((r: { type: string }) => r.type === "pulumi-nodejs:dynamic/portable:Machine");
    const move = JSON.parse(machine.outputs.lastMove);
    assert.equal(move.state, "completed");
    assert.deepEqual(move.steps.map((s: { name: string }) => s.name), ["warm-passes", "stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
  });

  it("GIVEN the placement goes back to local WHEN up THEN it migrates back and the local machine boots", async () => {
    placement = { kind: "local", dir: localDir, bootMarker: image.marker };
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(await fileSha256(join(localDir, "disks", "web-disk0.raw")), expected);
    const state = await env.stack.exportStack();
    const disk = state.deployment.resources.find((r: { type: string }) => r.type === "pulumi-nodejs:dynamic/portable:Disk");
    assert.equal(disk.outputs.bytesSent, 0, "the kept local replica already held this content: no pass of the move re-sent it");
    const machine = state.deployment.resources.find((r: { type: string }) => r.type === "pulumi-nodejs:dynamic/portable:Machine");
    assert.equal(machine.outputs.running, true, "the local machine booted again");
  });

  it("WHEN destroyed THEN nothing is left in vcsim, on its datastore, in the local datastore or in the state folder", async () => {
    const result = await env.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    const client = await connect(sim);
    try {
      assert.deepEqual((await listVms(client)).filter((vm) => vm.name === "web"), []);
      const stale = await openVsphereDisk(client, `vsphere://x/web/web-disk0.vmdk?dc=DC0&ds=LocalDS_0`).then(() => true, () => false);
      assert.equal(stale, false, "the datastore disk is gone");
      assert.equal(await listDatastoreFolder(client, { datacenter: "DC0", datastore: "LocalDS_0", path: "web" }), undefined, "the workload's folder on the datastore is gone");
    } finally {
      await client.logout();
    }
    assert.deepEqual(await readdir(localDir), [], "no disk, no machine folder, no empty disks/ or machines/");
    assert.deepEqual(await readdir(stateDir), [], "no manifest, journal, placement record or timings");
  });
});
