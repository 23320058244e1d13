// A raw file's holes come from the kernel (lseek SEEK_DATA/SEEK_HOLE through koffi): the extent
// map must agree with qemu-img's, which asks the kernel the same question, and the bytes must be
// unchanged whether holes are known or not.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { fileHoles } from "../../sdk/disk/file-holes.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import type { Extent } from "../../sdk/disk/types.ts";
import { qemuImg, sourceSha256, withTempDir } from "../harness/disk.ts";
import { REPO_ROOT } from "../harness/tools.ts";

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** 9 MiB + 2 sectors: holes at both ends and between three data runs, the last one ending the file. */
async function sparseFile(path: string): Promise<number> {
  const sizeBytes = 9 * MiB + 1024;
  const file = await open(path, "w");
  await file.truncate(sizeBytes);
  await file.write(Buffer.alloc(64 * 1024, 0x11), 0, 64 * 1024, MiB);
  await file.write(Buffer.alloc(2 * MiB, 0x22), 0, 2 * MiB, 4 * MiB + 8192);
  await file.write(Buffer.alloc(512, 0x33), 0, 512, sizeBytes - 512);
  await file.close();
  return sizeBytes;
}

async function collect(extents: AsyncIterable<Extent>): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const extent of extents) out.push(extent);
  return out;
}

/** qemu-img map's raw view: [start, end) of every range that is not a hole, merged. */
async function qemuDataRanges(path: string): Promise<Array<[number, number]>> {
  const map = JSON.parse(await qemuImg("map", "--output=json", "-f", "raw", path)) as Array<{ start: number; length: number; data: boolean }>;
  return merge(map.filter((e) => e.data).map((e) => [e.start, e.start + e.length]));
}

function merge(ranges: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [start, end] of ranges) {
    const last = out.at(-1);
    if (last !== undefined && last[1] === start) last[1] = end;
    else out.push([start, end]);
  }
  return out;
}

describe("raw file holes (SEEK_DATA)", () => {
  it("GIVEN a sparse raw file WHEN its extents are listed THEN data ranges equal qemu-img map's and cover the file in order", async () => {
    assert.ok(fileHoles() !== undefined, "koffi loads and lseek is callable on Linux");
    await withTempDir(async (dir) => {
      const path = join(dir, "sparse.raw");
      const sizeBytes = await sparseFile(path);
      const disk = await openDisk(path);
      try {
        const extents = await collect(disk.extents());
        let at = 0;
        for (const extent of extents) {
          assert.equal(extent.offsetBytes, at, "contiguous");
          assert.ok(extent.lengthBytes > 0);
          at += extent.lengthBytes;
        }
        assert.equal(at, sizeBytes, "covers the whole file");
        const ours = merge(extents.filter((e) => e.kind === "data").map((e) => [e.offsetBytes, e.offsetBytes + e.lengthBytes]));
        assert.deepEqual(ours, await qemuDataRanges(path));
        assert.ok(extents.some((e) => e.kind === "zero"), "holes were found");
      } finally {
        await disk.close();
      }
    });
  });

  it("GIVEN a file with no data WHEN its extents are listed THEN it is one zero extent", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "empty.raw");
      const file = await open(path, "w");
      await file.truncate(5 * MiB);
      await file.close();
      const disk = await openDisk(path);
      try {
        assert.deepEqual(await collect(disk.extents()), [{ offsetBytes: 0, lengthBytes: 5 * MiB, kind: "zero" }]);
      } finally {
        await disk.close();
      }
    });
  });

  it("GIVEN PORTABLE_NO_SEEK_DATA=1 WHEN the same file is mapped and hashed THEN it is one data extent and the bytes are the same", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "sparse.raw");
      const sizeBytes = await sparseFile(path);
      const cli = join(REPO_ROOT, "sdk", "cli", "portable.ts");
      const env = { ...process.env, PORTABLE_NO_SEEK_DATA: "1" };
      const { stdout } = await run(process.execPath, [cli, "map", path, "--json"], { env });
      assert.deepEqual(JSON.parse(stdout), [{ offset: 0, length: sizeBytes, kind: "data" }]);
      const withHoles = await openDisk(path);
      try {
        const qemu = (await run("sha256sum", [path])).stdout.split(" ")[0];
        assert.equal(await sourceSha256(withHoles), qemu);
      } finally {
        await withHoles.close();
      }
    });
  });
});
