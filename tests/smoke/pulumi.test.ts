import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";

interface FileInputs {
  readonly path: string;
  readonly content: string;
}

// Serialized into the dynamic-provider process: it captures nothing and requires what it uses.
const fileProvider: pulumi.dynamic.ResourceProvider<FileInputs, FileInputs> = {
  async create(inputs) {
    require("node:fs").writeFileSync(inputs.path, inputs.content);
    return { id: inputs.path, outs: inputs };
  },
  async delete(id) {
    require("node:fs").rmSync(id, { force: true });
  },
};

class SmokeFile extends pulumi.dynamic.Resource {
  constructor(name: string, args: FileInputs, opts?: pulumi.CustomResourceOptions) {
    super(fileProvider, name, args, opts, "smoke", "SmokeFile");
  }
}

describe("Pulumi engine (built CLI, inline program, file:// backend)", () => {
  let env: InlineStack;
  let target: string;

  before(async () => {
    let dir = "";
    env = await createInlineStack("pw-smoke", async () => {
      new SmokeFile("marker", { path: join(dir, "marker.txt"), content: "written by a dynamic provider" });
    });
    dir = env.dir;
    target = join(env.dir, "marker.txt");
  });
  after(() => env?.cleanup());

  it("GIVEN a dynamic resource WHEN up THEN its create wrote the file", async () => {
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(result.summary.resourceChanges?.create, 2, "the stack and the dynamic resource");
    assert.equal(readFileSync(target, "utf8"), "written by a dynamic provider");
  });

  it("WHEN destroy THEN the file is gone and the stack holds no resources", async () => {
    const result = await env.stack.destroy();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(existsSync(target), false);
    const state = await env.stack.exportStack();
    assert.deepEqual(state.deployment.resources ?? [], []);
  });
});
