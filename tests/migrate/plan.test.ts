// The plan counts what each target really takes: an unchanged disk on an incremental target
// moves nothing, but a target that takes whole disks (a vSphere datastore) gets all of it on
// every pass, the final one inside the downtime included, and the plan says so.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildManifest } from "../../sdk/disk/manifest.ts";
import { describePlan, planMigration } from "../../sdk/migrate/plan.ts";
import { memorySource } from "../harness/disk.ts";

const MiB = 1024 * 1024;

describe("migration plan", () => {
  it("GIVEN an unchanged disk with a replica WHEN the target is incremental or takes whole disks THEN only the whole-disk target moves it all, inside the downtime too", async () => {
    const data = Buffer.alloc(16 * MiB);
    data.fill(0x5a, 0, 6 * MiB);
    const source = memorySource(data, [{ offsetBytes: 0, lengthBytes: 6 * MiB, kind: "data" }, { offsetBytes: 6 * MiB, lengthBytes: 10 * MiB, kind: "zero" }]);
    const committed = { manifest: await buildManifest(source), location: "x", targetState: { path: "x" }, passes: 1 };
    const options = { mode: "warm" as const, defaultSendBytesPerSecond: 1 * MiB, stopSeconds: 0, bootSeconds: 0 };
    const incremental = await planMigration([{ key: "disk0", source, committed }], options);
    const whole = await planMigration([{ key: "disk0", source, committed, fullCopy: true }], options);
    assert.equal(incremental.totalBytesToMove, 0);
    assert.equal(incremental.downtimeBreakdown.send, 0);
    assert.equal(whole.totalBytesToMove, 6 * MiB);
    assert.equal(whole.disks[0]!.fullCopy, true);
    assert.equal(whole.downtimeBreakdown.send, 6, "6 MiB at 1 MiB/s, while the source is down");
    assert.match(describePlan(whole), /disk0: memory, 6\.0 MiB to move of 6\.0 MiB allocated \(full copy on every pass/);
    assert.doesNotMatch(describePlan(incremental), /full copy/);
  });
});
