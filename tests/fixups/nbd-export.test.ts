// The read-only NBD export (sdk/fixups/nbd-export.ts) against QEMU's own NBD client: qemu-img
// reads the whole export and finds it equal to the image, sizes agree, and writes are refused
// while the image stays unchanged.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { openDisk } from "../../sdk/disk/open.ts";
import type { DiskSource } from "../../sdk/disk/types.ts";
import { exportDisk, type NbdExport } from "../../sdk/fixups/nbd-export.ts";
import { fileSha256 } from "../harness/disk.ts";

const exec = promisify(execFile);
const SIZE = 48 * 1024 * 1024 + 4096;

describe("read-only NBD export of a DiskSource", () => {
  let dir: string;
  let image: string;
  let source: DiskSource;
  let nbd: NbdExport;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pw-nbd-"));
    image = join(dir, "disk.raw");
    const data = Buffer.alloc(SIZE);
    randomFillSync(data, 0, 16 * 1024 * 1024);
    randomFillSync(data, 40 * 1024 * 1024, 4096);
    await writeFile(image, data);
    source = await openDisk(image, { format: "raw" });
    nbd = await exportDisk(source, join(dir, "nbd.sock"));
  });
  after(async () => {
    await nbd?.close();
    await source?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("GIVEN an exported image WHEN qemu-img reads the export THEN its size and every byte match", async () => {
    const { stdout } = await exec("qemu-img", ["info", "--output=json", "-f", "raw", nbd.url]);
    assert.equal((JSON.parse(stdout) as { "virtual-size": number })["virtual-size"], SIZE);
    const compared = await exec("qemu-img", ["compare", "-f", "raw", "-F", "raw", nbd.url, image]);
    assert.match(compared.stdout, /Images are identical/);
  });

  it("GIVEN a client that wants to write WHEN it opens the export THEN QEMU refuses (the export says read-only) and the image is unchanged", async () => {
    const before = await fileSha256(image);
    const result = await exec("qemu-io", ["-f", "raw", "-c", "write -P 0x55 0 4096", nbd.url]).then(
      (r) => ({ ok: true, text: r.stdout + r.stderr }),
      (e: { stdout?: string; stderr?: string }) => ({ ok: false, text: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
    );
    assert.equal(result.ok, false, result.text);
    assert.match(result.text, /Permission denied|read-only/i);
    assert.equal(await fileSha256(image), before);
    // The export still serves after a refused client.
    const compared = await exec("qemu-img", ["compare", "-f", "raw", "-F", "raw", nbd.url, image]);
    assert.match(compared.stdout, /Images are identical/);
  });
});
