// KVM or TCG for the local target. /dev/kvm existing is not proof that KVM works: under nested
// virtualisation a guest can die on its first long-mode instruction ("KVM internal error") or
// spin forever (docs/decisions/0005-local-target.md). So "auto" also runs a short probe: OVMF
// under KVM must reach its boot manager, which takes well under a second where KVM works.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InvalidArgsError } from "../../errors.ts";
import { resolveFirmware } from "./firmware.ts";

export type Accel = "kvm" | "tcg";
export type AccelChoice = Accel | "auto";

/** Overrides "auto" on hosts where the probe cannot tell (set to "kvm" or "tcg"). */
export const ACCEL_ENV = "PORTABLE_QEMU_ACCEL";
export const DEFAULT_QEMU_BINARY = "/usr/bin/qemu-system-x86_64";
/**
 * OVMF prints its first "BdsDxe:" line about 0.5 s after reset under KVM and 3 s under TCG on a
 * slow core; 8 s leaves room for a loaded host without letting a broken KVM stall callers long.
 */
export const KVM_PROBE_TIMEOUT_MS = 8_000;

export interface ResolvedAccel {
  readonly accel: Accel;
  /** Why, for logs: "requested", "PORTABLE_QEMU_ACCEL", "no /dev/kvm", "probe passed", "probe failed: ...". */
  readonly reason: string;
}

let probed: Promise<ResolvedAccel> | undefined;

/** Resolves "auto" once per process (the probe result cannot change while we run). */
export async function resolveAccel(choice: AccelChoice = "auto", options: { readonly qemuBinary?: string } = {}): Promise<ResolvedAccel> {
  if (choice === "kvm" || choice === "tcg") return { accel: choice, reason: "requested" };
  if (choice !== "auto") throw new InvalidArgsError("LOCAL_ACCEL_INVALID", `local: accel must be kvm, tcg or auto, got "${String(choice)}"`);
  const forced = process.env[ACCEL_ENV];
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: ACCEL_ENV };
  probed ??= probeKvm(options.qemuBinary ?? DEFAULT_QEMU_BINARY);
  return probed;
}

async function probeKvm(qemuBinary: string): Promise<ResolvedAccel> {
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { accel: "tcg", reason: "no usable /dev/kvm" };
  }
  let firmware;
  try {
    firmware = await resolveFirmware({ type: "uefi", secureBoot: false });
  } catch {
    return { accel: "kvm", reason: "/dev/kvm present (no OVMF to probe with)" };
  }
  if (firmware.type !== "uefi") return { accel: "kvm", reason: "/dev/kvm present" };
  const dir = await mkdtemp(join(tmpdir(), "pw-kvm-probe-"));
  try {
    const vars = join(dir, "vars.fd");
    const serial = join(dir, "serial.log");
    await copyFile(firmware.varsTemplatePath, vars);
    const args = [
      "-accel", "kvm", "-machine", "q35", "-m", "128", "-nodefaults", "-display", "none", "-no-reboot",
      "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${firmware.codePath.replaceAll(",", ",,")}`,
      "-drive", `if=pflash,format=raw,unit=1,file=${vars.replaceAll(",", ",,")}`,
      "-chardev", `file,id=serial0,path=${serial.replaceAll(",", ",,")}`, "-serial", "chardev:serial0",
    ];
    const child = spawn(qemuBinary, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4096)));
    let closed = false;
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    void exited.then(() => (closed = true));
    child.once("error", () => {});
    const deadline = Date.now() + KVM_PROBE_TIMEOUT_MS;
    let verdict: ResolvedAccel | undefined;
    while (verdict === undefined) {
      const text = await readFile(serial, "utf8").catch(() => "");
      if (text.includes("BdsDxe")) verdict = { accel: "kvm", reason: "probe passed" };
      else if (stderr.includes("KVM internal error") || closed) verdict = { accel: "tcg", reason: `probe failed: ${stderr.split("\n").find((l) => /error/i.test(l)) ?? "qemu exited"}` };
      else if (Date.now() > deadline) verdict = { accel: "tcg", reason: `probe failed: OVMF printed nothing within ${KVM_PROBE_TIMEOUT_MS} ms under KVM` };
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!closed) child.kill("SIGKILL");
    await exited;
    return verdict;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
