import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgsError } from "../../sdk/errors.ts";
import { parseWorkloadArgs } from "../../sdk/spec/placement.ts";
import { parseWorkload, safeParseWorkload, vcpuCount, WorkloadValidationError, type WorkloadInput } from "../../sdk/spec/workload.ts";

const MINIMAL: WorkloadInput = { name: "web-1", memoryMiB: 2048, guestOs: { family: "linux" } };

function issuesOf(value: unknown): { path: string; code: string; message: string }[] {
  const result = safeParseWorkload(value);
  assert.equal(result.success, false, "expected validation to fail");
  return result.success ? [] : [...result.issues];
}

describe("Workload schema", () => {
  it("GIVEN only the required fields WHEN parsed THEN defaults fill cpu, firmware, disks, nics, architecture and tags", () => {
    const w = parseWorkload(MINIMAL);
    assert.deepEqual(w.cpu, { sockets: 1, coresPerSocket: 1 });
    assert.deepEqual(w.firmware, { type: "bios", secureBoot: false, vtpm: false });
    assert.deepEqual(w.disks, []);
    assert.deepEqual(w.nics, []);
    assert.equal(w.guestOs.architecture, "x86_64");
    assert.deepEqual(w.tags, {});
    assert.equal(vcpuCount(w), 1);
  });

  it("GIVEN a full workload WHEN parsed THEN every field survives and nested defaults apply", () => {
    const w = parseWorkload({
      name: "db",
      cpu: { sockets: 2, coresPerSocket: 4 },
      memoryMiB: 16384,
      firmware: { type: "uefi", secureBoot: true, vtpm: true },
      disks: [
        { id: "root", sizeBytes: 10 * 2 ** 30, source: { kind: "file", path: "/images/root.vmdk" }, bus: "nvme", bootOrder: 0 },
        { id: "data", sizeBytes: 2 ** 40, source: { kind: "cloud", provider: "aws", reference: "snap-0123" } },
        { id: "scratch", sizeBytes: 2 ** 30, source: { kind: "url", url: "https://example.com/scratch.qcow2" }, bus: "sata" },
      ],
      nics: [
        { network: "prod", macPolicy: { kind: "static", address: "00:50:56:aa:bb:cc" }, addressing: { kind: "static", addresses: ["10.0.0.5/24"], gateway: "10.0.0.1", dns: ["10.0.0.2"] } },
        { network: "backup" },
      ],
      guestOs: { family: "windows", distribution: "windows-server", version: "2022", architecture: "x86_64" },
      tags: { team: "data" },
    });
    assert.equal(vcpuCount(w), 8);
    assert.equal(w.disks[1]?.bus, "scsi", "bus defaults to scsi");
    assert.deepEqual(w.nics[1]?.macPolicy, { kind: "generated" });
    assert.deepEqual(w.nics[1]?.addressing, { kind: "dhcp" });
    assert.equal(w.disks[0]?.source?.kind, "file");
  });

  it("GIVEN unknown keys at three depths WHEN validated THEN each is rejected with its own path", () => {
    const issues = issuesOf({ ...MINIMAL, colour: "red", cpu: { sockets: 1, threads: 2 }, disks: [{ id: "a", sizeBytes: 512, speed: "fast" }] });
    const paths = issues.map((i) => `${i.code}@${i.path}`);
    assert.ok(paths.includes("unrecognized_keys@"), paths.join(", "));
    assert.ok(paths.includes("unrecognized_keys@cpu"), paths.join(", "));
    assert.ok(paths.includes("unrecognized_keys@disks.0"), paths.join(", "));
  });

  it("GIVEN several mistakes WHEN parsed THEN one WORKLOAD_INVALID error lists every issue with its path", () => {
    assert.throws(
      () =>
        parseWorkload({
          name: "",
          memoryMiB: -1,
          firmware: { type: "bios", secureBoot: true },
          disks: [
            { id: "x", sizeBytes: 1024, bootOrder: 0 },
            { id: "x", sizeBytes: 1024, bootOrder: 0, bus: "floppy" },
          ],
          nics: [{ network: "n", macPolicy: { kind: "static", address: "zz:zz" } }],
          guestOs: { family: "beos" },
        }),
      (err: unknown) => {
        assert.ok(err instanceof WorkloadValidationError);
        assert.ok(err instanceof InvalidArgsError);
        assert.equal(err.code, "WORKLOAD_INVALID");
        const paths = err.issues.map((i) => i.path);
        for (const path of ["name", "memoryMiB", "firmware.secureBoot", "disks.1.bus", "nics.0.macPolicy.address", "guestOs.family"]) {
          assert.ok(paths.includes(path), `missing ${path} in ${paths.join(", ")}`);
        }
        assert.match(err.message, /memoryMiB/);
        return true;
      },
    );
  });

  it("GIVEN duplicate disk ids and boot orders WHEN validated THEN both duplicates are reported on the second disk", () => {
    const issues = issuesOf({ ...MINIMAL, disks: [{ id: "d", sizeBytes: 512, bootOrder: 1 }, { id: "d", sizeBytes: 512, bootOrder: 1 }] });
    assert.deepEqual(
      issues.map((i) => i.path).sort(),
      ["disks.1.bootOrder", "disks.1.id"],
    );
  });

  it("GIVEN a vTPM on BIOS firmware WHEN validated THEN the issue points at firmware.vtpm", () => {
    const issues = issuesOf({ ...MINIMAL, firmware: { type: "bios", vtpm: true } });
    assert.deepEqual(issues.map((i) => i.path), ["firmware.vtpm"]);
  });

  it("GIVEN a static address without a prefix length WHEN validated THEN the address path is reported", () => {
    const issues = issuesOf({ ...MINIMAL, nics: [{ network: "n", addressing: { kind: "static", addresses: ["10.0.0.5"] } }] });
    assert.deepEqual(issues.map((i) => i.path), ["nics.0.addressing.addresses.0"]);
  });

  it("GIVEN a disk source of an unknown kind WHEN validated THEN the source path is reported", () => {
    const issues = issuesOf({ ...MINIMAL, disks: [{ id: "d", sizeBytes: 512, source: { kind: "ftp", path: "x" } }] });
    assert.ok(issues.some((i) => i.path.startsWith("disks.0.source")), JSON.stringify(issues));
  });
});

describe("Workload args: every issue at once", () => {
  it("GIVEN a bad memory size, a disk without a source and a duplicate disk id WHEN parsed THEN all three are reported together", () => {
    const args = {
      spec: { name: "w", memoryMiB: -1, disks: [{ id: "a", sizeBytes: 512 }, { id: "a", sizeBytes: 512, source: { kind: "file", path: "x.raw" } }], guestOs: { family: "linux" } },
      placement: { kind: "local", dir: "/tmp/ds" },
    };
    assert.throws(() => parseWorkloadArgs(args), (error: unknown) => {
      assert.ok(error instanceof WorkloadValidationError);
      assert.deepEqual(error.issues.map((i) => i.path).sort(), ["spec.disks.0.source", "spec.disks.1.id", "spec.memoryMiB"]);
      return true;
    });
  });

  it("GIVEN disks that are not objects WHEN parsed THEN they are reported and the cross-field checks do not throw", () => {
    const result = safeParseWorkload({ name: "w", memoryMiB: 1, disks: [null, 7, { id: "a", sizeBytes: 512, bootOrder: 0 }, { id: "b", sizeBytes: 512, bootOrder: 0 }], guestOs: { family: "linux" } });
    assert.equal(result.success, false);
    if (result.success) return;
    const paths = result.issues.map((i) => i.path);
    assert.ok(paths.includes("disks.0") && paths.includes("disks.1"), paths.join(", "));
    assert.ok(paths.includes("disks.3.bootOrder"), `the duplicate boot order is still found: ${paths.join(", ")}`);
  });
});
