// Chaos over full placements, bounded for CI: a fixed seed, three runs (local → vSphere on
// vcsim, → EBS on moto, → an Azure page blob on Azurite), a high fault rate and a SIGKILL in
// most runs. Every run must end with the target reading back equal to the source, every failed
// attempt must carry an error code, and none may hang. `npm run chaos` runs more, longer.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runChaos } from "./chaos-runner.ts";

const MiB = 1024 * 1024;

describe("chaos: faults and SIGKILLs over full placements (seeded)", { timeout: 600_000 }, () => {
  it("GIVEN faults at the proxies and kills at seeded points WHEN each run is resumed THEN every target equals its source and no failure is uncoded", async () => {
    const summary = await runChaos({
      seed: 2024,
      runs: 3,
      targets: ["vsphere", "ebs", "azure"],
      faultRate: 0.25,
      killRate: 0.7,
      imageBytes: 32 * MiB,
      faultyResumes: 1,
      childTimeoutMs: 240_000,
    });
    const detail = JSON.stringify({ ...summary, records: summary.records });
    assert.equal(summary.runs, 3);
    assert.deepEqual(summary.byTarget, { vsphere: 1, ebs: 1, azure: 1 });
    assert.ok(summary.faultsTotal > 0, `faults were injected: ${detail}`);
    assert.equal(summary.hangs, 0, `no attempt hung: ${detail}`);
    assert.equal(summary.uncleanFailures, 0, `every failed attempt carried an error code: ${detail}`);
    assert.equal(summary.dataLost, 0, `every target read back equal to its source: ${detail}`);
    assert.equal(summary.endedCorrect, 3);
    for (const record of summary.records) {
      if (record.killed || record.errors.length > 0) assert.ok(record.attempts >= 2, `run ${record.run} was interrupted, so it was resumed`);
    }
  });
});
