import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { REPO_ROOT } from "../harness/tools.ts";

const exec = promisify(execFile);
const CLI = join(REPO_ROOT, "sdk", "cli", "portable.ts");

async function portable(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("portable <command> --help", () => {
  const commands: readonly [string[], RegExp][] = [
    [["inspect"], /^usage: portable inspect\b/],
    [["inspect", "--guest"], /^usage: portable inspect --guest\b/],
    [["map"], /^usage: portable map\b/],
    [["convert"], /^usage: portable convert\b/],
    [["compare"], /^usage: portable compare\b/],
    [["ovf"], /^usage: portable ovf\b/],
    [["replicate"], /^usage: portable replicate\b/],
    [["plan"], /^usage: portable plan\b/],
    [["plan-comment"], /^usage: portable plan-comment\b/],
    [["vsphere"], /^usage: portable vsphere\b/],
    [["vsphere", "ls"], /^usage: portable vsphere\b[^]*\bls\b/],
    [["vsphere", "copy-disk"], /^usage: portable vsphere\b[^]*\bcopy-disk\b/],
  ];

  it("GIVEN every subcommand WHEN run with --help or -h THEN it exits 0 and prints that command's usage, and nothing on stderr", async () => {
    for (const [command, usage] of commands) {
      for (const flag of ["--help", "-h"]) {
        const result = await portable(...command, flag);
        const label = `portable ${command.join(" ")} ${flag}`;
        assert.equal(result.code, 0, `${label}: ${result.stderr}`);
        assert.match(result.stdout, usage, label);
        assert.equal(result.stderr, "", label);
      }
    }
  });
});
