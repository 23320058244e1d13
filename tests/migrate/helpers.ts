// Machines for migration tests: a process stands for a guest (the source writes to its disk;
// a target is "healthy" while its process runs, like a cloud instance's state).
import { spawn, type ChildProcess } from "node:child_process";
import type { Machine, StopResult } from "../../sdk/migrate/types.ts";

export interface ProcessMachine extends Machine {
  readonly pid: () => number | undefined;
  readonly starts: () => number;
  /** True when the process ends within `ms`: a health check's "did it stay up?". */
  readonly staysUp: (ms: number) => Promise<boolean>;
}

export function processMachine(name: string, command: string, args: readonly string[]): ProcessMachine {
  let child: ChildProcess | undefined;
  let starts = 0;
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  return {
    name,
    pid: () => (running() ? child!.pid : undefined),
    starts: () => starts,
    async staysUp(ms) {
      if (!running()) return false;
      const exited = await Promise.race([
        new Promise<boolean>((resolve) => child!.once("exit", () => resolve(true))),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms)),
      ]);
      return !exited;
    },
    async isRunning() {
      return running();
    },
    async start() {
      starts++;
      child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
      // Started means it said so (or died trying).
      await new Promise<void>((resolve) => {
        child!.stdout!.once("data", () => resolve());
        child!.once("exit", () => resolve());
      });
    },
    async stop(options): Promise<StopResult> {
      if (!running()) return { graceful: true };
      const exited = new Promise<boolean>((resolve) => child!.once("exit", () => resolve(true)));
      child!.kill("SIGTERM");
      const graceful = await Promise.race([exited, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), options?.gracefulTimeoutMs ?? 10_000))]);
      if (!graceful) {
        child!.kill("SIGKILL");
        await exited;
      }
      return { graceful };
    },
  };
}
