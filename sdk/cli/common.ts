// Shared by the `portable` subcommands: byte formatting, usage errors, progress, opening disks.
import type CliProgress from "cli-progress";
import { createRequire } from "node:module";
import { InvalidArgsError } from "../errors.ts";
import type { ConvertProgress } from "../disk/convert.ts";
import type { DiskSource } from "../disk/types.ts";
import { openSource } from "../clouds/registry.ts";
import { formatBytes } from "../units.ts";

export { formatBytes };

/** Exit codes, as qemu-img compare uses them: 0 same, 1 different, 2 error. */
export const EXIT_DIFFERENT = 1;
export const EXIT_ERROR = 2;
/** Without a TTY, one progress line per this interval keeps CI logs readable. */
const PROGRESS_LINE_INTERVAL_MS = 5_000;


let usageText = "";

/** The top-level usage, appended to usage errors. */
export function setUsage(text: string): void {
  usageText = text;
}

export function usageError(message: string, usage: string = usageText): never {
  throw new InvalidArgsError("USAGE", `${message}\n\n${usage}`);
}

/** A flag's value, one of `allowed` (undefined when the flag is absent); else a usage error. */
export function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], flag: string, usage: string): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new InvalidArgsError("USAGE", `${flag} must be one of ${allowed.join(", ")}, got "${value}"\n\nusage: portable ${usage}`);
  return value as T;
}

export async function withDisk<T>(path: string, format: string | undefined, fn: (disk: DiskSource) => Promise<T>): Promise<T> {
  const disk = await openSource(path, format);
  try {
    return await fn(disk);
  } finally {
    await disk.close();
  }
}

export function writerOptions(pairs: readonly string[]): Record<string, string> {
  const options: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) usageError(`-o expects key=value, got "${pair}"`);
    options[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return options;
}

/** Where progress goes: process.stderr, or a test's stream. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

export function progressReporter(label: string, stderr: ProgressStream = process.stderr): { update(p: ConvertProgress): void; stop(): void } {
  if (stderr.isTTY === true) {
    // Loaded only for a terminal: its twenty modules would otherwise lengthen every start.
    const cliProgress = createRequire(import.meta.url)("cli-progress") as typeof CliProgress;
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% | {done} of {size} | {written} written`, stream: stderr as NodeJS.WritableStream, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const payload = { done: formatBytes(p.doneBytes), size: formatBytes(p.totalBytes), written: formatBytes(p.dataBytesWritten) };
        if (!started) bar.start(p.totalBytes, 0, payload);
        started = true;
        bar.update(p.doneBytes, payload);
      },
      stop: () => started && bar.stop(),
    };
  }
  let last = 0;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < PROGRESS_LINE_INTERVAL_MS && p.doneBytes < p.totalBytes) return;
      last = now;
      const percent = p.totalBytes === 0 ? 100 : Math.floor((p.doneBytes / p.totalBytes) * 100);
      stderr.write(
        `${label}: ${percent}% (${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}), ${formatBytes(p.dataBytesWritten)} written\n`,
      );
    },
    stop: () => {},
  };
}

