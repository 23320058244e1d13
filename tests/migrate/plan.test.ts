// The plan counts what the target really lacks: an unchanged disk with a replica moves nothing,
// a changed one moves its changed blocks, and a new one moves its allocated data.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BlockManifest, buildManifest } from "../../sdk/disk/manifest.ts";
import { describePlan, planMigration } from "../../sdk/migrate/plan.ts";
import { memorySource } from "../harness/disk.ts";

const MiB = 1024 * 1024;

describe("migration plan", () => {
  it("GIVEN a replica WHEN the disk is unchanged, partly changed or new THEN the plan moves nothing, the changed blocks, or the allocated data", async () => {
    const data = Buffer.alloc(16 * MiB);
    data.fill(0x5a, 0, 6 * MiB);
    const extents = [{ offsetBytes: 0, lengthBytes: 6 * MiB, kind: "data" as const }, { offsetBytes: 6 * MiB, lengthBytes: 10 * MiB, kind: "zero" as const }];
    const source = memorySource(data, extents);
    const committed = { manifest: await buildManifest(source), location: "x", targetState: { path: "x" }, passes: 1 };
    const options = { mode: "warm" as const, defaultSendBytesPerSecond: 1 * MiB, stopSeconds: 0, bootSeconds: 0 };
    const unchanged = await planMigration([{ key: "disk0", source, committed }], options);
    const changedData = Buffer.from(data);
    changedData.fill(0x11, 2 * MiB, 3 * MiB);
    const changed = await planMigration([{ key: "disk0", source: memorySource(changedData, extents), committed }], options);
    const fresh = await planMigration([{ key: "disk0", source }], options);
    assert.equal(unchanged.totalBytesToMove, 0);
    assert.equal(unchanged.downtimeBreakdown.send, 0);
    assert.equal(changed.totalBytesToMove, 1 * MiB);
    assert.equal(fresh.totalBytesToMove, 6 * MiB);
    assert.match(describePlan(changed), /disk0: memory, 1\.0 MiB to move of 6\.0 MiB allocated \(incremental; no change tracking: every pass, the final one too, scans the whole disk\)/);
    assert.doesNotMatch(describePlan(fresh), /incremental/);
  });

  it("GIVEN a replica whose source tracks its changes WHEN planned THEN nothing is read, the bytes are the tracker's, and the downtime is the same at 1 and 16 GiB", async () => {
    const replica = (virtualSizeBytes: number) => {
      const manifest = new BlockManifest(virtualSizeBytes, 512 * 1024);
      for (let i = 0; i < 1024; i++) manifest.set(i, Buffer.alloc(32, i % 251));
      return { manifest, location: "x", targetState: {}, passes: 2, lastPass: { bytesSent: 8 * MiB, scannedBytes: 8 * MiB, blocksSent: 16, seconds: 1.5, finishedAt: new Date().toISOString(), scan: "tracked" as const } };
    };
    const options = { mode: "warm" as const, stopSeconds: 1, bootSeconds: 2, verifyBlocks: 64 };
    // 4 MiB changed over 2 s: 2 MiB/s of change.
    const tracked = { changedBytes: 4 * MiB, overSeconds: 2 };
    const small = await planMigration([{ key: "disk0", committed: replica(1024 * MiB), tracked }], options);
    const large = await planMigration([{ key: "disk0", committed: replica(16 * 1024 * MiB), tracked }], options);
    assert.equal(small.totalBytesToMove, 4 * MiB);
    assert.equal(small.disks[0]!.tracked, true);
    assert.equal(small.finalDeltaFrom, "tracker");
    assert.ok(small.finalDeltaBytes > 0 && small.finalDeltaBytes < 4 * MiB, `the final delta is what the rate of change leaves after the warm passes (${small.finalDeltaBytes})`);
    assert.equal(large.downtimeSeconds, small.downtimeSeconds, "the downtime does not grow with the virtual size");
    assert.match(describePlan(small), /change tracking: the final pass reads only what changed/);
    const faster = await planMigration([{ key: "disk0", committed: replica(1024 * MiB), tracked: { changedBytes: 40 * MiB, overSeconds: 2 } }], options);
    assert.ok(faster.finalDeltaBytes > small.finalDeltaBytes, "a faster rate of change gives a larger final delta");
  });
});
