// `portable plan-comment` on hand-written previews: replacements and errors are shown, and input
// that is not a preview is a coded usage error, not a crash.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderPlanComment } from "../../sdk/migrate/plan-comment.ts";

describe("plan-comment", () => {
  it("GIVEN a replace and an error diagnostic WHEN rendered THEN both appear, with pipes escaped", () => {
    const md = renderPlanComment({
      steps: [
        { op: "same", urn: "urn:pulumi:dev::app::pulumi:pulumi:Stack::app-dev" },
        { op: "replace", urn: "urn:pulumi:dev::app::portable:index:Workload$pulumi-nodejs:dynamic/portable:Disk::web-os", replaceReasons: ["workload"] },
      ],
      diagnostics: [{ urn: "urn:pulumi:dev::app::pulumi:pulumi:Stack::app-dev", severity: "error", message: "boom | bang\n" }],
      changeSummary: { same: 1, replace: 1 },
    });
    assert.match(md, /No workload logged a plan/);
    assert.match(md, /\| `\+-` replace \| `pulumi-nodejs:dynamic\/portable:Disk` \| web-os \| replace: workload \|/);
    assert.match(md, /## Errors\n\n- boom \\\| bang/);
    assert.match(md, /\*\*Summary:\*\* 1 same, 1 replace/);
  });

  it("GIVEN JSON that is not a preview WHEN rendered THEN a PLAN_COMMENT_INPUT error names the field", () => {
    assert.throws(() => renderPlanComment({ steps: "nope" }), { code: "PLAN_COMMENT_INPUT", message: /steps/ });
  });
});
