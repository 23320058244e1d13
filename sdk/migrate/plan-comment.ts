// `pulumi preview --json` → a Markdown comment for a pull request: the migration plans our
// Workload components logged (bytes, conversions, downtime, readiness), then the resource
// changes. Input fields are those the Pulumi CLI's JSON display writes (previewDigest: steps with
// op/urn/diffReasons, diagnostics with urn/severity/message, changeSummary).
import { z } from "zod";
import { InvalidArgsError } from "../errors.ts";

const previewSchema = z.object({
  steps: z.array(z.object({ op: z.string(), urn: z.string(), diffReasons: z.array(z.string()).nullish(), replaceReasons: z.array(z.string()).nullish() }).loose()).default([]),
  diagnostics: z.array(z.object({ urn: z.string().nullish(), message: z.string(), severity: z.string() }).loose()).default([]),
  changeSummary: z.record(z.string(), z.number()).nullish(),
}).loose();

const WORKLOAD_TYPE = "portable:index:Workload";
const OP_ICONS: Readonly<Record<string, string>> = { create: "+", update: "~", delete: "-", replace: "+-", "create-replacement": "+-", "delete-replaced": "+-", same: " ", read: ">" };

function parseUrn(urn: string): { type: string; name: string } {
  // urn:pulumi:<stack>::<project>::<parent$type>::<name>
  const parts = urn.split("::");
  const types = (parts[2] ?? "").split("$");
  return { type: types[types.length - 1] ?? "", name: parts.slice(3).join("::") };
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function renderPlanComment(json: unknown): string {
  const parsed = previewSchema.safeParse(json);
  if (!parsed.success) {
    throw new InvalidArgsError("PLAN_COMMENT_INPUT", `plan-comment: not the output of \`pulumi preview --json\`: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
  }
  const { steps, diagnostics, changeSummary } = parsed.data;
  const out: string[] = ["## Migration plan", ""];
  const plans = diagnostics.filter((d) => d.urn !== undefined && d.urn !== null && parseUrn(d.urn).type === WORKLOAD_TYPE);
  if (plans.length === 0) out.push("No workload logged a plan (nothing moves, or the preview failed before planning).", "");
  for (const diagnostic of plans) {
    const { name } = parseUrn(diagnostic.urn!);
    out.push(`### ${name}${diagnostic.severity === "warning" ? " ⚠️" : ""}`, "", "```", diagnostic.message.trimEnd(), "```", "");
  }
  const changes = steps.filter((s) => s.op !== "same");
  out.push("## Resource changes", "");
  if (changes.length === 0) out.push("No changes.", "");
  else {
    out.push("| | type | name | why |", "|---|---|---|---|");
    for (const step of changes) {
      const { type, name } = parseUrn(step.urn);
      const why = [...(step.replaceReasons ?? []).map((r) => `replace: ${r}`), ...(step.diffReasons ?? [])].join(", ");
      out.push(`| \`${OP_ICONS[step.op] ?? step.op}\` ${step.op} | \`${escapeCell(type)}\` | ${escapeCell(name)} | ${escapeCell(why)} |`);
    }
    out.push("");
  }
  const errors = diagnostics.filter((d) => d.severity === "error");
  if (errors.length > 0) out.push("## Errors", "", ...errors.map((d) => `- ${escapeCell(d.message.trim())}`), "");
  if (changeSummary) out.push(`**Summary:** ${Object.entries(changeSummary).map(([op, n]) => `${n} ${op}`).join(", ")}`, "");
  return out.join("\n");
}
