// The CLI path: `portable convert` to and from azblob:// and SAS URLs against Azurite, with
// progress on stderr and no credential in any output.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { BlobSASPermissions, type ContainerClient } from "@azure/storage-blob";
import { startAzurite, type Azurite } from "../../harness/azurite.ts";
import { qemuImg, qemuIo, withTempDir } from "../../harness/disk.ts";
import { REPO_ROOT } from "../../harness/tools.ts";
import { containerFor, MiB } from "./helpers.ts";

const exec = promisify(execFile);
const CLI = join(REPO_ROOT, "sdk", "cli", "portable.ts");

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function portable(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 * MiB });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("portable convert with Azure page blobs", { timeout: 120_000 }, () => {
  let azurite: Azurite;
  let container: ContainerClient;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    azurite = await startAzurite();
    container = await containerFor(azurite, "cli");
    env = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  });
  after(async () => {
    await azurite?.stop();
  });

  it("GIVEN a qcow2 WHEN converted to azblob:// and back to qcow2 THEN qemu-img finds the images identical", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "src.qcow2");
      await qemuImg("create", "-q", "-f", "qcow2", image, String(24 * MiB + 4096));
      await qemuIo("qcow2", image, ["write -P 0x11 0 1M", "write -P 0x22 10M 64k", `write -P 0x33 ${24 * MiB} 4096`]);
      const url = `azblob://${azurite.accountName}/cli/vm1/os.vhd`;
      const up = await portable(env, "convert", image, url);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stderr, /100%/, "progress ends with a 100% line");
      assert.match(up.stderr, /→ http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/cli\/vm1\/os\.vhd \(fixed vhd\)/);
      assert.equal(up.stdout.trim(), `${azurite.blobEndpoint}/cli/vm1/os.vhd`);
      assert.ok(!up.stderr.includes(azurite.accountKey) && !up.stdout.includes(azurite.accountKey));
      assert.equal((await container.getPageBlobClient("vm1/os.vhd").getProperties()).contentLength, 25 * MiB + 512);

      const again = await portable(env, "convert", image, url);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /TARGET_EXISTS/);

      const info = await portable(env, "inspect", "--json", url);
      assert.equal(info.code, 0, info.stderr);
      assert.deepEqual(
        (({ format, subformat, virtualSizeBytes }) => ({ format, subformat, virtualSizeBytes }))(JSON.parse(info.stdout) as Record<string, unknown>),
        { format: "vhd", subformat: "fixed", virtualSizeBytes: 25 * MiB },
      );

      const back = join(dir, "back.qcow2");
      const down = await portable(env, "convert", url, back, "-O", "qcow2");
      assert.equal(down.code, 0, down.stderr);
      await qemuImg("compare", "-q", "-f", "qcow2", "-F", "qcow2", image, back);
    });
  });

  it("GIVEN SAS URLs WHEN converting to and from them THEN it works without other credentials and the SAS never shows", async () => {
    await withTempDir(async (dir) => {
      const image = join(dir, "src.raw");
      await qemuImg("create", "-q", "-f", "raw", image, String(8 * MiB));
      await qemuIo("raw", image, ["write -P 0x5a 2M 512k"]);
      const blob = container.getPageBlobClient("sas/disk.vhd");
      const sasUrl = await blob.generateSasUrl({ permissions: BlobSASPermissions.parse("racw"), expiresOn: new Date(Date.now() + 3_600_000) });
      const signature = new URL(sasUrl).searchParams.get("sig")!;
      const noCredentials = { AZURE_STORAGE_CONNECTION_STRING: "" };

      const up = await portable(noCredentials, "convert", image, sasUrl, "-O", "vhd");
      assert.equal(up.code, 0, up.stderr);
      const down = await portable(noCredentials, "convert", sasUrl, join(dir, "back.raw"), "-O", "raw");
      assert.equal(down.code, 0, down.stderr);
      await qemuImg("compare", "-q", "-f", "raw", "-F", "raw", image, join(dir, "back.raw"));
      const wrongFormat = await portable(noCredentials, "convert", image, sasUrl, "-O", "qcow2");
      assert.equal(wrongFormat.code, 2);
      assert.match(wrongFormat.stderr, /USAGE/);
      const refused = await portable(noCredentials, "convert", image, sasUrl);
      assert.match(refused.stderr, /TARGET_EXISTS/);
      for (const r of [up, down, wrongFormat, refused]) {
        assert.ok(!r.stdout.includes(signature) && !r.stderr.includes(signature), r.stderr);
        assert.ok(!r.stderr.includes("sig="), r.stderr);
      }
    });
  });
});
