import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPortableError } from "../../sdk/errors.ts";
import { isTransientError, withRetry } from "../../sdk/retry.ts";

describe("withRetry", () => {
  it("GIVEN two transient failures THEN the third attempt's result is returned and waits stay under the cap", async () => {
    const delays: number[] = [];
    let calls = 0;
    const result = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw Object.assign(new Error("slow down"), { name: "ThrottlingException" });
        return "ok";
      },
      { operation: "test", isRetryable: isTransientError, baseDelayMs: 1, maxDelayMs: 4, onRetry: (_e, _a, d) => delays.push(d) },
    );
    assert.equal(result, "ok");
    assert.equal(calls, 3);
    assert.ok(delays.every((d) => d >= 0 && d <= 4));
  });

  it("GIVEN a permanent error THEN it is thrown at once", async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(async () => {
        calls++;
        throw Object.assign(new Error("no"), { $metadata: { httpStatusCode: 403 } });
      }, { operation: "test", isRetryable: isTransientError }),
      /no/,
    );
    assert.equal(calls, 1);
  });

  it("GIVEN failures past the attempt limit THEN RETRIES_EXHAUSTED names the operation", async () => {
    await assert.rejects(
      withRetry(async () => {
        throw Object.assign(new Error("reset"), { code: "ECONNRESET" });
      }, { operation: "PutSnapshotBlock snap-1 block 7", isRetryable: isTransientError, attempts: 3, baseDelayMs: 1 }),
      (err) => isPortableError(err) && err.code === "RETRIES_EXHAUSTED" && /snap-1 block 7/.test(err.message),
    );
  });

  it("classifies throttling, 5xx and resets as transient, 4xx and plain errors not", () => {
    assert.equal(isTransientError({ $metadata: { httpStatusCode: 503 } }), true);
    assert.equal(isTransientError({ statusCode: 429 }), true);
    assert.equal(isTransientError({ code: "ECONNRESET" }), true);
    assert.equal(isTransientError({ name: "ServerBusy" }), true);
    assert.equal(isTransientError({ $metadata: { httpStatusCode: 400 }, name: "ValidationException" }), false);
    assert.equal(isTransientError(new Error("bad input")), false);
  });
});
