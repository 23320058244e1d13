// The plan on any machine, through the real engine. Workspace A places and moves a workload
// (local datastore, EBS on moto with its state in an S3 bucket, a page blob on Azurite). Then
// workspace B — the same file:// backend and credentials, but a fresh PULUMI_HOME and an empty
// state folder, as a CI runner or a teammate's laptop has — previews the next moves:
// - B's plan names the same bytes and the same downtime as A's;
// - B's up sends exactly the blocks that changed (the replica state is beside each target);
// - replica state edited behind Pulumi's back is refused with REPLICA_STATE_MISMATCH;
// - two concurrent ups of one workload from two workspaces: one succeeds, the other fails with
//   STATE_LEASE_HELD naming the holder, and the data is intact.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Workload, type WorkloadArgs } from "../../components/workload.ts";
import { openReplica, replicaStoreFor } from "../../sdk/migrate/disk-placement.ts";
import type { PlacedDiskRecord } from "../../sdk/migrate/machine-placement.ts";
import type { PlacementInput } from "../../sdk/spec/placement.ts";
import { sourceSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { BLOCK, blockBytes, MiB, writeBlocks } from "../transfer/replica-helpers.ts";

type Kind = "local" | "aws" | "azure";
const SIZE = 8 * MiB;
const BLOCKS = SIZE / BLOCK;
const BUCKET = "pw-state";

interface StateResource {
  readonly type: string;
  readonly outputs: Record<string, unknown>;
}

describe("A second machine plans and moves from the state beside the targets", { timeout: 900_000 }, () => {
  let moto: Moto;
  let azurite: Azurite;
  let a: InlineStack;
  let b: InlineStack;
  let credentials: Record<string, string>;
  let backendDir = "";
  const passphrase = randomBytes(16).toString("hex");
  /** Where the local datastore is: one folder both workspaces reach (one host). */
  let datastore = "";
  let image = "";
  let placement: PlacementInput;
  const truth: Array<string | undefined> = new Array<string | undefined>(BLOCKS).fill(undefined);

  const placementFor = (kind: Kind): PlacementInput => {
    switch (kind) {
      case "local":
        return { kind: "local", dir: datastore, start: false };
      case "aws":
        return { kind: "aws", region: moto.region, endpoint: moto.endpoint, launch: false, stateBucket: BUCKET };
      case "azure":
        return { kind: "azure", location: "westeurope", resourceGroupName: "rg", storageAccount: azurite.accountName, container: "disks", storageAccountId: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1", launch: false };
    }
  };
  const argsFor = (stateDir: string, name = "web", where = placement): WorkloadArgs => ({
    spec: { name, memoryMiB: 128, disks: [{ id: "disk0", sizeBytes: SIZE, source: { kind: "file", path: image, format: "raw" }, bootOrder: 0 }], guestOs: { family: "linux" } },
    placement: where,
    migration: { readiness: "warn", verify: "full", stopGraceSeconds: 1, source: "keep" },
    stateDir,
  });
  const truthSha256 = (): string => {
    const hash = createHash("sha256");
    for (let i = 0; i < BLOCKS; i++) hash.update(truth[i] === undefined ? Buffer.alloc(BLOCK) : blockBytes(truth[i]!, i));
    return hash.digest("hex");
  };
  const machineOf = async (env: InlineStack): Promise<StateResource> => {
    const state = await env.stack.exportStack();
    return (state.deployment.resources as StateResource[]).find((r) => r.type === "pulumi-nodejs:dynamic/portable:Machine")!;
  };
  /** The plan the preview logged on the Workload: its bytes line and its downtime line. */
  const previewPlan = async (env: InlineStack): Promise<{ bytes: string; downtime: string; text: string }> => {
    const messages: string[] = [];
    await env.stack.preview({
      onEvent: (event) => {
        const diag = event.diagnosticEvent;
        if (diag?.urn?.includes("portable:index:Workload") === true) messages.push(diag.message);
      },
    });
    const text = messages.join("\n");
    const bytes = /web: \w+ → \w+ \(warm\), 1 disk\(s\), ([\d.]+ \w+) to move/.exec(text)?.[1];
    const downtime = /estimated downtime ([\d.]+ s \([^)]*\))/.exec(text)?.[1];
    assert.ok(bytes !== undefined && downtime !== undefined, `the preview logged a plan on the Workload:\n${text}`);
    return { bytes, downtime, text };
  };
  /** The disk read back from where the Machine recorded it, by this (test) process, with an empty cache. */
  const placedSha256 = async (env: InlineStack): Promise<{ sha: string; placed: PlacedDiskRecord }> => {
    const placed = (JSON.parse((await machineOf(env)).outputs.placed as string) as PlacedDiskRecord[])[0]!;
    const cache = join(env.dir, `readback-${Date.now()}`);
    const back = await openReplica("web", "disk0", placed.target, await replicaStoreFor(placed.target, cache));
    try {
      return { sha: await sourceSha256(back), placed };
    } finally {
      await back.close();
    }
  };

  before(async () => {
    [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
    await containerFor(azurite, "disks");
    credentials = {
      AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey,
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    };
    Object.assign(process.env, credentials);
    let argsA: WorkloadArgs | undefined;
    let argsB: WorkloadArgs | undefined;
    a = await createInlineStack("pw-second", async () => ({ disks: new Workload("web", argsA!).disks }), credentials, { passphrase });
    backendDir = join(a.dir, "backend");
    b = await createInlineStack("pw-second", async () => ({ disks: new Workload("web", argsB!).disks }), credentials, { passphrase, backendDir, select: true });
    datastore = join(a.dir, "local");
    image = join(a.dir, "source.raw");
    for (const i of [0, 3, 4, 11]) truth[i] = "golden";
    await writeBlocks(image, SIZE, [0, 3, 4, 11], "golden");
    // Each workspace has its own state folder: B's starts empty and is never given A's.
    await mkdir(join(b.dir, "state"));
    placement = placementFor("local");
    const refresh = () => {
      argsA = argsFor(join(a.dir, "state"));
      argsB = argsFor(join(b.dir, "state"));
    };
    refresh();
    setArgs = (kind) => {
      placement = placementFor(kind);
      refresh();
    };
  });
  let setArgs: (kind: Kind) => void = () => {};
  after(async () => {
    await a?.stack.destroy().catch(() => {});
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    await Promise.all([moto?.stop(), azurite?.stop()]);
  });

  it("GIVEN workspace A WHEN it places the workload on local, then moves it to aws and azure and back THEN each move commits", async () => {
    for (const kind of ["local", "aws", "azure", "local"] as const) {
      setArgs(kind);
      const result = await a.stack.up();
      assert.equal(result.summary.result, "succeeded", kind);
    }
    assert.equal((await placedSha256(a)).sha, truthSha256());
    // The aws replica's record is an object in the bucket, and Pulumi state keeps its reference.
    const kept = (JSON.parse((await machineOf(a)).outputs.retained as string) as Array<{ disks: string }>).flatMap((r) => JSON.parse(r.disks) as PlacedDiskRecord[]);
    const reference = kept.find((d) => d.target.startsWith("ebs://"))?.reference ?? "";
    assert.match(reference, new RegExp(`^s3://${BUCKET}/portable-state/web\\.disk0\\.[0-9a-f]+\\.replica\\.json$`));
    const s3 = new S3Client({ region: moto.region, endpoint: moto.endpoint, forcePathStyle: true });
    try {
      const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: reference.slice(`s3://${BUCKET}/`.length) }));
      assert.match(await object.Body!.transformToString(), /"manifest":/);
    } finally {
      s3.destroy();
    }
  });

  it("GIVEN the guest wrote on local WHEN B (empty state folder, fresh PULUMI_HOME) previews the move to aws THEN its plan names A's bytes and downtime", async () => {
    const changed = [5, 11];
    for (const i of changed) truth[i] = "second";
    for (const i of changed) await writeBlocks(join(datastore, "disks", "web-disk0.raw"), undefined, [i], "second");
    setArgs("aws");
    const planA = await previewPlan(a);
    const planB = await previewPlan(b);
    assert.equal(planB.bytes, planA.bytes, `bytes:\nA: ${planA.text}\nB: ${planB.text}`);
    assert.equal(planB.bytes, "1.0 MiB", "the two blocks the guest wrote: aws holds the rest");
    assert.equal(planB.downtime, planA.downtime, `downtime:\nA: ${planA.text}\nB: ${planB.text}`);
    assert.deepEqual(await readdir(join(b.dir, "state")), [], "B planned without anything in its state folder");
  });

  it("WHEN B runs up THEN only the changed blocks are sent to aws, and the disk there holds the truth", async () => {
    const result = await b.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const { sha, placed } = await placedSha256(b);
    assert.equal(sha, truthSha256());
    assert.equal(placed.bytesSent, 2 * BLOCK, "bytes sent = the changed bytes");
  });

  it("GIVEN the move to azure WHEN A and B preview it THEN both plans match, and B's up sends only what azure lacks", async () => {
    setArgs("azure");
    const [planA, planB] = [await previewPlan(a), await previewPlan(b)];
    assert.equal(planB.bytes, planA.bytes);
    assert.equal(planB.downtime, planA.downtime);
    assert.equal(planB.bytes, "1.0 MiB");
    const result = await b.stack.up();
    assert.equal(result.summary.result, "succeeded");
    const { sha, placed } = await placedSha256(b);
    assert.equal(sha, truthSha256());
    assert.equal(placed.bytesSent, 2 * BLOCK);
  });

  it("GIVEN the live disk's replica state edited behind Pulumi's back WHEN A previews and runs up THEN both refuse with REPLICA_STATE_MISMATCH and nothing moves", async () => {
    const container = await containerFor(azurite, "disks");
    const placed = (JSON.parse((await machineOf(a)).outputs.placed as string) as PlacedDiskRecord[])[0]!;
    const name = `portable-state/${placed.reference.split("/").pop()!}`;
    const blob = container.getBlockBlobClient(name);
    const original = (await blob.downloadToBuffer()).toString("utf8");
    const record = JSON.parse(original) as { manifest: { blocks: Record<string, string> } };
    const first = Object.keys(record.manifest.blocks)[0]!;
    record.manifest.blocks[first] = "0".repeat(64);
    const tampered = JSON.stringify(record);
    await blob.upload(tampered, Buffer.byteLength(tampered));
    setArgs("local");
    const messages: string[] = [];
    await a.stack.preview({ onEvent: (e) => void (e.diagnosticEvent ? messages.push(e.diagnosticEvent.message) : undefined) });
    assert.match(messages.join("\n"), /no migration plan: .*disk disk0 of web: the replica state at .* has manifest digest [0-9a-f]+, but Pulumi state recorded/);
    const up = await a.stack.up().then(() => "succeeded", (error: Error) => error.message);
    assert.match(up, /REPLICA_STATE_MISMATCH|the replica state at .* but Pulumi state recorded/);
    assert.equal(JSON.parse((await machineOf(a)).outputs.live as string).kind, "azure", "the workload stayed where it was");
    // With the record put back, the move runs.
    await blob.upload(original, Buffer.byteLength(original));
    const result = await a.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal((await placedSha256(a)).sha, truthSha256());
  });

  it("GIVEN two workspaces with the same workload WHEN both run up at once THEN one succeeds, the other fails with STATE_LEASE_HELD naming the holder, and the data is intact", async () => {
    // Every EBS call of the two runs is slowed, so the first run holds its lease for many seconds.
    const proxy: FaultProxy = await startFaultProxy(moto.endpoint, (c) => (c.url.includes("/snapshots") ? { kind: "delay", ms: 700 } : undefined));
    const raceDir = join(a.dir, "race");
    try {
      const where: PlacementInput = { kind: "aws", region: moto.region, endpoint: proxy.endpoint, launch: false, stateBucket: BUCKET };
      const program = (state: string) => async () => ({ disks: new Workload("race", argsFor(state, "race", where)).disks });
      const first = await createInlineStack("pw-race", program(join(raceDir, "a")), credentials, { passphrase, backendDir, stackName: "one" });
      const second = await createInlineStack("pw-race", program(join(raceDir, "b")), credentials, { passphrase, backendDir, stackName: "two" });
      try {
        const s3 = new S3Client({ region: moto.region, endpoint: moto.endpoint, forcePathStyle: true });
        const running = first.stack.up().then(() => "ok", (error: Error) => error.message);
        // Start the second once the first holds the lease.
        for (let i = 0; i < 600; i++) {
          const lease = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "portable-state/race.lease.json" })).then(() => true, () => false);
          if (lease) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        s3.destroy();
        const racing = await second.stack.up().then(() => "ok", (error: Error) => error.message);
        const winner = await running;
        assert.equal(winner, "ok");
        assert.match(racing, /STATE_LEASE_HELD|is held by pid \d+ on .+ \(place race on aws\)/);
        assert.match(racing, /held by pid \d+ on /);
        const placed = (JSON.parse((await machineOf(first)).outputs.placed as string) as PlacedDiskRecord[])[0]!;
        const back = await openReplica("race", "disk0", placed.target, await replicaStoreFor(placed.target, join(raceDir, "check")));
        try {
          const expected = createHash("sha256").update(await readFile(image)).digest("hex");
          assert.equal(await sourceSha256(back), expected, "the winner's replica holds the source");
        } finally {
          await back.close();
        }
        await first.stack.destroy();
        await second.stack.destroy().catch(() => {});
      } finally {
        await Promise.all([first.cleanup(), second.cleanup()]);
      }
    } finally {
      await proxy.stop();
    }
  });
});
