// The real VMware OVA in tests/fixtures/vectors/govmomi (its README.md): its OVF parses, its
// SHA-1 manifest verifies, and its VMDK, truncated to 1 MiB by the repository that kept it,
// fails cleanly with a coded error (qemu-img says "Invalid footer").
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { FormatError } from "../../sdk/errors.ts";
import { parseManifest } from "../../sdk/ovf/manifest.ts";
import { readOvf } from "../../sdk/ovf/ovf-reader.ts";
import { openOva } from "../../sdk/ovf/package.ts";
import { withTempDir } from "../harness/disk.ts";
import { GOVMOMI_VECTORS, ttylinuxOva } from "./helpers.ts";

describe("govmomi ttylinux OVA (shared vector)", () => {
  it("GIVEN the loose .ovf from the vector WHEN read THEN ttylinux: 1 vCPU, 32 MiB, EFI, a 30 MiB IDE disk, an E1000 on nat, other Linux", async () => {
    const d = readOvf(await readFile(join(GOVMOMI_VECTORS, "ttylinux-pc_i486-16.1.ovf")), { name: "ttylinux.ovf" });
    assert.deepEqual(d.problems, []);
    const w = d.systems[0]?.workload;
    assert.equal(w?.name, "ttylinux-pc_i486-16.1");
    assert.deepEqual(w?.cpu, { sockets: 1, coresPerSocket: 1 });
    assert.equal(w?.memoryMiB, 32);
    assert.equal(w?.firmware.type, "uefi");
    assert.deepEqual(
      w?.disks.map((x) => [x.id, x.sizeBytes, x.bus, x.bootOrder]),
      [["vmdisk1", 30 * 2 ** 20, "ide", 0]],
    );
    assert.deepEqual(
      w?.nics.map((n) => [n.network, n.model]),
      [["nat", "E1000"]],
    );
    assert.deepEqual(w?.guestOs, { family: "linux", architecture: "i386" });
    assert.equal(d.files[0]?.sizeBytes, 10595840);
    assert.equal(d.disks[0]?.populatedSizeBytes, 18743296);
  });

  it("GIVEN the OVA WHEN opened THEN it parses, its SHA-1 manifest verifies, and the 1 MiB entry is flagged against ovf:size", async () => {
    await withTempDir(async (dir) => {
      const pkg = await openOva(await ttylinuxOva(dir));
      try {
        assert.equal(pkg.descriptorName, "ttylinux-pc_i486-16.1.ovf");
        assert.equal(pkg.descriptor.systems[0]?.workload?.name, "ttylinux-pc_i486-16.1");
        const report = await pkg.verifyManifest();
        assert.equal(report?.ok, true, JSON.stringify(report));
        assert.deepEqual(
          report?.checks.map((c) => `${c.algorithm} ${c.file} ${c.ok}`),
          ["sha1 ttylinux-pc_i486-16.1.ovf true", "sha1 ttylinux-pc_i486-16.1-disk1.vmdk true"],
        );
        // The manifest inside agrees with the copy kept beside the vector.
        const loose = parseManifest(await readFile(join(GOVMOMI_VECTORS, "ttylinux-pc_i486-16.1.mf"), "utf8"));
        assert.deepEqual(
          loose.map((l) => l.digest),
          pkg.manifest?.map((l) => l.digest),
        );
        assert.deepEqual(
          pkg.problems.map((p) => `${p.code} ${p.path}`),
          ["OVA_FILE_SIZE_MISMATCH References.File[file1].size"],
        );
      } finally {
        await pkg.close();
      }
    });
  });

  it("GIVEN the OVA's truncated streamOptimized VMDK WHEN opened as a disk THEN VMDK_FOOTER_INVALID, and the package stays usable", async () => {
    await withTempDir(async (dir) => {
      const pkg = await openOva(await ttylinuxOva(dir));
      try {
        await assert.rejects(pkg.openDisk("vmdisk1"), (err: unknown) => {
          assert.ok(err instanceof FormatError);
          assert.equal(err.code, "VMDK_FOOTER_INVALID");
          assert.match(err.message, /ttylinux-pc_i486-16\.1-disk1\.vmdk/);
          return true;
        });
        assert.equal((await pkg.verifyManifest())?.ok, true);
      } finally {
        await pkg.close();
      }
    });
  });
});
