import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { qemuImg, withTempDir } from "../harness/disk.ts";
import { portable } from "../harness/cli.ts";
import { buildOva } from "../ovf/helpers.ts";


describe("portable with disks inside an OVA", () => {
  it("GIVEN an OVA with a streamOptimized VMDK WHEN `file.ova!disk1.vmdk` is converted to raw THEN qemu-img finds it identical to the original", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const out = join(dir, "out.raw");
      const result = await portable("convert", built.location, out, "-O", "raw");
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /vmdk streamOptimized/);
      assert.match(await qemuImg("compare", "-f", "raw", "-F", "raw", built.raw, out), /identical/);
    });
  });

  it("GIVEN the location WHEN compared with the original and mapped THEN compare says identical and the map is the standalone VMDK's", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const same = await portable("compare", built.location, built.raw);
      assert.equal(same.code, 0, same.stdout + same.stderr);
      assert.match(same.stdout, /identical/);
      const inside = await portable("map", "--json", built.location);
      const outside = await portable("map", "--json", built.vmdk);
      assert.equal(inside.code, 0, inside.stderr);
      assert.deepEqual(JSON.parse(inside.stdout), JSON.parse(outside.stdout));
      assert.ok((JSON.parse(inside.stdout) as { kind: string }[]).some((e) => e.kind === "zero"), "the map shows the VMDK's holes, not one raw extent");
    });
  });

  it("GIVEN an OVA WHEN inspected THEN it is named an OVA archive with its disk entry, format, size and location, as text and JSON", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const text = await portable("inspect", built.ova);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /kind: ova \(tar archive\), descriptor appliance\.ovf/);
      assert.match(text.stdout, /disk disk1\.vmdk: vmdk \(streamOptimized\), virtual size 8\.0 MiB \(8388608 bytes\)/);
      assert.ok(text.stdout.includes(`location: ${built.location}`), text.stdout);
      assert.doesNotMatch(text.stdout, /format: raw/);
      const json = await portable("inspect", "--json", built.ova);
      assert.equal(json.code, 0, json.stderr);
      const report = JSON.parse(json.stdout) as { kind: string; descriptor: string; disks: { entry: string; location: string; format: string; subformat?: string; virtualSizeBytes: number }[] };
      assert.equal(report.kind, "ova");
      assert.equal(report.descriptor, "appliance.ovf");
      assert.deepEqual(
        report.disks.map(({ entry, location, format, subformat, virtualSizeBytes }) => ({ entry, location, format, subformat, virtualSizeBytes })),
        [{ entry: "disk1.vmdk", location: built.location, format: "vmdk", subformat: "streamOptimized", virtualSizeBytes: built.virtualSizeBytes }],
      );
    });
  });

  it("GIVEN a bare OVA WHEN converted THEN exit 2 with OVA_IS_ARCHIVE naming the disk's location, and no output file", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const out = join(dir, "out.raw");
      const result = await portable("convert", built.ova, out, "-O", "raw");
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /^portable: OVA_IS_ARCHIVE: /);
      assert.ok(result.stderr.includes(built.location), result.stderr);
      await assert.rejects(access(out));
    });
  });

  it("GIVEN an entry the OVA does not hold WHEN converted THEN exit 2 with OVA_ENTRY_MISSING listing the disk", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const result = await portable("convert", `${built.ova}!disk9.vmdk`, join(dir, "out.raw"), "-O", "raw");
      assert.equal(result.code, 2);
      assert.match(result.stderr, /^portable: OVA_ENTRY_MISSING: /);
      assert.ok(result.stderr.includes(built.location), result.stderr);
    });
  });
});
