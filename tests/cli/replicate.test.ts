// `portable replicate` and `portable plan` as a user runs them: a qcow2 replicated into a raw
// file, changed with qemu-io, planned (the plan names the exact delta) and replicated again.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { qemuImg, qemuIo, qemuRawSha256, fileSha256, withTempDir } from "../harness/disk.ts";
import { portable } from "../harness/cli.ts";


describe("portable replicate / plan", () => {
  it("GIVEN a qcow2 replicated once WHEN 3 blocks change THEN plan shows 1.5 MiB to move and the second pass sends exactly 3 blocks", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "disk.qcow2");
      const replica = join(dir, "replica.raw");
      const state = join(dir, "state");
      await qemuImg("create", "-q", "-f", "qcow2", image, "32M");
      await qemuIo("qcow2", image, ["write -P 0x11 0 4M", "write -P 0x22 20M 1M"]);

      const first = await portable("replicate", image, replica, "--state", state, "--key", "d0", "--verify", "full", "--json");
      assert.equal(first.code, 0, first.stderr);
      const one = JSON.parse(first.stdout);
      assert.equal(one.blocksSent, 10);
      assert.equal(one.verify.ok, true);
      assert.equal(await fileSha256(replica), await qemuRawSha256(image, "qcow2"));

      await qemuIo("qcow2", image, ["write -P 0x33 1M 4k", "write -P 0x44 3M 512k", "write -P 0x55 30M 8k"]);
      const plan = await portable("plan", image, "--state", state, "--key", "d0", "--json");
      assert.equal(plan.code, 0, plan.stderr);
      const p = JSON.parse(plan.stdout);
      assert.equal(p.disks[0].blocksToMove, 3);
      assert.equal(p.totalBytesToMove, 3 * 512 * 1024);

      const second = await portable("replicate", image, replica, "--state", state, "--key", "d0", "--json");
      assert.equal(second.code, 0, second.stderr);
      const two = JSON.parse(second.stdout);
      assert.equal(two.blocksSent, 3);
      assert.equal(two.pass, 2);
      assert.equal(await fileSha256(replica), await qemuRawSha256(image, "qcow2"));
    });
  });

  it("GIVEN a bad --verify WHEN run THEN it is a usage error (exit 2)", async () => {
    const result = await portable("replicate", "a", "b", "--verify", "maybe");
    assert.equal(result.code, 2);
    assert.match(result.stderr, /USAGE: --verify is full, sampled or none/);
  });
});
