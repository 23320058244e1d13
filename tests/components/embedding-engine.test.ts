// A host program that embeds us through the Automation API and sets nothing up: the engine runs
// with the system's PATH (Node 20 first) and no NODE_PATH, in a temporary workspace that has no
// node_modules. The dynamic-provider plugin that setup installs next to the CLI must still run
// our providers on Node 24 and find @pulumi/pulumi (README, "Use from the Automation API").
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Disk } from "../../components/providers/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";

describe("embedding: the engine with a bare environment", { timeout: 300_000 }, () => {
  let env: InlineStack;
  let image = "";
  let target = "";

  before(async () => {
    env = await createInlineStack("pw-embed", async () => {
      const disk = new Disk("embed-disk0", { workload: "embed", disk: "disk0", source: image, target, stateDir: join(env.dir, "state"), verify: "full" });
      return { location: disk.location };
    }, {}, { bareEnvironment: true });
    image = join(env.dir, "image.raw");
    target = join(env.dir, "local", "disks", "embed-disk0.raw");
    await writeFile(image, Buffer.alloc(4 * 1024 * 1024, 0x5a));
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
  });

  it("GIVEN Node 20 first on PATH and no NODE_PATH WHEN up THEN our providers run and place the disk", async () => {
    const first = execFileSync("sh", ["-c", "node --version"], { env: { PATH: "/usr/local/bin:/usr/bin:/bin" } }).toString().trim();
    assert.ok(Number(first.slice(1).split(".")[0]) < 24, `the system node (${first}) is older than our sources need, so the plugin must pick another`);
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(result.outputs.location?.value, target);
    assert.deepEqual(await readFile(target), await readFile(image));
  });
});
