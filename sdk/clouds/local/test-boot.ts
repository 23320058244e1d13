// Test boot: start a disk in a throw-away QEMU, watch the serial console and the firmware's debug
// port, and report what happened as data. Guest writes go to a temporary overlay (`snapshot=on`),
// so the disk under test is never changed.
//
// What each firmware prints when it cannot boot (checked on Debian's SeaBIOS 1.16 and OVMF
// 2022.11; see docs/decisions/0005-local-target.md):
// - SeaBIOS, on its debug port: "No bootable device." once every boot entry failed.
// - OVMF, on the serial console: `BdsDxe: failed to load Boot0001 "..." ...: Not Found` per boot
//   option, then it starts the "EFI Internal Shell" (or says "No bootable option or device was
//   found."). With secure boot on, an unsigned loader fails with "Access Denied" or "Security
//   Violation" instead: that is a firmware refusal, not a missing device.
import { spawn } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgsError } from "../../errors.ts";
import { detect } from "../../disk/open.ts";
import { openFileSource } from "../../disk/io.ts";
import { DEFAULT_QEMU_BINARY, resolveAccel, type AccelChoice, type Accel } from "./accel.ts";
import { resolveFirmware, type FirmwareLookupOptions } from "./firmware.ts";
import type { LocalDiskBus, LocalMachineDefinition, QemuDiskFormat } from "./machine.ts";
import { qemuDiskFormat, renderQemuArgs } from "./qemu-args.ts";

export const DEFAULT_TEST_BOOT_TIMEOUT_MS = 120_000;
/** GRUB's EFI Linux loader runs out of memory below about 300 MiB; 512 MiB is safe for both firmwares. */
export const DEFAULT_TEST_BOOT_MEMORY_MIB = 512;
/** The console text kept in a result: enough to see the last screen of a failure. */
export const TEST_BOOT_CONSOLE_TAIL_CHARS = 8192;
const POLL_MS = 100;

export interface TestBootOptions extends FirmwareLookupOptions {
  readonly firmware: "bios" | "uefi";
  /** @default false */
  readonly secureBoot?: boolean;
  /** Text the guest prints, alone on a line, on its serial console once it is up. */
  readonly marker: string;
  /** @default 120000 */
  readonly timeoutMs?: number;
  /** @default "virtio" */
  readonly bus?: LocalDiskBus;
  /** QEMU format name or the engine's; detected when left out. */
  readonly format?: string;
  /** @default "auto" */
  readonly accel?: AccelChoice;
  readonly memoryMiB?: number;
  readonly qemuBinary?: string;
}

interface Common {
  /** The end of the serial console (and firmware log), escape sequences removed. */
  readonly console: string;
  readonly accel: Accel;
}

export type TestBootResult =
  | (Common & { readonly kind: "booted"; readonly bootMs: number })
  | (Common & { readonly kind: "no-bootable-device"; readonly detail: string })
  | (Common & { readonly kind: "timeout"; readonly timeoutMs: number })
  /** The firmware refused to run what it found (secure boot), or the accelerator failed. */
  | (Common & { readonly kind: "firmware-error"; readonly detail: string })
  /** The loader or kernel failed, or QEMU exited, before the marker appeared. */
  | (Common & { readonly kind: "boot-error"; readonly detail: string });

type Verdict =
  | { readonly kind: "booted" }
  | { readonly kind: "no-bootable-device"; readonly detail: string }
  | { readonly kind: "firmware-error"; readonly detail: string }
  | { readonly kind: "boot-error"; readonly detail: string };

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b(\[[0-9;=?]*[A-Za-z]|[()][A-Za-z0-9]|[=>])/g;

/** Console text without terminal escape sequences and carriage returns. */
export function plainConsole(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(ANSI, "").replaceAll("\r", "").replace(/[\u0000-\u0008\u000b-\u001f]/g, "");
}

/** initramfs-tools ("ALERT!  /dev/sda1 does not exist.  Dropping to a shell!") and dracut ("Warning: /dev/sda1 does not exist"). */
const INITRAMFS_NO_ROOT = /ALERT!\s+(\S+) does not exist\.\s+Dropping to a shell!|dracut-initqueue\[\d+\]: Warning: (\S+) does not exist/;
/** systemd's and dracut's rescue shells. */
const EMERGENCY = /You are in emergency mode|Entering emergency mode|dracut:\/# $/m;
const UEFI_FAILED = /BdsDxe: failed to (?:load|start) (Boot[0-9A-Fa-f]{4}) "([^"]*)"[^\n]*?: ([A-Za-z ]+)$/gm;
const UEFI_GAVE_UP = /BdsDxe: No bootable option or device was found|BdsDxe: (?:loading|starting) Boot[0-9A-Fa-f]{4} "EFI Internal Shell"|UEFI Interactive Shell/;
const SECURITY_STATUS = /^(Access Denied|Security Violation)$/;

/**
 * Reads the console and firmware log so far. Returns a verdict once one is certain; undefined
 * means "keep watching".
 */
export function classifyConsole(serial: string, firmwareLog: string, marker: string, firmware: "bios" | "uefi"): Verdict | undefined {
  const text = plainConsole(serial);
  // Alone on a line, so a boot loader echoing its menu or a command line never counts.
  if (text.split("\n").some((line) => line.trim() === marker)) return { kind: "booted" };
  if (/Kernel panic - not syncing[^\n]*/.test(text)) return { kind: "boot-error", detail: /Kernel panic - not syncing[^\n]*/.exec(text)?.[0] ?? "kernel panic" };
  if (text.includes("Failed to boot both default and fallback entries")) return { kind: "boot-error", detail: "GRUB: failed to boot both default and fallback entries" };
  // The guest's initramfs found no root: its drivers or the root's name do not fit this machine.
  const noRoot = INITRAMFS_NO_ROOT.exec(text);
  if (noRoot !== null) return { kind: "boot-error", detail: `initramfs: the root device ${noRoot[1] ?? noRoot[2]} was not found (a storage driver missing from the initramfs, or a device name such as /dev/sda1 that differs on this bus)` };
  if (EMERGENCY.test(text)) return { kind: "boot-error", detail: "the guest stopped in emergency mode (an /etc/fstab entry or the root did not mount)" };
  if (firmware === "bios") {
    const log = plainConsole(firmwareLog);
    if (log.includes("No bootable device.") || text.includes("No bootable device.")) {
      const tried = [...log.matchAll(/^Booting from ([^\n]*?)\.*$/gm)].map((m) => m[1]);
      return { kind: "no-bootable-device", detail: `SeaBIOS: No bootable device${tried.length > 0 ? ` (tried ${tried.join(", ")})` : ""}` };
    }
    return undefined;
  }
  if (!UEFI_GAVE_UP.test(text)) return undefined;
  const failures = [...text.matchAll(UEFI_FAILED)].filter((m) => m[2] !== "EFI Internal Shell");
  const refused = failures.filter((m) => SECURITY_STATUS.test((m[3] ?? "").trim()));
  if (refused.length > 0) {
    return { kind: "firmware-error", detail: `OVMF secure boot refused ${refused.map((m) => `${m[1]} "${m[2]}": ${(m[3] ?? "").trim()}`).join("; ")}` };
  }
  const tried = failures.map((m) => `${m[1]} "${m[2]}": ${(m[3] ?? "").trim()}`);
  return { kind: "no-bootable-device", detail: `OVMF found nothing to boot${tried.length > 0 ? ` (${tried.join("; ")})` : ""}` };
}

/** Boots `diskPath` once and reports the outcome. Never changes the disk; always stops QEMU. */
export async function testBoot(diskPath: string, options: TestBootOptions): Promise<TestBootResult> {
  if (options.marker.length === 0) throw new InvalidArgsError("TEST_BOOT_MARKER_EMPTY", "testBoot: marker must not be empty");
  const timeoutMs = options.timeoutMs ?? DEFAULT_TEST_BOOT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new InvalidArgsError("TEST_BOOT_TIMEOUT_INVALID", `testBoot: timeoutMs must be a positive integer, got ${timeoutMs}`);
  let format: QemuDiskFormat;
  if (options.format !== undefined) format = qemuDiskFormat(options.format);
  else {
    const bytes = await openFileSource(diskPath);
    try {
      format = qemuDiskFormat((await detect(bytes)).name);
    } finally {
      await bytes.close();
    }
  }
  const secureBoot = options.secureBoot ?? false;
  const firmware = await resolveFirmware({ type: options.firmware, secureBoot }, options);
  const qemuBinary = options.qemuBinary ?? DEFAULT_QEMU_BINARY;
  const { accel } = await resolveAccel(options.accel ?? "auto", { qemuBinary });
  const machine: LocalMachineDefinition = {
    name: "test-boot",
    machineType: options.bus === "ide" ? "pc" : "q35",
    sockets: 1,
    coresPerSocket: 1,
    memoryMiB: options.memoryMiB ?? DEFAULT_TEST_BOOT_MEMORY_MIB,
    firmware: { type: options.firmware, secureBoot },
    disks: [{ id: "boot", path: diskPath, format, bus: options.bus ?? "virtio", bootIndex: 0, snapshot: true }],
    nics: [],
  };
  const dir = await mkdtemp(join(tmpdir(), "pw-testboot-"));
  try {
    const serialLogPath = join(dir, "serial.log");
    const firmwareLogPath = join(dir, "firmware.log");
    let varsPath: string | undefined;
    if (firmware.type === "uefi") {
      varsPath = join(dir, "vars.fd");
      await copyFile(firmware.varsTemplatePath, varsPath);
    }
    const args = renderQemuArgs(machine, { accel, firmware, ...(varsPath === undefined ? {} : { varsPath }), serialLogPath, firmwareLogPath, noReboot: true });
    // -snapshot overlays live in TMPDIR: keep them in our folder so they go with it.
    const child = spawn(qemuBinary, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TMPDIR: dir } });
    const started = Date.now();
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-TEST_BOOT_CONSOLE_TAIL_CHARS)));
    let closed = false;
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    void exited.then(() => (closed = true));
    const spawnFailed = new Promise<Error>((resolve) => child.once("error", resolve));
    void spawnFailed.then(() => (closed = true));
    const read = async (): Promise<{ serial: string; fw: string }> => ({
      serial: await readFile(serialLogPath, "utf8").catch(() => ""),
      fw: await readFile(firmwareLogPath, "utf8").catch(() => ""),
    });
    const consoleOf = (serial: string, fw: string): string => {
      const text = plainConsole(serial).trim();
      const log = firmware.type === "bios" ? plainConsole(fw).trim().split("\n").slice(-20).join("\n") : "";
      return `${log.length > 0 ? `${log}\n--- serial ---\n` : ""}${text}`.slice(-TEST_BOOT_CONSOLE_TAIL_CHARS);
    };
    try {
      for (;;) {
        const wasClosed = closed;
        const { serial, fw } = await read();
        const verdict = classifyConsole(serial, fw, options.marker, options.firmware);
        const bootMs = Date.now() - started;
        const console = consoleOf(serial, fw);
        if (verdict !== undefined) return verdict.kind === "booted" ? { kind: "booted", bootMs, console, accel } : { ...verdict, console, accel };
        if (stderr.includes("KVM internal error")) return { kind: "firmware-error", detail: `KVM failed: ${stderr.trim().split("\n")[0] ?? ""}`, console, accel };
        if (wasClosed) {
          const why = child.exitCode !== null ? `exit code ${child.exitCode}` : child.signalCode !== null ? `signal ${child.signalCode}` : "spawn failed";
          return { kind: "boot-error", detail: `qemu ended (${why}) before "${options.marker}" appeared: ${stderr.trim().slice(-500)}`, console, accel };
        }
        if (bootMs > timeoutMs) return { kind: "timeout", timeoutMs, console, accel };
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    } finally {
      if (!closed) child.kill("SIGKILL");
      await Promise.race([exited, spawnFailed]);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
