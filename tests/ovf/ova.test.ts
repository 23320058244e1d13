import assert from "node:assert/strict";
import { createWriteStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { FormatError } from "../../sdk/errors.ts";
import { openDisk } from "../../sdk/disk/open.ts";
import { digestSource } from "../../sdk/ovf/manifest.ts";
import { writeOva } from "../../sdk/ovf/ova-writer.ts";
import { openOva, openOvfFolder } from "../../sdk/ovf/package.ts";
import { indexTar } from "../../sdk/ovf/tar-index.ts";
import { bufferSource } from "../../sdk/disk/io.ts";
import { parseWorkload, type Workload } from "../../sdk/spec/workload.ts";
import { qemuImg, qemuIo, sourceSha256, withTempDir } from "../harness/disk.ts";
import { MINIMAL_OVF, paxRecords, rawTar } from "./helpers.ts";

const MiB = 2 ** 20;

function workload(): Workload {
  return parseWorkload({
    name: "app server",
    cpu: { sockets: 1, coresPerSocket: 2 },
    memoryMiB: 1024,
    firmware: { type: "uefi", secureBoot: true, vtpm: true },
    disks: [
      { id: "root", sizeBytes: 24 * MiB, bus: "nvme", bootOrder: 0 },
      { id: "data", sizeBytes: 8 * MiB, bus: "scsi" },
    ],
    nics: [{ network: "VM Network", macPolicy: { kind: "static", address: "00:50:56:01:02:03" }, model: "VMXNET3" }],
    guestOs: { family: "linux", distribution: "ubuntu", architecture: "x86_64" },
    tags: { team: "infra", "cost-centre": "42" },
  });
}

/** A raw image with data at the start, the middle and the last sector. */
async function patternedRaw(dir: string, name: string, sizeBytes: number): Promise<string> {
  const path = join(dir, name);
  await qemuImg("create", "-q", "-f", "raw", path, String(sizeBytes));
  await qemuIo("raw", path, ["write -P 0x5a 0 1M", `write -P 0x33 ${sizeBytes / 2} 2M`, `write -P 0x7e ${sizeBytes - 512} 512`]);
  return path;
}

async function writeTestOva(dir: string): Promise<{ ova: string; raws: string[] }> {
  const raws = [await patternedRaw(dir, "root.raw", 24 * MiB), await patternedRaw(dir, "data.raw", 8 * MiB)];
  const sources = await Promise.all(raws.map((r) => openDisk(r)));
  const ova = join(dir, "out.ova");
  try {
    await writeOva(createWriteStream(ova), workload(), [
      { id: "root", source: sources[0]! },
      { id: "data", source: sources[1]! },
    ]);
  } finally {
    await Promise.all(sources.map((s) => s.close()));
  }
  return { ova, raws };
}

function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "no error",
    (err: unknown) => {
      assert.ok(err instanceof FormatError, `expected FormatError, got ${String(err)}`);
      return err.code;
    },
  );
}

describe("OVA write and read", () => {
  it("GIVEN a workload with two disks WHEN written as an OVA and read back THEN the order is ovf, disks, mf; the workload, disk bytes and manifest all match", async () => {
    await withTempDir(async (dir) => {
      const { ova, raws } = await writeTestOva(dir);
      const entries = await indexTar(bufferSource("ova", await readFile(ova)));
      assert.deepEqual(
        entries.map((e) => e.name),
        ["app-server.ovf", "app-server-disk1.vmdk", "app-server-disk2.vmdk", "app-server.mf"],
      );
      const pkg = await openOva(ova);
      try {
        assert.deepEqual(pkg.problems, []);
        const read = pkg.descriptor.systems[0]?.workload;
        const expected = workload();
        assert.deepEqual({ ...read, disks: read?.disks.map(({ source: _source, ...rest }) => rest), tags: { ...read?.tags, "ovf.virtualSystemType": undefined } }, {
          ...expected,
          tags: { ...expected.tags, "ovf.virtualSystemType": undefined },
        });
        assert.deepEqual(read?.disks[0]?.source, { kind: "ova", path: ova, entry: "app-server-disk1.vmdk" });
        const report = await pkg.verifyManifest();
        assert.equal(report?.ok, true, JSON.stringify(report));
        assert.deepEqual(
          report?.checks.map((c) => `${c.algorithm} ${c.file}`),
          ["sha256 app-server.ovf", "sha256 app-server-disk1.vmdk", "sha256 app-server-disk2.vmdk"],
        );
        for (const [index, id] of ["root", "data"].entries()) {
          const disk = await pkg.openDisk(id);
          const original = await openDisk(raws[index]!);
          try {
            assert.equal(disk.subformat, "streamOptimized");
            assert.equal(await sourceSha256(disk), await sourceSha256(original), `disk ${id}`);
          } finally {
            await disk.close();
            await original.close();
          }
        }
        // qemu-img, as the peer, reads the VMDK inside the OVA as the same bytes.
        const entry = await pkg.openFile("app-server-disk1.vmdk");
        const extracted = join(dir, "peer.vmdk");
        await writeFile(extracted, await entry.read(0, entry.sizeBytes));
        await entry.close();
        assert.match(await qemuImg("compare", "-f", "raw", "-F", "vmdk", raws[0]!, extracted), /identical/);
      } finally {
        await pkg.close();
      }
    });
  });

  it("GIVEN an OVA whose disk was altered after writing WHEN its manifest is checked THEN the disk's line fails and the rest pass", async () => {
    await withTempDir(async (dir) => {
      const { ova } = await writeTestOva(dir);
      const bytes = await readFile(ova);
      const entry = (await indexTar(bufferSource("ova", bytes))).find((e) => e.name === "app-server-disk2.vmdk")!;
      bytes[entry.offsetBytes + 600] = (bytes[entry.offsetBytes + 600] ?? 0) ^ 0xff;
      await writeFile(ova, bytes);
      const pkg = await openOva(ova);
      try {
        const report = await pkg.verifyManifest();
        assert.equal(report?.ok, false);
        assert.deepEqual(
          report?.checks.map((c) => `${c.file} ${c.ok}`),
          ["app-server.ovf true", "app-server-disk1.vmdk true", "app-server-disk2.vmdk false"],
        );
      } finally {
        await pkg.close();
      }
    });
  });

  it("GIVEN an OVA with a gzip-compressed streamOptimized disk WHEN its disk is read THEN it streams without extraction and matches the original", async () => {
    await withTempDir(async (dir) => {
      const raw = await patternedRaw(dir, "src.raw", 40 * MiB);
      const vmdk = join(dir, "src.vmdk");
      await qemuImg("convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk);
      const gz = gzipSync(await readFile(vmdk));
      const ovf = MINIMAL_OVF.replace("<References/>", `<References><File ovf:href="disk.vmdk" ovf:id="f1" ovf:size="${gz.length}" ovf:compression="gzip"/></References><DiskSection><Info>d</Info><Disk ovf:capacity="${40 * MiB}" ovf:diskId="d1" ovf:fileRef="f1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>`).replace(
        "</VirtualHardwareSection>",
        "<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>6</rasd:ResourceType></Item><Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection>",
      );
      const ova = join(dir, "gz.ova");
      await writeFile(ova, rawTar([{ name: "tiny.ovf", data: Buffer.from(ovf) }, { name: "disk.vmdk", data: gz }]));
      const pkg = await openOva(ova);
      try {
        assert.deepEqual(pkg.problems, []);
        const disk = await pkg.openDisk("d1");
        const original = await openDisk(raw);
        try {
          assert.equal(disk.virtualSizeBytes, 40 * MiB);
          assert.equal(await sourceSha256(disk), await sourceSha256(original));
        } finally {
          await disk.close();
          await original.close();
        }
      } finally {
        await pkg.close();
      }
    });
  });
});

describe("OVF packages: chunks and folders", () => {
  it("GIVEN a disk split into ovf:chunkSize chunks WHEN read from the OVA THEN the chunks join into the original disk", async () => {
    await withTempDir(async (dir) => {
      const raw = await patternedRaw(dir, "src.raw", 16 * MiB);
      const vmdk = join(dir, "src.vmdk");
      await qemuImg("convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk);
      const bytes = await readFile(vmdk);
      const chunkSize = 64 * 1024;
      const chunks = [];
      for (let at = 0, i = 0; at < bytes.length; at += chunkSize, i++) chunks.push({ name: `disk.vmdk.${String(i).padStart(9, "0")}`, data: bytes.subarray(at, at + chunkSize) });
      assert.ok(chunks.length > 2);
      const ovf = MINIMAL_OVF.replace("<References/>", `<References><File ovf:href="disk.vmdk" ovf:id="f1" ovf:size="${bytes.length}" ovf:chunkSize="${chunkSize}"/></References><DiskSection><Info>d</Info><Disk ovf:capacity="${16 * MiB}" ovf:diskId="d1" ovf:fileRef="f1"/></DiskSection>`).replace(
        "</VirtualHardwareSection>",
        "<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item><Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection>",
      );
      const ova = join(dir, "chunked.ova");
      await writeFile(ova, rawTar([{ name: "c.ovf", data: Buffer.from(ovf) }, ...chunks]));
      const pkg = await openOva(ova);
      try {
        assert.deepEqual(pkg.problems, []);
        const disk = await pkg.openDisk("d1");
        const original = await openDisk(raw);
        try {
          assert.equal(await sourceSha256(disk), await sourceSha256(original));
        } finally {
          await disk.close();
          await original.close();
        }
      } finally {
        await pkg.close();
      }
    });
  });

  it("GIVEN a folder package with a monolithicFlat VMDK and a manifest WHEN opened THEN the manifest verifies and the disk reads through its extent file", async () => {
    await withTempDir(async (dir) => {
      const raw = await patternedRaw(dir, "src.raw", 8 * MiB);
      await qemuImg("convert", "-q", "-O", "vmdk", "-o", "subformat=monolithicFlat", raw, join(dir, "flat.vmdk"));
      const ovfText = MINIMAL_OVF.replace("<References/>", `<References><File ovf:href="flat.vmdk" ovf:id="f1"/></References><DiskSection><Info>d</Info><Disk ovf:capacity="${8 * MiB}" ovf:diskId="d1" ovf:fileRef="f1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#monolithicFlat"/></DiskSection>`).replace(
        "</VirtualHardwareSection>",
        "<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>6</rasd:ResourceType></Item><Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection>",
      );
      const ovf = join(dir, "pkg.ovf");
      await writeFile(ovf, ovfText);
      const digest = async (file: string): Promise<string> => digestSource(bufferSource(file, await readFile(join(dir, file))), "sha256");
      await writeFile(join(dir, "pkg.mf"), `SHA256(pkg.ovf)= ${await digest("pkg.ovf")}\nSHA256(flat.vmdk)= ${await digest("flat.vmdk")}\n`);
      const pkg = await openOvfFolder(ovf);
      try {
        assert.deepEqual(pkg.problems, []);
        assert.equal((await pkg.verifyManifest())?.ok, true);
        assert.deepEqual(pkg.descriptor.systems[0]?.workload?.disks[0]?.source, { kind: "file", path: join(dir, "flat.vmdk") });
        const disk = await pkg.openDisk("d1");
        const original = await openDisk(raw);
        try {
          assert.equal(await sourceSha256(disk), await sourceSha256(original));
        } finally {
          await disk.close();
          await original.close();
        }
      } finally {
        await pkg.close();
      }
    });
  });

  it("GIVEN a folder descriptor whose File climbs out of its folder WHEN opened THEN PATH_ESCAPE is a problem and the disk is not opened", async () => {
    await withTempDir(async (dir) => {
      const ovf = MINIMAL_OVF.replace("<References/>", `<References><File ovf:href="../../../etc/passwd" ovf:id="f1"/></References><DiskSection><Info>d</Info><Disk ovf:capacity="512" ovf:diskId="d1" ovf:fileRef="f1"/></DiskSection>`).replace(
        "</VirtualHardwareSection>",
        "<Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item><Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item></VirtualHardwareSection>",
      );
      const path = join(dir, "escape.ovf");
      await writeFile(path, ovf);
      const pkg = await openOvfFolder(path);
      try {
        assert.deepEqual(
          pkg.problems.map((p) => `${p.code} ${p.path}`),
          ["PATH_ESCAPE References.File[f1].href"],
        );
        assert.equal(await codeOf(pkg.openDisk("d1")), "OVF_FILE_MISSING");
      } finally {
        await pkg.close();
      }
    });
  });
});

describe("OVA safety", () => {
  const descriptor = { name: "x.ovf", data: Buffer.from(MINIMAL_OVF) };
  const cases: readonly [string, Parameters<typeof rawTar>[0], string][] = [
    ["an entry named ../escape.vmdk", [descriptor, { name: "../escape.vmdk", data: Buffer.alloc(10) }], "OVA_ENTRY_PATH"],
    ["an entry under a folder that climbs out", [descriptor, { name: "a/../../b", data: Buffer.alloc(10) }], "OVA_ENTRY_PATH"],
    ["an absolute entry /etc/cron.d/x", [descriptor, { name: "/etc/cron.d/x", data: Buffer.alloc(10) }], "OVA_ENTRY_PATH"],
    ["a Windows drive path", [descriptor, { name: "C:\\evil.vmdk", data: Buffer.alloc(10) }], "OVA_ENTRY_PATH"],
    ["a pax path that climbs out", [descriptor, { name: "PaxHeader", type: "x", data: paxRecords({ path: "../../pax-escape" }) }, { name: "innocent", data: Buffer.alloc(1) }], "OVA_ENTRY_PATH"],
    ["a symbolic link", [descriptor, { name: "disk.vmdk", type: "2", linkName: "/etc/shadow" }], "OVA_ENTRY_LINK"],
    ["a hard link", [descriptor, { name: "disk.vmdk", type: "1", linkName: "x.ovf" }], "OVA_ENTRY_LINK"],
    ["a device node", [descriptor, { name: "dev", type: "3" }], "OVA_ENTRY_TYPE"],
    ["the same name twice", [descriptor, { name: "d.vmdk", data: Buffer.alloc(1) }, { name: "d.vmdk", data: Buffer.alloc(2) }], "OVA_ENTRY_DUPLICATE"],
    ["an entry claiming more bytes than the archive has", [descriptor, { name: "d.vmdk", data: Buffer.alloc(10), sizeField: 10 * MiB }], "OVA_ENTRY_TRUNCATED"],
  ];
  for (const [label, entries, code] of cases) {
    it(`GIVEN an OVA with ${label} WHEN opened THEN ${code}`, async () => {
      await withTempDir(async (dir) => {
        const ova = join(dir, "hostile.ova");
        await writeFile(ova, rawTar(entries));
        assert.equal(await codeOf(openOva(ova)), code);
      });
    });
  }

  it("GIVEN a tar header with a bad checksum WHEN opened THEN OVA_TAR_CHECKSUM", async () => {
    await withTempDir(async (dir) => {
      const bytes = rawTar([descriptor]);
      bytes[10] = 0x41;
      const ova = join(dir, "bad.ova");
      await writeFile(ova, bytes);
      assert.equal(await codeOf(openOva(ova)), "OVA_TAR_CHECKSUM");
    });
  });

  it("GIVEN more entries than OVA_MAX_ENTRIES WHEN indexed THEN OVA_TOO_MANY_ENTRIES", async () => {
    const entries = Array.from({ length: 4097 }, (_, i) => ({ name: `f${i}` }));
    assert.equal(await codeOf(indexTar(bufferSource("many.ova", rawTar(entries)))), "OVA_TOO_MANY_ENTRIES");
  });

  it("GIVEN an OVA without a descriptor WHEN opened THEN OVA_NO_DESCRIPTOR; with the descriptor second THEN a problem says so", async () => {
    await withTempDir(async (dir) => {
      const none = join(dir, "none.ova");
      await writeFile(none, rawTar([{ name: "disk.vmdk", data: Buffer.alloc(5) }]));
      assert.equal(await codeOf(openOva(none)), "OVA_NO_DESCRIPTOR");
      const late = join(dir, "late.ova");
      await writeFile(late, rawTar([{ name: "readme.txt", data: Buffer.from("hi") }, descriptor]));
      const pkg = await openOva(late);
      try {
        assert.deepEqual(
          pkg.problems.map((p) => p.code),
          ["OVA_DESCRIPTOR_NOT_FIRST"],
        );
        const report = await pkg.verifyManifest();
        assert.equal(report, undefined, "no manifest in this package");
        assert.equal(await digestSource(await pkg.openFile("readme.txt"), "sha256"), "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4");
      } finally {
        await pkg.close();
      }
    });
  });

  it("GIVEN a pax header carrying a long name and size WHEN indexed THEN the pax values win over the header fields", async () => {
    const long = `${"d".repeat(150)}.vmdk`;
    const entries = await indexTar(bufferSource("pax.ova", rawTar([descriptor, { name: "PaxHeader", type: "x", data: paxRecords({ path: long }) }, { name: "short", data: Buffer.alloc(700) }])));
    assert.deepEqual(
      entries.map((e) => [e.name, e.sizeBytes]),
      [
        ["x.ovf", descriptor.data.length],
        [long, 700],
      ],
    );
  });
});
