// Kills during a cutover, and the run after them. Each run places a two-disk workload on local
// datastore A with a real QEMU guest that stays up, writes to its data disk as the guest would
// (the source's last state), then moves it to B (another local datastore, or vSphere on vcsim,
// where the disks become a flat base and delta disks) in a child process
// (tests/chaos/move-child.ts) that is SIGKILLed at one point of the sequence: after the warm
// passes, after the stop, during the final pass, after it, after verify, after the target
// started, after the health check, after the commit. The move is then run again, as the next
// `pulumi up` would, from the caller's record (the workload on A). Every run must end with
// exactly one machine running, A's or B's, whose disks hash equal to the source's last state;
// a run killed after the commit must be taken over, not cut over twice.
// Shared by `npm run chaos` (scripts/chaos.ts) and the CI test (cutover-chaos.test.ts).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatastore } from "../../sdk/clouds/local/datastore.ts";
import { connectVsphere, openVsphereDisk } from "../../sdk/clouds/vsphere/disk-url.ts";
import { findVm } from "../../sdk/clouds/vsphere/inventory.ts";
import { powerState } from "../../sdk/clouds/vsphere/vm.ts";
import type { VsphereConnection } from "../../sdk/contracts/vsphere-connection.ts";
import { machineStatus } from "../../sdk/clouds/local/lifecycle.ts";
import { removeDisk } from "../../sdk/migrate/disk-placement.ts";
import { destroyMachine, placeWorkload, removeWorkload, type PlacedDiskRecord } from "../../sdk/migrate/machine-placement.ts";
import type { CutoverRecord } from "../../sdk/migrate/migrate.ts";
import { diskTargetFor } from "../../sdk/migrate/targets.ts";
import { placementSchema } from "../../sdk/spec/placement.ts";
import { parseWorkload } from "../../sdk/spec/workload.ts";
import { buildBootImage } from "../harness/boot-image.ts";
import { fileSha256, sourceSha256 } from "../harness/disk.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { MiB, writeBlocks } from "../transfer/replica-helpers.ts";
import type { MoveChildArgs } from "./move-child.ts";

export const CUTOVER_KILL_POINTS = ["warm-passes", "stop-source", "final-pass:during", "final-pass", "verify", "start-target", "health-check", "commit"] as const;
export type CutoverKillPoint = (typeof CUTOVER_KILL_POINTS)[number];

export interface CutoverChaosRecord {
  readonly point: CutoverKillPoint;
  /** The child died by SIGKILL (the point was reached). */
  readonly killed: boolean;
  /** Machines running after the run that followed: "A", "B". */
  readonly running: string[];
  /** The running machine's disks hash equal to the source's last state. */
  readonly diskEqual: boolean;
  /** The run after the kill took over a committed move instead of running it again. */
  readonly adopted: boolean;
  readonly seconds: number;
  readonly error?: string;
}

interface ChildOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(args: MoveChildArgs, timeoutMs: number): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "tests/chaos/move-child.ts"), JSON.stringify(args)], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function running(dir: string, name: string): Promise<boolean> {
  return (await machineStatus(await openDatastore(dir), name)).state === "running";
}

async function withVsphere<T>(connection: VsphereConnection, fn: (client: Awaited<ReturnType<typeof connectVsphere>>) => Promise<T>): Promise<T> {
  const client = await connectVsphere(connection);
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => {});
  }
}

/** Whether the VM named `name` exists and is powered on. */
async function vmRunning(connection: VsphereConnection, name: string): Promise<boolean> {
  return withVsphere(connection, async (client) => {
    const ref = await findVm(client, name).catch(() => undefined);
    return ref !== undefined && (await powerState(client, ref)) === "poweredOn";
  });
}

async function vsphereDiskSha256(connection: VsphereConnection, target: string): Promise<string> {
  return withVsphere(connection, async (client) => {
    const disk = await openVsphereDisk(client, target);
    return sourceSha256(disk).finally(() => disk.close());
  });
}

export type CutoverChaosTarget = "local" | "vsphere";

export async function runCutoverChaos(options: { readonly points: readonly CutoverKillPoint[]; readonly target?: CutoverChaosTarget; readonly childTimeoutMs?: number; readonly log?: (line: string) => void }): Promise<CutoverChaosRecord[]> {
  const image = await buildBootImage({ firmware: "bios", afterMarker: "stay" });
  const records: CutoverChaosRecord[] = [];
  const toVsphere = options.target === "vsphere";
  const sim: Vcsim | undefined = toVsphere ? await startVcsim() : undefined;
  const connection = sim === undefined ? undefined : { url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem };
  const password = process.env.VSPHERE_PASSWORD;
  // The child reads it as the Machine provider does.
  if (sim !== undefined) process.env.VSPHERE_PASSWORD = sim.password;
  try {
    for (const [index, point] of options.points.entries()) {
      // A short folder: QMP's unix socket path must stay under 108 bytes.
      const root = await mkdtemp(join(tmpdir(), "pw-cx-"));
      const started = performance.now();
      const stateDir = join(root, "st");
      const dataSource = join(root, "data.raw");
      await writeBlocks(dataSource, 8 * MiB, [0, 4], "first");
      const spec = {
        name: "cx",
        memoryMiB: 128,
        firmware: { type: "bios" },
        disks: [
          { id: "disk0", sizeBytes: image.sizeBytes, source: { kind: "file", path: image.path, format: "raw" }, bus: "sata", bootOrder: 0 },
          { id: "data", sizeBytes: 8 * MiB, source: { kind: "file", path: dataSource, format: "raw" }, bus: "sata" },
        ],
        guestOs: { family: "linux" },
      };
      const workload = parseWorkload(spec);
      const placementA = { kind: "local", dir: join(root, "a"), bootMarker: image.marker };
      const placementB = sim === undefined
        ? { kind: "local", dir: join(root, "b"), bootMarker: image.marker }
        : { kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, folder: `cx${index}` };
      const a = placementSchema.parse(placementA);
      const b = placementSchema.parse(placementB);
      const plansOn = (placement: typeof a) => workload.disks.map((d) => ({ id: d.id, source: d.id === "data" ? dataSource : image.path, sourceFormat: "raw", target: diskTargetFor(placement, "cx", d.id) }));
      let record: CutoverChaosRecord;
      let placedA: { machineId: string; disks: PlacedDiskRecord[] } | undefined;
      try {
        const onA = await placeWorkload({ workload, placement: a, disks: [], stateDir }, { stateDir, verify: "none" }, plansOn(a));
        placedA = { machineId: onA.state.machineId, disks: onA.disks };
        // The guest's last writes before the move: what every disk must hold at the end.
        await writeBlocks(onA.disks.find((d) => d.id === "data")!.location, undefined, [2, 9], `written-${point}`);
        const expected = await Promise.all(onA.disks.map((d) => fileSha256(d.location)));
        const move: MoveChildArgs = {
          spec,
          from: { placement: placementA, machineId: onA.state.machineId, disks: onA.disks },
          to: { placement: placementB, targets: Object.fromEntries(plansOn(b).map((p) => [p.id, p.target])) },
          stateDir,
        };
        const timeout = options.childTimeoutMs ?? 240_000;
        const killed = await runChild({ ...move, killAt: point }, timeout);
        // The next `up`: the caller's record still has the workload on A.
        const after = await runChild(move, timeout);
        if (after.code !== 0) throw new Error(`the run after the kill failed (${after.code ?? after.signal}): ${after.stderr.trim().split("\n").slice(-3).join(" | ")}`);
        const result = JSON.parse(after.stdout.trim().split("\n").at(-1)!) as { record: CutoverRecord; disks: PlacedDiskRecord[] };
        const onB = connection === undefined ? await running((placementB as { dir: string }).dir, "cx") : await vmRunning(connection, "cx");
        const up = [...((await running(placementA.dir, "cx")) ? ["A"] : []), ...(onB ? ["B"] : [])];
        const hashes = up[0] === "A" || connection === undefined
          ? await Promise.all((up[0] === "A" ? onA.disks : result.disks).map((d) => fileSha256(d.location)))
          : await Promise.all(result.disks.map((d) => vsphereDiskSha256(connection, d.target)));
        record = {
          point,
          killed: killed.signal === "SIGKILL",
          running: up,
          diskEqual: hashes.every((h, i) => h === expected[i]),
          adopted: result.record.adopted === true,
          seconds: Math.round((performance.now() - started) / 100) / 10,
        };
      } catch (error) {
        record = { point, killed: false, running: [], diskEqual: false, adopted: false, seconds: Math.round((performance.now() - started) / 100) / 10, error: (error as Error).message };
      } finally {
        // Both machines go, whatever happened; then the folder.
        if (connection === undefined) await removeWorkload({ workload, placement: b, disks: [], stateDir }, "cx", stateDir).catch(() => {});
        else {
          // The VM if one is left, then every disk's chain on the datastore.
          const vm = await withVsphere(connection, async (client) => (await findVm(client, "cx").catch(() => undefined))?.value).catch(() => undefined);
          const onB = { workload, placement: b, disks: plansOn(b).map((p) => ({ id: p.id, target: p.target, location: "" })), stateDir, vsphere: connection };
          if (vm !== undefined) await destroyMachine(onB, vm).catch(() => {});
          for (const disk of onB.disks) await removeDisk({ workload: "cx", disk: disk.id, target: disk.target, stateDir, virtualSizeBytes: 0, vsphere: connection }).catch(() => {});
        }
        if (placedA !== undefined) await removeWorkload({ workload, placement: a, disks: [], stateDir }, placedA.machineId, stateDir).catch(() => {});
        await rm(root, { recursive: true, force: true });
      }
      options.log?.(`cutover chaos (${toVsphere ? "local → vSphere" : "local → local"}): killed at ${point.padEnd(18)} ${record.killed ? "killed" : "NOT KILLED"}, then: running ${record.running.join("+") || "none"}, disks ${record.diskEqual ? "equal" : "DIFFER"}${record.adopted ? ", committed move taken over" : ""}, ${record.seconds} s${record.error ? `, error: ${record.error}` : ""}`);
      records.push(record);
    }
  } finally {
    if (sim !== undefined) {
      if (password === undefined) delete process.env.VSPHERE_PASSWORD;
      else process.env.VSPHERE_PASSWORD = password;
      await sim.stop();
    }
  }
  return records;
}
