// The acceptance chain: raw → vmdk (streamOptimized) → vhd (fixed) → vhdx → qcow2 →
// vmdk (monolithicSparse) → raw returns the bytes it started with.
import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { convert } from "../../sdk/disk/convert.ts";
import { formatByName } from "../../sdk/disk/formats/index.ts";
import { createFileTarget } from "../../sdk/disk/io.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { fileSha256, qemuImg, withTempDir } from "../harness/disk.ts";

const MiB = 1024 * 1024;

/** 40 MiB + 3 sectors: random, text, holes, and data in the last sector. */
async function mixedRaw(path: string): Promise<void> {
  const file = await open(path, "w");
  const random = createCipheriv("aes-128-ctr", Buffer.alloc(16, 1), Buffer.alloc(16)).update(Buffer.alloc(5 * MiB));
  await file.write(random, 0, random.length, 3 * MiB);
  await file.write(Buffer.from("portable ".repeat(100_000)), 0, 900_000, 17 * MiB + 4096);
  const sizeBytes = 40 * MiB + 3 * 512;
  await file.write(Buffer.alloc(512, 0xa5), 0, 512, sizeBytes - 512);
  await file.close();
}

const CHAIN: Array<[format: string, options: Record<string, string>]> = [
  ["vmdk", { subformat: "streamOptimized" }],
  ["vhd", { subformat: "fixed" }],
  ["vhdx", {}],
  ["qcow2", {}],
  ["vmdk", { subformat: "monolithicSparse" }],
  ["raw", {}],
];

describe("conversion chain", () => {
  it("GIVEN a mixed raw image WHEN converted through every format THEN the final raw is identical", async () => {
    await withTempDir(async (dir) => {
      let current = join(dir, "0.raw");
      await mixedRaw(current);
      const original = await fileSha256(current);
      for (const [index, [format, options]] of CHAIN.entries()) {
        const next = join(dir, `${index + 1}.${format}`);
        const source = await openDisk(current);
        try {
          const sink = await formatByName(format).createWriter(await createFileTarget(next), {
            ...options,
            virtualSizeBytes: source.virtualSizeBytes,
          });
          await convert(source, sink);
        } finally {
          await source.close();
        }
        // Each hop is also checked by the peer, so a bug cannot cancel itself out later.
        await qemuImg("compare", "-f", "raw", "-F", format === "vhd" ? "vpc" : format, join(dir, "0.raw"), next);
        current = next;
      }
      assert.equal(await fileSha256(current), original);
    });
  });
});
