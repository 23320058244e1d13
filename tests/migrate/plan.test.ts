// The plan counts what the target really lacks: an unchanged disk with a replica moves nothing,
// a changed one moves its changed blocks, and a new one moves its allocated data.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildManifest } from "../../sdk/disk/manifest.ts";
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
    assert.match(describePlan(changed), /disk0: memory, 1\.0 MiB to move of 6\.0 MiB allocated \(incremental\)/);
    assert.doesNotMatch(describePlan(fresh), /incremental/);
  });
});
