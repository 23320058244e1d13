// A SIGKILL at each point of a cutover (tests/chaos/cutover-chaos.ts), to a local datastore and to
// vSphere (vcsim: delta disks on the datastore), then the next run: every
// run ends with exactly one machine running, its disks equal to the source's last state, and a
// move killed after its commit is taken over, never cut over twice.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CUTOVER_KILL_POINTS, runCutoverChaos } from "./cutover-chaos.ts";

describe("chaos: a kill at each cutover step, then the next run", { timeout: 1_200_000 }, () => {
  for (const target of ["local", "vsphere"] as const) {
  it(`GIVEN a move to ${target} killed at any step WHEN it runs again THEN exactly one machine runs, with the source's last state`, async () => {
    const records = await runCutoverChaos({ points: CUTOVER_KILL_POINTS, target });
    const detail = JSON.stringify(records, null, 1);
    assert.equal(records.length, CUTOVER_KILL_POINTS.length);
    for (const record of records) {
      assert.equal(record.error, undefined, detail);
      assert.equal(record.killed, true, `the child was killed at ${record.point}: ${detail}`);
      assert.equal(record.running.length, 1, `exactly one machine runs after ${record.point}: ${detail}`);
      assert.equal(record.diskEqual, true, `its disks hold the source's last state after ${record.point}: ${detail}`);
      assert.equal(record.adopted, record.point === "commit", `only a move killed after its commit is taken over: ${detail}`);
    }
  });
  }
});
