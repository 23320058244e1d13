import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { TOOLS } from "../harness/tools.ts";

const run = promisify(execFile);

describe("qemu-img and qemu-system", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pw-qemu-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("GIVEN qemu-img create made a qcow2 WHEN qemu-img info reads it THEN format and virtual size match", async () => {
    const image = join(dir, "smoke.qcow2");
    const virtualSizeBytes = 64 * 1024 * 1024;
    await run(TOOLS.qemuImg, ["create", "-f", "qcow2", image, String(virtualSizeBytes)]);
    const { stdout } = await run(TOOLS.qemuImg, ["info", "--output=json", image]);
    const info = JSON.parse(stdout) as { format: string; "virtual-size": number };
    assert.equal(info.format, "qcow2");
    assert.equal(info["virtual-size"], virtualSizeBytes);
  });

  it("WHEN qemu-system-x86_64 --version runs THEN it names QEMU", async () => {
    const { stdout } = await run(TOOLS.qemuSystem, ["--version"]);
    assert.match(stdout, /^QEMU emulator version \d+\.\d+/);
  });
});
