// `portable plan-comment [preview.json|-]`: a face over sdk/migrate/plan-comment.ts.
import { readFile } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { parseArgs } from "node:util";
import { InvalidArgsError } from "../errors.ts";
import { renderPlanComment } from "../migrate/plan-comment.ts";
import { usageError } from "./common.ts";


export async function planCommentCommand(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length > 1) usageError("plan-comment takes one file (or - for stdin)");
  const path = positionals[0] ?? "-";
  const raw = path === "-" ? await text(process.stdin) : await readFile(path, "utf8");
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    throw new InvalidArgsError("PLAN_COMMENT_INPUT", `plan-comment: ${path === "-" ? "stdin" : path} is not JSON: ${(error as Error).message}`);
  }
  process.stdout.write(renderPlanComment(json));
  return 0;
}
