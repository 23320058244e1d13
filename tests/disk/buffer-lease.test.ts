// Leased buffers: a file target writes convert()'s read buffers without copying them and holds
// them until the write lands; buffers nobody leased are copied, so their owner may change them.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { held, hold, idle, lease } from "../../sdk/disk/buffer-lease.ts";
import { createFileTarget } from "../../sdk/disk/io.ts";
import { withTempDir } from "../harness/disk.ts";

describe("buffer leases", () => {
  it("GIVEN a leased buffer held twice WHEN released one by one THEN it is idle only after the last", async () => {
    const buffer = Buffer.allocUnsafeSlow(4096);
    lease(buffer);
    const first = hold(buffer.subarray(0, 512));
    const second = hold(buffer.subarray(512, 1024));
    assert.ok(first !== undefined && second !== undefined);
    assert.equal(held(buffer), true);
    let idleNow = false;
    const waiting = idle(buffer).then(() => (idleNow = true));
    first();
    first(); // a second call changes nothing
    await Promise.resolve();
    assert.equal(idleNow, false);
    second();
    await waiting;
    assert.equal(held(buffer), false);
  });

  it("GIVEN a buffer nobody leased WHEN held THEN the caller is told to copy", () => {
    assert.equal(hold(Buffer.alloc(512)), undefined);
  });

  it("GIVEN a file target WHEN given a leased and an unleased buffer THEN the leased one is held until written and the unleased one is copied", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "out.bin");
      const target = await createFileTarget(path);
      const leased = Buffer.allocUnsafeSlow(1024 * 1024).fill(0xaa);
      lease(leased);
      const plain = Buffer.alloc(4096, 0xbb);
      await target.write(0, leased);
      // write() resolves once the write is queued; its completion needs another turn of the
      // event loop, so the target still holds the buffer itself (it made no copy).
      assert.equal(held(leased), true);
      await target.write(leased.length, plain);
      // The caller may change an unleased buffer as soon as write() resolves.
      plain.fill(0xcc);
      // A leased one only once it is idle.
      await idle(leased);
      assert.equal(held(leased), false);
      leased.fill(0xdd);
      await target.close();
      const bytes = await readFile(path);
      assert.equal(bytes.length, leased.length + plain.length);
      assert.ok(bytes.subarray(0, leased.length).every((b) => b === 0xaa), "the leased bytes as they were when written");
      assert.ok(bytes.subarray(leased.length).every((b) => b === 0xbb), "the copy, not the changed buffer");
    });
  });
});
