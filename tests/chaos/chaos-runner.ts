// Seeded chaos over full disk placements: local raw image → vSphere (vcsim, a flat copy over
// HTTPS), → EBS (moto, a journalled snapshot replica) and → an Azure page blob (Azurite). Each
// run places a fresh image through sdk placeDisk in a child process while a loopback proxy
// injects faults (HTTP level for moto and Azurite: resets, 5xx, throttling, slow answers,
// truncated bodies; TCP level under TLS for vcsim: resets, truncations, stalls), and SIGKILLs
// the child at a seeded point of its progress. A run must end correct, or fail with a coded
// error; reruns (resumes) then continue from the state it left, the last one without faults,
// and the target is read back in full and hashed against the source. A mismatch, an uncoded
// error or a hang is counted, and must stay 0.
// Shared by `npm run chaos` (scripts/chaos.ts) and the bounded CI test (chaos.test.ts).
import { spawn } from "node:child_process";
import { createCipheriv } from "node:crypto";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileReplicaStore } from "../../sdk/transfer/checkpoint.ts";
import { openReplica, replicaKey, replicaStoreFor } from "../../sdk/migrate/disk-placement.ts";
import { startAzurite, type Azurite } from "../harness/azurite.ts";
import { fileSha256, sourceSha256 } from "../harness/disk.ts";
import { seededRandom, startFaultProxy, type Fault, type FaultProxy } from "../harness/fault-proxy.ts";
import { startMoto, type Moto } from "../harness/moto.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { startTcpFaultProxy, type TcpFaultProxy } from "./tcp-fault-proxy.ts";

export type ChaosTarget = "vsphere" | "ebs" | "azure";
const MiB = 1024 * 1024;

export interface ChaosOptions {
  readonly seed: number;
  readonly runs: number;
  /** Runs go round-robin over these. */
  readonly targets: readonly ChaosTarget[];
  /** Share of requests (HTTP) or connections (TCP) that get a fault. */
  readonly faultRate: number;
  /** Share of runs whose first attempt is SIGKILLed at a seeded point. */
  readonly killRate: number;
  /** Virtual size of each run's image. */
  readonly imageBytes: number;
  /** Attempts with faults after the first, before the one clean attempt. */
  readonly faultyResumes: number;
  /** A child that runs longer is killed and counted as a hang. */
  readonly childTimeoutMs: number;
  readonly log?: (line: string) => void;
}

export interface RunRecord {
  readonly run: number;
  readonly target: ChaosTarget;
  readonly attempts: number;
  readonly killed: boolean;
  /** Codes of the attempts that failed cleanly. */
  readonly errors: readonly string[];
  readonly firstAttemptOk: boolean;
  /** A rerun continued an interrupted pass (journal) instead of starting over. */
  readonly resumedFromJournal: boolean;
  /** An attempt outlived childTimeoutMs. */
  readonly hung: boolean;
  readonly correct: boolean;
}

export interface ChaosSummary {
  readonly seed: number;
  readonly runs: number;
  readonly byTarget: Readonly<Record<string, number>>;
  readonly faultsInjected: Readonly<Record<string, number>>;
  readonly faultsTotal: number;
  readonly kills: number;
  readonly cleanFailures: number;
  readonly errorCodes: Readonly<Record<string, number>>;
  readonly resumes: number;
  readonly resumedFromJournal: number;
  readonly endedCorrect: number;
  readonly dataLost: number;
  readonly uncleanFailures: number;
  readonly hangs: number;
  readonly seconds: number;
  readonly records: readonly RunRecord[];
}

/** A sparse raw image with seeded data: random runs at 512-byte-aligned places, the last sector too. */
export async function buildChaosImage(path: string, sizeBytes: number, seed: number): Promise<void> {
  const random = seededRandom(seed);
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, seed & 0xff), Buffer.from(seed.toString(16).padStart(32, "0"), "hex"));
  const file = await open(path, "w");
  try {
    await file.truncate(sizeBytes);
    let budget = Math.floor(sizeBytes * 0.4);
    while (budget > 0) {
      const length = Math.min(budget, 4096 + Math.floor(random() * 2 * MiB / 512) * 512);
      const at = Math.floor(random() * ((sizeBytes - length) / 512)) * 512;
      await file.write(cipher.update(Buffer.alloc(length)), 0, length, at);
      budget -= length;
    }
    await file.write(cipher.update(Buffer.alloc(512)), 0, 512, sizeBytes - 512);
  } finally {
    await file.close();
  }
}

interface ChildOutcome {
  readonly kind: "ok" | "error" | "killed" | "hang";
  readonly code?: string;
  readonly resumed?: boolean;
}

/** Runs place-child.ts; SIGKILLs it once its progress passes `killAtBytes`, or on timeout. */
function runChild(args: object, env: NodeJS.ProcessEnv, killAtBytes: number | undefined, timeoutMs: number): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "tests/chaos/place-child.ts"), JSON.stringify(args)], { env, stdio: ["ignore", "pipe", "pipe"] });
    let buffered = "";
    let result: ChildOutcome | undefined;
    let killedOnPurpose = false;
    let stderr = "";
    const timer = setTimeout(() => {
      result = { kind: "hang" };
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("progress ")) {
          if (killAtBytes !== undefined && Number(line.slice(9)) >= killAtBytes && child.exitCode === null && !killedOnPurpose) {
            killedOnPurpose = true;
            child.kill("SIGKILL");
          }
        } else if (line.startsWith("ok ")) {
          result ??= { kind: "ok", resumed: (JSON.parse(line.slice(3)) as { resumed: boolean }).resumed };
        } else if (line.startsWith("error ")) {
          result ??= { kind: "error", code: line.split(" ")[1] ?? "UNCODED" };
        }
      }
    });
    child.once("exit", (_code, signal) => {
      clearTimeout(timer);
      if (result?.kind === "hang") resolve(result);
      else if (signal === "SIGKILL" && killedOnPurpose) resolve({ kind: "killed" });
      else resolve(result ?? { kind: "error", code: `UNCODED(exit ${_code ?? signal}): ${stderr.trim().split("\n").pop() ?? ""}` });
    });
  });
}

const CODE = /^[A-Z][A-Z0-9_]+$/;

export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const started = performance.now();
  const log = options.log ?? (() => {});
  const random = seededRandom(options.seed);
  const faultCounts = new Map<string, number>();
  const countFault = (name: string) => faultCounts.set(name, (faultCounts.get(name) ?? 0) + 1);
  let faultsOn = true;
  const dir = await mkdtemp(join(tmpdir(), "pw-chaos-"));
  const wants = new Set(options.targets);
  let sim: Vcsim | undefined;
  let moto: Moto | undefined;
  let azurite: Azurite | undefined;
  let tcp: TcpFaultProxy | undefined;
  const httpProxies: FaultProxy[] = [];

  // HTTP faults, named for the summary. Each is seen by the client as its service would send it.
  const httpFaults: ReadonlyArray<readonly [string, Fault]> = [
    ["reset", { kind: "reset" }],
    ["5xx", { kind: "status", status: 500, body: '{"message":"InternalError"}', headers: { "x-amzn-errortype": "InternalServerException", "x-ms-error-code": "InternalError" } }],
    ["5xx", { kind: "status", status: 503, body: '{"message":"SlowDown"}', headers: { "x-amzn-errortype": "ServiceUnavailableException", "x-ms-error-code": "ServerBusy" } }],
    ["throttle", { kind: "status", status: 429, body: '{"message":"Rate exceeded"}', headers: { "x-amzn-errortype": "ThrottlingException", "x-ms-error-code": "ServerBusy" } }],
    ["slow", { kind: "delay", ms: 800 }],
    ["truncate", { kind: "truncate" }],
  ];
  const httpRule = (context: { method: string; url: string }, rnd: () => number): Fault | undefined => {
    if (!faultsOn || context.url.startsWith("/moto-api") || rnd() >= options.faultRate) return undefined;
    const [name, fault] = httpFaults[Math.floor(rnd() * httpFaults.length)]!;
    // The harness proxy cuts an answer inside its first body chunk; an answer without a body
    // (Put Page, PutSnapshotBlock) would instead stall until the client's two-minute timeout.
    if (fault.kind === "truncate" && context.method !== "GET") return undefined;
    countFault(name);
    return fault;
  };

  const records: RunRecord[] = [];
  try {
    [sim, moto, azurite] = await Promise.all([
      wants.has("vsphere") ? startVcsim() : undefined,
      wants.has("ebs") ? startMoto() : undefined,
      wants.has("azure") ? startAzurite() : undefined,
    ]);
    if (sim !== undefined) {
      const url = new URL(sim.url);
      tcp = await startTcpFaultProxy(url.hostname, Number(url.port), { rate: options.faultRate, kinds: ["reset", "truncate", "delay"], maxThresholdBytes: options.imageBytes, maxDelayMs: 1500 }, options.seed);
    }
    const awsProxy = moto === undefined ? undefined : await startFaultProxy(moto.endpoint, httpRule, options.seed + 1);
    const azureProxy = azurite === undefined ? undefined : await startFaultProxy(new URL(azurite.blobEndpoint).origin, httpRule, options.seed + 2);
    for (const proxy of [awsProxy, azureProxy]) if (proxy !== undefined) httpProxies.push(proxy);
    if (azurite !== undefined) await containerFor(azurite, "chaos");

    const env: NodeJS.ProcessEnv = { ...process.env };
    if (moto !== undefined) Object.assign(env, { AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey, AWS_REGION: moto.region });
    if (azurite !== undefined && azureProxy !== undefined) {
      env.AZURE_STORAGE_CONNECTION_STRING = `DefaultEndpointsProtocol=http;AccountName=${azurite.accountName};AccountKey=${azurite.accountKey};BlobEndpoint=${azureProxy.endpoint}/${azurite.accountName};`;
    }
    if (sim !== undefined) env.PW_CHAOS_VSPHERE_PASSWORD = sim.password;
    // The read-back below runs in this process, with the same credentials.
    for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AZURE_STORAGE_CONNECTION_STRING"]) {
      if (env[name] !== undefined) process.env[name] = env[name];
    }
    const vsphere = sim === undefined || tcp === undefined ? undefined : { url: `https://127.0.0.1:${tcp.port}/sdk`, username: sim.username, caPem: sim.caPem };

    for (let run = 0; run < options.runs; run++) {
      const target = options.targets[run % options.targets.length]!;
      const image = join(dir, `run-${run}.raw`);
      await buildChaosImage(image, options.imageBytes, options.seed * 1000 + run);
      const expected = await fileSha256(image);
      const targetUrl =
        target === "vsphere" ? `vsphere://127.0.0.1/chaos/run-${run}.vmdk?dc=DC0&ds=LocalDS_0`
        : target === "ebs" ? `ebs://?region=${moto!.region}&endpoint=${encodeURIComponent(awsProxy!.endpoint)}`
        : `azblob://${azurite!.accountName}/chaos/run-${run}.vhd`;
      const stateDir = join(dir, `state-${run}`);
      const workload = `chaos${options.seed}-${run}`;
      const childArgs = { workload, disk: "disk0", source: image, target: targetUrl, stateDir, ...(vsphere === undefined || target !== "vsphere" ? {} : { vsphere }) };
      const kill = random() < options.killRate;
      // The kill lands between 5 % and 90 % of the disk's scan.
      const killAtBytes = kill ? Math.floor((0.05 + random() * 0.85) * options.imageBytes) : undefined;

      const errors: string[] = [];
      let killed = false;
      let resumedFromJournal = false;
      let outcome: ChildOutcome = { kind: "error" };
      let attempts = 0;
      let firstAttemptOk = false;
      // The journal of a pass is in the state folder, whichever store keeps the committed record.
      const store = new FileReplicaStore(stateDir);
      const key = replicaKey(workload, "disk0", targetUrl);
      for (let attempt = 0; attempt <= options.faultyResumes + 1; attempt++) {
        const last = attempt === options.faultyResumes + 1;
        faultsOn = !last;
        tcp?.setEnabled(!last);
        const pendingBefore = attempt > 0 && target !== "vsphere" ? await store.loadPending(key) : undefined;
        attempts++;
        outcome = await runChild(childArgs, env, attempt === 0 ? killAtBytes : undefined, options.childTimeoutMs);
        if (outcome.kind === "killed") killed = true;
        if (outcome.kind === "error") errors.push(outcome.code ?? "UNCODED");
        if (outcome.kind === "ok") {
          if (attempt === 0) firstAttemptOk = true;
          if (pendingBefore !== undefined && outcome.resumed === true) resumedFromJournal = true;
          break;
        }
        if (outcome.kind === "hang") break;
      }
      faultsOn = false;
      tcp?.setEnabled(false);

      let correct = false;
      if (outcome.kind === "ok") {
        const connection = vsphere === undefined || target !== "vsphere" ? undefined : { ...vsphere, password: sim!.password };
        // The committed record is where the placement put it: beside the target.
        const back = await openReplica(workload, "disk0", targetUrl, await replicaStoreFor(targetUrl, stateDir, connection), connection);
        try {
          correct = (await sourceSha256(back)) === expected;
        } finally {
          await back.close();
        }
      }
      const record: RunRecord = { run, target, attempts, killed, errors, firstAttemptOk, resumedFromJournal, hung: outcome.kind === "hang", correct };
      records.push(record);
      log(`run ${String(run).padStart(3)} ${target.padEnd(7)} attempts ${attempts} ${killed ? "killed " : ""}${errors.length > 0 ? `errors ${errors.join(",")} ` : ""}${resumedFromJournal ? "resumed-journal " : ""}→ ${correct ? "correct" : outcome.kind === "hang" ? "HANG" : "WRONG"}`);
      await rm(image, { force: true });
    }
  } finally {
    await tcp?.stop();
    await Promise.all(httpProxies.map((p) => p.stop()));
    await Promise.all([sim?.stop(), moto?.stop(), azurite?.stop()]);
    await rm(dir, { recursive: true, force: true });
  }

  for (const [kind, n] of tcp?.injected ?? []) {
    const name = kind === "delay" ? "slow" : kind;
    faultCounts.set(name, (faultCounts.get(name) ?? 0) + n);
  }
  const errorCodes: Record<string, number> = {};
  for (const record of records) for (const code of record.errors) errorCodes[code] = (errorCodes[code] ?? 0) + 1;
  const byTarget: Record<string, number> = {};
  for (const record of records) byTarget[record.target] = (byTarget[record.target] ?? 0) + 1;
  const faultsInjected = Object.fromEntries([...faultCounts].sort());
  return {
    seed: options.seed,
    runs: records.length,
    byTarget,
    faultsInjected,
    faultsTotal: [...faultCounts.values()].reduce((a, b) => a + b, 0),
    kills: records.filter((r) => r.killed).length,
    cleanFailures: records.reduce((n, r) => n + r.errors.filter((c) => CODE.test(c)).length, 0),
    errorCodes,
    resumes: records.reduce((n, r) => n + r.attempts - 1, 0),
    resumedFromJournal: records.filter((r) => r.resumedFromJournal).length,
    endedCorrect: records.filter((r) => r.correct).length,
    dataLost: records.filter((r) => !r.correct).length,
    uncleanFailures: records.reduce((n, r) => n + r.errors.filter((c) => !CODE.test(c)).length, 0),
    hangs: records.filter((r) => r.hung).length,
    seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    records,
  };
}
