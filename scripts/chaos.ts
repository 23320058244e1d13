// npm run chaos — seeded chaos over full disk placements (local → vSphere on vcsim, → EBS on
// moto, → an Azure page blob on Azurite): faults injected at loopback proxies and SIGKILLs at
// seeded points; every run must end correct (target read back in full, hash equal to the
// source) after its resumes. See tests/chaos/chaos-runner.ts for what a run does.
//
// Settings (environment): PW_CHAOS_SEED (default 12), PW_CHAOS_RUNS (24), PW_CHAOS_TARGETS
// (vsphere,ebs,azure), PW_CHAOS_FAULT_RATE (0.15 of requests/connections), PW_CHAOS_KILL_RATE
// (0.6 of runs), PW_CHAOS_IMAGE_MIB (64).
// Prints one line per run, a table, and a final JSON line; exits 1 if any data was lost, any
// failure was uncoded or any attempt hung.
import { runChaos, type ChaosTarget } from "../tests/chaos/chaos-runner.ts";
import { CUTOVER_KILL_POINTS, runCutoverChaos } from "../tests/chaos/cutover-chaos.ts";

const MiB = 1024 * 1024;
const env = process.env;
const summary = await runChaos({
  seed: Number(env.PW_CHAOS_SEED ?? 12),
  runs: Number(env.PW_CHAOS_RUNS ?? 24),
  targets: (env.PW_CHAOS_TARGETS ?? "vsphere,ebs,azure").split(",") as ChaosTarget[],
  faultRate: Number(env.PW_CHAOS_FAULT_RATE ?? 0.15),
  killRate: Number(env.PW_CHAOS_KILL_RATE ?? 0.6),
  imageBytes: Number(env.PW_CHAOS_IMAGE_MIB ?? 64) * MiB,
  faultyResumes: 2,
  childTimeoutMs: 300_000,
  log: (line) => console.log(line),
});

// Kills inside a cutover: every run must end with exactly one machine up, holding the source's last state.
const cutover = env.PW_CHAOS_CUTOVER === "0" ? [] : [
  ...(await runCutoverChaos({ points: CUTOVER_KILL_POINTS, target: "local", log: (line) => console.log(line) })),
  ...(await runCutoverChaos({ points: CUTOVER_KILL_POINTS, target: "vsphere", log: (line) => console.log(line) })),
];
const cutoverBad = cutover.filter((r) => r.error !== undefined || !r.killed || r.running.length !== 1 || !r.diskEqual || r.adopted !== (r.point === "commit"));

const { records: _records, ...figures } = summary;
const rows: Array<[string, string]> = [
  ["seed", String(summary.seed)],
  ["runs", `${summary.runs} (${Object.entries(summary.byTarget).map(([k, v]) => `${k} ${v}`).join(", ")})`],
  ["faults injected", `${summary.faultsTotal} (${Object.entries(summary.faultsInjected).map(([k, v]) => `${k} ${v}`).join(", ")})`],
  ["kills (SIGKILL)", String(summary.kills)],
  ["clean failures", `${summary.cleanFailures} (${Object.entries(summary.errorCodes).map(([k, v]) => `${k} ${v}`).join(", ") || "none"})`],
  ["reruns / from journal", `${summary.resumes} / ${summary.resumedFromJournal}`],
  ["ended correct", `${summary.endedCorrect} of ${summary.runs}`],
  ["data lost", String(summary.dataLost)],
  ["uncoded failures", String(summary.uncleanFailures)],
  ["hangs", String(summary.hangs)],
  ["seconds", String(summary.seconds)],
  ["cutover kills", `${cutover.length} (${cutover.length - cutoverBad.length} ended with one machine up and the source's last state)`],
];
console.log("");
for (const [name, value] of rows) console.log(`${name.padEnd(24)} ${value}`);
console.log(JSON.stringify({ bench: "chaos", ...figures, cutoverKills: cutover.length, cutoverFailed: cutoverBad.map((r) => r.point) }));
if (summary.dataLost > 0 || summary.uncleanFailures > 0 || summary.hangs > 0 || cutoverBad.length > 0) process.exitCode = 1;
