// Which fixups a move applies: none, an explicit list, or "auto", derived from the readiness
// findings for the target; each with the line a plan shows and an estimate of its time.
import type { Finding, InspectTarget } from "../inspect/types.ts";
import type { Fixup, FixupsPolicy } from "../spec/fixups.ts";

/** The appliance's start (a kernel boot under TCG here, ~25 s; a few seconds under KVM). */
export const APPLIANCE_START_ESTIMATE_SECONDS = 30;
/** An initramfs rebuild inside the appliance (~45 s measured under TCG). */
export const INITRAMFS_REBUILD_ESTIMATE_SECONDS = 60;
const SMALL_FIXUP_ESTIMATE_SECONDS = 2;

/** Findings "auto" answers, and with what. */
export function deriveFixups(findings: readonly Finding[], target: InspectTarget): Fixup[] {
  const fixups: Fixup[] = [];
  const drivers = [...new Set(findings.filter((f) => f.code === "INSPECT_INITRAMFS_DRIVER_MISSING" && (f.target === undefined || f.target === target)).flatMap((f) => f.drivers ?? []))];
  if (drivers.length > 0) fixups.push({ kind: "initramfs-drivers", drivers });
  if (findings.some((f) => f.code === "INSPECT_FSTAB_DEVICE_NAME" || f.code === "INSPECT_GRUB_DEVICE_NAME")) fixups.push({ kind: "device-names" });
  return fixups;
}

export function resolveFixups(policy: FixupsPolicy, findings: readonly Finding[], target: InspectTarget): Fixup[] {
  if (policy === "none") return [];
  if (policy === "auto") return deriveFixups(findings, target);
  return [...policy];
}

/** The finding codes the given fixups answer: a plan no longer counts them as blocking. */
export function answeredFindings(fixups: readonly Fixup[], findings: readonly Finding[]): Finding[] {
  const drivers = new Set(fixups.flatMap((f) => (f.kind === "initramfs-drivers" ? f.drivers : [])));
  const names = fixups.some((f) => f.kind === "device-names");
  return findings.filter((f) =>
    (f.code === "INSPECT_INITRAMFS_DRIVER_MISSING" && (f.drivers ?? []).length > 0 && (f.drivers ?? []).every((d) => drivers.has(d))) ||
    (names && (f.code === "INSPECT_FSTAB_DEVICE_NAME" || f.code === "INSPECT_GRUB_DEVICE_NAME")));
}

export function describeFixup(fixup: Fixup): string {
  switch (fixup.kind) {
    case "initramfs-drivers":
      return `add ${fixup.drivers.join(", ")} to the initramfs and rebuild it`;
    case "device-names":
      return "name the root and /etc/fstab filesystems by UUID instead of /dev/sdXN";
    case "serial-console":
      return `kernel console on ${fixup.device} at ${fixup.baud} baud`;
    case "remove-packages":
      return `remove ${fixup.packages.join(", ")}`;
    case "disable-services":
      return `disable ${fixup.services.join(", ")}`;
    case "write-file":
      return `write ${fixup.path} (${Buffer.byteLength(fixup.content)} bytes, mode ${fixup.mode.toString(8)})`;
  }
}

/** Seconds to apply the list: the appliance's start plus each fixup; 0 for none. */
export function estimateFixupSeconds(fixups: readonly Fixup[]): number {
  if (fixups.length === 0) return 0;
  return APPLIANCE_START_ESTIMATE_SECONDS + fixups.reduce((sum, f) => sum + (f.kind === "initramfs-drivers" ? INITRAMFS_REBUILD_ESTIMATE_SECONDS : SMALL_FIXUP_ESTIMATE_SECONDS), 0);
}
