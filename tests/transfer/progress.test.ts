import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { progressLine, throttledProgress } from "../../sdk/transfer/progress.ts";

const GiB = 1024 ** 3;

describe("transfer progress lines", () => {
  it("GIVEN a quarter scanned in 10 s WHEN described THEN it names percent, bytes, rate and time left", () => {
    assert.equal(
      progressLine("copy disk d", { scannedBytes: GiB, virtualSizeBytes: 4 * GiB, bytesSent: 512 * 1024 ** 2, blocksSent: 256 }, 10),
      "copy disk d: 25% (1.0 GiB of 4.0 GiB scanned), 512.0 MiB sent, 102.4 MiB/s, ETA 30 s",
    );
  });

  it("GIVEN reports every 100 ms WHEN throttled to 2 s THEN the first, one per interval and the last pass", () => {
    let clock = 0;
    const lines: string[] = [];
    const report = throttledProgress("d", (line) => lines.push(line), 2_000, () => clock);
    for (let step = 1; step <= 50; step++) {
      clock = step * 100;
      report({ scannedBytes: (step / 50) * GiB, virtualSizeBytes: GiB, bytesSent: 0, blocksSent: 0 });
    }
    report({ scannedBytes: GiB, virtualSizeBytes: GiB, bytesSent: 0, blocksSent: 0 });
    assert.equal(lines.length, 4, lines.join("\n"));
    assert.match(lines[0]!, /^d: 2% /);
    assert.match(lines.at(-1)!, /^d: 100% .*, done$/);
  });
});
