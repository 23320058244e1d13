// Start, stop and status of a local machine. QEMU runs in its own process group, outliving the
// caller (a Pulumi provider process exits after create), and leaves a pid file and a QMP socket in
// the machine's state folder. Stop asks the guest first (ACPI power button over QMP), then asks
// QEMU to quit, then kills it: each step with a timeout, so stop never hangs. Remove deletes a
// stopped machine's folder, so destroying a workload leaves no log or socket behind.
import { spawn, type ChildProcess } from "node:child_process";
import { copyFile, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CloudError, InvalidArgsError, NotCapableError } from "../../errors.ts";
import { DEFAULT_QEMU_BINARY, resolveAccel, type AccelChoice, type ResolvedAccel } from "./accel.ts";
import type { LocalDatastore } from "./datastore.ts";
import { resolveFirmware, type FirmwareLookupOptions } from "./firmware.ts";
import { checkLocalName, type LocalMachineDefinition } from "./machine.ts";
import { connectQmp, type QmpClient } from "./qmp.ts";
import { clearHarvest, harvestBitmaps, isTrackingBitmap, sealHarvest } from "./change-tracking.ts";
import { renderQemuArgs } from "./qemu-args.ts";

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
const UNIX_SOCKET_PATH_MAX_BYTES = 107;
/** QEMU opens its disks and QMP socket in well under a second; 15 s allows a loaded host. */
export const DEFAULT_START_TIMEOUT_MS = 15_000;
/** How long a guest gets to act on the ACPI power button before QEMU is told to quit. */
export const DEFAULT_POWERDOWN_GRACE_MS = 30_000;
/** QEMU exits on `quit` at once; 5 s covers flushing a disk cache. */
export const DEFAULT_QUIT_TIMEOUT_MS = 5_000;
const POLL_MS = 100;
/** Keep the tail of qemu.log for error messages. */
const LOG_TAIL_CHARS = 4096;

export interface MachineFiles {
  readonly dir: string;
  readonly pidFile: string;
  readonly qmpSocket: string;
  readonly serialLog: string;
  readonly firmwareLog: string;
  readonly qemuLog: string;
  readonly args: string;
}

export interface StartMachineOptions extends FirmwareLookupOptions {
  /** @default "auto" (accel.ts) */
  readonly accel?: AccelChoice;
  readonly qemuBinary?: string;
  readonly startTimeoutMs?: number;
}

export interface RunningMachine {
  readonly name: string;
  readonly pid: number;
  readonly accel: ResolvedAccel;
  readonly files: MachineFiles;
  readonly args: readonly string[];
}

export interface StopMachineOptions {
  readonly graceMs?: number;
  readonly quitTimeoutMs?: number;
}

export interface StopResult {
  /** How it ended: the guest powered off, QEMU quit, it was killed, or it was not running. */
  readonly method: "powerdown" | "quit" | "kill" | "not-running";
  readonly pid?: number;
}

export type MachineStatus = { readonly state: "running"; readonly pid: number } | { readonly state: "stopped" };

/** Children this process started: their exit is known without polling /proc. */
const children = new Map<number, ChildProcess>();

/** Where the machine's files are. Nothing is created: startMachine makes the folder. */
export async function machineFiles(store: LocalDatastore, name: string): Promise<MachineFiles> {
  checkLocalName("machine", name);
  const dir = store.machinePath(name);
  const files = {
    dir,
    pidFile: join(dir, "qemu.pid"),
    qmpSocket: join(dir, "qmp.sock"),
    serialLog: join(dir, "serial.log"),
    firmwareLog: join(dir, "firmware.log"),
    qemuLog: join(dir, "qemu.log"),
    args: join(dir, "qemu-args.json"),
  };
  if (Buffer.byteLength(files.qmpSocket) > UNIX_SOCKET_PATH_MAX_BYTES) {
    throw new NotCapableError("LOCAL_SOCKET_PATH_TOO_LONG", `local: ${files.qmpSocket} is longer than the ${UNIX_SOCKET_PATH_MAX_BYTES} bytes a unix socket path may have; use a shorter datastore path`, {
      context: { bytes: Buffer.byteLength(files.qmpSocket) },
    });
  }
  return files;
}

/**
 * True while `pid` is a live (not zombie) QEMU serving this machine's QMP socket. The socket
 * path in its command line guards against a recycled pid belonging to something else.
 */
async function isOurQemu(pid: number, qmpSocket: string): Promise<boolean> {
  const child = children.get(pid);
  if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const procStat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (procStat === undefined) return child !== undefined;
  // Field 3, after the parenthesised command name, is the state; Z is a zombie, X is dead.
  const state = procStat.slice(procStat.lastIndexOf(")") + 2, procStat.lastIndexOf(")") + 3);
  if (state === "Z" || state === "X") return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.includes(qmpSocket);
}

async function readPid(pidFile: string): Promise<number | undefined> {
  const text = await readFile(pidFile, "utf8").catch(() => undefined);
  const pid = Number(text?.trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

async function tail(path: string): Promise<string> {
  return (await readFile(path, "utf8").catch(() => "")).slice(-LOG_TAIL_CHARS).trim();
}

export async function machineStatus(store: LocalDatastore, name: string): Promise<MachineStatus> {
  const files = await machineFiles(store, name);
  const pid = await readPid(files.pidFile);
  return pid !== undefined && (await isOurQemu(pid, files.qmpSocket)) ? { state: "running", pid } : { state: "stopped" };
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** Starts the machine; resolves once QEMU answers on QMP. Refuses when it already runs. */
export async function startMachine(store: LocalDatastore, machine: LocalMachineDefinition, options: StartMachineOptions = {}): Promise<RunningMachine> {
  const files = await machineFiles(store, machine.name);
  const status = await machineStatus(store, machine.name);
  if (status.state === "running") {
    throw new InvalidArgsError("LOCAL_MACHINE_RUNNING", `local: machine "${machine.name}" already runs (pid ${status.pid})`, { context: { pid: status.pid } });
  }
  await store.machineDir(machine.name);
  const firmware = await resolveFirmware(machine.firmware, options);
  const qemuBinary = options.qemuBinary ?? DEFAULT_QEMU_BINARY;
  const accel = await resolveAccel(options.accel ?? "auto", { qemuBinary });
  let varsPath: string | undefined;
  if (firmware.type === "uefi") {
    // The variable store is the machine's NVRAM: made once from the template, kept across
    // restarts. Secure-boot and plain builds keep different stores.
    varsPath = join(files.dir, firmware.secureBoot ? "uefi-vars-secure.fd" : "uefi-vars.fd");
    if ((await stat(varsPath).catch(() => undefined)) === undefined) await copyFile(firmware.varsTemplatePath, varsPath);
  }
  await rm(files.pidFile, { force: true });
  await rm(files.qmpSocket, { force: true });
  const args = renderQemuArgs(machine, {
    accel: accel.accel,
    firmware,
    ...(varsPath === undefined ? {} : { varsPath }),
    serialLogPath: files.serialLog,
    firmwareLogPath: files.firmwareLog,
    qmpSocketPath: files.qmpSocket,
    pidFilePath: files.pidFile,
  });
  await writeFile(files.args, `${JSON.stringify([qemuBinary, ...args], null, 2)}\n`);
  const log = await open(files.qemuLog, "w");
  let child: ChildProcess;
  try {
    // detached: its own process group and session, so it outlives us and our terminal's signals.
    child = spawn(qemuBinary, args, { detached: true, stdio: ["ignore", log.fd, log.fd] });
  } finally {
    await log.close();
  }
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  if (child.pid === undefined) throw new CloudError("LOCAL_QEMU_SPAWN", `local: cannot start ${qemuBinary}: ${(await spawnError).message}`);
  const pid = child.pid;
  children.set(pid, child);
  child.once("exit", () => setTimeout(() => children.delete(pid), 60_000).unref());
  child.unref();
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const ready = await waitUntil(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return true;
    if ((await readPid(files.pidFile)) === undefined) return false;
    try {
      (await connectQmp(files.qmpSocket, 1_000)).close();
      return true;
    } catch {
      return false;
    }
  }, timeoutMs);
  if (child.exitCode !== null || child.signalCode !== null) {
    throw new CloudError("LOCAL_QEMU_EXITED", `local: machine "${machine.name}": qemu exited at start (code ${child.exitCode}, signal ${child.signalCode}): ${await tail(files.qemuLog)}`, {
      context: { exitCode: child.exitCode ?? undefined },
    });
  }
  if (!ready) {
    child.kill("SIGKILL");
    throw new CloudError("LOCAL_QEMU_START_TIMEOUT", `local: machine "${machine.name}": qemu did not answer on QMP within ${timeoutMs} ms: ${await tail(files.qemuLog)}`, { context: { timeoutMs } });
  }
  return { name: machine.name, pid, accel, files, args };
}

/** Stops the machine: ACPI power button, then QMP quit, then SIGKILL, each bounded by a timeout. */
export async function stopMachine(store: LocalDatastore, name: string, options: StopMachineOptions = {}): Promise<StopResult> {
  const files = await machineFiles(store, name);
  const pid = await readPid(files.pidFile);
  const alive = async (): Promise<boolean> => pid !== undefined && (await isOurQemu(pid, files.qmpSocket));
  const cleanup = async (): Promise<void> => {
    await rm(files.pidFile, { force: true });
    await rm(files.qmpSocket, { force: true });
  };
  if (pid === undefined || !(await alive())) {
    await cleanup();
    return { method: "not-running" };
  }
  const gone = async (): Promise<boolean> => !(await alive());
  let qmp;
  try {
    qmp = await connectQmp(files.qmpSocket);
  } catch {
    qmp = undefined;
  }
  // Tracking bitmaps (change-tracking.ts) die with QEMU. With any, the guest's shutdown pauses
  // QEMU instead of ending it (past the grace, QEMU pauses the guest), their ranges are saved,
  // and once QEMU has gone the saved ranges are sealed to the disk files as they are then, so
  // the final pass reads only what changed.
  const tracked = qmp !== undefined && (await hasTrackingBitmaps(qmp));
  const ended = async (method: StopResult["method"]): Promise<StopResult> => {
    if (tracked) await sealHarvest(files.dir);
    return { method, pid };
  };
  try {
    if (qmp !== undefined) {
      if (tracked) await qmp.execute("set-action", { shutdown: "pause" }).catch(() => {});
      await qmp.execute("system_powerdown").catch(() => {});
      const halted = tracked ? async () => (await gone()) || !(await guestRunning(qmp)) : gone;
      const graceful = await waitUntil(halted, options.graceMs ?? DEFAULT_POWERDOWN_GRACE_MS);
      if (graceful && !tracked) return { method: "powerdown", pid };
      if (tracked) {
        if (!graceful) await qmp.execute("stop").catch(() => {});
        await clearHarvest(files.dir);
        if (!(await gone())) await harvestBitmaps((fn) => fn(qmp), files.dir).catch(() => {});
      }
      // QEMU may close the socket before it answers `quit`; the exit is what counts.
      await qmp.execute("quit").catch(() => {});
      if (await waitUntil(gone, options.quitTimeoutMs ?? DEFAULT_QUIT_TIMEOUT_MS)) return await ended(graceful ? "powerdown" : "quit");
    }
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // It exited between the check and the kill.
    }
    if (await waitUntil(gone, DEFAULT_QUIT_TIMEOUT_MS)) return await ended("kill");
    throw new CloudError("LOCAL_QEMU_UNKILLABLE", `local: machine "${name}": qemu pid ${pid} survived SIGKILL`, { context: { pid } });
  } finally {
    qmp?.close();
    await cleanup();
  }
}

async function hasTrackingBitmaps(qmp: QmpClient): Promise<boolean> {
  const blocks = (await qmp.execute("query-block").catch(() => [])) as Array<{ inserted?: { "dirty-bitmaps"?: Array<{ name: string }> } }>;
  return blocks.some((b) => (b.inserted?.["dirty-bitmaps"] ?? []).some((m) => isTrackingBitmap(m.name)));
}

/** The guest's vCPUs run (false once it shut down into a pause, or was paused). */
async function guestRunning(qmp: QmpClient): Promise<boolean> {
  return ((await qmp.execute("query-status").catch(() => ({ running: false }))) as { running: boolean }).running;
}

/**
 * Deletes a stopped machine's state folder with everything QEMU and we left in it (serial,
 * firmware and QEMU logs, the argument file, UEFI variables, overlays, a stale pid file or
 * socket), then machines/ if no other machine is left. Refuses while the machine runs: stop it
 * first (machine-placement.ts destroyMachine does both).
 */
export async function removeMachine(store: LocalDatastore, name: string): Promise<void> {
  const status = await machineStatus(store, name);
  if (status.state === "running") {
    throw new InvalidArgsError("LOCAL_MACHINE_RUNNING", `local: machine "${name}" still runs (pid ${status.pid}); stop it before removing it`, { context: { pid: status.pid } });
  }
  await store.removeMachineDir(name);
}
