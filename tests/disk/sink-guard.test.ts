import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SinkWriteGuard } from "../../sdk/disk/sink-guard.ts";

describe("SinkWriteGuard", () => {
  it("GIVEN ordered aligned writes and an odd-sized last write THEN all are accepted", () => {
    const guard = new SinkWriteGuard("test", "t", 4096 + 100);
    guard.accept(0, 512);
    guard.accept(1024, 3072);
    guard.accept(4096, 100);
    assert.equal(guard.nextOffsetBytes, 4196);
  });

  it("GIVEN each kind of breach THEN its own code", () => {
    const guard = new SinkWriteGuard("test", "t", 8192);
    guard.accept(1024, 1024);
    assert.throws(() => guard.accept(1536, 512), { code: "SINK_WRITE_ORDER" });
    assert.throws(() => guard.accept(2048 + 7, 512), { code: "SINK_WRITE_UNALIGNED" });
    assert.throws(() => guard.accept(7680, 1024), { code: "SINK_WRITE_RANGE" });
    guard.finishing();
    assert.throws(() => guard.accept(4096, 512), { code: "SINK_CLOSED" });
    assert.throws(() => guard.finishing(), { code: "SINK_CLOSED" });
    assert.equal(guard.close(), false);
  });
});
