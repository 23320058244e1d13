import assert from "node:assert/strict";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DescribeImagesCommand, DescribeInstancesCommand, DescribeSnapshotsCommand, DescribeVolumesCommand, RunInstancesCommand, TerminateInstancesCommand, type Tag } from "@aws-sdk/client-ec2";
import { isPortableError } from "../../../sdk/errors.ts";
import type { MachineRequest } from "../../../sdk/contracts/machine-driver.ts";
import { placementSchema } from "../../../sdk/spec/placement.ts";
import { parseWorkload, type Workload } from "../../../sdk/spec/workload.ts";
import {
  awsDeviceNameFor,
  awsDeviceNameForDisk,
  awsMachineDriver,
  createAwsClients,
  createAwsMachineDriver,
  createEbsSnapshotSink,
  openInstanceVolume,
  openWorkloadVolume,
  type AwsClients,
} from "../../../sdk/clouds/aws/index.ts";
import { moveMachine, placeWorkload } from "../../../sdk/migrate/machine-placement.ts";
import { diskTargetFor } from "../../../sdk/migrate/targets.ts";
import { fileSha256, withTempDir } from "../../harness/disk.ts";
import { startMoto, type Moto } from "../../harness/moto.ts";
import { writeBlocks } from "../../transfer/replica-helpers.ts";
import { BLOCK, GiB, useMotoCredentials } from "./helpers.ts";

// The AWS machine driver (sdk/clouds/aws/machine-driver.ts) and point-in-time reads of an
// instance's volumes (sdk/clouds/aws/live-volume.ts), against moto behind a recording proxy that
// sees every EC2 and EBS call the code under test makes (setup talks to moto directly, so the
// record holds only the driver's calls).
//
// What moto shows: instances found by tag and state, StopInstances / StartInstances and the
// states they lead to, the block device mapping (which volume is at /dev/sdf), CreateSnapshot of
// that volume with our tags, DescribeSnapshots, DeleteSnapshot, and the ORDER of all of these.
//
// What moto cannot show, and how each gap is handled:
// - A graceful stop that takes time, or one that never ends: moto's StopInstances stops at once
//   and ignores Force. The proxy rewrites `stopped` to `stopping` in DescribeInstances answers
//   (until a Force=true stop, or always) to drive the force path and its timeout.
// - Bytes of a volume: moto volumes hold none, and an EC2 CreateSnapshot snapshot is unknown to
//   moto's EBS direct backend, which answers ListSnapshotBlocks of it with HTTP 500 (a KeyError
//   in moto/ebs/models.py). The first openInstanceVolume test asserts exactly that answer.
// - So the success path (bytes read, then DeleteSnapshot on release) runs with a stand-in that is
//   NOT moto behaviour and is labelled as such: the volume is launched from an EBS-direct
//   snapshot holding known bytes, and the proxy serves the EBS reads of the new snapshot from
//   that origin snapshot (what AWS would hold for a volume nobody wrote since launch). It proves
//   which snapshot is read and released, and that the bytes flow through our reader; it cannot
//   prove that AWS snapshots a volume's guest writes (AWS documents that; no emulator here can).

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// A recording proxy for EC2 (query protocol: form bodies with Action=…) and EBS (REST paths).

interface Call {
  readonly index: number;
  readonly service: "ec2" | "ebs";
  readonly action: string;
  /** EC2: the form parameters; EBS: none (the snapshot id is below). */
  readonly params: Readonly<Record<string, string>>;
  readonly snapshotId?: string;
  status?: number;
}

interface Hooks {
  /** Answer instead of moto. */
  intercept?(call: Call): { status: number; body: string; contentType?: string } | undefined;
  /** The path forwarded to moto. */
  rewritePath?(call: Call, path: string): string;
  /** EC2 answers (XML) as the client sees them. */
  rewriteResponse?(call: Call, body: string): string;
  /** Told every EC2 answer as moto gave it. */
  onResponse?(call: Call, body: string): void;
}

interface Recorder {
  readonly endpoint: string;
  readonly calls: Call[];
  hooks: Hooks;
  reset(): void;
  stop(): Promise<void>;
}

function classify(index: number, method: string, url: URL, body: Buffer): Call {
  if (method === "POST" && url.pathname === "/" && body.includes("Action=")) {
    const params = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
    return { index, service: "ec2", action: params.Action ?? "?", params };
  }
  const blocks = /^\/snapshots\/(snap-[0-9a-f]+)\/blocks(?:\/(\d+))?$/.exec(url.pathname);
  if (blocks !== null) {
    const action = method === "PUT" ? "PutSnapshotBlock" : blocks[2] === undefined ? "ListSnapshotBlocks" : "GetSnapshotBlock";
    return { index, service: "ebs", action, params: {}, snapshotId: blocks[1]! };
  }
  const changed = /^\/snapshots\/(snap-[0-9a-f]+)\/changedblocks$/.exec(url.pathname);
  if (changed !== null) return { index, service: "ebs", action: "ListChangedBlocks", params: { FirstSnapshotId: url.searchParams.get("firstSnapshotId") ?? "" }, snapshotId: changed[1]! };
  const completion = /^\/snapshots\/completion\/(snap-[0-9a-f]+)$/.exec(url.pathname);
  if (completion !== null) return { index, service: "ebs", action: "CompleteSnapshot", params: {}, snapshotId: completion[1]! };
  return { index, service: "ebs", action: method === "POST" && url.pathname === "/snapshots" ? "StartSnapshot" : `${method} ${url.pathname}`, params: {} };
}

async function startRecorder(upstream: string): Promise<Recorder> {
  const target = new URL(upstream);
  const calls: Call[] = [];
  const recorder: Recorder = { endpoint: "", calls, hooks: {}, reset: () => void (calls.length = 0), stop: async () => {} };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const call = classify(calls.length, req.method ?? "GET", new URL(req.url ?? "/", "http://proxy"), body);
    calls.push(call);
    const answer = recorder.hooks.intercept?.(call);
    if (answer !== undefined) {
      call.status = answer.status;
      res.writeHead(answer.status, { "content-type": answer.contentType ?? "text/xml" });
      res.end(answer.body);
      return;
    }
    const path = recorder.hooks.rewritePath?.(call, req.url ?? "/") ?? req.url ?? "/";
    const upstreamReq = request(
      { host: target.hostname, port: target.port, method: req.method, path, headers: { ...req.headers, host: target.host }, agent: false },
      async (upstreamRes) => {
        const parts: Buffer[] = [];
        for await (const part of upstreamRes) parts.push(part as Buffer);
        let out = Buffer.concat(parts);
        call.status = upstreamRes.statusCode ?? 502;
        if (call.service === "ec2") {
          recorder.hooks.onResponse?.(call, out.toString("utf8"));
          if (recorder.hooks.rewriteResponse) out = Buffer.from(recorder.hooks.rewriteResponse(call, out.toString("utf8")));
        }
        const headers = { ...upstreamRes.headers, "content-length": String(out.length) };
        delete headers["transfer-encoding"];
        res.writeHead(call.status, headers);
        res.end(out);
      },
    );
    upstreamReq.once("error", () => res.socket?.destroy());
    upstreamReq.end(body);
  });
  server.keepAliveTimeout = 10 * 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(recorder, {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** The calls as "Action" or "Action snapshotId" lines, for order assertions. */
const actions = (calls: readonly Call[], wanted: readonly string[]) => calls.filter((c) => wanted.includes(c.action)).map((c) => c.action);

/** moto's DescribeInstances XML, with every `stopped` shown as `stopping`. */
function stoppedAsStopping(body: string): string {
  return body.replace(/(<instanceState>\s*<code>)80(<\/code>\s*<name>)stopped(<\/name>)/g, "$164$2stopping$3");
}

// ---------------------------------------------------------------------------------------------

function workloadNamed(name: string): Workload {
  return parseWorkload({
    name,
    memoryMiB: 512,
    firmware: { type: "bios" },
    guestOs: { family: "linux" },
    disks: [
      { id: "root", sizeBytes: GiB, source: { kind: "file", path: "/nonexistent/root.raw", format: "raw" }, bus: "nvme", bootOrder: 0 },
      { id: "data", sizeBytes: GiB, source: { kind: "file", path: "/nonexistent/data.raw", format: "raw" }, bus: "nvme" },
    ],
  });
}

describe("AWS machine driver and instance volumes (moto behind a recording proxy)", () => {
  let moto: Moto;
  let proxy: Recorder;
  /** Straight to moto: setup and checks, never recorded. */
  let direct: AwsClients;
  /** Through the proxy: what the code under test uses. */
  let recorded: AwsClients;
  let imageId: string;
  /** Millisecond polling, so waits in these tests take milliseconds. */
  const fast = createAwsMachineDriver({ pollIntervalMs: 20, forceStopTimeoutMs: 2_000, startTimeoutMs: 2_000 });

  function requestFor(name: string, launch = true): MachineRequest {
    return { workload: workloadNamed(name), placement: placementSchema.parse({ kind: "aws", region: moto.region, endpoint: proxy.endpoint, launch }), disks: [] };
  }

  /** RunInstances as the aws placement's instance looks: /dev/xvda, then /dev/sdf (each from a snapshot when given), tagged with the workload. */
  async function launch(tags: Record<string, string>, sdfSnapshotId?: string, xvdaSnapshotId?: string): Promise<string> {
    const out = await direct.ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        BlockDeviceMappings: [
          { DeviceName: "/dev/xvda", Ebs: { VolumeSize: 1, ...(xvdaSnapshotId === undefined ? {} : { SnapshotId: xvdaSnapshotId }) } },
          { DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1, ...(sdfSnapshotId === undefined ? {} : { SnapshotId: sdfSnapshotId }) } },
        ],
        ...(Object.keys(tags).length === 0 ? {} : { TagSpecifications: [{ ResourceType: "instance", Tags: Object.entries(tags).map(([Key, Value]): Tag => ({ Key, Value })) }] }),
      }),
    );
    return out.Instances![0]!.InstanceId!;
  }

  async function stateOf(instanceId: string): Promise<string | undefined> {
    const out = await direct.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    return out.Reservations?.[0]?.Instances?.[0]?.State?.Name;
  }

  async function volumeAt(instanceId: string, device: string): Promise<string> {
    const out = await direct.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    return out.Reservations![0]!.Instances![0]!.BlockDeviceMappings!.find((m) => m.DeviceName === device)!.Ebs!.VolumeId!;
  }

  async function snapshotExists(snapshotId: string): Promise<boolean> {
    try {
      const out = await direct.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }));
      return (out.Snapshots ?? []).length > 0;
    } catch (error) {
      if ((error as Error).name === "InvalidSnapshot.NotFound") return false;
      throw error;
    }
  }

  before(async () => {
    moto = await startMoto();
    useMotoCredentials(moto.credentials);
    proxy = await startRecorder(moto.endpoint);
    direct = createAwsClients({ region: moto.region, endpoint: moto.endpoint });
    recorded = createAwsClients({ region: moto.region, endpoint: proxy.endpoint });
    // An AMI moto ships with; moto's RegisterImage drops block device mappings, so the instance's
    // devices come from RunInstances' own mappings instead (the same names our AMI gives).
    imageId = (await direct.ec2.send(new DescribeImagesCommand({}))).Images![0]!.ImageId!;
  });
  after(async () => {
    recorded?.destroy();
    direct?.destroy();
    await proxy?.stop();
    await moto?.stop();
  });

  it("GIVEN disk indexes WHEN named THEN they follow the aws placement's AMI: root /dev/xvda, then /dev/sdf, /dev/sdg … /dev/sdz", () => {
    assert.deepEqual([0, 1, 2, 3, 21].map(awsDeviceNameForDisk), ["/dev/xvda", "/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdz"]);
    assert.equal(awsDeviceNameFor(workloadNamed("names"), "data"), "/dev/sdf");
    for (const bad of [22, -1, 1.5]) assert.throws(() => awsDeviceNameForDisk(bad), (e: unknown) => isPortableError(e) && e.code === "AWS_TOO_MANY_DISKS");
    assert.throws(() => awsDeviceNameFor(workloadNamed("names"), "nope"), (e: unknown) => isPortableError(e) && e.code === "AWS_DISK_UNKNOWN");
  });

  it("GIVEN placements WHEN asked THEN a running machine is wanted only for aws with launch, and other kinds are refused", async () => {
    assert.equal(awsMachineDriver.wantsRunning(requestFor("w").placement), true);
    assert.equal(awsMachineDriver.wantsRunning(requestFor("w", false).placement), false);
    assert.equal(awsMachineDriver.wantsRunning(placementSchema.parse({ kind: "local", dir: "/tmp/x" })), false);
    await assert.rejects(awsMachineDriver.isRunning({ ...requestFor("w"), placement: placementSchema.parse({ kind: "local", dir: "/tmp/x" }) }, ""), (e: unknown) => isPortableError(e) && e.code === "MACHINE_DRIVER_MISMATCH");
  });

  it("GIVEN a tagged running instance WHEN found, stopped and started THEN create reports it, stop is graceful, isRunning follows EC2's state", async () => {
    const id = await launch({ "portable:workload": "web", Name: "web" });
    const request = requestFor("web");
    proxy.reset();
    assert.deepEqual(await fast.create(request, "web"), { kind: "aws", machineId: id, running: true });
    assert.equal(await fast.isRunning(request, ""), true);
    assert.equal(await fast.isRunning(request, id), true);

    proxy.reset();
    assert.deepEqual(await fast.stop(request, "", 5_000), { graceful: true });
    // One normal stop (no Force): the guest's ACPI shutdown.
    const stops = proxy.calls.filter((c) => c.action === "StopInstances");
    assert.equal(stops.length, 1);
    assert.equal(stops[0]!.params["InstanceId.1"], id);
    assert.equal(stops[0]!.params.Force, undefined);
    assert.equal(await stateOf(id), "stopped");
    assert.equal(await fast.isRunning(request, ""), false);
    assert.deepEqual(await fast.create(request, "web"), { kind: "aws", machineId: id, running: false });

    // Stopping a stopped instance sends nothing.
    proxy.reset();
    assert.deepEqual(await fast.stop(request, id, 5_000), { graceful: true });
    assert.deepEqual(actions(proxy.calls, ["StopInstances"]), []);

    proxy.reset();
    await fast.start(request, "");
    assert.deepEqual(actions(proxy.calls, ["StartInstances"]), ["StartInstances"]);
    assert.equal(proxy.calls.find((c) => c.action === "StartInstances")!.params["InstanceId.1"], id);
    assert.equal(await stateOf(id), "running");
    assert.equal(await fast.isRunning(request, id), true);

    // destroy leaves the official resource to Pulumi: no EC2 call at all.
    proxy.reset();
    await fast.destroy(request, id, {});
    assert.deepEqual(proxy.calls, []);
    assert.equal(await stateOf(id), "running");
  });

  it("GIVEN a guest that does not shut down within the grace WHEN stopped THEN a forced stop follows and graceful is false; one that never stops is AWS_STOP_TIMEOUT", async () => {
    const id = await launch({ "portable:workload": "slow", Name: "slow" });
    const request = requestFor("slow");
    // moto stops at once; shown `stopping` until a forced stop is asked for.
    let forced = false;
    let rewrites = 0;
    proxy.hooks = {
      rewriteResponse(call, body) {
        if (call.action === "StopInstances" && call.params.Force === "true") forced = true;
        if (call.action !== "DescribeInstances" || forced) return body;
        const out = stoppedAsStopping(body);
        if (out !== body) rewrites++;
        return out;
      },
    };
    try {
      proxy.reset();
      assert.deepEqual(await fast.stop(request, id, 200), { graceful: false });
      assert.ok(rewrites > 0, "the grace was spent seeing `stopping`");
      const stops = proxy.calls.filter((c) => c.action === "StopInstances").map((c) => c.params.Force ?? "normal");
      assert.deepEqual(stops, ["normal", "true"]);

      // Never `stopped`: the forced stop is bounded.
      await fast.start(request, id);
      proxy.hooks = { rewriteResponse: (call, body) => (call.action === "DescribeInstances" ? stoppedAsStopping(body) : body) };
      const bounded = createAwsMachineDriver({ pollIntervalMs: 20, forceStopTimeoutMs: 300 });
      await assert.rejects(bounded.stop(request, id, 100), (e: unknown) => isPortableError(e) && e.code === "AWS_STOP_TIMEOUT" && e.message.includes(id));

      // A grace of 0 goes straight to the forced stop.
      proxy.hooks = {};
      await fast.start(request, id);
      proxy.reset();
      assert.deepEqual(await fast.stop(request, id, 0), { graceful: false });
      assert.deepEqual(proxy.calls.filter((c) => c.action === "StopInstances").map((c) => c.params.Force ?? "normal"), ["true"]);
    } finally {
      proxy.hooks = {};
    }
  });

  it("GIVEN instances without the workload's tag WHEN the driver looks THEN it finds nothing, stops nothing and cannot start anything", async () => {
    const untagged = await launch({ Name: "ghost" });
    const other = await launch({ "portable:workload": "someone-else" });
    const request = requestFor("ghost");
    proxy.reset();
    assert.deepEqual(await fast.create(request, "ghost"), { kind: "aws", machineId: "", running: false });
    assert.equal(await fast.isRunning(request, ""), false);
    assert.deepEqual(await fast.stop(request, "", 1_000), { graceful: true });
    await assert.rejects(fast.start(request, ""), (e: unknown) => isPortableError(e) && e.code === "AWS_INSTANCE_NOT_FOUND");
    assert.deepEqual(actions(proxy.calls, ["StopInstances", "StartInstances"]), []);
    assert.equal(await stateOf(untagged), "running");
    assert.equal(await stateOf(other), "running");
    // The lookup asked EC2 for the tag and the live states, not for everything.
    const describe = proxy.calls.find((c) => c.action === "DescribeInstances")!;
    assert.equal(describe.params["Filter.1.Name"], "tag:portable:workload");
    assert.equal(describe.params["Filter.1.Value.1"], "ghost");
  });

  it("GIVEN two live instances tagged for one workload WHEN the driver looks THEN AWS_INSTANCE_AMBIGUOUS and nothing is stopped; once one is terminated the other is the machine", async () => {
    const first = await launch({ "portable:workload": "twin" });
    const second = await launch({ "portable:workload": "twin" });
    const request = requestFor("twin");
    proxy.reset();
    const ambiguous = (e: unknown) => isPortableError(e) && e.code === "AWS_INSTANCE_AMBIGUOUS" && e.message.includes(first) && e.message.includes(second);
    await assert.rejects(fast.create(request, "twin"), ambiguous);
    await assert.rejects(fast.stop(request, "", 1_000), ambiguous);
    await assert.rejects(fast.isRunning(request, ""), ambiguous);
    assert.deepEqual(actions(proxy.calls, ["StopInstances"]), []);
    await direct.ec2.send(new TerminateInstancesCommand({ InstanceIds: [first] }));
    assert.deepEqual(await fast.create(request, "twin"), { kind: "aws", machineId: second, running: true });
  });

  it("GIVEN a cutover reading a stopped instance WHEN its data disk is opened THEN StopInstances, CreateSnapshot of that very volume, its reads, then DeleteSnapshot — and moto answers the reads with HTTP 500", async () => {
    const id = await launch({ "portable:workload": "db", Name: "db" });
    const request = requestFor("db");
    const rootVolume = await volumeAt(id, "/dev/xvda");
    const dataVolume = await volumeAt(id, "/dev/sdf");
    assert.notEqual(rootVolume, dataVolume);
    // moto's volume: a size and attachments, no content of any kind.
    const described = (await direct.ec2.send(new DescribeVolumesCommand({ VolumeIds: [dataVolume] }))).Volumes![0]!;
    assert.equal(described.Size, 1);
    assert.equal(described.SnapshotId ?? "", "");

    proxy.reset();
    assert.deepEqual(await fast.stop(request, "", 5_000), { graceful: true });
    const opened = openWorkloadVolume({ clients: recorded, workload: request.workload, diskId: "data", pollIntervalMs: 20 });
    await assert.rejects(opened, (e: unknown) => isPortableError(e) && e.code === "EBS_LIST_BLOCKS_FAILED" && e.context.retriesExhausted === true);

    const create = proxy.calls.find((c) => c.action === "CreateSnapshot")!;
    assert.equal(create.params.VolumeId, dataVolume, "the snapshot is of the volume at /dev/sdf, the data disk");
    const tags = Object.fromEntries(
      Object.entries(create.params)
        .filter(([k]) => /^TagSpecification\.1\.Tag\.\d+\.Key$/.test(k))
        .map(([k, v]) => [v, create.params[k.replace(/Key$/, "Value")]]),
    );
    assert.equal(create.params["TagSpecification.1.ResourceType"], "snapshot");
    assert.deepEqual(tags, { "portable:purpose": "point-in-time", "portable:instance": id, "portable:device": "/dev/sdf", "portable:workload": "db" });
    assert.match(create.params.Description ?? "", /portable-workload/);
    const snapshotId = proxy.calls.find((c) => c.action === "DeleteSnapshot")?.params.SnapshotId;
    assert.match(snapshotId ?? "", /^snap-/);

    const sequence = proxy.calls
      .filter((c) => ["StopInstances", "CreateSnapshot", "DescribeSnapshots", "ListSnapshotBlocks", "GetSnapshotBlock", "DeleteSnapshot"].includes(c.action))
      .map((c) => `${c.action}${c.service === "ebs" ? ` ${c.snapshotId} ${c.status}` : c.action === "DescribeSnapshots" ? ` ${c.params["SnapshotId.1"]}` : c.action === "DeleteSnapshot" ? ` ${c.params.SnapshotId}` : ""}`);
    // Every attempt of the listing (our 8 retries of a 5xx) reached moto and got its 500.
    assert.deepEqual(sequence, [
      "StopInstances",
      "CreateSnapshot",
      `DescribeSnapshots ${snapshotId}`,
      ...Array.from({ length: 8 }, () => `ListSnapshotBlocks ${snapshotId} 500`),
      `DeleteSnapshot ${snapshotId}`,
    ]);
    assert.equal(await snapshotExists(snapshotId!), false, "the failed read left no snapshot behind");
  });

  it("GIVEN a device the instance does not have WHEN opened THEN AWS_VOLUME_NOT_FOUND before any snapshot; no instance for the workload: undefined", async () => {
    const id = await launch({ "portable:workload": "nodisk" });
    proxy.reset();
    await assert.rejects(openInstanceVolume({ clients: recorded, instanceId: id, deviceName: awsDeviceNameForDisk(2) }), (e: unknown) => isPortableError(e) && e.code === "AWS_VOLUME_NOT_FOUND" && e.message.includes("/dev/sdf"));
    assert.equal(await openWorkloadVolume({ clients: recorded, workload: workloadNamed("nobody-here"), diskId: "root" }), undefined);
    assert.deepEqual(actions(proxy.calls, ["CreateSnapshot", "DeleteSnapshot"]), []);
  });

  it("GIVEN EBS's per-volume snapshot rate limit WHEN CreateSnapshot is refused once THEN it is waited out and the snapshot made", async () => {
    const id = await launch({ "portable:workload": "rate" });
    let refused = 0;
    proxy.hooks = {
      intercept(call) {
        if (call.action !== "CreateSnapshot" || refused > 0) return undefined;
        refused++;
        return { status: 400, body: "<Response><Errors><Error><Code>SnapshotCreationPerVolumeRateExceeded</Code><Message>The maximum per volume CreateSnapshot request rate has been exceeded.</Message></Error></Errors><RequestID>r1</RequestID></Response>" };
      },
    };
    try {
      proxy.reset();
      // moto cannot read the snapshot (HTTP 500, above); a short signal ends the listing's retries.
      const signal = AbortSignal.timeout(1_500);
      await assert.rejects(openInstanceVolume({ clients: recorded, instanceId: id, deviceName: "/dev/xvda", rateWaitMs: 10, pollIntervalMs: 20, signal }));
      assert.deepEqual(actions(proxy.calls, ["CreateSnapshot"]), ["CreateSnapshot", "CreateSnapshot"]);
      assert.deepEqual(proxy.calls.filter((c) => c.action === "CreateSnapshot").map((c) => c.status), [400, 200]);
      assert.equal(proxy.calls.filter((c) => c.action === "DeleteSnapshot").length, 1, "and deleted after the failed read");
    } finally {
      proxy.hooks = {};
    }
  });

  it("GIVEN a stand-in for volume bytes (NOT moto: the proxy serves the new snapshot's blocks from the volume's origin snapshot) WHEN read and released THEN the bytes come through and release deletes only our snapshot", async () => {
    // The origin: an EBS-direct snapshot (moto keeps these bytes) that the instance's /dev/sdf is launched from.
    const sink = await createEbsSnapshotSink(direct.ebs, { virtualSizeBytes: GiB, ec2: direct.ec2 });
    const first = Buffer.alloc(BLOCK, 0x11);
    const later = Buffer.alloc(BLOCK, 0x77);
    later.write("portable-workload block 9", 100);
    await sink.write(0, first);
    await sink.write(9 * BLOCK, later);
    await sink.finish();
    const origin = sink.snapshotId;
    const id = await launch({ "portable:workload": "files" }, origin);
    const dataVolume = await volumeAt(id, "/dev/sdf");
    assert.equal((await direct.ec2.send(new DescribeVolumesCommand({ VolumeIds: [dataVolume] }))).Volumes![0]!.SnapshotId, origin);

    const created = new Map<string, string>();
    proxy.hooks = {
      onResponse(call, body) {
        const snap = /<snapshotId>(snap-[0-9a-f]+)<\/snapshotId>/.exec(body);
        if (call.action === "CreateSnapshot" && call.params.VolumeId === dataVolume && snap !== null) created.set(snap[1]!, origin);
      },
      rewritePath(call, path) {
        const from = call.snapshotId === undefined ? undefined : created.get(call.snapshotId);
        return from === undefined ? path : path.replace(call.snapshotId!, from);
      },
    };
    try {
      proxy.reset();
      const view = await openInstanceVolume({ clients: recorded, instanceId: id, deviceName: awsDeviceNameForDisk(1), virtualSizeBytes: 10 * MiB, workload: "files", pollIntervalMs: 20 });
      assert.equal(view.volumeId, dataVolume);
      assert.equal(view.instanceState, "running");
      assert.notEqual(view.snapshotId, origin);
      assert.equal(view.source.snapshotId, view.snapshotId, "the reader reads the snapshot we made, by its own id");
      assert.equal(view.source.virtualSizeBytes, 10 * MiB);
      const extents = [];
      for await (const e of view.source.extents()) extents.push(e);
      assert.deepEqual(extents.filter((e) => e.kind === "data").map((e) => [e.offsetBytes, e.lengthBytes]), [[0, BLOCK], [9 * BLOCK, BLOCK]]);
      assert.ok((await view.source.read(0, BLOCK)).equals(first));
      assert.ok((await view.source.read(9 * BLOCK, BLOCK)).equals(later));
      assert.ok((await view.source.read(BLOCK, BLOCK)).equals(Buffer.alloc(BLOCK)));

      await view.release();
      await view.release();
      const sequence = proxy.calls
        .filter((c) => ["CreateSnapshot", "ListSnapshotBlocks", "GetSnapshotBlock", "DeleteSnapshot"].includes(c.action))
        .map((c) => `${c.action} ${c.snapshotId ?? c.params.SnapshotId ?? c.params.VolumeId}`);
      assert.deepEqual(sequence, [
        `CreateSnapshot ${dataVolume}`,
        `ListSnapshotBlocks ${view.snapshotId}`,
        `GetSnapshotBlock ${view.snapshotId}`,
        `GetSnapshotBlock ${view.snapshotId}`,
        `DeleteSnapshot ${view.snapshotId}`,
      ]);
      assert.equal(await snapshotExists(view.snapshotId), false);
      assert.equal(await snapshotExists(origin), true, "the origin (our placed snapshot) is never touched");
    } finally {
      proxy.hooks = {};
    }
  });
  it("GIVEN a workload running on AWS (the same stand-in for volume bytes) WHEN the whole move to local runs THEN warm passes snapshot the running instance's own volumes, then StopInstances, then the final pass snapshots and reads the stopped volumes, and local holds their bytes", { timeout: 300_000 }, async () => {
    await withTempDir(async (dir) => {
      const stateDir = join(dir, "state");
      const sources = { root: join(dir, "root.raw"), data: join(dir, "data.raw") };
      await writeBlocks(sources.root, 8 * MiB, [0, 5], "root");
      await writeBlocks(sources.data, 8 * MiB, [1, 2, 15], "data");
      const workload = parseWorkload({
        name: "mover",
        memoryMiB: 512,
        firmware: { type: "bios" },
        guestOs: { family: "linux" },
        disks: [
          { id: "root", sizeBytes: 8 * MiB, source: { kind: "file", path: sources.root, format: "raw" }, bus: "nvme", bootOrder: 0 },
          { id: "data", sizeBytes: 8 * MiB, source: { kind: "file", path: sources.data, format: "raw" }, bus: "nvme" },
        ],
      });
      const aws = placementSchema.parse({ kind: "aws", region: moto.region, endpoint: proxy.endpoint, launch: true });
      const local = placementSchema.parse({ kind: "local", dir: join(dir, "local"), start: false });
      const ids = ["root", "data"] as const;
      // Placed on EBS (snapshots moto keeps the bytes of), then the instance launched from them, as the official Instance would be.
      const placed = await placeWorkload({ workload, placement: aws, disks: [], stateDir }, { stateDir, verify: "none" }, ids.map((id) => ({ id, source: sources[id], sourceFormat: "raw", target: diskTargetFor(aws, "mover", id) })));
      const origin = Object.fromEntries(placed.disks.map((d) => [d.id, d.location]));
      const instanceId = await launch({ "portable:workload": "mover" }, origin.data, origin.root);
      const volumes = { root: await volumeAt(instanceId, "/dev/xvda"), data: await volumeAt(instanceId, "/dev/sdf") };
      const originOf = new Map([[volumes.root, origin.root!], [volumes.data, origin.data!]]);
      // The stand-in (NOT moto): a snapshot of a volume reads as the snapshot the volume was launched from.
      const created = new Map<string, string>();
      proxy.hooks = {
        onResponse(call, body) {
          const snap = /<snapshotId>(snap-[0-9a-f]+)<\/snapshotId>/.exec(body);
          const from = originOf.get(call.params.VolumeId ?? "");
          if (call.action === "CreateSnapshot" && snap !== null && from !== undefined) created.set(snap[1]!, from);
        },
        rewritePath(call, path) {
          const from = call.snapshotId === undefined ? undefined : created.get(call.snapshotId);
          return from === undefined ? path : path.replace(call.snapshotId!, from);
        },
        // The same stand-in for ListChangedBlocks (moto lists only the first snapshot's blocks):
        // two snapshots of one volume read as its launch snapshot, so nothing changed between
        // them; the answer is shaped as AWS documents it.
        intercept(call) {
          if (call.action !== "ListChangedBlocks") return undefined;
          const first = created.get(call.params.FirstSnapshotId ?? "");
          if (first === undefined || first !== created.get(call.snapshotId!)) return undefined;
          return { status: 200, contentType: "application/json", body: JSON.stringify({ BlockSize: 524288, ChangedBlocks: [], ExpiryTime: Date.now() / 1000 + 3600, VolumeSize: 1 }) };
        },
      };
      try {
        proxy.reset();
        const result = await moveMachine({
          from: { workload, placement: aws, disks: placed.disks, stateDir, machineId: placed.state.machineId },
          to: { workload, placement: local, disks: ids.map((id) => ({ id, target: diskTargetFor(local, "mover", id), location: "" })), stateDir },
          stateDir,
          verify: "full",
          mode: "warm",
          maxPasses: 2,
          deleteSource: false,
          gracefulTimeoutMs: 5_000,
        });
        assert.equal(result.record.state, "completed");
        assert.deepEqual(result.record.steps.map((s) => s.name), ["warm-passes", "stop-source", "final-pass", "verify", "start-target", "health-check", "commit"]);
        for (const disk of result.disks) assert.equal(await fileSha256(disk.location), await fileSha256(sources[disk.id as "root" | "data"]), `${disk.id} on local holds the volume's bytes`);

        const calls = proxy.calls.filter((c) => ["StopInstances", "CreateSnapshot", "ListSnapshotBlocks", "PutSnapshotBlock", "StartSnapshot"].includes(c.action));
        const stop = calls.findIndex((c) => c.action === "StopInstances");
        assert.equal(calls.filter((c) => c.action === "StopInstances").length, 1);
        assert.equal(calls[stop]!.params["InstanceId.1"], instanceId);
        assert.deepEqual(calls.filter((c) => c.action === "PutSnapshotBlock" || c.action === "StartSnapshot"), [], "nothing is written to AWS");
        const snapshotsOf = (list: Call[]) => list.filter((c) => c.action === "CreateSnapshot").map((c) => c.params.VolumeId);
        const warm = snapshotsOf(calls.slice(0, stop));
        const final = snapshotsOf(calls.slice(stop + 1));
        assert.ok(warm.length >= 2 && warm.every((v) => v === volumes.root || v === volumes.data), `warm passes snapshot the running instance's volumes: ${warm.join(", ")}`);
        assert.deepEqual([...final].sort(), [volumes.root, volumes.data].sort(), "the final pass snapshots each stopped volume once");
        // Each final snapshot is read after the stop, and only snapshots of the instance's volumes are read.
        const finalSnapshots = [...created.keys()].slice(-2);
        const readAfterStop = new Set(calls.slice(stop + 1).filter((c) => c.action === "ListSnapshotBlocks").map((c) => c.snapshotId));
        for (const snap of finalSnapshots) assert.ok(readAfterStop.has(snap), `${snap} is read after the stop`);
        assert.ok(calls.filter((c) => c.action === "ListSnapshotBlocks").every((c) => created.has(c.snapshotId!)), "every read is of a snapshot of the instance's own volume, never of the placed snapshots");
        for (const snap of created.keys()) assert.equal(await snapshotExists(snap), false, `${snap} was deleted once no later pass needed it`);
        // Change tracking: each pass after the first asks EBS what changed since the previous
        // pass's snapshot of the same volume (kept until then), and reads only that.
        const diffs = proxy.calls.filter((c) => c.action === "ListChangedBlocks");
        const snapshotsInOrder = [...created.keys()];
        assert.ok(diffs.length >= 4, `ListChangedBlocks for the later warm pass and the final pass of each disk (${diffs.length})`);
        for (const diff of diffs) {
          const first = diff.params.FirstSnapshotId!;
          assert.equal(created.get(first), created.get(diff.snapshotId!), "both snapshots are of one volume");
          assert.ok(snapshotsInOrder.indexOf(first) < snapshotsInOrder.indexOf(diff.snapshotId!), "the first is the earlier pass's");
        }
        const laterPasses = [...(result.record.warmPasses ?? []).slice(1), result.record.finalPass!];
        assert.ok(laterPasses.every((p) => p.disks.every((d) => d.scan === "tracked" && d.bytesRead === 0)), "every pass after the first read only what EBS listed (nothing)");
      } finally {
        proxy.hooks = {};
        await direct.ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
      }
    });
  });
});
