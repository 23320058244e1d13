// Cross-stack: stack B places a copy of stack A's workload, taking the disk source from A's
// Workload output through a StackReference (both on one file:// backend).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { Workload } from "../../components/workload.ts";
import { fileSha256 } from "../harness/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";
import { MiB, spread, writeBlocks } from "../transfer/replica-helpers.ts";

describe("cross-stack: a Workload's disk source from another stack's output", () => {
  let root: string;
  let a: InlineStack;
  let b: InlineStack;
  let image: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "pw-xstack-"));
    image = join(root, "golden.raw");
    await writeBlocks(image, 16 * MiB, spread(10, 32), "golden");
    const shared = { backendDir: join(root, "backend"), passphrase: randomBytes(16).toString("hex") };
    const spec = (name: string) => ({ name, memoryMiB: 128, disks: [{ id: "disk0", sizeBytes: 16 * MiB, source: { kind: "file" as const, path: image, format: "raw" } }], guestOs: { family: "linux" as const } });
    a = await createInlineStack("pw-a", async () => {
      // The disk holds made-up blocks, no guest: readiness cannot be judged (INSPECT_OS_UNKNOWN,
      // an error that would block), and this test is about the disk's path, so it only warns.
      const w = new Workload("app", { spec: spec("app"), placement: { kind: "local", dir: join(root, "a"), start: false }, migration: { readiness: "warn" }, stateDir: join(root, "state-a") });
      return { disks: w.disks };
    }, {}, shared);
    b = await createInlineStack("pw-b", async () => {
      const ref = new pulumi.StackReference("organization/pw-a/test");
      const disks = ref.getOutput("disks") as pulumi.Output<Record<string, string>>;
      const w = new Workload("copy", {
        spec: spec("copy"),
        placement: { kind: "local", dir: join(root, "b"), start: false },
        migration: { readiness: "warn" },
        stateDir: join(root, "state-b"),
        diskSources: { disk0: disks.apply((d) => d.disk0!) },
      });
      return { disks: w.disks };
    }, {}, shared);
  });
  after(async () => {
    await b?.stack.destroy().catch(() => {});
    await a?.stack.destroy().catch(() => {});
    await Promise.all([a?.cleanup(), b?.cleanup()]);
    await rm(root, { recursive: true, force: true });
  });

  it("GIVEN stack A placed WHEN stack B references its disks THEN B's copy comes from A's placed disk", async () => {
    const upA = await a.stack.up();
    const placedA = (upA.outputs.disks!.value as Record<string, string>).disk0!;
    // A's guest changes its disk after placement: B must copy A's disk, not the golden image.
    await writeBlocks(placedA, undefined, [5], "changed-in-a");
    const upB = await b.stack.up();
    const placedB = (upB.outputs.disks!.value as Record<string, string>).disk0!;
    assert.notEqual(placedB, placedA);
    assert.equal(await fileSha256(placedB), await fileSha256(placedA));
    assert.notEqual(await fileSha256(placedB), await fileSha256(image));
  });
});
