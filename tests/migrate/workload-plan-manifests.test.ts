// A preview whose disk is a replica nothing writes (here an EBS snapshot chain with no instance)
// and whose target holds a replica too is answered by the two manifests: nothing is read, and no
// AWS endpoint is even reachable (the one named is a closed port).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { join } from "node:path";
import { BlockManifest } from "../../sdk/disk/manifest.ts";
import { commitPlacement, replicaKey, replicaStoreFor } from "../../sdk/migrate/disk-placement.ts";
import { diskTargetFor } from "../../sdk/migrate/targets.ts";
import { planWorkload } from "../../sdk/migrate/workload-plan.ts";
import { placementSchema } from "../../sdk/spec/placement.ts";
import { parseWorkload } from "../../sdk/spec/workload.ts";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { withTempDir } from "../harness/disk.ts";

const MiB = 1024 * 1024;
const BLOCK = 512 * 1024;
const SIZE = 64 * MiB;

function manifestWith(blocks: ReadonlyArray<[number, number]>): BlockManifest {
  const manifest = new BlockManifest(SIZE, BLOCK);
  for (const [index, fill] of blocks) manifest.set(index, Buffer.alloc(32, fill));
  return manifest;
}

describe("plan from two manifests", () => {
  it("GIVEN a disk on EBS with no instance and a replica of it on local WHEN the move back is previewed THEN the bytes come from the manifests and nothing is read", async () => {
    await withTempDir(async (dir) => {
      const stateDir = join(dir, "state");
      const workload = parseWorkload({ name: "flip", memoryMiB: 256, disks: [{ id: "root", sizeBytes: SIZE, bootOrder: 0 }, { id: "data", sizeBytes: SIZE }], guestOs: { family: "linux" } });
      const aws = placementSchema.parse({ kind: "aws", region: "us-east-1", endpoint: "http://127.0.0.1:9", launch: false });
      const local = placementSchema.parse({ kind: "local", dir: join(dir, "local") });
      const store = new FileReplicaStore(stateDir);
      const targets = { root: diskTargetFor(local, "flip", "root"), data: diskTargetFor(local, "flip", "data") };
      // The boot disk is already on local (nothing to plan); the data disk is on EBS.
      await commitPlacement(stateDir, "flip", "root", { target: targets.root, location: targets.root, virtualSizeBytes: SIZE });
      const onEbs = diskTargetFor(aws, "flip", "data");
      await commitPlacement(stateDir, "flip", "data", { target: onEbs, location: "snap-0123456789abcdef0", virtualSizeBytes: SIZE });
      // EBS holds blocks 0-9, 3 of them rewritten and one cleared since local's replica was made.
      const there = manifestWith(Array.from({ length: 11 }, (_, i) => [i, 1] as [number, number]));
      const here = manifestWith([...Array.from({ length: 10 }, (_, i) => [i, i < 3 ? 2 : 1] as [number, number])]);
      await store.commit(replicaKey("flip", "data", onEbs), { manifest: here, location: "snap-0123456789abcdef0", targetState: {}, passes: 3 });
      // Local's replica state is beside it, in the datastore.
      await (await replicaStoreFor(targets.data, stateDir)).commit(replicaKey("flip", "data", targets.data), { manifest: there, location: targets.data, targetState: {}, passes: 1 });

      const plan = await planWorkload({ workload, placement: local, mode: "warm", stateDir, disks: [{ id: "root", source: "unused", target: targets.root }, { id: "data", source: "unused", target: targets.data }] });
      const data = plan.plan.disks.find((d) => d.key === "data")!;
      assert.equal(data.from, "manifests");
      assert.equal(data.bytesToMove, 3 * BLOCK, "three rewritten blocks; the cleared one moves no bytes");
      assert.equal(data.blocksToMove, 4);
      assert.equal(data.allocatedBytes, 10 * BLOCK);
      assert.match(plan.summary, /from the replicas' manifests/);
    });
  });
});
