// The Workload's arguments and policy through the real engine (issue #22):
// - a spec with several problems fails the preview once, naming every problem with its path and
//   without a stack trace;
// - a readiness error found in the guest stops `up` before any disk moves, and
//   `migration.readiness: "warn"` lets it through;
// - the plan's stop estimate is the policy's grace period until a stop has been measured.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Workload, type WorkloadArgs } from "../../components/workload.ts";
import { buildBootImage, type BootImage } from "../harness/boot-image.ts";
import { fileSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";

/** Whether the command succeeded, and everything the engine printed (as `pulumi` prints it). */
async function run(action: () => Promise<unknown>, output: { text: string }): Promise<{ ok: boolean; text: string }> {
  try {
    await action();
    return { ok: true, text: output.text };
  } catch {
    return { ok: false, text: output.text };
  }
}

function occurrences(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe("Workload arguments and migration policy through the Pulumi engine", { timeout: 600_000 }, () => {
  let env: InlineStack;
  let image: BootImage;
  let args: WorkloadArgs | undefined;

  before(async () => {
    image = await buildBootImage({ firmware: "bios" });
    env = await createInlineStack("pw-policy", async () => {
      const workload = new Workload("app", args!);
      return { disks: workload.disks };
    });
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
  });

  const validArgs = (migration: WorkloadArgs["migration"]): WorkloadArgs => ({
    spec: {
      name: "app",
      memoryMiB: 128,
      // The image boots BIOS only; a UEFI workload is a readiness error on every target.
      firmware: { type: "uefi" },
      disks: [{ id: "disk0", sizeBytes: image.sizeBytes, source: { kind: "file", path: image.path, format: "raw" }, bus: "sata", bootOrder: 0 }],
      guestOs: { family: "linux" },
    },
    placement: { kind: "local", dir: join(env.dir, "local"), start: false },
    ...(migration === undefined ? {} : { migration }),
    stateDir: join(env.dir, "state"),
  });

  it("GIVEN a spec with several problems WHEN previewed THEN one clean error names every problem with its path", async () => {
    args = {
      spec: {
        name: "app",
        memoryMiB: -1,
        disks: [
          { id: "disk0", sizeBytes: 1024 },
          { id: "disk0", sizeBytes: 0, source: { kind: "file", path: "/nowhere.raw" } },
        ],
        guestOs: { family: "linux" },
      },
      placement: { kind: "local", dir: "" },
      migration: { maxPasses: 0 },
    } as unknown as WorkloadArgs;
    const output = { text: "" };
    const result = await run(() => env.stack.preview({ onOutput: (t) => (output.text += t) }), output);
    assert.equal(result.ok, false, "the preview fails");
    for (const path of ["spec.memoryMiB", "spec.disks.0.source", "spec.disks.1.sizeBytes", "spec.disks.1.id", "placement.dir", "migration.maxPasses"]) {
      assert.match(result.text, new RegExp(`\\b${path.replaceAll(".", "\\.")}: `), `${path} is named:\n${result.text}`);
    }
    assert.match(result.text, /Workload app: 6 problem\(s\) in its arguments \(WORKLOAD_INVALID\)/);
    assert.doesNotMatch(result.text, /Unhandled exception/);
    assert.doesNotMatch(result.text, /\n\s+at .+\(.+:\d+:\d+\)/, "no stack trace");
    assert.equal(occurrences(result.text, "a disk to place needs a source"), 1, `the message appears once:\n${result.text}`);
  });

  it("GIVEN a readiness error WHEN previewed THEN the plan warns that it blocks up, and the stop estimate is the grace period", async () => {
    args = validArgs({ stopGraceSeconds: 45 });
    const output = { text: "" };
    const result = await run(() => env.stack.preview({ onOutput: (t) => (output.text += t) }), output);
    assert.equal(result.ok, true, result.text);
    assert.match(result.text, /readiness: INSPECT_FIRMWARE_MISMATCH: .* \(blocks `up`; migration\.readiness: "warn" lets it through\)/);
    assert.match(result.text, /estimated downtime [\d.]+ s \(stop 45\.0,/, "no stop was measured: the estimate is the grace period");
  });

  it("GIVEN a readiness error WHEN up THEN it stops before any disk moves", async () => {
    args = validArgs(undefined);
    const output = { text: "" };
    const result = await run(() => env.stack.up({ onOutput: (t) => (output.text += t) }), output);
    assert.equal(result.ok, false, "up fails");
    assert.match(result.text, /READINESS_BLOCKED: app: 1 readiness error\(s\) for local, nothing was moved:\s+INSPECT_FIRMWARE_MISMATCH: /);
    assert.equal(occurrences(result.text, "Fix the guest, or set"), 1, `the error appears once:\n${result.text}`);
    assert.equal(existsSync(join(env.dir, "local", "disks", "app-disk0.raw")), false, "no disk was written");
    const state = await env.stack.exportStack();
    assert.equal((state.deployment.resources ?? []).filter((r: { type: string }) => r.type.includes("portable:Disk")).length, 0);
  });

  it("GIVEN readiness: warn WHEN up THEN the workload is placed anyway", async () => {
    args = validArgs({ readiness: "warn" });
    const result = await env.stack.up();
    assert.equal(result.summary.result, "succeeded");
    assert.equal(await fileSha256(join(env.dir, "local", "disks", "app-disk0.raw")), await fileSha256(image.path));
  });
});
