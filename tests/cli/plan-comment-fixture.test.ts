// `portable plan-comment` on the real Pulumi CLI's `pulumi preview --json` of a local → vSphere
// move (tests/fixtures/preview/, recorded by scripts/record-preview-fixture.ts): the fields the
// renderer reads are where the CLI puts them, not only where hand-written previews put them.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { promisify } from "node:util";
import { REPO_ROOT } from "../harness/tools.ts";

const exec = promisify(execFile);
const FIXTURE = join(REPO_ROOT, "tests", "fixtures", "preview", "workload-move.json");

interface Preview {
  readonly steps: Array<{ op: string; urn: string; oldState?: unknown; newState?: unknown }>;
  readonly diagnostics: Array<{ urn?: string; message: string; severity: string }>;
}

describe("plan-comment on a real `pulumi preview --json`", () => {
  let md = "";
  let preview: Preview;

  before(async () => {
    preview = JSON.parse(await readFile(FIXTURE, "utf8")) as Preview;
    const { stdout } = await exec(process.execPath, [join(REPO_ROOT, "sdk", "cli", "portable.ts"), "plan-comment", FIXTURE], { cwd: REPO_ROOT });
    md = stdout;
  });

  it("GIVEN the fixture THEN it is the CLI's shape (states beside each step), not a hand-made digest", () => {
    const machine = preview.steps.find((s) => s.urn.endsWith("$pulumi-nodejs:dynamic/portable:Machine::web-machine"));
    assert.ok(machine, "the Machine step is in the fixture");
    assert.equal(machine.op, "update");
    assert.ok(machine.oldState !== undefined && machine.newState !== undefined);
  });

  it("WHEN rendered THEN the Workload's plan section is headed by its name and holds its plan", () => {
    assert.match(md, /^## Migration plan\n\n### web\n\n```\nweb: local → vsphere \(warm\), 1 disk\(s\), [\d.]+ MiB to move\n/);
    assert.match(md, /\n {2}disk0: raw → vsphere, [\d.]+ MiB to move of [\d.]+ MiB allocated\n/);
    assert.match(md, /readiness warning: INSPECT_DRIVER_MISSING: vsphere: /);
  });

  it("WHEN rendered THEN the downtime line is the one the Workload logged", () => {
    const plan = preview.diagnostics.find((d) => d.urn?.endsWith("::portable:index:Workload::web"));
    assert.ok(plan, "the Workload's diagnostic is in the fixture");
    const downtime = plan.message.split("\n").find((line) => line.includes("estimated downtime"));
    assert.ok(downtime);
    assert.match(downtime, /^ {2}estimated downtime [\d.]+ s \(stop [\d.]+, scan [\d.]+, send [\d.]+, verify [\d.]+, boot [\d.]+\)$/);
    assert.ok(md.includes(`\n${downtime}\n`), `the downtime line is in the comment:\n${md}`);
  });

  it("WHEN rendered THEN the resource table lists the Machine and Disk updates and not the unchanged stack", () => {
    assert.match(md, /\n## Resource changes\n\n\| \| type \| name \| why \|\n\|---\|---\|---\|---\|\n/);
    assert.match(md, /\n\| `~` update \| `pulumi-nodejs:dynamic\/portable:Machine` \| web-machine \| [^\n]*\|\n/);
    assert.match(md, /\n\| `~` update \| `pulumi-nodejs:dynamic\/portable:Disk` \| web-disk0 \| [^\n]*\|\n/);
    assert.doesNotMatch(md, /pulumi:pulumi:Stack|quickstart-test/);
    assert.doesNotMatch(md, /## Errors/);
  });

  it("WHEN rendered THEN the summary is the CLI's changeSummary", () => {
    assert.match(md, /\n\*\*Summary:\*\* 3 same, 2 update\n$/);
  });
});
