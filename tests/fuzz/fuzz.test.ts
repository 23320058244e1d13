// The bounded CI slice of `npm run fuzz`: a fixed seed and a fixed iteration count per target
// must give no crash, and every saved crash input (tests/fixtures/fuzz/) must now end in success
// or a coded error. The harness itself is checked too, so a fuzzer that could never fail does
// not pass silently.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { FormatError } from "../../sdk/errors.ts";
import { REPO_ROOT } from "../harness/tools.ts";
import { classify, makeInput, makeSeed, shrink } from "./engine.ts";
import { fuzzTarget } from "./runner.ts";
import { ensureSeeds, loadSeeds, type SeedSet } from "./seeds.ts";
import { TARGETS, fuzzSource, targetByName, type FuzzTarget } from "./targets.ts";
import { runOnce } from "./worker.ts";

const MiB = 1024 * 1024;
const FIXTURES = join(REPO_ROOT, "tests", "fixtures", "fuzz");
/** The CI seed; `npm run fuzz -- --seed 12` replays the same inputs and goes on past them. */
const CI_SEED = 12;
/** Inputs per target: 1 to 10 ms each, so the whole slice takes about 30 s on two cores. */
const CI_ITERATIONS: Readonly<Record<string, number>> = { vhdx: 300, inspect: 300, ova: 500, "raw-detect": 800 };
const DEFAULT_CI_ITERATIONS = 1000;

let seedDir: string;
let seeds: SeedSet;

before(async () => {
  seedDir = await ensureSeeds();
  seeds = await loadSeeds(seedDir, TARGETS.map((t) => t.name));
});

describe("fuzz harness", () => {
  it("GIVEN thrown values WHEN classified THEN only coded PortableErrors and success are not crashes", () => {
    assert.equal(classify(undefined).kind, "ok");
    assert.deepEqual(classify(new FormatError("VMDK_BAD_MAGIC", "x")), { kind: "ok", code: "VMDK_BAD_MAGIC" });
    assert.equal(classify(new TypeError("x is undefined")).kind, "crash");
    assert.equal(classify(new RangeError("offset out of range")).kind, "crash");
    assert.equal(classify(new FormatError("", "no code")).kind, "crash");
    assert.equal(classify("a string").kind, "crash");
  });

  it("GIVEN one seed, target and index WHEN the input is built twice THEN the bytes are equal, and other indexes differ", () => {
    const list = [makeSeed("a", Buffer.from("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n")), makeSeed("b", Buffer.alloc(2048, 7))];
    const hints = targetByName("vmdk-descriptor").hints;
    const a = makeInput(list, hints, CI_SEED, "vmdk-descriptor", 41).input;
    const b = makeInput(list, hints, CI_SEED, "vmdk-descriptor", 41).input;
    assert.deepEqual(a, b);
    const others = [42, 43, 44, 45].map((i) => makeInput(list, hints, CI_SEED, "vmdk-descriptor", i).input);
    assert.ok(others.some((o) => !o.equals(a)));
  });

  it("GIVEN a reader that loops on reads forever WHEN run with a deadline THEN it is reported as a hang", async () => {
    const spinning: FuzzTarget = {
      name: "spin",
      hints: {},
      async run(input, ctx) {
        const source = fuzzSource("spin", input, ctx);
        for (;;) await source.read(0, 1);
      },
    };
    const outcome = await runOnce(spinning, Buffer.alloc(16), { companions: new Map() }, 200);
    assert.equal(outcome.kind, "hang");
  });

  it("GIVEN an input that fails because of one byte WHEN shrunk THEN it still fails and is far smaller", async () => {
    const input = Buffer.alloc(8192, 0x41);
    input[5000] = 0xff;
    const fails = async (candidate: Buffer): Promise<boolean> => candidate.includes(0xff);
    const small = await shrink(input, fails);
    assert.ok(await fails(small));
    assert.ok(small.length < 64, `shrunk to ${small.length} bytes`);
  });

  it("GIVEN a reader that reads at a negative offset WHEN run THEN the invariant check makes it a crash", async () => {
    const sloppy: FuzzTarget = { name: "sloppy", hints: {}, run: async (input, ctx) => void (await fuzzSource("s", input, ctx).read(-512, 512)) };
    const outcome = await runOnce(sloppy, Buffer.alloc(1024), { companions: new Map() }, 1000);
    assert.equal(outcome.kind, "crash");
  });
});

describe("fuzz runner", () => {
  it("GIVEN a target that spins synchronously or throws a TypeError on some inputs WHEN fuzzed THEN the watchdog kills, records each, and all iterations run", async () => {
    process.env.PW_FUZZ_SELFTEST = "1";
    try {
      const report = await fuzzTarget("selftest", {
        masterSeed: CI_SEED,
        iterations: 15,
        deadlineMs: 200,
        hangMs: 500,
        rssLimitBytes: 3 * 1024 * MiB,
        maxAllocBytes: 256 * MiB,
        heapLimitMb: 256,
        shrink: false,
        seedDir,
      });
      assert.equal(report.iterations, 15);
      const kinds = new Set(report.crashes.map((c) => c.signature));
      assert.ok(kinds.has("hang-sync"), `signatures: ${[...kinds].join(", ")}`);
      assert.ok([...kinds].some((k) => k.startsWith("TypeError@")), `signatures: ${[...kinds].join(", ")}`);
      // Every crash is an input whose length selects a failure mode, and no other input crashed.
      for (const crash of report.crashes) {
        const { input } = makeInput(targetByName("selftest").ownSeeds?.() ?? [], {}, CI_SEED, "selftest", crash.index);
        assert.ok(input.length % 5 <= 1, `#${crash.index} (${input.length} bytes) should not crash`);
      }
    } finally {
      delete process.env.PW_FUZZ_SELFTEST;
    }
  });
});

describe("fuzz targets, fixed seed", () => {
  for (const target of TARGETS) {
    it(`GIVEN seed ${CI_SEED} WHEN ${target.name} runs ${CI_ITERATIONS[target.name] ?? DEFAULT_CI_ITERATIONS} mutated inputs THEN none crashes, hangs or blows up memory`, async () => {
      assert.ok((seeds.byTarget.get(target.name) ?? []).length > 0, `no seeds for ${target.name}`);
      const report = await fuzzTarget(target.name, {
        masterSeed: CI_SEED,
        iterations: CI_ITERATIONS[target.name] ?? DEFAULT_CI_ITERATIONS,
        deadlineMs: 10_000,
        hangMs: 60_000,
        rssLimitBytes: 3 * 1024 * MiB,
        maxAllocBytes: 256 * MiB,
        heapLimitMb: 1024,
        shrink: false,
        seedDir,
      });
      assert.deepEqual(report.crashes.map((c) => `#${c.index} ${c.kind}: ${c.message} [${c.signature}] (seed ${c.seed})`), []);
      assert.equal(report.iterations, CI_ITERATIONS[target.name] ?? DEFAULT_CI_ITERATIONS);
    });
  }
});

describe("fuzz regressions (tests/fixtures/fuzz)", () => {
  it("GIVEN every saved crash input WHEN replayed THEN each ends in success or a coded error", { timeout: 120_000 }, async () => {
    const files = (await readdir(FIXTURES)).filter((f) => f.endsWith(".bin")).sort();
    assert.ok(files.length > 0, "no regression fixtures");
    const failures: string[] = [];
    for (const file of files) {
      const match = /^(.+)-[0-9a-f]{8}\.bin$/.exec(file);
      assert.ok(match?.[1] !== undefined, `${file} is not named <target>-<hash>.bin`);
      const target = targetByName(match[1]);
      const outcome = await runOnce(target, await readFile(join(FIXTURES, file)), { companions: seeds.companions }, 30_000);
      if (outcome.kind !== "ok") failures.push(`${file}: ${outcome.kind}: ${outcome.message} [${outcome.signature}]`);
    }
    assert.deepEqual(failures, []);
  });
});
