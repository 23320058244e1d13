// The process-wide job limit (sdk/transfer/job-slots.ts): PORTABLE_MAX_PARALLEL_JOBS jobs run at
// once, the rest wait in arrival order, an aborted waiter leaves the queue, and a bad setting is
// refused with its code.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { DEFAULT_MAX_PARALLEL_JOBS, jobSlotsInUse, maxParallelJobs, MAX_PARALLEL_JOBS_ENV, withJobSlot } from "../../sdk/transfer/job-slots.ts";

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("withJobSlot", () => {
  afterEach(() => {
    delete process.env[MAX_PARALLEL_JOBS_ENV];
  });

  it("GIVEN a limit of 2 WHEN 5 jobs start THEN at most 2 run at once and the rest start in arrival order", async () => {
    process.env[MAX_PARALLEL_JOBS_ENV] = "2";
    const gates = Array.from({ length: 5 }, deferred);
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const all = gates.map((gate, index) =>
      withJobSlot(async () => {
        started.push(index);
        running++;
        peak = Math.max(peak, running);
        await gate.promise;
        running--;
        return index;
      }),
    );
    await tick();
    assert.deepEqual(started, [0, 1]);
    assert.deepEqual(jobSlotsInUse(), { running: 2, waiting: 3 });
    gates[1]!.resolve();
    await tick();
    assert.deepEqual(started, [0, 1, 2]);
    // A job arriving now queues behind the waiters, even at the moment a slot frees.
    gates[0]!.resolve();
    const late = withJobSlot(async () => "late");
    await tick();
    assert.deepEqual(started, [0, 1, 2, 3]);
    for (const gate of gates) gate.resolve();
    assert.deepEqual(await Promise.all(all), [0, 1, 2, 3, 4]);
    assert.equal(await late, "late");
    assert.equal(peak, 2);
    assert.deepEqual(jobSlotsInUse(), { running: 0, waiting: 0 });
  });

  it("GIVEN a waiting job WHEN its signal aborts THEN it leaves the queue and the slot count is unchanged", async () => {
    process.env[MAX_PARALLEL_JOBS_ENV] = "1";
    const gate = deferred();
    const first = withJobSlot(() => gate.promise);
    const controller = new AbortController();
    const waiting = withJobSlot(async () => "never", controller.signal);
    await tick();
    controller.abort(new Error("stop"));
    await assert.rejects(waiting, /stop/);
    assert.deepEqual(jobSlotsInUse(), { running: 1, waiting: 0 });
    gate.resolve();
    await first;
    assert.deepEqual(jobSlotsInUse(), { running: 0, waiting: 0 });
  });

  it("GIVEN a job that throws WHEN it ends THEN its slot is freed", async () => {
    process.env[MAX_PARALLEL_JOBS_ENV] = "1";
    await assert.rejects(withJobSlot(async () => { throw new Error("boom"); }), /boom/);
    assert.equal(await withJobSlot(async () => 7), 7);
  });

  it("GIVEN a bad PORTABLE_MAX_PARALLEL_JOBS WHEN read THEN it is refused with INVALID_MAX_PARALLEL_JOBS", () => {
    for (const bad of ["0", "-1", "2.5", "many", "65"]) {
      assert.throws(() => maxParallelJobs({ [MAX_PARALLEL_JOBS_ENV]: bad }), { code: "INVALID_MAX_PARALLEL_JOBS" });
    }
    assert.equal(maxParallelJobs({}), DEFAULT_MAX_PARALLEL_JOBS);
    assert.equal(maxParallelJobs({ [MAX_PARALLEL_JOBS_ENV]: "8" }), 8);
  });
});
