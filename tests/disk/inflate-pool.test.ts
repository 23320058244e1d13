// The worker pool that inflates stream VMDK grains: results in order, failures pinned to the
// grain that caused them, output capped at the grain size, and buffers reused safely.
import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import { describe, it } from "node:test";
import { deflateSync } from "node:zlib";
import { InflateFailure, inflateGrains } from "../../sdk/disk/inflate-pool.ts";

const GRAIN = 64 * 1024;

function grainOf(seed: number): Buffer {
  return createCipheriv("aes-128-ctr", Buffer.alloc(16, seed), Buffer.alloc(16)).update(Buffer.alloc(GRAIN));
}

async function inflateAll(grains: Buffer[], max = GRAIN): Promise<Buffer[]> {
  const out: Buffer[] = [];
  await inflateGrains(grains, max, (i, bytes) => {
    assert.equal(i, out.length, "in order");
    out.push(Buffer.from(bytes));
  });
  return out;
}

describe("inflate pool", () => {
  it("GIVEN batches of grains, some short, inflated concurrently WHEN each comes back THEN every grain is its own bytes", async () => {
    const batches = Array.from({ length: 6 }, (_, b) =>
      Array.from({ length: 5 }, (_, g) => (g === 4 ? grainOf(b * 10 + g).subarray(0, 4096) : grainOf(b * 10 + g))),
    );
    const results = await Promise.all(batches.map((batch) => inflateAll(batch.map((g) => deflateSync(g)))));
    results.forEach((result, b) => assert.deepEqual(result, batches[b]));
  });

  it("GIVEN a corrupt grain in the middle WHEN the batch is inflated THEN the grains before it arrive and the failure names it", async () => {
    const good = [grainOf(1), grainOf(2)];
    const delivered: number[] = [];
    const corrupt = Buffer.from(deflateSync(grainOf(3)));
    corrupt.fill(0xff, 2, 40);
    await assert.rejects(
      inflateGrains([deflateSync(good[0]!), deflateSync(good[1]!), corrupt, deflateSync(grainOf(4))], GRAIN, (i) => delivered.push(i)),
      (err: unknown) => err instanceof InflateFailure && err.index === 2 && err.code !== "ERR_BUFFER_TOO_LARGE",
    );
    assert.deepEqual(delivered, [0, 1]);
    // The pool still works after a failure.
    assert.deepEqual(await inflateAll([deflateSync(good[0]!)]), [good[0]]);
  });

  it("GIVEN a grain that inflates past the limit WHEN inflated THEN it fails with ERR_BUFFER_TOO_LARGE instead of growing", async () => {
    const bomb = deflateSync(Buffer.alloc(64 * GRAIN));
    await assert.rejects(
      inflateGrains([bomb], GRAIN, () => {}),
      (err: unknown) => err instanceof InflateFailure && err.index === 0 && err.code === "ERR_BUFFER_TOO_LARGE",
    );
  });

  it("GIVEN an empty batch WHEN inflated THEN nothing is called", async () => {
    let calls = 0;
    await inflateGrains([], GRAIN, () => calls++);
    assert.equal(calls, 0);
  });
});
