// Records tests/fixtures/preview/workload-move.json: the real Pulumi CLI's `pulumi preview --json`
// of a program with one Workload (the quickstart's: BIOS, one SATA disk, one NIC) moving local →
// vSphere (vcsim on loopback).
//
//   node scripts/record-preview-fixture.ts [out.json]
//
// The Node language host cannot be built here (README), so a plain `pulumi preview` in a project
// folder cannot run the program. The Automation API's inline mode runs it instead: it serves the
// program from this process as a language runtime over gRPC and runs the CLI with
// `--client=<address> --exec-kind auto.inline`. `Stack.preview()` has no `--json` switch, so
// for the preview this script does what `Stack.preview()` does (node_modules/@pulumi/pulumi/
// automation/stack.js, cmd.js) by hand — same language server, same environment, same arguments
// — plus `--json`, and keeps the CLI's stdout as it is, except that the scratch directory, the
// repository root and the vcsim port are replaced with placeholders (the random passphrase and
// the vcsim password are checked not to appear).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { delimiter, dirname, join } from "node:path";
import type { PulumiFn } from "@pulumi/pulumi/automation/index.js";
import { Workload } from "../components/workload.ts";
import type { PlacementInput } from "../sdk/spec/placement.ts";
import { buildBootImage } from "../tests/harness/boot-image.ts";
import { createInlineStack, type InlineStack } from "../tests/harness/pulumi.ts";
import { REPO_ROOT, TOOLS } from "../tests/harness/tools.ts";
import { startVcsim } from "../tests/harness/vcsim.ts";

// The Automation API's own (untyped, internal) parts, loaded from the same @pulumi/pulumi the
// program uses, so the language server runs the program against the same runtime module.
const pulumiRequire = createRequire(createRequire(import.meta.url).resolve("@pulumi/pulumi"));
interface GrpcServer {
  addService(service: unknown, implementation: unknown): void;
  bindAsync(address: string, credentials: unknown, callback: (error: Error | null, port: number) => void): void;
  forceShutdown(): void;
}
const grpc = pulumiRequire("@grpc/grpc-js") as { Server: new (options: object) => GrpcServer; ServerCredentials: { createInsecure(): unknown } };
const { LanguageServer } = pulumiRequire("./automation/server.js") as { LanguageServer: new (program: PulumiFn) => { onPulumiExit(hasError: boolean): void } };
const langrpc = pulumiRequire("./proto/language_grpc_pb.js") as { LanguageRuntimeService: unknown };
const { grpcChannelOptions } = pulumiRequire("./runtime/index.js") as { grpcChannelOptions: object };

const out = process.argv[2] ?? join(REPO_ROOT, "tests", "fixtures", "preview", "workload-move.json");
const say = (text: string) => console.error(`==> ${text}`);

/** `pulumi preview --json` of the inline program, as `Stack.preview()` would run it plus `--json`. */
async function previewJson(env: InlineStack, program: PulumiFn): Promise<{ code: number; stdout: string; stderr: string; args: string[] }> {
  const workspace = env.stack.workspace;
  const server = new grpc.Server({ ...grpcChannelOptions });
  const languageServer = new LanguageServer(program);
  server.addService(langrpc.LanguageRuntimeService, languageServer);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const args = ["preview", "--json", `--client=127.0.0.1:${port}`, "--exec-kind", "auto.inline", "--stack", env.stack.name, "--non-interactive"];
  // Stack.runPulumiCmd + PulumiCommand.run: PULUMI_DEBUG_COMMANDS, PULUMI_HOME, the workspace's
  // envVars, the CLI's folder first on PATH, PULUMI_AUTOMATION_API; execa extends process.env.
  const envVars: Record<string, string> = { ...workspace.envVars };
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    PULUMI_DEBUG_COMMANDS: "true",
    ...(workspace.pulumiHome === undefined ? {} : { PULUMI_HOME: workspace.pulumiHome }),
    ...envVars,
    PATH: [dirname(TOOLS.pulumi), envVars.PATH ?? process.env.PATH ?? ""].join(delimiter),
    PULUMI_AUTOMATION_API: "true",
  };
  let hasError = false;
  try {
    const child = spawn(TOOLS.pulumi, args, { cwd: workspace.workDir, env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const code = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (c) => resolve(c ?? -1));
    });
    hasError = code !== 0;
    return { code, stdout, stderr, args };
  } finally {
    languageServer.onPulumiExit(hasError);
    server.forceShutdown();
  }
}

say("building the sample guest (tests/harness/boot-image.ts)");
const [image, sim] = await Promise.all([buildBootImage({ firmware: "bios" }), startVcsim()]);
process.env.VSPHERE_PASSWORD = sim.password;
const passphrase = randomBytes(16).toString("hex");
let placement: PlacementInput = { kind: "local", dir: "", bootMarker: image.marker };
let stateDir = "";
// The quickstart's program (examples/quickstart/program.ts; nothing imports from examples/).
const program: PulumiFn = async () => {
  const web = new Workload("web", {
    spec: {
      name: "web",
      cpu: { sockets: 1, coresPerSocket: 2 },
      memoryMiB: 256,
      firmware: { type: "bios" },
      disks: [{ id: "disk0", sizeBytes: image.sizeBytes, source: { kind: "file", path: image.path, format: "raw" }, bus: "sata", bootOrder: 0 }],
      nics: [{ network: "VM Network" }],
      guestOs: { family: "linux", distribution: "debian", version: "12" },
      tags: { app: "quickstart" },
    },
    placement,
    migration: { mode: "warm", source: "keep", verify: "full" },
    stateDir,
  });
  return { machineId: web.machineId, disks: web.disks };
};
const env = await createInlineStack("quickstart", program, {}, { passphrase });
let failed = false;
try {
  placement = { kind: "local", dir: join(env.dir, "local"), bootMarker: image.marker };
  stateDir = join(env.dir, "state");
  say("up: the workload on the local target");
  const up = await env.stack.up();
  if (up.summary.result !== "succeeded") throw new Error(`up on local: ${up.summary.result}`);

  placement = { kind: "vsphere", url: sim.url, username: sim.username, datacenter: "DC0", datastore: "LocalDS_0", caPem: sim.caPem, folder: "web" };
  const cliVersion = (await new Promise<string>((resolve, reject) => {
    const child = spawn(TOOLS.pulumi, ["version"], { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (text += c));
    child.once("error", reject).once("close", () => resolve(text));
  })).trim();
  say(`${TOOLS.pulumi} (${cliVersion}) ${["preview", "--json", "--client=127.0.0.1:PORT", "--exec-kind", "auto.inline", "--stack", env.stack.name, "--non-interactive"].join(" ")}`);
  const preview = await previewJson(env, program);
  if (preview.stderr.trim() !== "") process.stderr.write(preview.stderr);
  if (preview.code !== 0) {
    failed = true;
    say(`pulumi preview --json exited ${preview.code}; the JSON is still written (a failed preview is JSON too)`);
  }
  JSON.parse(preview.stdout); // it is JSON, or this throws before anything is written
  const simPort = new URL(sim.url).port;
  const scrubbed = preview.stdout
    .replaceAll(env.dir, "$SCRATCH")
    .replaceAll(REPO_ROOT, "$REPO")
    .replaceAll(`127.0.0.1:${simPort}`, "127.0.0.1:$VCSIM_PORT");
  for (const [what, secret] of [["passphrase", passphrase], ["vCenter password", sim.password]] as const) {
    if (scrubbed.includes(secret)) throw new Error(`the ${what} appears in the preview output; not writing ${out}`);
  }
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, scrubbed);
  say(`wrote ${out} (${scrubbed.length} bytes, exit ${preview.code}, ${cliVersion})`);

  say("destroy");
  await env.stack.destroy();
} finally {
  await env.cleanup();
  await sim.stop();
}
if (failed) process.exitCode = 1;
