// The real Pulumi engine (the CLI that `npm run setup` built) driving an Automation API
// inline program, with a throw-away file:// backend and PULUMI_HOME.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { LocalWorkspace, PulumiCommand, type PulumiFn, type Stack } from "@pulumi/pulumi/automation/index.js";
import { PULUMI_ROOT, REPO_ROOT, TOOLS } from "./tools.ts";

export interface InlineStack {
  readonly stack: Stack;
  /** Scratch directory for the test: holds the backend, PULUMI_HOME and anything else. */
  readonly dir: string;
  /** Deletes the temporary backend and PULUMI_HOME. Does not destroy resources. */
  cleanup(): Promise<void>;
}

export interface InlineStackOptions {
  /** Share a file:// backend (and passphrase) with another stack, e.g. for a StackReference. */
  readonly backendDir?: string;
  readonly passphrase?: string;
  /**
   * Run the engine as a host program that set nothing up would: the system's PATH (Node 20 first)
   * and no NODE_PATH. Our dynamic-provider plugin must then find Node 24 and @pulumi/pulumi itself.
   */
  readonly bareEnvironment?: boolean;
  /** @default "test" */
  readonly stackName?: string;
  /** Select the stack when the (shared) backend has it already: a second machine's workspace. */
  readonly select?: boolean;
}

/** `env` reaches the engine and the provider processes (e.g. emulator credentials). */
export async function createInlineStack(projectName: string, program: PulumiFn, env: Readonly<Record<string, string>> = {}, options: InlineStackOptions = {}): Promise<InlineStack> {
  if (!existsSync(TOOLS.pulumi)) {
    throw new Error(`pulumi: ${TOOLS.pulumi} is not installed; run \`npm run setup\``);
  }
  const dir = await mkdtemp(join(tmpdir(), "pw-pulumi-"));
  try {
    const backendDir = options.backendDir ?? join(dir, "backend");
    const pulumiHome = join(dir, "home");
    await mkdir(backendDir, { recursive: true });
    await mkdir(pulumiHome);
    const pulumiCommand = await PulumiCommand.get({ root: PULUMI_ROOT, skipVersionCheck: false });
    const args = { stackName: options.stackName ?? "test", projectName, program };
    const stack = await (options.select === true ? LocalWorkspace.createOrSelectStack.bind(LocalWorkspace) : LocalWorkspace.createStack.bind(LocalWorkspace))(
      args,
      {
        pulumiCommand,
        pulumiHome,
        projectSettings: { name: projectName, runtime: "nodejs", backend: { url: `file://${backendDir}` } },
        secretsProvider: "passphrase",
        envVars: {
          PULUMI_CONFIG_PASSPHRASE: options.passphrase ?? randomBytes(16).toString("hex"),
          PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
          PULUMI_SKIP_UPDATE_CHECK: "true",
          // The dynamic-provider plugin (tools/pulumi/pulumi-resource-pulumi-nodejs) finds Node 24
          // and @pulumi/pulumi by itself; the other tests still point both at ours, as the README's
          // "Use from the Automation API" suggests, and the bare one proves the plugin alone suffices.
          ...(options.bareEnvironment === true
            ? { PATH: ["/usr/local/bin", "/usr/bin", "/bin"].join(delimiter), NODE_PATH: "" }
            : { PATH: [dirname(process.execPath), process.env.PATH ?? ""].join(delimiter), NODE_PATH: join(REPO_ROOT, "node_modules") }),
          ...env,
        },
      },
    );
    return { stack, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
