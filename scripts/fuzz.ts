// `npm run fuzz`: the long, local fuzz run over every reader and parser (tests/fuzz/). CI runs a
// short fixed-seed slice of the same targets in tests/fuzz/fuzz.test.ts.
//
//   npm run fuzz                              10 minutes split over all targets, a random seed
//   npm run fuzz -- --minutes 30 --seed 7     longer, reproducible
//   npm run fuzz -- --target vmdk,qcow2 --iterations 20000
//   npm run fuzz -- --crash-dir /tmp/crashes  (default tests/fixtures/fuzz, the regression set)
//
// Prints each target's iterations and crashes, then one JSON line:
// {"fuzz": {"<target>": {"iterations": n, "crashes": n}, ...}, "crashes": total, "seed": s, "seconds": t}
// Exits 1 when anything crashed. A crash is reproduced by its seed, target and index, and its
// (minimized) input is saved as <target>-<hash>.bin for the regression test.
import { randomInt } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../tests/harness/tools.ts";
import { fuzzTarget, type TargetReport } from "../tests/fuzz/runner.ts";
import { ensureSeeds } from "../tests/fuzz/seeds.ts";
import { TARGETS } from "../tests/fuzz/targets.ts";

const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    target: { type: "string", multiple: true },
    seed: { type: "string" },
    iterations: { type: "string" },
    minutes: { type: "string" },
    "deadline-ms": { type: "string", default: "5000" },
    "crash-dir": { type: "string" },
    "no-shrink": { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (values.help) {
  console.log(`usage: npm run fuzz -- [--target a,b] [--seed N] [--iterations N] [--minutes M] [--deadline-ms MS] [--crash-dir DIR] [--no-shrink]
targets: ${TARGETS.map((t) => t.name).join(", ")}`);
  process.exit(0);
}

const number = (text: string | undefined, name: string): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, not "${text}"`);
  return n;
};

const targets = (values.target ?? TARGETS.map((t) => t.name)).flatMap((t) => t.split(",")).filter((t) => t !== "");
for (const t of targets) if (!TARGETS.some((x) => x.name === t)) throw new Error(`unknown target "${t}" (known: ${TARGETS.map((x) => x.name).join(", ")})`);
const masterSeed = number(values.seed, "seed") ?? randomInt(0, 2 ** 31);
const iterations = number(values.iterations, "iterations");
// Default: 10 minutes in all, unless only an iteration count was asked for.
const minutes = number(values.minutes, "minutes") ?? (iterations === undefined ? 10 : undefined);
const timeBudgetMs = minutes === undefined ? undefined : (minutes * 60_000) / targets.length;
const deadlineMs = number(values["deadline-ms"], "deadline-ms") ?? 5000;
const crashDir = values["crash-dir"] ?? join(REPO_ROOT, "tests", "fixtures", "fuzz");

const started = Date.now();
const seedDir = await ensureSeeds((line) => console.log(line));
console.log(`fuzz: seed ${masterSeed}, targets ${targets.join(", ")}, ${minutes === undefined ? "" : `${minutes} min in all, `}${iterations === undefined ? "" : `${iterations} iterations each`}`);

const reports = new Map<string, TargetReport>();
for (const target of targets) {
  const report = await fuzzTarget(target, {
    masterSeed,
    ...(iterations === undefined ? {} : { iterations }),
    ...(timeBudgetMs === undefined ? {} : { timeBudgetMs }),
    deadlineMs,
    hangMs: deadlineMs * 6,
    rssLimitBytes: 3 * 1024 * MiB,
    maxAllocBytes: 256 * MiB,
    heapLimitMb: 1024,
    shrink: !values["no-shrink"],
    crashDir,
    seedDir,
    log: (line) => console.log(line),
  });
  reports.set(target, report);
  const unique = new Set(report.crashes.map((c) => c.signature)).size;
  if (values.verbose) {
    const top = Object.entries(report.outcomes).sort((a, b) => b[1] - a[1]).slice(0, 12);
    console.log(`  outcomes: ${top.map(([k, n]) => `${k} ${n}`).join(", ")}`);
  }
  console.log(`${target.padEnd(16)} ${String(report.iterations).padStart(9)} iterations  ${String(report.crashes.length).padStart(5)} crashes (${unique} distinct)  ${(report.elapsedMs / 1000).toFixed(1)} s`);
}

const total = [...reports.values()].reduce((sum, r) => sum + r.crashes.length, 0);
const fuzz = Object.fromEntries([...reports].map(([name, r]) => [name, { iterations: r.iterations, crashes: r.crashes.length }]));
console.log(JSON.stringify({ fuzz, crashes: total, seed: masterSeed, seconds: Math.round((Date.now() - started) / 1000) }));
process.exitCode = total === 0 ? 0 : 1;
