import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BlockManifest, buildManifest, changedBlocks } from "../../sdk/disk/manifest.ts";
import { memorySource } from "../harness/disk.ts";

const KiB = 1024;

describe("block manifests", () => {
  it("GIVEN a disk with data in two blocks THEN only those are recorded", async () => {
    const data = Buffer.alloc(64 * KiB);
    data[5] = 1;
    data[40 * KiB] = 2;
    const s = memorySource(data, [
      { offsetBytes: 0, lengthBytes: 16 * KiB, kind: "data" },
      { offsetBytes: 16 * KiB, lengthBytes: 16 * KiB, kind: "zero" },
      { offsetBytes: 32 * KiB, lengthBytes: 32 * KiB, kind: "data" },
    ]);
    const manifest = await buildManifest(s, 8 * KiB);
    assert.deepEqual(manifest.dataBlocks(), [0, 5]);
    assert.equal(manifest.blockCount, 8);
  });

  it("GIVEN a changed, a zeroed and a new block THEN changedBlocks lists exactly those", async () => {
    const before = Buffer.alloc(32 * KiB);
    before[0] = 1;
    before[8 * KiB] = 1;
    before[16 * KiB] = 1;
    const after = Buffer.from(before);
    after[1] = 9; // block 0 changed
    after[8 * KiB] = 0; // block 1 now zero
    after[24 * KiB + 3] = 7; // block 3 new
    const a = await buildManifest(memorySource(before), 8 * KiB);
    const b = await buildManifest(memorySource(after), 8 * KiB);
    assert.deepEqual(changedBlocks(a, b), [0, 1, 3]);
    assert.deepEqual(changedBlocks(a, a), []);
  });

  it("GIVEN a manifest WHEN serialised to JSON and back THEN it is equal", async () => {
    const data = Buffer.alloc(16 * KiB, 3);
    const m = await buildManifest(memorySource(data), 4 * KiB);
    const copy = BlockManifest.fromJSON(JSON.parse(JSON.stringify(m)));
    assert.deepEqual(copy.toJSON(), m.toJSON());
    assert.deepEqual(changedBlocks(m, copy), []);
  });
});
