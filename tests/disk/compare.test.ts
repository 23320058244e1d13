import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareDisks } from "../../sdk/disk/compare.ts";
import { memorySource } from "../harness/disk.ts";

const MiB = 1024 * 1024;

describe("compareDisks", () => {
  it("GIVEN equal bytes with different extent maps THEN identical", async () => {
    const data = Buffer.alloc(3 * MiB);
    data.fill(5, MiB, 2 * MiB);
    const mapped = memorySource(data, [
      { offsetBytes: 0, lengthBytes: MiB, kind: "zero" },
      { offsetBytes: MiB, lengthBytes: MiB, kind: "data" },
      { offsetBytes: 2 * MiB, lengthBytes: MiB, kind: "zero" },
    ]);
    const result = await compareDisks(mapped, memorySource(data));
    assert.equal(result.identical, true);
    assert.equal(result.comparedBytes, 3 * MiB, "ranges where only one side knows zeros are still compared");
  });

  it("GIVEN one differing byte THEN its exact offset is reported", async () => {
    const a = Buffer.alloc(2 * MiB, 1);
    const b = Buffer.from(a);
    b[MiB + 4097] = 2;
    const result = await compareDisks(memorySource(a), memorySource(b));
    assert.deepEqual([result.identical, result.firstDifferenceOffsetBytes], [false, MiB + 4097]);
  });

  it("GIVEN a data extent that disagrees with the other side's zero extent THEN the difference is found", async () => {
    const a = Buffer.alloc(MiB);
    const b = Buffer.alloc(MiB);
    b[700] = 9;
    const result = await compareDisks(memorySource(a, [{ offsetBytes: 0, lengthBytes: MiB, kind: "zero" }]), memorySource(b));
    assert.equal(result.firstDifferenceOffsetBytes, 700);
  });

  it("GIVEN different sizes THEN the extra tail must be zero to count as identical", async () => {
    const small = Buffer.alloc(MiB, 3);
    const zeroTail = Buffer.concat([small, Buffer.alloc(MiB)]);
    assert.equal((await compareDisks(memorySource(small), memorySource(zeroTail))).identical, true);
    const dirtyTail = Buffer.from(zeroTail);
    dirtyTail[MiB + 10] = 1;
    assert.equal((await compareDisks(memorySource(dirtyTail), memorySource(small))).firstDifferenceOffsetBytes, MiB + 10);
  });
});
