// Progress of long disk copies through the real engine: the Disk provider reports bytes, rate
// and time left on its resource every few seconds, and the engine passes the messages on as
// diagnostic events of that resource (what `pulumi up` prints beside it).
import assert from "node:assert/strict";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Disk } from "../../components/providers/disk.ts";
import { createInlineStack, type InlineStack } from "../harness/pulumi.ts";

const MiB = 1024 * 1024;

interface Diagnostic {
  readonly urn?: string;
  readonly message: string;
  readonly severity: string;
}

describe("progress of a 1 GiB move through the Pulumi engine", { timeout: 600_000 }, () => {
  let env: InlineStack;
  let image = "";
  let target = "";

  before(async () => {
    env = await createInlineStack("pw-progress", async () => {
      const disk = new Disk("prog-disk0", { workload: "prog", disk: "disk0", source: image, target, stateDir: join(env.dir, "state"), verify: "none" });
      return { location: disk.location };
    });
    image = join(env.dir, "image.raw");
    target = join(env.dir, "a", "prog-disk0.raw");
    // 1 GiB virtual, a 1 MiB run of data every 8 MiB: the scan covers the whole gigabyte.
    const file = await open(image, "w");
    try {
      for (let at = 0; at < 1024 * MiB; at += 8 * MiB) await file.write(Buffer.alloc(MiB, (at / MiB) % 251 + 1), 0, MiB, at);
      await file.truncate(1024 * MiB);
    } finally {
      await file.close();
    }
  });
  after(async () => {
    await env?.stack.destroy().catch(() => {});
    await env?.cleanup();
  });

  async function upCollecting(): Promise<Diagnostic[]> {
    const diagnostics: Diagnostic[] = [];
    const result = await env.stack.up({
      onEvent: (event) => {
        const diag = event.diagnosticEvent;
        if (diag) diagnostics.push({ ...(diag.urn ? { urn: diag.urn } : {}), message: diag.message, severity: diag.severity });
      },
    });
    assert.equal(result.summary.result, "succeeded");
    return diagnostics;
  }

  it("GIVEN a 1 GiB disk WHEN placed and then moved THEN progress lines appear on the Disk resource, ending at 100%", async () => {
    const created = (await upCollecting()).filter((d) => d.urn?.endsWith("::prog-disk0") === true);
    const copy = created.filter((d) => /^copy disk disk0: \d+% \(/.test(d.message));
    assert.ok(copy.length >= 2, `a first and a last progress line at least:\n${JSON.stringify(created, null, 2)}`);
    assert.match(copy.at(-1)!.message, /^copy disk disk0: 100% \(1\.0 GiB of 1\.0 GiB scanned\), [\d.]+ [KMG]?i?B sent, .+\/s, done/);

    target = join(env.dir, "b", "prog-disk0.raw");
    const moved = (await upCollecting()).filter((d) => d.urn?.endsWith("::prog-disk0") === true && /^move disk disk0: /.test(d.message));
    assert.ok(moved.length >= 2, "the move reports its progress too");
    assert.match(moved.at(-1)!.message, /100% .* done/);
  });
});
