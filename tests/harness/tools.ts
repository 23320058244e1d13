// Where `npm run setup` puts each real part. Versions are read from the files that pin
// them, so the harness and scripts/setup.sh cannot drift apart.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Images and an OVA written by other tools, with their origins (tests/fixtures/vectors/README.md). */
export const VECTORS_DIR = join(REPO_ROOT, "tests", "fixtures", "vectors");

function pinnedGoModule(goModPath: string, module: string): string {
  const goMod = readFileSync(join(REPO_ROOT, goModPath), "utf8");
  const match = new RegExp(`^\\s*${module.replaceAll(".", "\\.")}\\s+(v\\S+)`, "m").exec(goMod);
  if (match?.[1] === undefined) throw new Error(`${goModPath} does not pin ${module}`);
  return match[1];
}

/** e.g. "3.276.0", from tools/pulumi/go.mod. */
export const PULUMI_VERSION = pinnedGoModule("tools/pulumi/go.mod", "github.com/pulumi/pulumi/pkg/v3").slice(1);

/** The layout `PulumiCommand.get({root})` expects: `<root>/bin/pulumi`. */
export const PULUMI_ROOT = join(homedir(), ".pulumi", "versions", PULUMI_VERSION);

export const TOOLS = {
  pulumi: join(PULUMI_ROOT, "bin", "pulumi"),
  vcsim: join(REPO_ROOT, ".tools", "bin", "vcsim"),
  motoServer: join(REPO_ROOT, ".tools", "venv", "bin", "moto_server"),
  azuriteBlob: join(REPO_ROOT, "node_modules", ".bin", "azurite-blob"),
  qemuImg: "/usr/bin/qemu-img",
  qemuSystem: "/usr/bin/qemu-system-x86_64",
} as const;
