// Warm migration end to end on files: a writer process changes the source while it is
// replicated; passes converge; the cutover stops the source, sends the last delta, verifies,
// starts the target and checks it. A failing health check rolls back and says so on disk.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDisk } from "../../sdk/disk/open.ts";
import { blockReplication, cutover, CutoverError, warmReplicate } from "../../sdk/migrate/migrate.ts";
import { planMigration } from "../../sdk/migrate/plan.ts";
import type { DiskReplication } from "../../sdk/migrate/types.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { rawFileReplica } from "../../sdk/clouds/local/replica-target.ts";
import { fileSha256 } from "../harness/disk.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { MiB, spread, writeBlocks } from "../transfer/replica-helpers.ts";
import { processMachine } from "./helpers.ts";

const SIZE = 64 * MiB;
const WRITER = join(REPO_ROOT, "tests/migrate/fixtures/writer.ts");
const node = process.execPath;

function diskFor(source: string, target: string, key: string, store: FileReplicaStore): DiskReplication {
  return blockReplication({
    key,
    store,
    conversion: "raw → raw (local)",
    openPointInTime: async () => {
      const disk = await openDisk(source, { format: "raw" });
      return { source: disk, release: () => disk.close() };
    },
    target: rawFileReplica({ path: target, virtualSizeBytes: SIZE }),
  });
}

describe("warm migration and cutover", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pw-cutover-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a source written to during replication WHEN the passes converge and the cutover runs THEN the target equals the stopped source", async () => {
    const source = join(dir, "src.raw");
    const target = join(dir, "dst.raw");
    await writeBlocks(source, SIZE, spread(100, SIZE / (512 * 1024)), "v1");
    const store = new FileReplicaStore(join(dir, "state"));
    const sourceMachine = processMachine("source", node, [WRITER, source, "32"]);
    const targetMachine = processMachine("target", node, ["-e", "process.stdout.write('up\\n'); setInterval(() => {}, 1000)"]);
    const disks = [diskFor(source, target, "disk0", store)];
    await sourceMachine.start();
    try {
      const warm = await warmReplicate(disks, { deltaThresholdBytes: 24 * MiB, maxPasses: 6 });
      assert.ok(warm.passes.length >= 2, "the first full copy, then at least one delta");
      assert.ok(warm.passes[1]!.bytesSent > 0, "the writer changed blocks between passes");
      assert.ok(warm.passes[1]!.bytesSent < warm.passes[0]!.bytesSent, "a delta is smaller than the full copy");

      const committed = await store.loadCommitted("disk0");
      const view = await openDisk(source, { format: "raw" });
      const plan = await planMigration([{ key: "disk0", source: view, ...(committed ? { committed } : {}) }], { mode: "warm", bootSeconds: 1, stopSeconds: 1 });
      await view.close();
      assert.equal(plan.disks[0]!.replicaExists, true);
      assert.ok(plan.downtimeSeconds > 0);

      const recordPath = join(dir, "cutover.json");
      const record = await cutover({
        source: sourceMachine,
        target: targetMachine,
        disks,
        verify: { mode: "full" },
        gracefulTimeoutMs: 5_000,
        recordPath,
        healthCheck: async () => ({ ok: await targetMachine.staysUp(500), detail: `pid ${targetMachine.pid()} stayed up` }),
      });
      assert.equal(record.state, "completed");
      assert.deepEqual(record.steps.map((s) => s.name), ["stop-source", "final-pass", "verify", "start-target", "health-check"]);
      assert.ok(record.steps.every((s) => s.ok && Date.parse(s.endedAt) >= Date.parse(s.startedAt)));
      assert.equal(await sourceMachine.isRunning(), false, "the source stays stopped");
      assert.equal(await fileSha256(target), await fileSha256(source), "the target holds exactly the stopped source");
      assert.ok((record.downtimeMs ?? 0) > 0);
      assert.equal(JSON.parse(await readFile(recordPath, "utf8")).state, "completed");
    } finally {
      await sourceMachine.stop();
      await targetMachine.stop();
    }
  });

  it("GIVEN a target that fails its health check WHEN cutting over THEN it rolls back: the source runs again and the record says rolled-back", async () => {
    const source = join(dir, "src2.raw");
    const target = join(dir, "dst2.raw");
    await writeBlocks(source, SIZE, spread(20, SIZE / (512 * 1024), 2), "v1");
    const store = new FileReplicaStore(join(dir, "state2"));
    const sourceMachine = processMachine("source", node, [WRITER, source, "16"]);
    // A target that dies at boot.
    const targetMachine = processMachine("target", node, ["-e", "process.stdout.write('booting\\n'); process.exit(3)"]);
    const disks = [diskFor(source, target, "disk0", store)];
    await sourceMachine.start();
    const firstPid = sourceMachine.pid();
    try {
      await warmReplicate(disks, { maxPasses: 1 });
      const recordPath = join(dir, "cutover2.json");
      const error = await cutover({
        source: sourceMachine,
        target: targetMachine,
        disks,
        verify: { mode: "sampled", blocks: 8 },
        gracefulTimeoutMs: 5_000,
        recordPath,
        healthCheck: async () => ({ ok: await targetMachine.staysUp(2_000), detail: "the target process did not stay up" }),
      }).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof CutoverError, `expected a CutoverError, got ${String(error)}`);
      assert.equal(error.code, "CUTOVER_ROLLED_BACK");
      assert.equal(error.record.state, "rolled-back");
      assert.deepEqual(error.record.steps.map((s) => `${s.name}:${s.ok}`), [
        "stop-source:true", "final-pass:true", "verify:true", "start-target:true", "health-check:false", "rollback-stop-target:true", "rollback-start-source:true",
      ]);
      assert.equal(await sourceMachine.isRunning(), true, "the source runs again");
      assert.notEqual(sourceMachine.pid(), firstPid);
      assert.equal(sourceMachine.starts(), 2);
      const saved = JSON.parse(await readFile(recordPath, "utf8"));
      assert.equal(saved.state, "rolled-back");
      assert.equal(saved.error.code, "HEALTH_CHECK_FAILED");
    } finally {
      await sourceMachine.stop();
    }
  });
});
