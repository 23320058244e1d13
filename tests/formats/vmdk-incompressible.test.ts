import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import { createWriteStream } from "node:fs";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { deflateSync } from "node:zlib";
import { convert } from "../../sdk/disk/convert.ts";
import { vmdkFormat } from "../../sdk/disk/formats/vmdk/index.ts";
import { looksIncompressible, sampledEntropyBits } from "../../sdk/disk/formats/vmdk/incompressible.ts";
import { streamTarget } from "../../sdk/disk/io.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { qemuImg, withTempDir } from "../harness/disk.ts";

const GRAIN = 64 * 1024;
const MiB = 1024 * 1024;

function keystream(bytes: number, seed: number): Buffer {
  return createCipheriv("aes-128-ctr", Buffer.alloc(16, seed), Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

function text(bytes: number): Buffer {
  const buf = Buffer.alloc(bytes);
  for (let at = 0, n = 0; at < bytes; n++) at += buf.write(`row ${n}: the quick brown fox jumps over the lazy dog\n`, at);
  return buf;
}

describe("vmdk stream writer: incompressible grains", () => {
  it("GIVEN random, text and half-random grains THEN only the ones deflate cannot shrink are classed incompressible", () => {
    const random = keystream(GRAIN, 1);
    assert.equal(looksIncompressible(random), true);
    assert.equal(looksIncompressible(text(GRAIN)), false);
    const half = Buffer.concat([keystream(GRAIN / 2, 2), text(GRAIN / 2)]);
    assert.equal(looksIncompressible(half), false, `half text: ${sampledEntropyBits(half)} bits`);
    // The premise: level 6 does not shrink what is classed incompressible.
    assert.ok(deflateSync(random, { level: 6 }).length >= GRAIN);
  });

  it("GIVEN a disk of random and text data WHEN written as streamOptimized THEN qemu-img finds it identical and its size matches qemu-img's", async () => {
    await withTempDir(async (dir) => {
      const raw = join(dir, "in.raw");
      const data = Buffer.concat([keystream(2 * MiB, 3), text(2 * MiB), keystream(MiB, 4)]);
      await writeFile(raw, data);
      const out = join(dir, "out.vmdk");
      const source = await openDisk(raw);
      try {
        const sink = await vmdkFormat.createWriter(streamTarget(out, createWriteStream(out)), {
          virtualSizeBytes: source.virtualSizeBytes,
          subformat: "streamOptimized",
        });
        await convert(source, sink);
      } finally {
        await source.close();
      }
      await qemuImg("compare", "-f", "raw", "-F", "vmdk", raw, out);
      // Storing the random grains must not cost size: within 1 % of qemu-img's level-6 output (our
      // layout carries a few KiB more header and table padding, whatever the grains hold).
      const peer = join(dir, "peer.vmdk");
      await qemuImg("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, peer);
      const [ours, theirs] = [(await stat(out)).size, (await stat(peer)).size];
      assert.ok(ours <= theirs * 1.01, `ours ${ours} bytes, qemu-img ${theirs}`);
    });
  });
});
