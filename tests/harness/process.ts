// Starts a real server process for a test and always stops it.
//
// Every service binds 127.0.0.1 with port 0 and prints the address it got; we read
// that line instead of picking a port ourselves, so parallel tests never collide.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";

export interface ServiceOptions {
  /** Human name used in errors, e.g. "vcsim". */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Matched against each output line; the first capture group is returned as the address. */
  readonly ready: RegExp;
  /** How long the process may take to print its ready line. */
  readonly startTimeoutMs?: number;
}

export interface RunningService {
  /** The first capture group of the ready line, usually a URL. */
  readonly address: string;
  /** Everything the process printed so far, for diagnostics. */
  output(): string;
  stop(): Promise<void>;
}

const DEFAULT_START_TIMEOUT_MS = 60_000;
/** Grace period between SIGTERM and SIGKILL when stopping. */
const STOP_GRACE_MS = 5_000;
/** Keep only the tail of a chatty server's output in memory. */
const OUTPUT_TAIL_CHARS = 64 * 1024;

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) killGroup(child, "SIGKILL");
});

export async function startService(options: ServiceOptions): Promise<RunningService> {
  if (!existsSync(options.command)) {
    throw new Error(`${options.name}: ${options.command} is not installed; run \`npm run setup\``);
  }
  // detached: the child leads its own process group, so stop() also ends grandchildren
  // (moto_server and azurite fork workers).
  const child = spawn(options.command, [...options.args], {
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  live.add(child);
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const address = await new Promise<string>((resolve, reject) => {
    let pending = "";
    const timer = setTimeout(
      () => fail(`did not print its ready line within ${options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS} ms`),
      options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
    );
    function fail(why: string): void {
      clearTimeout(timer);
      killGroup(child, "SIGKILL");
      reject(new Error(`${options.name}: ${why}\n--- output ---\n${output}`));
    }
    function onData(chunk: Buffer): void {
      const text = chunk.toString("utf8");
      output = (output + text).slice(-OUTPUT_TAIL_CHARS);
      pending += text;
      const lines = pending.split(/\r?\n/);
      pending = lines.pop() ?? "";
      for (const line of lines) {
        const match = options.ready.exec(line);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
          return;
        }
      }
    }
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("error", (err) => fail(`failed to start: ${err.message}`));
    child.once("exit", (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
  });

  let stopped: Promise<void> | undefined;
  return {
    address,
    output: () => output,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          killGroup(child, "SIGTERM");
          const grace = setTimeout(() => killGroup(child, "SIGKILL"), STOP_GRACE_MS);
          await exited;
          clearTimeout(grace);
        }
        live.delete(child);
      })();
      return stopped;
    },
  };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
}
