// Fixups in the plan and the policy (issue 21), without running them: a preview of a move of the
// VMware guest lists the fixups "auto" derives and their time, counts that time in the downtime,
// stops counting the findings they answer as blocking, says when libguestfs is missing, and uses
// the measured time once there is one. The policy's fixups are validated like the rest.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { estimateFixupSeconds } from "../../sdk/fixups/index.ts";
import { recordTimings } from "../../sdk/migrate/disk-placement.ts";
import { diskTargetFor } from "../../sdk/migrate/targets.ts";
import { planWorkload, type WorkloadPlanInput } from "../../sdk/migrate/workload-plan.ts";
import { parseWorkloadArgs } from "../../sdk/spec/placement.ts";
import type { Placement } from "../../sdk/spec/placement.ts";
import { WorkloadValidationError } from "../../sdk/spec/workload.ts";
import { buildDebianGuest, type DebianGuest } from "../harness/debian-guest.ts";

describe("guest fixups in the plan and the policy", { timeout: 600_000 }, () => {
  let guest: DebianGuest;
  let dir: string;

  before(async () => {
    guest = await buildDebianGuest();
    dir = await mkdtemp(join(tmpdir(), "pw-fixups-plan-"));
  });
  after(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const input = (stateDir: string, extra: Partial<WorkloadPlanInput>): WorkloadPlanInput => {
    const { spec, placement } = parseWorkloadArgs({
      spec: { name: "vmware-guest", memoryMiB: 512, firmware: { type: "bios" }, disks: [{ id: "root", sizeBytes: guest.sizeBytes, bus: "scsi", source: { kind: "file", path: guest.path, format: "raw" } }], guestOs: { family: "linux" } },
      placement: { kind: "local", dir: join(dir, "local") },
    });
    return { workload: spec, placement, mode: "warm", stateDir, disks: [{ id: "root", source: guest.path, sourceFormat: "raw", target: diskTargetFor(placement as Placement, spec.name, "root") }], ...extra };
  };

  it("GIVEN fixups auto WHEN planned THEN the plan lists them with their estimate, counts it in the downtime, and the answered findings no longer block", async () => {
    const plan = await planWorkload(input(join(dir, "state-auto"), { fixups: "auto", testBoot: { marker: "UP", timeoutSeconds: 120 } }));
    assert.deepEqual(plan.fixups.list, [{ kind: "initramfs-drivers", drivers: ["virtio_pci", "virtio_scsi"] }, { kind: "device-names" }]);
    assert.equal(plan.fixups.measured, false);
    assert.equal(plan.fixups.seconds, estimateFixupSeconds(plan.fixups.list));
    assert.equal(plan.plan.downtimeBreakdown.fixups, plan.fixups.seconds);
    assert.match(plan.summary, /guest fixups \(2, estimated \d+\.\d s, on a copy-on-write overlay; the source is not changed\)/);
    assert.match(plan.summary, /initramfs-drivers: add virtio_pci, virtio_scsi to the initramfs and rebuild it/);
    assert.match(plan.summary, /device-names: name the root and \/etc\/fstab filesystems by UUID/);
    assert.match(plan.summary, /test boot before copying: wait up to 120 s for "UP"/);
    assert.match(plan.summary, new RegExp(`fixups ${plan.fixups.seconds.toFixed(1)}, scan`));
    const initramfs = plan.findings.find((f) => f.code === "INSPECT_INITRAMFS_DRIVER_MISSING");
    assert.equal(initramfs?.severity, "info");
    assert.match(initramfs?.message ?? "", /answered by the fixups/);
    assert.deepEqual(plan.findings.filter((f) => f.severity === "error"), []);
  });

  it("GIVEN no fixups WHEN planned THEN the missing drivers stay a blocking error and the downtime has no fixups", async () => {
    const plan = await planWorkload(input(join(dir, "state-none"), {}));
    assert.deepEqual(plan.fixups.list, []);
    assert.equal(plan.plan.downtimeBreakdown.fixups, 0);
    assert.doesNotMatch(plan.summary, /guest fixups/);
    assert.deepEqual(plan.findings.filter((f) => f.severity === "error").map((f) => f.code), ["INSPECT_INITRAMFS_DRIVER_MISSING"]);
  });

  it("GIVEN a measured application WHEN planned again THEN the plan uses the measured time", async () => {
    const stateDir = join(dir, "state-measured");
    await recordTimings(stateDir, "vmware-guest", "local", { fixupSeconds: 77.25 });
    const plan = await planWorkload(input(stateDir, { fixups: "auto" }));
    assert.equal(plan.fixups.measured, true);
    assert.equal(plan.fixups.seconds, 77.25);
    assert.equal(plan.plan.downtimeBreakdown.fixups, 77.25);
    assert.match(plan.summary, /guest fixups \(2, measured 77\.3 s/);
  });

  it("GIVEN a machine without libguestfs WHEN planned THEN the plan names the missing part and the findings still block", async () => {
    const path = process.env.PATH;
    process.env.PATH = join(dir, "empty-bin");
    let plan;
    try {
      plan = await planWorkload(input(join(dir, "state-missing"), { fixups: "auto" }));
    } finally {
      process.env.PATH = path;
    }
    assert.match(plan.summary, /fixups cannot run here: .*libguestfs-tools/);
    assert.match(plan.fixups.missing ?? "", /guestfish is not on PATH/);
    assert.deepEqual(plan.findings.filter((f) => f.severity === "error").map((f) => f.code), ["INSPECT_INITRAMFS_DRIVER_MISSING"]);
  });

  it("GIVEN bad fixups in the policy WHEN parsed THEN every problem is reported with its path", () => {
    const args = {
      spec: { name: "x", memoryMiB: 512, disks: [{ id: "d", sizeBytes: 1048576, source: { kind: "file", path: "/x.raw" } }], guestOs: { family: "linux" } },
      placement: { kind: "local", dir: "/tmp/x" },
      migration: {
        fixups: [
          { kind: "initramfs-drivers", drivers: ["virtio blk; rm -rf /"] },
          { kind: "write-file", path: "etc/motd", content: "hi" },
          { kind: "write-file", path: "/etc/../shadow", content: "x" },
          { kind: "remove-packages", packages: [] },
          { kind: "rewrite-registry" },
        ],
        testBoot: { marker: "" },
      },
    };
    assert.throws(() => parseWorkloadArgs(args), (error: unknown) => {
      assert.ok(error instanceof WorkloadValidationError);
      const paths = error.issues.map((i) => i.path);
      for (const path of ["migration.fixups.0.drivers.0", "migration.fixups.1.path", "migration.fixups.2.path", "migration.fixups.3.packages", "migration.fixups.4.kind", "migration.testBoot.marker"]) {
        assert.ok(paths.some((p) => p.startsWith(path)), `${path} in ${paths.join(", ")}`);
      }
      return true;
    });
    const valid = parseWorkloadArgs({ ...args, migration: { fixups: [{ kind: "serial-console" }, { kind: "write-file", path: "/etc/motd", content: "moved\n" }] } });
    assert.deepEqual(valid.migration.fixups, [{ kind: "serial-console", device: "ttyS0", baud: 115200 }, { kind: "write-file", path: "/etc/motd", content: "moved\n", mode: 0o644 }]);
    assert.equal(parseWorkloadArgs({ ...args, migration: {} }).migration.fixups, "none");
  });
});
