// ESXi delta disks (COWD, vmfsSparse): a delta laid out by layoutCowdDelta over a flat base reads
// back as the base with the delta's sectors on top, through our reader and through qemu-img's
// independent one (QEMU reads VMFSSPARSE extents and follows parentFileNameHint).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { FormatError } from "../../sdk/errors.ts";
import { layoutCowdDelta, parseCowdHeader, type SectorRun } from "../../sdk/disk/formats/vmdk/cowd.ts";
import { formatDescriptor } from "../../sdk/disk/formats/vmdk/descriptor.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { qemuRawSha256, sourceSha256, withTempDir } from "../harness/disk.ts";

const SECTOR = 512;
const MiB = 1024 * 1024;

function descriptor(createType: "vmfs" | "vmfsSparse", extent: string, cid: string, sectors: number, parent?: { cid: string; fileNameHint: string }): string {
  return formatDescriptor({ createType, fileName: extent, capacitySectors: sectors, adapterType: "lsilogic", hwVersion: 11, cid, longContentId: "0".repeat(32), ...(parent === undefined ? {} : { parent }) });
}

/** Writes base (flat) + delta (COWD) into `dir`; returns the expected raw bytes. */
async function chain(dir: string, sizeBytes: number, runs: readonly SectorRun[]): Promise<Buffer> {
  const sectors = sizeBytes / SECTOR;
  const base = randomBytes(sizeBytes);
  await writeFile(join(dir, "disk-flat.vmdk"), base);
  await writeFile(join(dir, "disk.vmdk"), descriptor("vmfs", "disk-flat.vmdk", "0000abcd", sectors));
  const layout = layoutCowdDelta(sectors, runs)!;
  const expected = Buffer.from(base);
  const parts: Buffer[] = [layout.head, ...layout.tables()];
  for (const run of runs) {
    // Zeros in one run: a delta must record a block that became zero, not fall through to the parent.
    const data = run.sectors === 8 ? Buffer.alloc(run.sectors * SECTOR) : randomBytes(run.sectors * SECTOR);
    data.copy(expected, run.startSector * SECTOR);
    parts.push(data);
  }
  const file = Buffer.concat(parts);
  assert.equal(file.length, layout.totalBytes);
  assert.equal(parts.slice(0, -runs.length).reduce((n, b) => n + b.length, 0), layout.metadataBytes);
  await writeFile(join(dir, "disk-pw2-delta.vmdk"), file);
  await writeFile(join(dir, "disk-pw2.vmdk"), descriptor("vmfsSparse", "disk-pw2-delta.vmdk", "0000beef", sectors, { cid: "0000abcd", fileNameHint: "disk.vmdk" }));
  return expected;
}

describe("vmdk: ESXi COWD delta extents (vmfsSparse)", () => {
  it("GIVEN a delta over a flat base WHEN read by us (parent as backing) and by qemu-img THEN both give the base with the delta on top", async () => {
    await withTempDir(async (dir) => {
      const size = 9 * MiB;
      // Runs across grain-table boundaries (2 MiB each), at the first and last sector, and one of zeros.
      const runs: SectorRun[] = [
        { startSector: 0, sectors: 1 },
        { startSector: 4090, sectors: 20 },
        { startSector: 8192, sectors: 8 },
        { startSector: 12000, sectors: 1024 },
        { startSector: size / SECTOR - 3, sectors: 3 },
      ];
      const expected = await chain(dir, size, runs);
      const want = createHash("sha256").update(expected).digest("hex");
      const parent = await openDisk(join(dir, "disk.vmdk"));
      const delta = await openDisk(join(dir, "disk-pw2.vmdk"), { backing: parent });
      try {
        assert.equal(delta.virtualSizeBytes, size);
        assert.equal(await sourceSha256(delta), want);
        const extents = [];
        for await (const extent of delta.extents()) extents.push(extent);
        assert.ok(extents.length > 0);
      } finally {
        await delta.close();
        await parent.close();
      }
      assert.equal(await qemuRawSha256(join(dir, "disk-pw2.vmdk"), "vmdk"), want);
    });
  });

  it("GIVEN a delta descriptor WHEN opened without its parent THEN it is refused as a differencing disk", async () => {
    await withTempDir(async (dir) => {
      await chain(dir, 2 * MiB, [{ startSector: 10, sectors: 2 }]);
      await assert.rejects(openDisk(join(dir, "disk-pw2.vmdk")), (error: Error & { code?: string }) => error.code === "VMDK_DIFFERENCING");
    });
  });

  it("GIVEN hostile COWD headers THEN each is refused with a coded error", () => {
    const good = layoutCowdDelta(4096, [{ startSector: 0, sectors: 1 }])!.head;
    assert.equal(parseCowdHeader(good, "good").numGTEsPerGT, 4096);
    const cases: Array<[string, (b: Buffer) => void]> = [
      ["VMDK_UNSUPPORTED_VERSION", (b) => b.writeUInt32LE(7, 4)],
      ["VMDK_GRAIN_SIZE_INVALID", (b) => b.writeUInt32LE(3, 16)],
      ["VMDK_GD_TOO_SMALL", (b) => b.writeUInt32LE(0, 24)],
      ["VMDK_GD_OFFSET_INVALID", (b) => b.writeUInt32LE(1, 20)],
    ];
    for (const [code, corrupt] of cases) {
      const head = Buffer.from(good);
      corrupt(head);
      assert.throws(() => parseCowdHeader(head, "bad"), (error: unknown) => error instanceof FormatError && error.code === code, code);
    }
  });

  it("GIVEN runs out of order, or a delta past 32-bit sectors THEN the layout refuses or says to write a whole disk", () => {
    assert.throws(() => layoutCowdDelta(4096, [{ startSector: 10, sectors: 2 }, { startSector: 5, sectors: 1 }]), RangeError);
    assert.equal(layoutCowdDelta(2 ** 33, [{ startSector: 0, sectors: 1 }]), undefined);
  });
});
