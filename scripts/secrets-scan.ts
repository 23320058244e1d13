// npm run secrets-scan — runs real operations with known credentials (vcsim, moto, Azurite, a
// SAS token) through the CLI and the Pulumi engine, successful and failing, then scans their
// output, error messages, engine events (debug ones included), stack state, backend files and
// replica state for every credential in every encoding (tests/security/secrets-scenario.ts).
// Prints the counts per place and a final JSON line; exits 1 when any secret was found.
import { runSecretsScenario } from "../tests/security/secrets-scenario.ts";

const report = await runSecretsScenario((line) => console.log(line));
console.log("");
console.log(`${"place".padEnd(32)} ${"items".padStart(6)} ${"bytes".padStart(12)} ${"found".padStart(6)}`);
for (const [place, counts] of Object.entries(report.places)) {
  console.log(`${place.padEnd(32)} ${String(counts.items).padStart(6)} ${String(counts.bytes).padStart(12)} ${String(counts.found).padStart(6)}`);
}
for (const finding of report.findings) console.log(`FOUND ${finding.secret} (${finding.form}) in ${finding.place}: ${finding.item}`);
const found = report.findings.length;
console.log(`\n${report.secrets} secrets in ${report.forms} forms; ${found} found in our state, logs, output and the engine's debug events; ${report.cli.length} CLI runs; ${report.seconds} s`);
console.log(JSON.stringify({
  bench: "secrets-scan",
  secrets: report.secrets,
  forms: report.forms,
  found,
  registerResourceDebugLines: report.engine.registerResourceDebugLines,
  passwordInState: report.engine.passwordInState,
  places: Object.fromEntries(Object.entries(report.places).map(([place, c]) => [place, { items: c.items, bytes: c.bytes, found: c.found }])),
  cliRuns: report.cli.length,
  cliExitCodes: Object.fromEntries(report.cli.map((r) => [r.label, r.exitCode])),
  engineUpOk: report.engine.upOk,
  engineFailedUp: report.engine.failedUpError !== undefined,
  seconds: report.seconds,
}));
if (found > 0) process.exitCode = 1;
