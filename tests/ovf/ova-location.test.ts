import assert from "node:assert/strict";
import { readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { bufferSource } from "../../sdk/disk/io.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { isPortableError } from "../../sdk/errors.ts";
import { diskSourceText } from "../../sdk/migrate/targets.ts";
import { describePackage } from "../../sdk/ovf/describe.ts";
import { formatOvaLocation, isOvaArchive, parseOvaLocation, resolveOvaLocation } from "../../sdk/ovf/ova-location.ts";
import { openOvaEntry } from "../../sdk/ovf/package.ts";
import { openSource } from "../../sdk/clouds/registry.ts";
import { sourceSha256, withTempDir } from "../harness/disk.ts";
import { buildOva, MINIMAL_OVF, rawTar } from "./helpers.ts";

/** This process's open descriptors on `path` (Linux): a leaked archive handle shows here. */
async function handlesOn(path: string): Promise<number> {
  const targets = await Promise.all((await readdir("/proc/self/fd")).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
  return targets.filter((target) => target === path).length;
}

describe("OVA locations: parsing", () => {
  const cases: readonly [string, { path: string; entry: string } | undefined][] = [
    ["app.ova!disk1.vmdk", { path: "app.ova", entry: "disk1.vmdk" }],
    ["/srv/App.OVA!disk1.vmdk", { path: "/srv/App.OVA", entry: "disk1.vmdk" }],
    ["/srv/a!b/app.ova!sub/disk.vmdk", { path: "/srv/a!b/app.ova", entry: "sub/disk.vmdk" }],
    ["app.ova!", undefined],
    ["app.ova", undefined],
    ["disk.vmdk", undefined],
    ["disk.qcow2!x", undefined],
    ["app.ova!a!b", undefined],
  ];
  for (const [text, expected] of cases) {
    it(`GIVEN "${text}" WHEN parsed THEN ${expected === undefined ? "it is no OVA location" : `${expected.path} and ${expected.entry}`}`, () => {
      assert.deepEqual(parseOvaLocation(text), expected);
      if (expected !== undefined) assert.equal(formatOvaLocation(expected.path, expected.entry), text);
    });
  }

  it("GIVEN a plain file whose name has the form a.ova!x WHEN resolved THEN the file wins and no location is made", async () => {
    await withTempDir(async (dir) => {
      const odd = join(dir, "odd.ova!disk.raw");
      assert.deepEqual(await resolveOvaLocation(odd), { path: join(dir, "odd.ova"), entry: "disk.raw" });
      await writeFile(odd, Buffer.alloc(4096));
      assert.equal(await resolveOvaLocation(odd), undefined);
      const disk = await openSource(odd);
      try {
        assert.equal(disk.format, "raw");
        assert.equal(disk.virtualSizeBytes, 4096);
      } finally {
        await disk.close();
      }
    });
  });
});

describe("OVA disks by entry name", () => {
  it("GIVEN an OVA with a streamOptimized disk WHEN `portable ovf`'s location for it is opened by openSource THEN the bytes are the original's and closing releases the archive", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const described = await describePackage(built.ova);
      const location = described.systems[0]?.disks[0]?.location;
      assert.equal(location, built.location);
      assert.deepEqual(parseOvaLocation(location), { path: built.ova, entry: built.entry });
      const disk = await openSource(location);
      const original = await openDisk(built.raw);
      try {
        assert.equal(await handlesOn(built.ova), 1);
        assert.equal(disk.format, "vmdk");
        assert.equal(disk.subformat, "streamOptimized");
        assert.equal(disk.virtualSizeBytes, built.virtualSizeBytes);
        assert.equal(await sourceSha256(disk), await sourceSha256(original));
      } finally {
        await disk.close();
        await original.close();
      }
      assert.equal(await handlesOn(built.ova), 0);
    });
  });

  it("GIVEN an entry no descriptor disk uses WHEN opened by name THEN its format is detected from its bytes", async () => {
    await withTempDir(async (dir) => {
      const data = Buffer.alloc(8192, 0x42);
      const built = await buildOva(dir, { extra: [{ name: "notes/scratch.img", data }] });
      const disk = await openOvaEntry(built.ova, "notes/scratch.img");
      try {
        assert.equal(disk.format, "raw");
        assert.deepEqual(await disk.read(0, data.length), data);
      } finally {
        await disk.close();
      }
    });
  });

  it("GIVEN a format named by the caller WHEN the disk entry is opened THEN that format wins over the descriptor's", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const disk = await openSource(built.location, "raw");
      try {
        assert.equal(disk.format, "raw");
        assert.equal(disk.virtualSizeBytes, (await readFile(built.vmdk)).length);
      } finally {
        await disk.close();
      }
    });
  });

  it("GIVEN an entry the OVA does not hold WHEN opened THEN OVA_ENTRY_MISSING lists the disk locations and no handle leaks", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const error = await openOvaEntry(built.ova, "disk2.vmdk").then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(isPortableError(error), String(error));
      assert.equal(error.code, "OVA_ENTRY_MISSING");
      assert.equal(error.name, "FormatError");
      assert.match(error.message, new RegExp(`${built.entry.replace(".", "\\.")}`));
      assert.equal(error.context.diskEntries, built.entry);
      assert.equal(await handlesOn(built.ova), 0);
    });
  });

  it("GIVEN a bare OVA WHEN opened as a disk THEN OVA_IS_ARCHIVE names the location to use; with a format given it reads as asked", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const error = await openSource(built.ova).then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.ok(isPortableError(error), String(error));
      assert.equal(error.code, "OVA_IS_ARCHIVE");
      assert.ok(error.message.includes(built.location), error.message);
      const raw = await openSource(built.ova, "raw");
      try {
        assert.equal(raw.virtualSizeBytes, (await readFile(built.ova)).length);
      } finally {
        await raw.close();
      }
    });
  });

  it("GIVEN a spec disk source of kind ova WHEN turned into source text THEN it is the absolute location and openSource reads the disk", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const path = relative(process.cwd(), built.ova);
      const text = diskSourceText({ kind: "ova", path, entry: built.entry });
      assert.deepEqual(text, { text: `${resolve(path)}!${built.entry}` });
      const disk = await openSource(text.text);
      try {
        assert.equal(disk.virtualSizeBytes, built.virtualSizeBytes);
      } finally {
        await disk.close();
      }
    });
  });
});

describe("OVA archives told from disk images", () => {
  /** A pre-POSIX (v7) tar: the same headers without the ustar magic, checksums redone. */
  function v7Tar(entries: Parameters<typeof rawTar>[0]): Buffer {
    const bytes = rawTar(entries);
    for (let at = 0; at + 512 <= bytes.length; at += 512) {
      if (bytes.subarray(at + 257, at + 262).toString("latin1") !== "ustar") continue;
      bytes.fill(0, at + 257, at + 265);
      bytes.fill(0x20, at + 148, at + 156);
      let sum = 0;
      for (let i = at; i < at + 512; i++) sum += bytes[i] ?? 0;
      bytes.write(`${sum.toString(8).padStart(6, "0")}\0 `, at + 148, "latin1");
    }
    return bytes;
  }

  it("GIVEN a ustar OVA, a v7 tar holding a .ovf, a v7 tar without one, a VMDK and a raw disk WHEN probed THEN only the two OVAs are archives", async () => {
    await withTempDir(async (dir) => {
      const built = await buildOva(dir);
      const probe = async (name: string, data: Buffer): Promise<boolean> => isOvaArchive(bufferSource(name, data));
      assert.equal(await probe("ustar.ova", await readFile(built.ova)), true);
      assert.equal(await probe("v7.ova", v7Tar([{ name: "x.ovf", data: Buffer.from(MINIMAL_OVF) }])), true);
      assert.equal(await probe("v7.tar", v7Tar([{ name: "readme.txt", data: Buffer.from("hi") }])), false);
      assert.equal(await probe("disk.vmdk", await readFile(built.vmdk)), false);
      assert.equal(await probe("disk.raw", await readFile(built.raw)), false);
    });
  });
});
