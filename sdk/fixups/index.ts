// Guest fixups inside a migration (issue 21): a source disk becomes a fixed-up, read-only view
// for the pipe. Resolve the fixups (auto: from inspecting the source for the target), apply them
// to a qcow2 overlay of the source (libguestfs), optionally test-boot the overlay on the
// target's bus and firmware in a throw-away QEMU, and open the overlay (backed by the source)
// as the DiskSource the replication reads.
import { openDisk } from "../disk/open.ts";
import type { DiskSource } from "../disk/types.ts";
import { inspectGuest } from "../inspect/inspect.ts";
import type { InspectTarget } from "../inspect/types.ts";
import type { LocalDiskBus } from "../clouds/local/machine.ts";
import type { TestBootResult } from "../clouds/local/test-boot.ts";
import { qemuDiskFormat } from "../clouds/local/qemu-args.ts";
import type { Fixup, FixupsPolicy, TestBootPolicy } from "../spec/fixups.ts";
import type { DiskBus, FirmwareType } from "../spec/workload.ts";
import { applyFixups, type FixupOutcome } from "./apply.ts";
import { resolveFixups } from "./derive.ts";
import { FixupError } from "./guestfs.ts";

export { applyFixups, type FixedView, type FixupOutcome } from "./apply.ts";
export { answeredFindings, deriveFixups, describeFixup, estimateFixupSeconds, resolveFixups } from "./derive.ts";
export { FixupError } from "./guestfs.ts";

/** The disk bus a test boot uses for a target: what the guest will see there. */
export function testBootBus(target: InspectTarget, specBus: DiskBus | undefined): LocalDiskBus {
  switch (target) {
    case "aws":
      return "nvme";
    // QEMU has no Hyper-V storage (storvsc); virtio-scsi stands in, so an Azure test boot
    // proves the initramfs and names, not the Hyper-V drivers.
    case "azure":
      return "scsi";
    // The controller the Workload's bus maps to on our QEMU (clouds/local/machine.ts).
    case "local":
      return specBus ?? "virtio";
    case "kvm":
      return "virtio";
    case "vsphere":
      return specBus ?? "scsi";
  }
}

export interface FixedSourceRequest {
  /**
   * The source as a local image file, which QEMU opens read-only as the overlay's backing file.
   * Undefined for a source QEMU cannot open itself (a cloud snapshot, a vSphere disk, an OVA
   * entry): QEMU then reads `source` through a read-only NBD export of ours.
   */
  readonly image?: string;
  /** The image's format (the engine's name: raw, qcow2, vmdk, vhd, vhdx). */
  readonly format: string;
  /** The source opened by the engine (the overlay's backing disk for our reader); not closed here. */
  readonly source: DiskSource;
  readonly policy: FixupsPolicy;
  readonly target: InspectTarget;
  readonly firmware: FirmwareType;
  readonly bus?: DiskBus;
  readonly testBoot?: TestBootPolicy;
  /** Boot on this bus instead of the target's (testBootBus). */
  readonly testBootBusOverride?: LocalDiskBus;
  /** A folder for the overlay, removed on release. */
  readonly workDir: string;
  readonly onStep?: (line: string) => void;
}

export interface FixedSource {
  /** The fixed-up view (overlay over the source), or the source itself when no fixup applies. */
  readonly source: DiskSource;
  readonly fixups: readonly Fixup[];
  readonly outcomes: readonly FixupOutcome[];
  /** Time to apply them (appliance start included); 0 when none. */
  readonly seconds: number;
  readonly testBoot?: TestBootResult;
  release(): Promise<void>;
}

/** Applies the policy's fixups to an overlay of `image` and returns the view to copy from. */
export async function fixedSource(request: FixedSourceRequest): Promise<FixedSource> {
  let fixups: Fixup[];
  if (request.policy === "auto") {
    const report = await inspectGuest(request.source, { targets: [request.target], firmware: request.firmware, ...(request.bus === undefined ? {} : { diskBus: request.bus }) });
    fixups = resolveFixups("auto", report.findings, request.target);
  } else fixups = resolveFixups(request.policy, [], request.target);
  if (fixups.length === 0 && request.testBoot === undefined) return { source: request.source, fixups, outcomes: [], seconds: 0, release: async () => {} };
  const view = await applyFixups({
    ...(request.image === undefined ? { image: request.source } : { image: request.image, format: qemuDiskFormat(request.format) }),
    fixups,
    workDir: request.workDir,
    ...(request.onStep ? { onFixup: (o: FixupOutcome) => request.onStep!(`fixup ${o.kind}: ${o.detail} (${o.seconds.toFixed(1)} s)`) } : {}),
  });
  try {
    let testBoot: TestBootResult | undefined;
    if (request.testBoot !== undefined) {
      const { testBoot: boot } = await import("../clouds/local/test-boot.ts");
      const bus = request.testBootBusOverride ?? testBootBus(request.target, request.bus);
      request.onStep?.(`test boot on ${bus} (${request.firmware}), waiting for "${request.testBoot.marker}"`);
      testBoot = await boot(view.overlay, { firmware: request.firmware, marker: request.testBoot.marker, bus, format: "qcow2", timeoutMs: request.testBoot.timeoutSeconds * 1000 });
      if (testBoot.kind !== "booted") {
        const detail = "detail" in testBoot ? testBoot.detail : `no "${request.testBoot.marker}" within ${request.testBoot.timeoutSeconds} s`;
        throw new FixupError("TEST_BOOT_FAILED", `test boot on ${bus} (${request.firmware}) ${fixups.length === 0 ? "without fixups" : `after ${fixups.length} fixup(s)`} failed: ${testBoot.kind}: ${detail}`, { context: { result: testBoot.kind, console: testBoot.console.slice(-2000) } });
      }
    }
    const source = await openDisk(view.overlay, { format: "qcow2", backing: request.source });
    return {
      source,
      fixups,
      outcomes: view.outcomes,
      seconds: view.seconds,
      ...(testBoot === undefined ? {} : { testBoot }),
      release: async () => {
        await source.close();
        await view.release();
      },
    };
  } catch (error) {
    await view.release();
    throw error;
  }
}
