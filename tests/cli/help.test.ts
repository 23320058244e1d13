import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { portable } from "../harness/cli.ts";


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
    [["test-boot"], /^usage: portable test-boot\b/],
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
