import assert from "node:assert/strict";
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";
import { REPO_ROOT } from "../harness/tools.ts";

// DESIGN.md "Layers and folders": examples -> components -> sdk, never upwards, and sdk
// stays free of Pulumi so the CLI and other hosts can use it alone.

const SOURCE_FOLDERS = ["sdk", "components", "examples", "tests", "scripts"];
const SOURCE_FILE = /\.(ts|mts|cts|js|mjs|cjs)$/;

interface Violation {
  readonly file: string;
  readonly specifier: string;
  readonly rule: string;
}

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== "node_modules") yield* sourceFiles(path);
    else if (entry.isFile() && SOURCE_FILE.test(entry.name)) yield path;
  }
}

/** Every import, export-from, dynamic import() and require() in a file, as written. */
function specifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

function topFolder(root: string, path: string): string {
  return relative(root, path).split(sep)[0] ?? "";
}

/** True when the relative import `specifier` in `file` lands in the folder `parts` (e.g. sdk/transfer). */
function inFolder(root: string, file: string, specifier: string, ...parts: string[]): boolean {
  if (!specifier.startsWith(".")) return false;
  return relative(root, resolve(dirname(file), specifier)).startsWith(`${join(...parts)}${sep}`);
}

async function findLayerViolations(root: string): Promise<Violation[]> {
  const violations: Violation[] = [];
  for (const folder of SOURCE_FOLDERS) {
    for await (const file of sourceFiles(join(root, folder))) {
      const rel = relative(root, file);
      for (const specifier of specifiers(await readFile(file, "utf8"))) {
        const target = specifier.startsWith(".") ? topFolder(root, resolve(dirname(file), specifier)) : undefined;
        if (folder === "sdk" && /^@pulumi(\/|$)/.test(specifier)) {
          violations.push({ file: rel, specifier, rule: "sdk must not import @pulumi/*" });
        }
        if (folder === "sdk" && target !== undefined && target !== "sdk") {
          violations.push({ file: rel, specifier, rule: "sdk imports only sdk" });
        }
        // The drivers (sdk/clouds) sit above the transfer floor: transfer never chooses one.
        if (rel.startsWith(`sdk${sep}transfer${sep}`) && specifier.startsWith(".") && relative(root, resolve(dirname(file), specifier)).startsWith(`sdk${sep}clouds${sep}`)) {
          violations.push({ file: rel, specifier, rule: "sdk/transfer imports no sdk/clouds driver" });
        }
        // The migration (warm loop, cutover, plan) is written over the drivers, never under them.
        if (rel.startsWith(`sdk${sep}clouds${sep}`) && specifier.startsWith(".") && relative(root, resolve(dirname(file), specifier)).startsWith(`sdk${sep}migrate${sep}`)) {
          violations.push({ file: rel, specifier, rule: "sdk/clouds imports nothing from sdk/migrate" });
        }
        // The drivers implement the contracts (sdk/contracts) and use the shared utilities
        // (sdk/retry.ts, sdk/disk/manifest.ts); the replication engine is not theirs to reach.
        if (rel.startsWith(`sdk${sep}clouds${sep}`) && inFolder(root, file, specifier, "sdk", "transfer")) {
          violations.push({ file: rel, specifier, rule: "sdk/clouds imports nothing from sdk/transfer" });
        }
        // The contracts are the floor under drivers, transfer and migrate: they name none of them.
        if (rel.startsWith(`sdk${sep}contracts${sep}`)) {
          for (const above of ["clouds", "transfer", "migrate"]) {
            if (inFolder(root, file, specifier, "sdk", above)) violations.push({ file: rel, specifier, rule: `sdk/contracts imports nothing from sdk/${above}` });
          }
        }
        if (folder !== "examples" && target === "examples") {
          violations.push({ file: rel, specifier, rule: "nothing imports from examples/" });
        }
      }
    }
  }
  return violations;
}

describe("layering", () => {
  it("GIVEN this repository THEN no import crosses a layer", async () => {
    assert.deepEqual(await findLayerViolations(REPO_ROOT), []);
  });

  it("GIVEN a tree with forbidden imports THEN each one is reported", async () => {
    const root = await mkdtemp(join(tmpdir(), "pw-layering-"));
    try {
      await mkdir(join(root, "sdk", "disk"), { recursive: true });
      await mkdir(join(root, "components"), { recursive: true });
      await mkdir(join(root, "examples", "quickstart"), { recursive: true });
      await writeFile(join(root, "sdk", "disk", "ok.ts"), `import { x } from "../errors.ts";\nimport z from "zod";\n`);
      await mkdir(join(root, "sdk", "transfer"), { recursive: true });
      await writeFile(join(root, "sdk", "transfer", "up.ts"), `const aws = await import("../clouds/aws/url.ts");\nimport { y } from "./retry.ts";\n`);
      await writeFile(join(root, "sdk", "disk", "bad.ts"), `import * as pulumi from "@pulumi/pulumi";\n`);
      await mkdir(join(root, "sdk", "clouds", "local"), { recursive: true });
      await writeFile(join(root, "sdk", "clouds", "local", "down.ts"), `import { plainName } from "../../migrate/targets.ts";\nimport type { MachineDriver } from "../../contracts/machine-driver.ts";\n`);
      await writeFile(
        join(root, "sdk", "clouds", "local", "engine.ts"),
        `import type { ReplicaStore } from "../../transfer/checkpoint.ts";\nconst r = await import("../../transfer/replicate.ts");\nimport { withRetry } from "../../retry.ts";\nimport { BlockManifest } from "../../disk/manifest.ts";\nimport type { ReplicaTarget } from "../../contracts/replica-target.ts";\n`,
      );
      await mkdir(join(root, "sdk", "contracts"), { recursive: true });
      await writeFile(
        join(root, "sdk", "contracts", "up.ts"),
        `import type { VsphereClient } from "../clouds/vsphere/client.ts";\nimport type { ReplicaStore } from "../transfer/checkpoint.ts";\nexport type { Machine } from "../migrate/types.ts";\n` +
          `import type { DiskSource } from "../disk/types.ts";\nimport type { Placement } from "../spec/placement.ts";\nimport { CloudError } from "../errors.ts";\nimport type { PointInTime } from "./point-in-time.ts";\n`,
      );
      await writeFile(join(root, "sdk", "lazy.ts"), `const aws = await import("@pulumi/aws");\n`);
      await writeFile(join(root, "sdk", "up.ts"), `export { Workload } from "../components/workload.ts";\n`);
      await writeFile(join(root, "components", "c.ts"), `const q = require("../examples/quickstart/index.ts");\n`);
      await writeFile(join(root, "examples", "quickstart", "index.ts"), `import "../../components/c.ts";\n`);

      const found = await findLayerViolations(root);
      assert.deepEqual(
        found.map((v) => `${v.file} ${v.specifier}`).sort(),
        [
          "components/c.ts ../examples/quickstart/index.ts",
          "sdk/clouds/local/down.ts ../../migrate/targets.ts",
          "sdk/clouds/local/engine.ts ../../transfer/checkpoint.ts",
          "sdk/clouds/local/engine.ts ../../transfer/replicate.ts",
          "sdk/contracts/up.ts ../clouds/vsphere/client.ts",
          "sdk/contracts/up.ts ../migrate/types.ts",
          "sdk/contracts/up.ts ../transfer/checkpoint.ts",
          "sdk/disk/bad.ts @pulumi/pulumi",
          "sdk/lazy.ts @pulumi/aws",
          "sdk/transfer/up.ts ../clouds/aws/url.ts",
          "sdk/up.ts ../components/workload.ts",
        ],
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
