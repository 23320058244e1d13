// Machines for the cutover benchmarks (bench:replicate, bench:downtime): a Node process stands in
// for a machine whose boot and stop cost nothing worth measuring, so the downtime measured is
// the engine's. `healthCheck` is the target's check: the process stays up for half a second.
import { spawn, type ChildProcess } from "node:child_process";
import type { HealthResult, Machine } from "../sdk/migrate/types.ts";

/** How long the target process must stay up to pass its health check. */
export const PROCESS_HEALTH_SECONDS = 0.5;

export function processMachine(name: string, args: string[]): Machine & { child?: ChildProcess } {
  const machine: Machine & { child?: ChildProcess } = {
    name,
    async isRunning() {
      return machine.child !== undefined && machine.child.exitCode === null && machine.child.signalCode === null;
    },
    async start() {
      const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
      machine.child = child;
      await new Promise<void>((resolve) => {
        child.stdout!.once("data", () => resolve());
        child.once("exit", () => resolve());
      });
    },
    async stop(options) {
      const child = machine.child;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return { graceful: true };
      const exited = new Promise<boolean>((resolve) => child.once("exit", () => resolve(true)));
      child.kill("SIGTERM");
      const graceful = await Promise.race([exited, new Promise<boolean>((r) => setTimeout(() => r(false), options?.gracefulTimeoutMs ?? 5000))]);
      if (!graceful) {
        child.kill("SIGKILL");
        await exited;
      }
      return { graceful };
    },
  };
  return machine;
}

/** A target process that only stays up. */
export function idleTarget(): Machine & { child?: ChildProcess } {
  return processMachine("target", ["-e", "process.stdout.write('up\\n'); setInterval(() => {}, 1000)"]);
}

/** The target's health check: it stayed up PROCESS_HEALTH_SECONDS. */
export async function stayedUp(machine: { child?: ChildProcess }): Promise<HealthResult> {
  const up = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(true), PROCESS_HEALTH_SECONDS * 1000);
    machine.child!.once("exit", () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  return { ok: up, detail: up ? `target process stayed up ${PROCESS_HEALTH_SECONDS} s` : "target process exited" };
}
