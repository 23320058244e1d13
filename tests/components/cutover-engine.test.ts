// The move sequence through the real engine, local datastore to local datastore, with a guest
// that stays up (the source runs during the warm passes) and a data disk the test writes to as
// the guest would (issue #17: options, rollback, only the delta on a flip back):
// 1. up on A: both disks placed, the machine runs;
// 2. maxPasses 1 → B: one warm pass, then the cutover, committed; B holds A's data as it was at the stop;
// 3. cold → A (kept): the source stops first, and the one copy sends only the changed blocks;
// 4. a target whose health check fails → D: rolled back; the source runs again, D is empty, every
//    record stays on A, and the next preview and up with A change nothing;
// 5. cutover false → C: replicas staged on C, the source runs on, nothing is committed;
// 6. cutover true → C: the staged replica is current, the first warm pass sends nothing;
// 7. C → B while the guest writes to its disk all along: each warm pass sends the new writes, and
//    B holds C's disk as it was at the stop;
// 8. B → vSphere (vcsim) while the guest writes all along: the first pass copies the disk, every
//    later pass (the final one too) sends only the new writes, as delta disks on the datastore,
//    and the chain there reads as B's disk at the stop;
// 9. vSphere → B (kept): nothing changed on vSphere (vcsim runs no guest), so nothing is sent, and
//    B holds the disk the chain held;
// 10. destroy leaves no file in any datastore (vcsim's too) or in the state folder.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload, type WorkloadArgs } from "../../components/workload.ts";
import { openDatastore } from "../../sdk/clouds/local/datastore.ts";
import { listDatastoreFolder, statDatastoreFile } from "../../sdk/clouds/vsphere/datastore.ts";
import { connectVsphere, openVsphereDisk } from "../../sdk/clouds/vsphere/disk-url.ts";
import { machineFiles, machineStatus } from "../../sdk/clouds/local/lifecycle.ts";
import { connectQmp } from "../../sdk/clouds/local/qmp.ts";
import type { CutoverRecord } from "../../sdk/migrate/migrate.ts";
import type { PlacementInput, MigrationPolicyInput } from "../../sdk/spec/placement.ts";
import { buildBootImage, type BootImage } from "../harness/boot-image.ts";
import { fileSha256, sourceSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { BLOCK, MiB, writeBlocks } from "../transfer/replica-helpers.ts";

interface StateResource {
  readonly type: string;
  readonly urn: string;
  readonly outputs: Record<string, unknown>;
}

const MACHINE = "pulumi-nodejs:dynamic/portable:Machine";
const DISK = "pulumi-nodejs:dynamic/portable:Disk";
const DATA_BYTES = 8 * MiB;

/** Every file (not folder) under `dir`, relative; [] when it has none or does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

async function running(dir: string, name: string): Promise<boolean> {
  return (await machineStatus(await openDatastore(dir), name)).state === "running";
}

describe("Workload moves through the Pulumi engine: options, rollback, deltas", { timeout: 900_000 }, () => {
  let env: InlineStack;
  let image: BootImage;
  let args: WorkloadArgs;
  let dirs: Record<"a" | "b" | "c" | "d", string>;
  let dataSource = "";
  let sim: Vcsim;

  const local = (dir: string, extra: Partial<Extract<PlacementInput, { kind: "local" }>> = {}): PlacementInput => ({ kind: "local", dir, bootMarker: image.marker, ...extra });
  const withArgs = (placement: PlacementInput, migration: MigrationPolicyInput): void => {
    args = { ...args, placement, migration: { stopGraceSeconds: 2, verify: "full", ...migration } };
  };
  const resource = async (type: string): Promise<StateResource> => {
    const state = await env.stack.exportStack();
    const found = (state.deployment.resources as StateResource[]).find((r) => r.type === type && r.urn.endsWith(type === DISK ? "::mv-data" : "::mv-machine"));
    assert.ok(found, `${type} is in the state`);
    return found;
  };
  const lastMove = async (): Promise<CutoverRecord> => JSON.parse((await resource(MACHINE)).outputs.lastMove as string) as CutoverRecord;
  const diskOn = (dir: string, id: string): string => join(dir, "disks", `mv-${id}.raw`);

  before(async () => {
    [image, sim] = await Promise.all([buildBootImage({ firmware: "bios", afterMarker: "stay" }), startVcsim()]);
    env = await createInlineStack("pw-cutover", async () => {
      const workload = new Workload("mv", args);
      return { disks: workload.disks };
    }, { VSPHERE_PASSWORD: sim.password });
    dirs = { a: join(env.dir, "a"), b: join(env.dir, "b"), c: join(env.dir, "c"), d: join(env.dir, "d") };
    dataSource = join(env.dir, "data.raw");
    await writeBlocks(dataSource, DATA_BYTES, [0, 3, 7], "first");
    args = {
      spec: {
        name: "mv",
        memoryMiB: 128,
        firmware: { type: "bios" },
        disks: [
          { id: "disk0", sizeBytes: image.sizeBytes, source: { kind: "file", path: image.path, format: "raw" }, bus: "sata", bootOrder: 0 },
          { id: "data", sizeBytes: DATA_BYTES, source: { kind: "file", path: dataSource, format: "raw" }, bus: "sata" },
        ],
        guestOs: { family: "linux", distribution: "debian", version: "12" },
      },
      placement: local(dirs.a),
      stateDir: join(env.dir, "state"),
    };
    withArgs(local(dirs.a), {});
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
    await sim?.stop();
  });

  const vsphere = (): PlacementInput => ({ kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, folder: "mv" });
  const vsphereData = `mv/mv-data.vmdk`;
  /** The data disk as the chain on vcsim's datastore reads, and the folder's files. */
  const onVsphere = async (): Promise<{ sha256: string; files: string[] }> => {
    const client = await connectVsphere({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
    try {
      const disk = await openVsphereDisk(client, `vsphere://x/${vsphereData}?dc=DC0&ds=LocalDS_0`);
      const sha256 = await sourceSha256(disk).finally(() => disk.close());
      const files = ((await listDatastoreFolder(client, { datacenter: "DC0", datastore: "LocalDS_0", path: "mv" })) ?? []).sort();
      return { sha256, files };
    } finally {
      await client.logout();
    }
  };
  /** Writes through the guest's own QEMU until stopped or the machine is; returns how many. */
  const guestWriter = (dir: string) => {
    let written = 0;
    let writing = true;
    const done = (async () => {
      // QMP takes one client at a time and the warm passes need it too, so each write has its own
      // short connection (it waits its turn while a pass freezes the disk).
      const socket = (await machineFiles(await openDatastore(dir), "mv")).qmpSocket;
      for (let i = 0; writing; i++) {
        try {
          const qmp = await connectQmp(socket, 60_000);
          try {
            const out = await qmp.execute("human-monitor-command", { "command-line": `qemu-io drive1 "write -P ${(i % 250) + 1} ${(i * 64 * 1024) % DATA_BYTES} 64k"` });
            if (typeof out === "string" && /error|failed/i.test(out)) throw new Error(out);
            written++;
          } finally {
            qmp.close();
          }
        } catch {
          if (!(await running(dir, "mv"))) return; // the source stopped
        }
        // Often enough that every pass, however short (a tracked pass takes tens of ms), has new
        // writes to catch up on.
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    return { stop: async () => { writing = false; await done; return written; } };
  };
  const dataOf = (pass: { disks: ReadonlyArray<{ key: string; bytesSent: number }> }) => pass.disks.find((d) => d.key === "data")!.bytesSent;

  it("GIVEN a local placement WHEN up THEN both disks are placed and the guest runs", async () => {
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(await fileSha256(diskOn(dirs.a, "data")), await fileSha256(dataSource));
    assert.equal(await running(dirs.a, "mv"), true, "the guest stays up after its marker");
  });

  it("GIVEN maxPasses 1 WHEN it moves to B THEN exactly one warm pass runs before the cutover, and B holds A's data at the stop", async () => {
    // The guest's writes since the first placement, made while it runs.
    await writeBlocks(diskOn(dirs.a, "data"), undefined, [1, 2], "written-on-a");
    const expected = await fileSha256(diskOn(dirs.a, "data"));
    withArgs(local(dirs.b), { maxPasses: 1 });
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.state, "completed");
    assert.equal(move.mode, "warm");
    // An idle source converges on its second pass (it sends nothing): more than one pass means maxPasses was ignored.
    assert.equal(move.warmPasses?.length, 1, JSON.stringify(move.warmPasses));
    assert.deepEqual(move.steps.map((s) => s.name), ["warm-passes", "stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
    assert.equal(await fileSha256(diskOn(dirs.b, "data")), expected);
    assert.equal(await running(dirs.a, "mv"), false, "the source is stopped (kept)");
    assert.equal(await running(dirs.b, "mv"), true);
    assert.equal((await resource(DISK)).outputs.location, diskOn(dirs.b, "data"));
  });

  it("GIVEN mode cold WHEN it flips back to A THEN the source stops before any copy, and only the changed blocks are sent", async () => {
    await writeBlocks(diskOn(dirs.b, "data"), undefined, [5], "written-on-b");
    const expected = await fileSha256(diskOn(dirs.b, "data"));
    withArgs(local(dirs.a), { mode: "cold" });
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.mode, "cold");
    assert.equal(move.warmPasses, undefined, "no pass while the source ran");
    assert.deepEqual(move.steps.map((s) => s.name), ["stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
    const data = move.finalPass!.disks.find((d) => d.key === "data")!;
    const boot = move.finalPass!.disks.find((d) => d.key === "disk0")!;
    // A's kept replica differs from B in block 5 only: blocks 1 and 2 were written on A itself
    // and went to B, so A's record must say it holds them (a stale record would send them back).
    assert.equal(data.bytesSent, BLOCK, "one changed block of the data disk");
    assert.equal(boot.bytesSent, 0, "the boot disk did not change");
    assert.equal(await fileSha256(diskOn(dirs.a, "data")), expected);
    assert.equal(await running(dirs.a, "mv"), true);
  });

  it("GIVEN a target whose health check fails WHEN up THEN it rolls back: the source runs, the target is removed, and the records stay on the source", async () => {
    const before = await fileSha256(diskOn(dirs.a, "data"));
    withArgs(local(dirs.d, { bootMarker: "NEVER-PRINTED", bootTimeoutSeconds: 5 }), {});
    let output = "";
    const failed = await env.stack.up({ onOutput: (t) => (output += t) }).then(() => false, () => true);
    assert.equal(failed, true, "up fails");
    assert.match(output, /CUTOVER_ROLLED_BACK|cutover rolled-back/);
    assert.match(output, /HEALTH_CHECK_FAILED|no "NEVER-PRINTED" on the serial console/);
    assert.equal(await running(dirs.a, "mv"), true, "the source was started again");
    assert.deepEqual(await filesUnder(dirs.d), [], "no disk and no machine left on the target");
    assert.equal(await fileSha256(diskOn(dirs.a, "data")), before);
    const disk = await resource(DISK);
    assert.equal(disk.outputs.location, diskOn(dirs.a, "data"), "the disk's record stays on the source");
    const machine = await resource(MACHINE);
    assert.equal(JSON.parse(machine.outputs.live as string).dir, dirs.a, "the placement's record stays on the source");

    // Back to the old placement: nothing to do, nothing sent.
    withArgs(local(dirs.a), {});
    const preview = await env.stack.preview();
    assert.deepEqual(Object.keys(preview.changeSummary).filter((op) => op !== "same"), [], JSON.stringify(preview.changeSummary));
    const again = await env.stack.up();
    assert.equal(again.summary.result, "succeeded");
    assert.deepEqual(Object.keys(again.summary.resourceChanges ?? {}).filter((op) => op !== "same"), [], JSON.stringify(again.summary.resourceChanges));
  });

  it("GIVEN cutover false WHEN it moves to C THEN replicas are staged on C and the source runs on, recorded where it is", async () => {
    await writeBlocks(diskOn(dirs.a, "data"), undefined, [6], "written-on-a-again");
    withArgs(local(dirs.c), { cutover: false });
    let planned = "";
    await env.stack.preview({ onOutput: (t) => (planned += t) });
    assert.match(planned, /mv: local → local \(warm\), 2 disk\(s\)/);
    assert.match(planned, /no cutover \(migration\.cutover: false\): replicas are staged on local and the source keeps running/);
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.state, "staged");
    assert.deepEqual(move.steps.map((s) => s.name), ["warm-passes"]);
    assert.equal(await running(dirs.a, "mv"), true, "the source was not stopped");
    assert.equal(await running(dirs.c, "mv"), false, "no machine on C");
    assert.equal(await fileSha256(diskOn(dirs.c, "data")), await fileSha256(diskOn(dirs.a, "data")), "the staged replica holds the running source's data");
    assert.equal((await resource(DISK)).outputs.location, diskOn(dirs.a, "data"));
    assert.equal(JSON.parse((await resource(MACHINE)).outputs.live as string).dir, dirs.a);
  });

  it("GIVEN the staged placement WHEN cutover is turned on THEN the move sends no block twice and commits", async () => {
    withArgs(local(dirs.c), {});
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.state, "completed");
    assert.equal(move.warmPasses![0]!.bytesSent, 0, "the staged replicas were current");
    assert.equal(await running(dirs.c, "mv"), true);
    assert.equal(await running(dirs.a, "mv"), false);
    assert.equal((await resource(DISK)).outputs.location, diskOn(dirs.c, "data"));
  });

  it("GIVEN a guest writing to its disk all along WHEN it moves warm THEN every pass catches up on it, and the target holds the source's state at the stop", async () => {
    // The guest's writes, issued through its own QEMU (the HMP qemu-io command writes through the
    // same block layer as the guest's disk controller), keep coming until the machine is stopped.
    const writer = guestWriter(dirs.c);
    withArgs(local(dirs.b), { maxPasses: 3 });
    const result = await env.stack.up();
    const written = await writer.stop();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.state, "completed");
    assert.ok(written > 0, "the guest wrote while the move ran");
    assert.ok(move.warmPasses!.length >= 2, `the writes kept the warm loop going: ${move.warmPasses!.length} pass(es)`);
    assert.ok(move.warmPasses!.slice(1).every((p) => dataOf(p) > 0), `each warm pass after the first sent the guest's new writes: ${move.warmPasses!.map(dataOf).join(", ")}`);
    assert.ok(dataOf(move.finalPass!) < DATA_BYTES, "the final pass sent a delta, not the disk");
    assert.equal(await fileSha256(diskOn(dirs.b, "data")), await fileSha256(diskOn(dirs.c, "data")), "the target holds every write the source made before it stopped");
    assert.equal(await running(dirs.b, "mv"), true);
    assert.equal(await running(dirs.c, "mv"), false);
  });

  it("GIVEN the guest writing all along WHEN it moves warm to vSphere THEN only the first pass copies the disk, every later one sends the new writes as a delta disk, and the chain holds the source at the stop", async () => {
    const writer = guestWriter(dirs.b);
    withArgs(vsphere(), { maxPasses: 3 });
    const result = await env.stack.up();
    const written = await writer.stop();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.state, "completed");
    assert.deepEqual(move.steps.map((s) => s.name), ["warm-passes", "stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
    assert.ok(written > 0, "the guest wrote while the move ran");
    const passes = [...move.warmPasses!, move.finalPass!].map(dataOf);
    assert.ok(move.warmPasses!.length >= 2, `the writes kept the warm loop going: ${passes.join(", ")}`);
    assert.ok(passes.slice(1).every((bytes) => bytes < passes[0]!), `the first visit copies the data disk, later passes less: ${passes.join(", ")}`);
    const { sha256, files } = await onVsphere();
    assert.equal(sha256, await fileSha256(diskOn(dirs.b, "data")), "the chain on the datastore holds every write the source made before it stopped");
    // Each later pass that sent anything is one delta disk on the datastore, of its blocks and their tables only.
    const client = await connectVsphere({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
    try {
      const deltas = passes.slice(1).filter((bytes) => bytes > 0);
      assert.ok(deltas.length > 0, `the guest's writes reached a later pass: ${passes.join(", ")}`);
      for (const [i, bytes] of deltas.entries()) {
        const size = await statDatastoreFile(client, { datacenter: "DC0", datastore: "LocalDS_0", path: `mv/mv-data-pw${i + 2}-delta.vmdk` });
        assert.ok(size !== undefined && size >= bytes && size <= bytes + 128 * 1024, `pass ${i + 2}: a delta disk of ${size} bytes for ${bytes} bytes sent (${files.join(" ")})`);
      }
    } finally {
      await client.logout();
    }
    assert.equal(await running(dirs.b, "mv"), false);
  });

  it("GIVEN nothing written on vSphere WHEN it moves back to B (kept) THEN nothing of the data disk is sent and B holds what the chain held", async () => {
    const { sha256 } = await onVsphere();
    withArgs(local(dirs.b), {});
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const move = await lastMove();
    assert.equal(move.state, "completed");
    assert.deepEqual([...move.warmPasses!, move.finalPass!].map(dataOf).filter((bytes) => bytes > 0), [], "B's kept replica already held the chain's blocks");
    assert.equal(await fileSha256(diskOn(dirs.b, "data")), sha256);
    assert.equal(await running(dirs.b, "mv"), true);
  });

  it("WHEN destroyed THEN no file is left in any datastore or in the state folder", async () => {
    const result = await env.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    for (const dir of Object.values(dirs)) assert.deepEqual(await filesUnder(dir), [], dir);
    const client = await connectVsphere({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
    assert.equal(await listDatastoreFolder(client, { datacenter: "DC0", datastore: "LocalDS_0", path: "mv" }).finally(() => client.logout()), undefined, "[LocalDS_0] mv/ is gone");
    assert.deepEqual(await filesUnder(join(env.dir, "state")), []);
  });
});
