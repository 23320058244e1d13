import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { qemuImg, withTempDir } from "../harness/disk.ts";
import { CLI, portable } from "../harness/cli.ts";
import { ttylinuxOva } from "../ovf/helpers.ts";


interface Report {
  kind: string;
  systems: { workload?: { name: string; memoryMiB: number; disks: { id: string; sizeBytes: number }[] }; disks: { id: string; location: string }[] }[];
  manifest?: { ok: boolean; checks: { file: string; ok: boolean }[] };
  problems: { code: string; path: string }[];
}

describe("portable ovf", () => {
  it("GIVEN the govmomi OVA WHEN described as JSON THEN exit 0, the workload, the disk inside the OVA, a verified manifest and the size problem", async () => {
    await withTempDir(async (dir) => {
      const ova = await ttylinuxOva(dir);
      const result = await portable("ovf", ova, "--json");
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout) as Report;
      assert.equal(report.kind, "ova");
      assert.equal(report.systems[0]?.workload?.name, "ttylinux-pc_i486-16.1");
      assert.equal(report.systems[0]?.disks[0]?.location, `${ova}!ttylinux-pc_i486-16.1-disk1.vmdk`);
      assert.equal(report.manifest?.ok, true);
      assert.deepEqual(
        report.problems.map((p) => `${p.code} ${p.path}`),
        ["OVA_FILE_SIZE_MISMATCH References.File[file1].size"],
      );
    });
  });

  it("GIVEN the govmomi OVA WHEN described as text THEN the summary names the guest, the manifest result and the problem with its path", async () => {
    await withTempDir(async (dir) => {
      const result = await portable("ovf", await ttylinuxOva(dir));
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /memory: 32\.0 MiB/);
      assert.match(result.stdout, /disk vmdisk1: 30\.0 MiB on ide, boot 0/);
      assert.match(result.stdout, /manifest: verified/);
      assert.match(result.stdout, /OVA_FILE_SIZE_MISMATCH at References\.File\[file1\]\.size/);
    });
  });

  it("GIVEN an OVA whose disk no longer matches its manifest WHEN described THEN exit 1 and the failing file is named", async () => {
    await withTempDir(async (dir) => {
      const ova = await ttylinuxOva(dir);
      const bytes = await readFile(ova);
      // The VMDK is the third entry; its data starts after three 512-byte headers and two padded entries.
      const at = bytes.length - 1024 - 4096;
      bytes[at] = (bytes[at] ?? 0) ^ 0x01;
      await writeFile(ova, bytes);
      const result = await portable("ovf", ova);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stdout, /manifest: FAILED/);
      assert.match(result.stdout, /BAD {2}sha1 ttylinux-pc_i486-16\.1-disk1\.vmdk/);
    });
  });

  it("GIVEN the govmomi OVA piped on stdin WHEN described with - THEN one pass verifies the manifest", async () => {
    await withTempDir(async (dir) => {
      const ova = await ttylinuxOva(dir);
      const result = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [CLI, "ovf", "-", "--json"], { stdio: ["pipe", "pipe", "inherit"] });
        let stdout = "";
        child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
        child.once("error", reject);
        child.once("close", (code) => resolve({ code, stdout }));
        createReadStream(ova).pipe(child.stdin);
      });
      assert.equal(result.code, 0);
      const report = JSON.parse(result.stdout) as Report;
      assert.equal(report.manifest?.ok, true);
      assert.equal(report.systems[0]?.disks[0]?.location, "stdin!ttylinux-pc_i486-16.1-disk1.vmdk");
    });
  });

  it("GIVEN a VMX beside its VMDKs WHEN described THEN each disk is sized by opening it", async () => {
    await withTempDir(async (dir) => {
      await qemuImg("create", "-q", "-f", "vmdk", join(dir, "vm.vmdk"), "32M");
      await qemuImg("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", join(dir, "vm_1.vmdk"), "8M");
      const vmx = join(dir, "vm.vmx");
      await writeFile(
        vmx,
        ['displayName = "vm"', 'numvcpus = "2"', 'memSize = "1024"', 'guestOS = "debian12-64"', 'scsi0.present = "TRUE"', 'scsi0:0.present = "TRUE"', 'scsi0:0.fileName = "vm.vmdk"', 'sata0:1.present = "TRUE"', 'sata0:1.fileName = "vm_1.vmdk"', ""].join("\n"),
      );
      const result = await portable("ovf", vmx, "--json");
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout) as Report;
      assert.equal(report.kind, "vmx");
      assert.deepEqual(
        report.systems[0]?.workload?.disks.map((d) => [d.id, d.sizeBytes]),
        [
          ["sata0-1", 8 * 2 ** 20],
          ["scsi0-0", 32 * 2 ** 20],
        ],
      );
      assert.deepEqual(report.problems, []);
    });
  });

  it("GIVEN a descriptor with an entity declaration WHEN described THEN exit 2 and the code XML_DTD_FORBIDDEN", async () => {
    await withTempDir(async (dir) => {
      const ovf = join(dir, "evil.ovf");
      await writeFile(ovf, '<?xml version="1.0"?><!DOCTYPE E [<!ENTITY x SYSTEM "file:///etc/passwd">]><Envelope>&x;</Envelope>');
      const result = await portable("ovf", ovf);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /portable: XML_DTD_FORBIDDEN: /);
    });
  });

  it("GIVEN a file that is not .ovf, .ova or .vmx, or no file WHEN described THEN exit 2 with a usage or extension error", async () => {
    const wrong = await portable("ovf", "disk.qcow2");
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /OVF_UNKNOWN_EXTENSION/);
    const none = await portable("ovf");
    assert.equal(none.code, 2);
    assert.match(none.stderr, /USAGE/);
  });
});
