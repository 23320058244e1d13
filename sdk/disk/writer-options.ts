// Validates a writer's options with its zod schema and reports every issue at once.
import type { z } from "zod";
import { InvalidArgsError } from "../errors.ts";
import type { WriterOptions } from "./format.ts";

export function parseWriterOptions<S extends z.ZodType>(format: string, schema: S, options: WriterOptions): z.infer<S> {
  const parsed = schema.safeParse(options);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`);
  throw new InvalidArgsError("INVALID_WRITER_OPTIONS", `${format} writer: ${issues.join("; ")}`, {
    context: { format, issues: issues.length },
  });
}
