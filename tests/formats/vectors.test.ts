// Conformance on images written by other tools (tests/fixtures/vectors/qemu-iotests): detection,
// our reader, and the `portable` CLI must give the results the vectors' README lists.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { isPortableError } from "../../sdk/errors.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { fileSha256, sourceSha256, withTempDir } from "../harness/disk.ts";
import { REPO_ROOT, VECTORS_DIR } from "../harness/tools.ts";

const run = promisify(execFile);
const VECTORS = join(VECTORS_DIR, "qemu-iotests");
const CLI = join(REPO_ROOT, "sdk", "cli", "portable.ts");
const ALL_ZERO_263454720 = "1ba076be94a8a64541c25aae8d5a5f8b0da758c3797af597e03acb431ff8d143";

interface Readable {
  readonly file: string;
  readonly format: string;
  readonly virtualSizeBytes: number;
  /** From the README; undefined where it says "all zero" without a hash (checked via extents). */
  readonly sha256?: string;
  /** Small enough to convert through the CLI and hash the whole output in a test. */
  readonly viaCli: boolean;
}

const READABLE: readonly Readable[] = [
  { file: "iotest-dynamic-1G.vhdx", format: "vhdx", virtualSizeBytes: 1073741824, sha256: "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478", viaCli: true },
  { file: "test-disk2vhd.vhdx", format: "vhdx", virtualSizeBytes: 268435456, sha256: "96d964042be9b58dda1725567abfb0cf9fd8380e2118754afa979c2ad445938a", viaCli: true },
  { file: "iotest-version3.vmdk", format: "vmdk", virtualSizeBytes: 17179869184, sha256: "0859bb3397bc1d30fa979c80a289ce98bfd6c1141a64594d6f3cc8cd68218faf", viaCli: false },
  { file: "d2v-zerofilled.vhd", format: "vhd", virtualSizeBytes: 263454720, sha256: ALL_ZERO_263454720, viaCli: true },
  { file: "virtualpc-dynamic.vhd", format: "vhd", virtualSizeBytes: 136363130880, viaCli: false },
  { file: "hyperv2012r2-dynamic.vhd", format: "vhd", virtualSizeBytes: 136365211648, viaCli: false },
  { file: "grub_mbr.raw", format: "raw", virtualSizeBytes: 512, sha256: "3cc502da6ecbbb8ae090212ed77ee5aadf942d2c26897753f871cdfc23e359b6", viaCli: true },
];

const REFUSED = ["afl5.img", "afl9-skyport.vmdk", "afl9-trinity.vmdk"];

async function decompress(dir: string, file: string): Promise<string> {
  const path = join(dir, file);
  const { stdout } = await run("bzip2", ["-dc", join(VECTORS, `${file}.bz2`)], { encoding: "buffer", maxBuffer: 512 * 1024 * 1024 });
  await writeFile(path, stdout);
  return path;
}

describe("shared vectors (qemu-iotests sample images)", () => {
  for (const v of READABLE) {
    it(`GIVEN ${v.file} THEN it is detected as ${v.format} with the listed size and content`, async () => {
      await withTempDir(async (dir) => {
        const path = await decompress(dir, v.file);
        const disk = await openDisk(path);
        try {
          assert.equal(disk.format, v.format);
          assert.equal(disk.virtualSizeBytes, v.virtualSizeBytes);
          if (v.sha256 === undefined) {
            // "All zero, nothing allocated": every extent is a known zero.
            for await (const extent of disk.extents()) assert.equal(extent.kind, "zero", `extent at ${extent.offsetBytes}`);
          } else {
            assert.equal(await sourceSha256(disk), v.sha256);
          }
        } finally {
          await disk.close();
        }

        const { stdout } = await run(process.execPath, [CLI, "inspect", "--json", path]);
        const summary = JSON.parse(stdout) as { format: string; virtualSizeBytes: number };
        assert.equal(summary.format, v.format);
        assert.equal(summary.virtualSizeBytes, v.virtualSizeBytes);

        if (v.viaCli && v.sha256 !== undefined) {
          const out = join(dir, "out.raw");
          await run(process.execPath, [CLI, "convert", path, out, "-O", "raw"]);
          assert.equal(await fileSha256(out), v.sha256);
        }
      });
    });
  }

  for (const file of REFUSED) {
    it(`GIVEN the fuzzed ${file} THEN opening it fails with a FormatError and the CLI exits 2`, async () => {
      await withTempDir(async (dir) => {
        const path = await decompress(dir, file);
        await assert.rejects(openDisk(path), (err) => isPortableError(err) && err.name === "FormatError");
        const result = await run(process.execPath, [CLI, "inspect", path]).then(
          () => ({ code: 0, stderr: "" }),
          (err: { code: number; stderr: string }) => err,
        );
        assert.equal(result.code, 2);
        assert.match(result.stderr, /^portable: [A-Z0-9_]+: /);
      });
    });
  }

  it("GIVEN iotest-dirtylog-10G-4M.vhdx THEN it is replayed in memory to the listed hash or refused as needing replay, and the file is unchanged", async () => {
    await withTempDir(async (dir) => {
      const path = await decompress(dir, "iotest-dirtylog-10G-4M.vhdx");
      const before = await fileSha256(path);
      try {
        const disk = await openDisk(path);
        try {
          assert.equal(await sourceSha256(disk), "179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f");
        } finally {
          await disk.close();
        }
      } catch (err) {
        assert.ok(isPortableError(err) && err.code === "VHDX_LOG_REPLAY_NEEDED", String(err));
      }
      assert.equal(await fileSha256(path), before, "the source is never written");
    });
  });
});
