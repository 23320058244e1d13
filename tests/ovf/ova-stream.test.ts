import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { describe, it } from "node:test";
import { Readable } from "node:stream";
import { FormatError } from "../../sdk/errors.ts";
import { scanOvaStream } from "../../sdk/ovf/ova-stream.ts";
import { withTempDir } from "../harness/disk.ts";
import { MINIMAL_OVF, rawTar, ttylinuxOva } from "./helpers.ts";

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "no error";
  } catch (err) {
    assert.ok(err instanceof FormatError, `expected FormatError, got ${String(err)}`);
    return err.code;
  }
}

describe("OVA read from a stream", () => {
  it("GIVEN the govmomi OVA as a stream WHEN scanned in one pass THEN the workload parses and the SHA-1 manifest verifies", async () => {
    await withTempDir(async (dir) => {
      const scan = await scanOvaStream(createReadStream(await ttylinuxOva(dir)), "pipe");
      assert.equal(scan.descriptorName, "ttylinux-pc_i486-16.1.ovf");
      assert.equal(scan.descriptor.systems[0]?.workload?.memoryMiB, 32);
      assert.deepEqual(
        scan.entries.map((e) => [e.name, e.sizeBytes]),
        [
          ["ttylinux-pc_i486-16.1.ovf", 5005],
          ["ttylinux-pc_i486-16.1.mf", 159],
          ["ttylinux-pc_i486-16.1-disk1.vmdk", 1048576],
        ],
      );
      assert.equal(scan.manifest?.ok, true, JSON.stringify(scan.manifest));
      assert.deepEqual(
        scan.problems.map((p) => p.code),
        ["OVA_FILE_SIZE_MISMATCH"],
      );
    });
  });

  it("GIVEN a streamed OVA whose manifest digest is wrong WHEN scanned THEN that line fails with both digests", async () => {
    const ovf = Buffer.from(MINIMAL_OVF);
    const mf = Buffer.from(`SHA256(x.ovf)= ${"0".repeat(64)}\n`);
    const scan = await scanOvaStream(Readable.from([rawTar([{ name: "x.ovf", data: ovf }, { name: "x.mf", data: mf }])]));
    assert.equal(scan.manifest?.ok, false);
    assert.equal(scan.manifest?.checks[0]?.expected, "0".repeat(64));
    assert.match(scan.manifest?.checks[0]?.actual ?? "", /^[0-9a-f]{64}$/);
  });

  for (const [label, entries, code] of [
    ["an entry that climbs out", [{ name: "x.ovf", data: Buffer.from(MINIMAL_OVF) }, { name: "../evil", data: Buffer.alloc(3) }], "OVA_ENTRY_PATH"],
    ["an absolute entry", [{ name: "/abs", data: Buffer.alloc(3) }], "OVA_ENTRY_PATH"],
    ["a symbolic link", [{ name: "x.ovf", data: Buffer.from(MINIMAL_OVF) }, { name: "l", type: "2", linkName: "/etc/passwd" }], "OVA_ENTRY_LINK"],
    ["no descriptor", [{ name: "disk.vmdk", data: Buffer.alloc(3) }], "OVA_NO_DESCRIPTOR"],
  ] as const) {
    it(`GIVEN a streamed OVA with ${label} WHEN scanned THEN ${code}`, async () => {
      assert.equal(await codeOf(scanOvaStream(Readable.from([rawTar(entries)]))), code);
    });
  }
});
