// No credential reaches our output, logs, errors or state: real operations through the CLI and
// the Pulumi engine with known credentials (vcsim, moto, Azurite, SAS tokens), successful and
// failing, then a scan of everything they left for each secret in every encoding
// (secrets-scenario.ts). `npm run secrets-scan` prints the same figures.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEBUG_EVENTS_PLACE, runSecretsScenario } from "./secrets-scenario.ts";
import { SecretScanner, secretForms } from "./secret-scan.ts";

describe("secrets never appear in state, logs or output", { timeout: 600_000 }, () => {
  it("GIVEN a secret WHEN it is hidden in base64, URL-encoded or JSON text THEN the scanner finds it", () => {
    const secret = "p@ss/w+rd=42&x";
    const scanner = new SecretScanner([{ name: "s", value: secret }]);
    const texts = [
      `Authorization: Basic ${Buffer.from(`user:${secret}`).toString("base64")}`,
      `url?sig=${encodeURIComponent(secret)}`,
      JSON.stringify({ value: `"${secret}"` }),
      `xx${Buffer.from(`ab${secret}cd`).toString("base64url")}yy`,
    ];
    for (const text of texts) assert.equal(scanner.scanText("t", text, text), 1, `found in ${text}`);
    assert.equal(scanner.scanText("t", "clean", "nothing here"), 0);
    const forms = secretForms(secret).map(([form]) => form);
    for (const form of ["plain", "url-encoded", "base64@0", "base64@1", "base64@2"]) assert.ok(forms.includes(form), `${form} in ${forms.join(", ")}`);
  });

  it("GIVEN CLI and engine operations with known credentials WHEN everything they left is scanned THEN no secret is found", async () => {
    const report = await runSecretsScenario();
    assert.deepEqual(report.findings, [], "no secret in CLI output, errors, replica state, engine output/events (debug ones included), stack state or backend files");
    for (const run of report.cli) assert.equal(run.exitCode === 0, run.expect === "ok", `${run.label} exited ${run.exitCode}`);
    assert.equal(report.engine.upOk, true);
    assert.ok(report.engine.failedUpError !== undefined, "the up with a wrong password failed");
    assert.equal(report.engine.passwordInState, false, "the password is no resource input or output, not even as a secret");
    assert.ok(report.engine.registerResourceDebugLines > 0, "the debug events hold the runtime's RegisterResource answers, so scanning them means something");
    for (const place of ["cli output", "cli error messages", "replica state", "engine events", DEBUG_EVENTS_PLACE, "stack state", "backend files"]) {
      assert.ok((report.places[place]?.items ?? 0) > 0, `${place} was scanned`);
    }
  });
});
