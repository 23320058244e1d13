import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { fileSha256, qemuImg, qemuInfo, qemuIo, withTempDir } from "../harness/disk.ts";
import { REPO_ROOT } from "../harness/tools.ts";

const exec = promisify(execFile);
const CLI = join(REPO_ROOT, "sdk", "cli", "portable.ts");
const MiB = 1024 * 1024;

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function portable(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, ...args], { maxBuffer: 256 * MiB });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A 24 MiB qcow2 with data at the start, in the middle, and in the last sector. */
async function patternedQcow2(dir: string): Promise<string> {
  const image = join(dir, "src.qcow2");
  await qemuImg("create", "-q", "-f", "qcow2", image, String(24 * MiB));
  await qemuIo("qcow2", image, ["write -P 0x11 0 1M", "write -P 0x22 10M 64k", `write -P 0x33 ${24 * MiB - 512} 512`]);
  return image;
}

describe("portable CLI", () => {
  it("GIVEN a qcow2 WHEN inspected THEN it reports format, virtual size and allocation", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const result = await portable("inspect", "--json", image);
      assert.equal(result.code, 0, result.stderr);
      const summary = JSON.parse(result.stdout) as { format: string; virtualSizeBytes: number; allocatedBytes: number };
      assert.equal(summary.format, "qcow2");
      assert.equal(summary.virtualSizeBytes, 24 * MiB);
      assert.ok(summary.allocatedBytes >= MiB + 64 * 1024 + 512 && summary.allocatedBytes < 4 * MiB, String(summary.allocatedBytes));
      const text = await portable("inspect", image);
      assert.match(text.stdout, /format: qcow2/);
    });
  });

  it("GIVEN a qcow2 WHEN converted to streamOptimized VMDK and back to raw THEN qemu-img and our compare agree it is identical", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const vmdk = join(dir, "out.vmdk");
      const convert = await portable("convert", image, vmdk, "-O", "vmdk", "-o", "subformat=streamOptimized");
      assert.equal(convert.code, 0, convert.stderr);
      assert.match(convert.stderr, /100%/, "non-TTY progress ends with a 100% line");
      assert.equal((await qemuInfo(vmdk))["virtual-size"], 24 * MiB);
      await qemuImg("compare", "-f", "qcow2", "-F", "vmdk", image, vmdk);
      const same = await portable("compare", image, vmdk);
      assert.equal(same.code, 0, same.stdout + same.stderr);
      assert.match(same.stdout, /identical/);

      const raw = join(dir, "back.raw");
      assert.equal((await portable("convert", vmdk, raw, "-O", "raw")).code, 0);
      await qemuImg("compare", "-f", "qcow2", "-F", "raw", image, raw);
    });
  });

  it("GIVEN two images differing at one byte WHEN compared THEN exit 1 names that offset", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const other = join(dir, "other.qcow2");
      await qemuImg("convert", "-O", "qcow2", image, other);
      await qemuIo("qcow2", other, ["write -P 0x99 12345664 512"]);
      const result = await portable("compare", image, other);
      assert.equal(result.code, 1);
      assert.match(result.stdout, /Content mismatch at offset 12345664!/);
    });
  });

  it("GIVEN an image WHEN mapped as JSON THEN extents are contiguous and cover the disk", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const result = await portable("map", "--json", image);
      assert.equal(result.code, 0, result.stderr);
      const extents = JSON.parse(result.stdout) as Array<{ offset: number; length: number; kind: string }>;
      let at = 0;
      for (const e of extents) {
        assert.equal(e.offset, at);
        at += e.length;
      }
      assert.equal(at, 24 * MiB);
      assert.equal(extents[0]?.kind, "data");
      assert.equal(extents.at(-1)?.kind, "data");
    });
  });

  it("GIVEN raw output to '-' THEN the bytes arrive on stdout", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const out = join(dir, "peer.raw");
      await qemuImg("convert", "-O", "raw", image, out);
      const { stdout } = await exec(process.execPath, [CLI, "convert", image, "-", "-O", "raw"], {
        encoding: "buffer",
        maxBuffer: 64 * MiB,
      });
      assert.ok(stdout.equals(await readFile(out)));
    });
  });

  it("GIVEN an existing output WHEN converting without --overwrite THEN it refuses and leaves the file alone", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const out = join(dir, "keep.raw");
      await writeFile(out, "precious");
      const before = await fileSha256(out);
      const result = await portable("convert", image, out, "-O", "raw");
      assert.equal(result.code, 2);
      assert.match(result.stderr, /^portable: TARGET_EXISTS: /);
      assert.equal(await fileSha256(out), before);
    });
  });

  it("GIVEN bad arguments THEN each gets a coded error and exit 2", async () => {
    await withTempDir(async (dir) => {
      const image = await patternedQcow2(dir);
      const cases: Array<[string[], RegExp]> = [
        [["convert", image, join(dir, "x"), "-O", "floppy"], /UNKNOWN_FORMAT/],
        [["convert", image, join(dir, "y"), "-O", "qcow2", "-o", "clusterSize=3"], /INVALID_WRITER_OPTIONS/],
        [["convert", image, join(dir, "z"), "-O", "raw", "-o", "nonsense"], /USAGE/],
        [["convert", image], /USAGE/],
        [["inspect", join(dir, "missing.img")], /ENOENT|no such file/],
        [["frobnicate"], /USAGE/],
      ];
      for (const [args, pattern] of cases) {
        const result = await portable(...args);
        assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
        assert.match(result.stderr, pattern, args.join(" "));
      }
    });
  });
});
