// Replication into a raw file: exact resync, cleared blocks, verification, and resume after
// kill -9 of the replicating process (no acknowledged block is sent twice).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDisk } from "../../sdk/disk/open.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { rawFileReplica } from "../../sdk/clouds/local/replica-target.ts";
import { replicate } from "../../sdk/transfer/replicate.ts";
import { verifyReplica } from "../../sdk/transfer/verify.ts";
import { fileSha256 } from "../harness/disk.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { BLOCK, MiB, spread, writeBlocks, zeroBlocks } from "./replica-helpers.ts";

const SIZE = 64 * MiB + 4096; // a short last block too
const BLOCKS = Math.ceil(SIZE / BLOCK);

async function run(source: string, target: string, store: FileReplicaStore, key: string) {
  const disk = await openDisk(source, { format: "raw" });
  const sent: number[] = [];
  try {
    const result = await replicate(disk, rawFileReplica({ path: target, virtualSizeBytes: disk.virtualSizeBytes }), { store, key, onBlockSent: (i) => sent.push(i) });
    return { result, sent: sent.sort((a, b) => a - b) };
  } finally {
    await disk.close();
  }
}

describe("replicate() into a raw file", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pw-replicate-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN a new replica WHEN N blocks change THEN the resync sends exactly those N and the target equals the source", async () => {
    const source = join(dir, "a.raw");
    const target = join(dir, "a.replica.raw");
    const store = new FileReplicaStore(join(dir, "state-a"));
    const data = spread(60, BLOCKS - 1);
    await writeBlocks(source, SIZE, [...data, BLOCKS - 1], "v1");

    const first = await run(source, target, store, "a");
    assert.deepEqual(first.sent, [...data, BLOCKS - 1].sort((x, y) => x - y), "the first pass sends every data block and nothing else");
    assert.equal(await fileSha256(target), await fileSha256(source));

    const changed = spread(7, BLOCKS, 9);
    await writeBlocks(source, undefined, changed, "v2");
    const second = await run(source, target, store, "a");
    assert.deepEqual(second.sent, changed);
    assert.equal(second.result.passes, 2);
    assert.equal(await fileSha256(target), await fileSha256(source));

    const unchanged = await run(source, target, store, "a");
    assert.equal(unchanged.result.blocksSent, 0, "nothing changed, nothing sent");
  });

  it("GIVEN data blocks that become zeros WHEN resynced THEN they are cleared on the target", async () => {
    const source = join(dir, "b.raw");
    const target = join(dir, "b.replica.raw");
    const store = new FileReplicaStore(join(dir, "state-b"));
    await writeBlocks(source, SIZE, [1, 2, 3, 40, 41], "v1");
    await run(source, target, store, "b");
    await zeroBlocks(source, [2, 41]);
    const second = await run(source, target, store, "b");
    assert.deepEqual(second.sent, [2, 41]);
    assert.equal(second.result.blocksCleared, 2);
    assert.equal(await fileSha256(target), await fileSha256(source));
  });

  it("GIVEN a replica corrupted behind our back WHEN verified fully or by sampling THEN the block is found", async () => {
    const source = join(dir, "c.raw");
    const target = join(dir, "c.replica.raw");
    const store = new FileReplicaStore(join(dir, "state-c"));
    const data = spread(40, BLOCKS);
    await writeBlocks(source, SIZE, data, "v1");
    const { result } = await run(source, target, store, "c");
    const committed = await store.loadCommitted("c");
    assert.ok(committed);
    assert.equal(committed.manifest.digest(), result.digest);
    const clean = await openDisk(target, { format: "raw" });
    assert.equal((await verifyReplica(clean, result.manifest, { mode: "full" })).ok, true);
    await clean.close();

    const handle = await open(target, "r+");
    await handle.write(Buffer.from("corrupt"), 0, 7, data[5]! * BLOCK + 100);
    await handle.close();
    const bad = await openDisk(target, { format: "raw" });
    const full = await verifyReplica(bad, result.manifest, { mode: "full" });
    assert.deepEqual(full.mismatches, [data[5]]);
    const sampled = await verifyReplica(bad, result.manifest, { mode: "sampled", blocks: data.length });
    assert.equal(sampled.ok, false, "a sample covering every data block finds it");
    const small = await verifyReplica(bad, result.manifest, { mode: "sampled", blocks: 4, seed: "x" });
    assert.ok(small.blocksChecked >= 4 && small.blocksChecked < BLOCKS);
    await bad.close();
  });

  it("GIVEN a pass killed with SIGKILL WHEN rerun THEN it resumes, re-sends no acknowledged block, and the result is correct", async () => {
    const source = join(dir, "d.raw");
    const target = join(dir, "d.replica.raw");
    const storeDir = join(dir, "state-d");
    const data = spread(100, BLOCKS);
    await writeBlocks(source, SIZE, data, "v1");
    const child = spawn(process.execPath, [join(REPO_ROOT, "tests/transfer/fixtures/replicate-child.ts"), source, storeDir, "d", "file", target], {
      env: { ...process.env, PW_WRITE_DELAY_MS: "30" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const acknowledged: number[] = [];
    await new Promise<void>((resolve, reject) => {
      let buffered = "";
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split("\n");
        buffered = lines.pop()!;
        for (const line of lines) if (line.startsWith("done ")) acknowledged.push(Number(line.slice(5)));
        if (acknowledged.length >= 30 && child.exitCode === null) {
          child.kill("SIGKILL");
        }
      });
      child.once("exit", (code, signal) => (signal === "SIGKILL" ? resolve() : reject(new Error(`child ended with ${code}/${signal} before the kill`))));
    });
    const store = new FileReplicaStore(storeDir);
    const pending = await store.loadPending("d");
    assert.ok(pending, "the killed pass left its journal");
    assert.equal(await store.loadCommitted("d"), undefined, "the killed pass is not marked complete");
    for (const index of acknowledged) assert.ok(pending.done.has(index), `block ${index} was acknowledged, so the journal holds it`);

    const rerun = await run(source, target, store, "d");
    assert.equal(rerun.result.resumed, true);
    assert.equal(rerun.result.blocksResumed, pending.done.size);
    const resent = rerun.sent.filter((i) => pending.done.has(i));
    assert.deepEqual(resent, [], "no block the killed run finished is sent again");
    assert.equal(rerun.sent.length + pending.done.size, data.length, `${pending.done.size} done before the kill + ${rerun.sent.length} now = every data block`);
    assert.equal(await fileSha256(target), await fileSha256(source));
    assert.equal(await store.loadPending("d"), undefined, "the commit dropped the journal");
  });
});
