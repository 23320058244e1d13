// Every ordered pair of platforms, through the real engine: one Workload (portable:Machine, the
// placement and its cutover, and its portable:Disk record; `launch: false` on the clouds, so no
// official resource is needed) visits local, vSphere (vcsim), AWS (EBS on moto) and Azure (a
// page blob on Azurite) along a circuit that takes each of the 12 ordered pairs once. Each hop
// is the full move sequence (warm passes, stop, final delta, verify, start, health check, commit).
// While the disk is on local, the test writes to it as a guest would. After every hop:
// - the disk read back from where the Machine says it is hashes equal to the truth (EBS is read
//   through our chain reader: moto ignores ParentSnapshotId, so a child snapshot alone is a delta);
// - the bytes sent are exactly the blocks that differ from what that target held before (all of
//   the data on a first visit), on vSphere too, where they go as a delta disk over the chain.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload, type WorkloadArgs } from "../../components/workload.ts";
import { openReplica, replicaStoreFor } from "../../sdk/migrate/disk-placement.ts";
import { vsphereConnectionFor, type PlacedDiskRecord } from "../../sdk/migrate/machine-placement.ts";
import type { CutoverRecord } from "../../sdk/migrate/migrate.ts";
import { placementSchema, type PlacementInput } from "../../sdk/spec/placement.ts";
import { sourceSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { BLOCK, blockBytes, MiB, writeBlocks } from "../transfer/replica-helpers.ts";

type Kind = "local" | "vsphere" | "aws" | "azure";
const SIZE = 8 * MiB;
const BLOCKS = SIZE / BLOCK;
/** local → vsphere → aws → azure → local → aws → vsphere → azure → aws → local → azure → vsphere → local */
const CIRCUIT: Kind[] = ["local", "vsphere", "aws", "azure", "local", "aws", "vsphere", "azure", "aws", "local", "azure", "vsphere", "local"];

interface StateResource {
  readonly type: string;
  readonly outputs: Record<string, unknown>;
}

describe("Workload moves between every ordered pair of platforms through the Pulumi engine", { timeout: 900_000 }, () => {
  let sim: Vcsim;
  let moto: Moto;
  let azurite: Azurite;
  let env: InlineStack;
  let args: WorkloadArgs;
  let stateDir = "";
  /** The disk's truth, per block: the seed its bytes came from, or undefined for zeros. */
  const truth: Array<string | undefined> = new Array<string | undefined>(BLOCKS).fill(undefined);
  /** What each target held when the disk last left it (or arrived, for a target never left). */
  const held = new Map<string, Array<string | undefined>>();

  const placementFor = (kind: Kind): PlacementInput => {
    switch (kind) {
      case "local":
        return { kind: "local", dir: join(env.dir, "local"), start: false };
      case "vsphere":
        return { kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, folder: "pairs" };
      case "aws":
        return { kind: "aws", region: moto.region, endpoint: moto.endpoint, launch: false };
      case "azure":
        return { kind: "azure", location: "westeurope", resourceGroupName: "rg", storageAccount: azurite.accountName, container: "disks", storageAccountId: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1", launch: false };
    }
  };
  const truthSha256 = (): string => {
    const hash = createHash("sha256");
    for (let i = 0; i < BLOCKS; i++) hash.update(truth[i] === undefined ? Buffer.alloc(BLOCK) : blockBytes(truth[i]!, i));
    return hash.digest("hex");
  };
  const machine = async (): Promise<StateResource> => {
    const state = await env.stack.exportStack();
    return (state.deployment.resources as StateResource[]).find((r) => r.type === "pulumi-nodejs:dynamic/portable:Machine")!;
  };

  before(async () => {
    [sim, moto, azurite] = await Promise.all([startVcsim(), startMoto(), startAzurite()]);
    await containerFor(azurite, "disks");
    const credentials = {
      AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      VSPHERE_PASSWORD: sim.password,
    };
    Object.assign(process.env, credentials); // the program plans, and this process reads back
    env = await createInlineStack("pw-pairs", async () => {
      const workload = new Workload("pairs", args);
      return { disks: workload.disks };
    }, credentials);
    stateDir = join(env.dir, "state");
    const image = join(env.dir, "source.raw");
    for (const i of [0, 3, 4, 11]) truth[i] = "golden";
    await writeBlocks(image, SIZE, [0, 3, 4, 11], "golden");
    args = {
      spec: { name: "pairs", memoryMiB: 128, disks: [{ id: "disk0", sizeBytes: SIZE, source: { kind: "file", path: image, format: "raw" }, bootOrder: 0 }], guestOs: { family: "linux" } },
      placement: placementFor("local"),
      // Made-up blocks, no guest: readiness cannot be judged (INSPECT_OS_UNKNOWN); this test is about bytes.
      migration: { readiness: "warn", verify: "full", stopGraceSeconds: 1 },
      stateDir,
    };
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
    await Promise.all([sim?.stop(), moto?.stop(), azurite?.stop()]);
  });

  it("GIVEN the first placement (local) WHEN up THEN the disk reads back as the source", async () => {
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    held.set("local", [...truth]);
  });

  for (let hop = 1; hop < CIRCUIT.length; hop++) {
    const from = CIRCUIT[hop - 1]!;
    const to = CIRCUIT[hop]!;
    it(`hop ${hop}: ${from} → ${to}: equal bytes, and only the blocks the target lacks are sent`, async () => {
      if (from === "local") {
        // The guest writes while it runs on local: a new block, and one it had.
        const changed = [(hop * 5) % BLOCKS, 3];
        for (const i of changed) truth[i] = `hop-${hop}`;
        const dir = (placementFor("local") as { dir: string }).dir;
        for (const i of changed) await writeBlocks(join(dir, "disks", "pairs-disk0.raw"), undefined, [i], `hop-${hop}`);
      }
      args = { ...args, placement: placementFor(to) };
      const result = await env.stack.up();
      assert.equal(result.summary.result, "succeeded");

      const state = await machine();
      const move = JSON.parse(state.outputs.lastMove as string) as CutoverRecord;
      assert.equal(move.state, "completed");
      assert.deepEqual(move.steps.map((s) => s.name), ["warm-passes", "stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
      const placed = (JSON.parse(state.outputs.placed as string) as PlacedDiskRecord[])[0]!;

      // Read back from where the Machine recorded it, as the next hop will.
      const vsphere = vsphereConnectionFor(placementSchema.parse(placementFor(to)));
      const back = await openReplica("pairs", "disk0", placed.target, await replicaStoreFor(placed.target, stateDir, vsphere), vsphere);
      try {
        assert.equal(await sourceSha256(back), truthSha256(), `the disk on ${to} (${placed.location}) holds the truth`);
      } finally {
        await back.close();
      }

      const before = held.get(to);
      const differing = truth.filter((seed, i) => (before === undefined ? seed !== undefined : seed !== before[i])).length;
      assert.equal(placed.bytesSent, differing * BLOCK, `${before === undefined ? "first visit: every data block" : "only the blocks that changed since it was here"} (${differing})`);
      held.set(from, [...truth]);
      held.set(to, [...truth]);
    });
  }

  it("WHEN destroyed THEN nothing is left in the state folder, the local datastore or the container", async () => {
    const result = await env.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    assert.deepEqual(await readdir(stateDir), [], "no manifest, journal or placement record of any of the four targets");
    assert.deepEqual(await readdir(join(env.dir, "local")), []);
    const blob = (await containerFor(azurite, "disks")).getPageBlobClient("pairs-disk0.vhd");
    assert.equal(await blob.exists(), false, "the page blob is gone");
  });
});
