// `portable vsphere ls` and `copy-disk`, run through the exported function (the same code the
// `portable` command dispatches to), against vcsim.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { runVsphereCommand } from "../../../sdk/cli/vsphere.ts";
import type { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { createDatastoreDiskSink, parseDatastorePath } from "../../../sdk/clouds/vsphere/datastore.ts";
import { createVm, powerOnVm } from "../../../sdk/clouds/vsphere/vm.ts";
import { convert } from "../../../sdk/disk/convert.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { openVsphereSource } from "../../../sdk/clouds/vsphere/source-url.ts";
import { findVm } from "../../../sdk/clouds/vsphere/inventory.ts";
import { getProperties } from "../../../sdk/clouds/vsphere/property-collector.ts";
import { qemuImg, sourceSha256 } from "../../harness/disk.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { buildSparseRaw, connect, MiB } from "./helpers.ts";

function capture(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(Buffer.from(chunk));
      callback();
    },
  }) as Writable & { text(): string };
  stream.text = () => Buffer.concat(chunks).toString("utf8");
  return stream;
}

describe("portable vsphere (vcsim)", () => {
  let sim: Vcsim;
  let client: VsphereClient;
  let dir: string;
  let caFile: string;

  async function portable(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    const stdout = capture();
    const stderr = capture();
    const code = await runVsphereCommand(args, { stdout, stderr, env: { VSPHERE_URL: sim.url, VSPHERE_USERNAME: sim.username, VSPHERE_PASSWORD: sim.password, ...env } });
    const out = { code, stdout: stdout.text(), stderr: stderr.text() };
    assert.ok(!(out.stdout + out.stderr).includes(sim.password), "the password never shows");
    return out;
  }

  before(async () => {
    sim = await startVcsim();
    client = await connect(sim);
    dir = await mkdtemp(join(tmpdir(), "pw-vsphere-cli-"));
    caFile = join(dir, "ca.pem");
    await writeFile(caFile, sim.caPem);
    const raw = join(dir, "disk.raw");
    await buildSparseRaw(raw, 32 * MiB, 21);
    const source = await openDisk(raw, { format: "raw" });
    const sink = await createDatastoreDiskSink(client, parseDatastorePath("[LocalDS_0] cli-disks/boot.vmdk", "DC0"), { virtualSizeBytes: source.virtualSizeBytes });
    await convert(source, sink).finally(() => source.close());
    const vm = await createVm(
      client,
      { name: "cli-vm", memoryMiB: 512, disks: [{ id: "boot", sizeBytes: 32 * MiB }], guestOs: { family: "linux" } },
      { datastore: "LocalDS_0", diskFiles: { boot: "[LocalDS_0] cli-disks/boot.vmdk" } },
    );
    await powerOnVm(client, vm);
  });
  after(async () => {
    await client?.logout().catch(() => {});
    await sim?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("WHEN ls THEN every VM is listed, as a table and as JSON", async () => {
    const table = await portable(["ls", "--ca-file", caFile]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+POWER\s+CPUS\s+MEMORY\s+GUEST$/m);
    assert.match(table.stdout, /^cli-vm\s+poweredOn\s+1\s+512\.0 MiB\s+otherLinux64Guest$/m);
    const json = await portable(["ls", "--json", "--ca-file", caFile]);
    const vms = JSON.parse(json.stdout) as { name: string; powerState: string }[];
    assert.ok(vms.some((vm) => vm.name === "cli-vm" && vm.powerState === "poweredOn"));
    assert.ok(vms.length >= 5);
  });

  it("WHEN copy-disk of a running VM THEN the disk arrives as qcow2 equal to the original, with progress, read through a snapshot that is gone afterwards", async () => {
    const out = join(dir, "copy.qcow2");
    const result = await portable(["copy-disk", "cli-vm", "0", out, "-O", "qcow2", "--ca-file", caFile]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /copy cli-vm \S.* → qcow2: 100%/);
    assert.match(result.stderr, /copied cli-vm .* → .*copy\.qcow2 \(qcow2\)/);
    await qemuImg("compare", "-f", "raw", "-F", "qcow2", join(dir, "disk.raw"), out);
    const { getProperties } = await import("../../../sdk/clouds/vsphere/property-collector.ts");
    const { findVm } = await import("../../../sdk/clouds/vsphere/inventory.ts");
    const snapshot = (await getProperties(client, await findVm(client, "cli-vm"), ["snapshot"])).get("snapshot");
    assert.ok(snapshot === undefined || JSON.stringify(snapshot).indexOf("rootSnapshotList") === -1, `no snapshot left: ${JSON.stringify(snapshot)}`);
  });

  it("GIVEN bad input WHEN run THEN exit 2 with a coded message: wrong password, unknown disk, untrusted certificate, missing URL", async () => {
    const wrong = await portable(["ls", "--ca-file", caFile], { VSPHERE_PASSWORD: "nope" });
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /VSPHERE_INVALID_LOGIN/);
    const disk = await portable(["copy-disk", "cli-vm", "Hard disk 9", join(dir, "x.raw"), "--ca-file", caFile]);
    assert.equal(disk.code, 2);
    assert.match(disk.stderr, /VSPHERE_DISK_NOT_FOUND/);
    const untrusted = await portable(["ls"]);
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.stderr, /VSPHERE_TLS_UNTRUSTED/);
    const noUrl = await portable(["ls", "--insecure"], { VSPHERE_URL: undefined });
    assert.equal(noUrl.code, 2);
    assert.match(noUrl.stderr, /USAGE: give --url/);
  });

  it("GIVEN vsphere:// source URLs WHEN opened as sources THEN a running VM's disk and the datastore disk read as the image, and the snapshot is gone after", async () => {
    const env = { VSPHERE_USERNAME: sim.username, VSPHERE_PASSWORD: sim.password, VSPHERE_CA_FILE: caFile };
    const host = new URL(sim.url).host;
    const raw = await openDisk(join(dir, "disk.raw"), { format: "raw" });
    const expected = await sourceSha256(raw).finally(() => raw.close());
    for (const text of [`vsphere://${host}/vm/cli-vm?dc=DC0&disk=0`, `vsphere://${host}/cli-disks/boot.vmdk?dc=DC0&ds=LocalDS_0`]) {
      const source = await openVsphereSource(text, env);
      try {
        assert.equal(await sourceSha256(source), expected, text);
      } finally {
        await source.close();
      }
    }
    const vm = await findVm(client, "cli-vm");
    assert.equal((await getProperties(client, vm, ["snapshot"])).get("snapshot"), undefined);
    await assert.rejects(openVsphereSource(`vsphere://${host}/vm/cli-vm?dc=DC0`, env), { code: "VSPHERE_SOURCE_URL" });
    await assert.rejects(openVsphereSource(`vsphere://${host}/vm/cli-vm?dc=DC0&disk=0`, { VSPHERE_USERNAME: sim.username }), { code: "VSPHERE_CONNECTION_MISSING" });
  });
});
