// Real operations with known credentials, and a scan of everything they leave behind.
// - credentials: vcsim's random password (and a wrong one), moto's AWS keys, Azurite's account
//   key (and a wrong one), a SAS token's signature (and a tampered one);
// - the CLI (`portable convert … ebs://`, `azblob://`, a SAS URL, `portable replicate`,
//   `portable vsphere ls`), successful runs and error paths (wrong password, wrong key, tampered
//   SAS, refused requests, a missing container): stdout and stderr of each;
// - the Pulumi engine: a stack of portable:Disk resources (vSphere with the password and EBS with
//   the AWS keys in the engine's environment, never a resource input), `up`, then an `up` with a
//   wrong password that fails: engine output (onOutput), engine events (onEvent) with the
//   debug-level ones, error messages, the exported state (decrypted), and every file of the
//   file:// backend, PULUMI_HOME and the workspace;
// - the replica state directories (committed state, journals, current-placement records).
// Shared by tests/security/secrets.test.ts and `npm run secrets-scan`.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlobSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential } from "@azure/storage-blob";
import { Disk } from "../../components/providers/disk.ts";
import { startAzurite } from "../harness/azurite.ts";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { startMoto } from "../harness/moto.ts";
import { createInlineStack } from "../harness/pulumi.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { startVcsim } from "../harness/vcsim.ts";
import { containerFor } from "../clouds/azure/helpers.ts";
import { buildChaosImage } from "../chaos/chaos-runner.ts";
import { SecretScanner, secretForms, type Finding, type PlaceCounts, type Secret } from "./secret-scan.ts";

const MiB = 1024 * 1024;
/**
 * Debug-level engine events: @pulumi/pulumi logs every RegisterResource answer there (secret
 * outputs unwrapped), and Automation API listeners receive them. No credential is a resource
 * input or output, so they hold none either.
 */
export const DEBUG_EVENTS_PLACE = "engine debug events";
const IMAGE_BYTES = 8 * MiB;

export interface CliRun {
  readonly label: string;
  /** What the run was meant to do: succeed, or fail on an error path. */
  readonly expect: "ok" | "fail";
  readonly exitCode: number;
}

export interface SecretsReport {
  readonly secrets: number;
  /** Forms looked for in all (plain, URL-encoded, JSON, base64 at three alignments, ...). */
  readonly forms: number;
  readonly places: Readonly<Record<string, PlaceCounts>>;
  readonly findings: readonly Finding[];
  readonly cli: readonly CliRun[];
  readonly engine: {
    readonly upOk: boolean;
    readonly failedUpError: string | undefined;
    /** The password is nowhere in the exported (decrypted) state: not even as a secret. */
    readonly passwordInState: boolean;
    /** Debug-level RegisterResource answers seen, so their scan means something. */
    readonly registerResourceDebugLines: number;
  };
  readonly skippedLargeFiles: number;
  readonly seconds: number;
}

function runCli(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ exitCode: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "sdk/cli/portable.ts"), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stderr.on("data", (c: Buffer) => chunks.push(c));
    // A CLI run that hangs is a failure of its own; two minutes is far beyond any of these.
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ exitCode: code ?? -1, output: Buffer.concat(chunks).toString("utf8") });
    });
  });
}

export async function runSecretsScenario(log: (line: string) => void = () => {}): Promise<SecretsReport> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), "pw-secrets-"));
  const [sim, moto, azurite] = await Promise.all([startVcsim(), startMoto(), startAzurite()]);
  const stops: Array<() => Promise<void>> = [() => sim.stop(), () => moto.stop(), () => azurite.stop()];
  try {
    const image = join(dir, "disk.raw");
    await buildChaosImage(image, IMAGE_BYTES, 99);
    const caFile = join(dir, "vcsim-ca.pem");
    await writeFile(caFile, sim.caPem);

    const container = await containerFor(azurite, "sec");
    const sharedKey = new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey);
    const sasFor = (blob: string, containerName = "sec") =>
      generateBlobSASQueryParameters(
        { containerName, blobName: blob, permissions: BlobSASPermissions.parse("racwd"), startsOn: new Date(Date.now() - 60_000), expiresOn: new Date(Date.now() + 3_600_000) },
        sharedKey,
      );
    const sas = sasFor("sas.vhd");
    const sasReplica = sasFor("sas-replica.vhd");
    const sasMissing = sasFor("x.vhd", "no-such-container");
    const sasUrl = `${container.url}/sas.vhd?${sas.toString()}`;
    const sasReplicaUrl = `${container.url}/sas-replica.vhd?${sasReplica.toString()}`;
    const sasMissingUrl = `${azurite.blobEndpoint}/no-such-container/x.vhd?${sasMissing.toString()}`;
    const tamperedSig = Buffer.from(randomBytes(32)).toString("base64");
    const tamperedUrl = sasUrl.replace(/sig=[^&]+/, `sig=${encodeURIComponent(tamperedSig)}`);
    const wrongPassword = `wrong-${randomBytes(9).toString("base64url")}`;
    const wrongAccountKey = randomBytes(64).toString("base64");

    const secrets: Secret[] = [
      { name: "vcsim password", value: sim.password },
      { name: "wrong vcsim password", value: wrongPassword },
      { name: "aws secret access key", value: moto.credentials.secretAccessKey },
      { name: "aws access key id", value: moto.credentials.accessKeyId },
      { name: "azure account key", value: azurite.accountKey },
      { name: "wrong azure account key", value: wrongAccountKey },
      { name: "sas signature", value: sas.signature },
      { name: "sas signature (replica)", value: sasReplica.signature },
      { name: "sas signature (missing container)", value: sasMissing.signature },
      { name: "tampered sas signature", value: tamperedSig },
    ];
    const scanner = new SecretScanner(secrets);

    // Requests refused as AWS refuses bad credentials: not retried, so the error path is quick.
    const refusing = await startFaultProxy(moto.endpoint, () => ({
      kind: "status",
      status: 403,
      body: '{"message":"The security token included in the request is invalid."}',
      headers: { "x-amzn-errortype": "UnrecognizedClientException" },
    }));
    stops.push(() => refusing.stop());

    const base: NodeJS.ProcessEnv = { ...process.env };
    for (const name of Object.keys(base)) if (/^(AWS_|AZURE_|VSPHERE_)/.test(name)) delete base[name];
    const awsEnv = { ...base, AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey };
    const azureEnv = { ...base, AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
    const vsphereEnv = { ...base, VSPHERE_URL: sim.url, VSPHERE_USERNAME: sim.username, VSPHERE_PASSWORD: sim.password, VSPHERE_CA_FILE: caFile };
    const ebsUrl = `ebs://?region=${moto.region}&endpoint=${encodeURIComponent(moto.endpoint)}`;
    const stateA = join(dir, "replicas-ebs");
    const stateB = join(dir, "replicas-sas");
    const stateC = join(dir, "replicas-missing");

    const cliRuns: Array<{ label: string; expect: "ok" | "fail"; args: string[]; env: NodeJS.ProcessEnv }> = [
      { label: "convert → ebs://", expect: "ok", args: ["convert", image, ebsUrl], env: awsEnv },
      { label: "convert → azblob://", expect: "ok", args: ["convert", image, `azblob://${azurite.accountName}/sec/cli.vhd`], env: azureEnv },
      { label: "convert → SAS URL", expect: "ok", args: ["convert", image, sasUrl], env: base },
      { label: "vsphere ls", expect: "ok", args: ["vsphere", "ls", "--json"], env: vsphereEnv },
      { label: "replicate → ebs://", expect: "ok", args: ["replicate", image, ebsUrl, "--state", stateA, "--key", "ebs", "--json"], env: awsEnv },
      { label: "replicate → SAS URL", expect: "ok", args: ["replicate", image, sasReplicaUrl, "--state", stateB, "--key", "sas"], env: base },
      { label: "vsphere ls, wrong password", expect: "fail", args: ["vsphere", "ls"], env: { ...vsphereEnv, VSPHERE_PASSWORD: wrongPassword } },
      {
        label: "convert → azblob://, wrong account key",
        expect: "fail",
        args: ["convert", image, `azblob://${azurite.accountName}/sec/wrong.vhd`],
        env: { ...base, AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString.replace(azurite.accountKey, wrongAccountKey) },
      },
      { label: "convert → SAS URL, tampered signature", expect: "fail", args: ["convert", image, tamperedUrl.replace("sas.vhd", "tampered.vhd")], env: base },
      { label: "replicate → SAS URL, missing container", expect: "fail", args: ["replicate", image, sasMissingUrl, "--state", stateC, "--key", "missing"], env: base },
      {
        label: "convert → ebs://, requests refused (403)",
        expect: "fail",
        args: ["convert", image, `ebs://?region=${moto.region}&endpoint=${encodeURIComponent(refusing.endpoint)}`],
        env: awsEnv,
      },
    ];
    const cli: CliRun[] = [];
    for (const run of cliRuns) {
      const { exitCode, output } = await runCli(run.args, run.env);
      const found = scanner.scanText(run.expect === "ok" ? "cli output" : "cli error messages", run.label, output);
      cli.push({ label: run.label, expect: run.expect, exitCode });
      log(`cli ${run.label}: exit ${exitCode}, ${found} secret(s) found${run.expect === "fail" ? ` — ${output.trim().split("\n").pop()?.slice(0, 160)}` : ""}`);
    }
    for (const state of [stateA, stateB, stateC]) await scanner.scanDir("replica state", state).catch(() => 0);

    // The Pulumi engine.
    let stackDir = "";
    let verify: "sampled" | "full" = "sampled";
    const engineEnv = { AWS_ACCESS_KEY_ID: moto.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: moto.credentials.secretAccessKey, VSPHERE_PASSWORD: sim.password };
    const env = await createInlineStack("pw-secrets", async () => {
      const stateDir = join(stackDir, "state");
      const vsphere = new Disk("sec-vsphere", {
        workload: "sec",
        disk: "disk0",
        source: image,
        target: "vsphere://127.0.0.1/sec/disk0.vmdk?dc=DC0&ds=LocalDS_0",
        stateDir,
        verify,
        // The provider reads the password from VSPHERE_PASSWORD in its own environment.
        vsphere: JSON.stringify({ url: sim.url, username: sim.username, caPem: sim.caPem }),
      });
      const ebs = new Disk("sec-ebs", { workload: "sec", disk: "disk1", source: image, target: ebsUrl, stateDir, verify: "sampled" });
      return { vsphere: vsphere.location, ebs: ebs.location };
    }, engineEnv);
    stops.push(() => env.cleanup());
    stackDir = env.dir;
    let engineOutput = "";
    let engineEvents = "";
    let debugEvents = "";
    const hooks = {
      onOutput: (text: string) => {
        engineOutput += text;
      },
      onEvent: (event: { diagnosticEvent?: { severity?: string } }) => {
        // Debug diagnostics are scanned too: @pulumi/pulumi's runtime logs every RegisterResource
        // answer at debug level (runtime/resource.js, "RegisterResource RPC finished"), secret
        // outputs unwrapped; the CLI shows them only with --debug, but Automation API listeners
        // receive them always.
        if (event.diagnosticEvent?.severity === "debug") debugEvents += `${JSON.stringify(event)}\n`;
        else engineEvents += `${JSON.stringify(event)}\n`;
      },
    };
    const up = await env.stack.up(hooks);
    const upOk = up.summary.result === "succeeded";
    log(`engine up: ${up.summary.result}`);
    // A wrong password in the engine's environment, and a change that makes the provider log in.
    env.stack.workspace.envVars.VSPHERE_PASSWORD = wrongPassword;
    verify = "full";
    let failedUpError: string | undefined;
    try {
      await env.stack.up(hooks);
    } catch (error) {
      failedUpError = error instanceof Error ? error.message : String(error);
    }
    log(`engine up with a wrong password: ${failedUpError === undefined ? "succeeded (unexpected)" : "failed"}`);
    scanner.scanText("engine output", "onOutput", engineOutput);
    scanner.scanText("engine events", "onEvent", engineEvents);
    scanner.scanText(DEBUG_EVENTS_PLACE, "onEvent (severity debug)", debugEvents);
    scanner.scanText("error messages", "failed up", failedUpError ?? "");
    // The state as stored (the Automation API's exportStack passes --show-secrets, so its copy is
    // decrypted by design; it only proves the password reached the state at all).
    const exported = JSON.stringify(await env.stack.exportStack());
    const passwordInState = exported.includes(sim.password);
    const stacks = join(env.dir, "backend", ".pulumi", "stacks");
    await scanner.scanDir("stack state", stacks);
    await scanner.scanDir("backend files", join(env.dir, "backend"), (path) => !path.startsWith(stacks));
    await scanner.scanDir("pulumi home", join(env.dir, "home"));
    await scanner.scanDir("replica state", join(env.dir, "state"));
    await scanner.scanDir("workspace", env.stack.workspace.workDir);
    const registerResourceDebugLines = debugEvents.split("\n").filter((line) => line.includes("RegisterResource RPC finished")).length;

    return {
      secrets: secrets.length,
      forms: secrets.reduce((n, s) => n + secretForms(s.value).length, 0),
      places: Object.fromEntries(scanner.places),
      findings: scanner.findings,
      cli,
      engine: { upOk, failedUpError, passwordInState, registerResourceDebugLines },
      skippedLargeFiles: scanner.skipped.length,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
