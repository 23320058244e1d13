// Seeds for the fuzz targets, from real sources only: the repository's fixtures, the vectors in
// tests/fixtures/vectors (small files whole, big images as a slice of their head, where the metadata
// lives), images qemu-img writes, guest disks built with sfdisk/mke2fs/mkfs.vfat/mkntfs, and
// SOAP responses captured from vcsim. Built once into a cache folder in the temp dir (renamed
// into place when complete), so later runs start at once; bump SEED_RECIPE_VERSION when a recipe
// changes. Tools that are missing only shrink the corpus (each builder is best-effort), so a
// machine without vcsim still fuzzes the SOAP parser on the hand-written responses.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, symlink, truncate, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import tar from "tar-stream";
import { DEBIAN_12_OS_RELEASE, buildWindowsImage } from "../harness/guest-image.ts";
import { REPO_ROOT, TOOLS, VECTORS_DIR } from "../harness/tools.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";
import { makeSeed, type Seed } from "./engine.ts";

export const SEED_RECIPE_VERSION = 1;
const run = promisify(execFile);
/** Every tool here finishes in seconds; a minute means it hangs. */
const TOOL_TIMEOUT_MS = 60_000;
const MiB = 1024 * 1024;
const VECTORS = process.env.PW_VECTORS_DIR ?? VECTORS_DIR;
/** Fixed times and ids, so the ext4/vfat images come out the same on every machine. */
const EPOCH = 1_700_000_000;
const TOOL_ENV = { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH), E2FSPROGS_FAKE_TIME: String(EPOCH), TZ: "UTC", LC_ALL: "C" };
const ROOT_UUID = "6a1f3c2e-4b5d-4e6f-8a7b-9c0d1e2f3a4b";
const HASH_SEED = "11111111-2222-4333-8444-555555555555";
const KERNEL = "6.1.0-28-amd64";

export interface SeedSet {
  readonly byTarget: ReadonlyMap<string, readonly Seed[]>;
  /** Files a VMDK descriptor seed names (its extents), by file name. */
  readonly companions: ReadonlyMap<string, Buffer>;
}

async function tool(command: string, args: readonly string[], input?: string): Promise<void> {
  if (input === undefined) {
    await run(command, args, { env: TOOL_ENV, timeout: TOOL_TIMEOUT_MS, maxBuffer: 16 * MiB });
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { env: TOOL_ENV, stdio: ["pipe", "ignore", "pipe"], timeout: TOOL_TIMEOUT_MS });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${err}`))));
    child.stdin.end(input);
  });
}

/** The first `limit` bytes of a bzip2 file (all of it when smaller): the header slice of a big image. */
function bunzipHead(path: string, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("bzip2", ["-dc", path], { stdio: ["ignore", "pipe", "ignore"], timeout: TOOL_TIMEOUT_MS });
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks).subarray(0, limit));
    };
    child.stdout.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= limit) {
        finish();
        child.kill();
      }
    });
    child.once("error", reject);
    child.once("close", finish);
  });
}

/** Writes `seeds/<target>/<name>`; a builder that fails is reported and skipped. */
class Builder {
  readonly notes: string[] = [];
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }
  async put(target: string, name: string, data: Buffer | string): Promise<void> {
    await mkdir(join(this.dir, target), { recursive: true });
    await writeFile(join(this.dir, target, name), data);
  }
  async companion(name: string, data: Buffer): Promise<void> {
    await this.put("_companions", name, data);
  }
  async step(what: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      this.notes.push(`${what}: skipped (${(err as Error).message.split("\n")[0]})`);
    }
  }
}

async function qemuImg(...args: string[]): Promise<void> {
  await tool(TOOLS.qemuImg, args);
}

async function qemuIo(format: string, image: string): Promise<void> {
  // Data at the start, inside a later cluster, straddling a boundary, and near the end.
  const writes = ["write -P 0xab 0 64k", "write -P 0x5c 1048576 4k", "write -P 0x11 2095104 8k", "write -P 0xee 4190208 4k"];
  await tool(TOOLS.qemuImg.replace(/qemu-img$/, "qemu-io"), ["-f", format, ...writes.flatMap((w) => ["-c", w]), image]);
}

async function buildFormatImages(b: Builder, work: string): Promise<void> {
  const size = "4M";
  const made = async (name: string, format: string, options: string): Promise<string> => {
    const path = join(work, name);
    await qemuImg("create", "-q", "-f", format, ...(options === "" ? [] : ["-o", options]), path, size);
    await qemuIo(format, path);
    return path;
  };
  const raw = await made("data.raw", "raw", "");
  for (const [name, options] of [["v3-4k.qcow2", "compat=1.1,cluster_size=4096"], ["v2-64k.qcow2", "compat=0.10,cluster_size=65536"], ["extl2.qcow2", "compat=1.1,cluster_size=16384,extended_l2=on"]] as const) {
    await b.step(name, async () => b.put("qcow2", name, await readFile(await made(name, "qcow2", options))));
  }
  await b.step("qcow2 compressed", async () => {
    for (const [name, options] of [["zlib.qcow2", "cluster_size=4096"], ["zstd.qcow2", "cluster_size=4096,compression_type=zstd"]] as const) {
      const path = join(work, name);
      await qemuImg("convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", options, raw, path);
      await b.put("qcow2", name, await readFile(path));
    }
  });
  await b.step("qcow2 snapshot", async () => {
    const path = await made("snap.qcow2", "qcow2", "cluster_size=4096");
    await qemuImg("snapshot", "-c", "s1", path);
    await tool(TOOLS.qemuImg.replace(/qemu-img$/, "qemu-io"), ["-f", "qcow2", "-c", "write -P 0x77 0 4k", path]);
    await b.put("qcow2", "snap.qcow2", await readFile(path));
  });
  await b.step("vmdk sparse", async () => b.put("vmdk", "sparse.vmdk", await readFile(await made("sparse.vmdk", "vmdk", ""))));
  await b.step("vmdk stream", async () => {
    const path = join(work, "stream.vmdk");
    await qemuImg("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, path);
    await b.put("vmdk", "stream.vmdk", await readFile(path));
  });
  // Descriptor + extent files: the descriptor is the seed, the extents are its companions.
  for (const [name, subformat] of [["flat.vmdk", "monolithicFlat"], ["split.vmdk", "twoGbMaxExtentSparse"], ["splitflat.vmdk", "twoGbMaxExtentFlat"]] as const) {
    await b.step(`vmdk ${subformat}`, async () => {
      const folder = join(work, subformat);
      await mkdir(folder);
      const path = join(folder, name);
      await qemuImg("create", "-q", "-f", "vmdk", "-o", `subformat=${subformat}`, path, size);
      await qemuIo("vmdk", path);
      for (const file of await readdir(folder)) {
        const data = await readFile(join(folder, file));
        if (file === name) await b.put("vmdk-descriptor", name, data);
        else {
          await b.companion(file, data);
          if (data.readUInt32LE(0) === 0x564d444b) await b.put("vmdk", file, data);
        }
      }
    });
  }
  await b.step("vmdk zero descriptor", () => b.put("vmdk-descriptor", "zero.vmdk", '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 8192 ZERO\nRW 8192 FLAT "flat-flat.vmdk" 0\n\nddb.adapterType = "lsilogic"\n'));
  await b.step("vhd", async () => {
    await b.put("vhd", "dynamic.vhd", await readFile(await made("dynamic.vhd", "vpc", "subformat=dynamic")));
    await b.put("vhd", "fixed.vhd", await readFile(await made("fixed.vhd", "vpc", "subformat=fixed")));
  });
  await b.step("vhdx", async () => {
    await b.put("vhdx", "dynamic.vhdx", await readFile(await made("dynamic.vhdx", "vhdx", "block_size=1048576,log_size=1048576")));
    await b.put("vhdx", "fixed.vhdx", await readFile(await made("fixed.vhdx", "vhdx", "subformat=fixed,block_size=1048576,log_size=1048576")));
  });
}

async function buildVectorSeeds(b: Builder): Promise<void> {
  const iotests = join(VECTORS, "qemu-iotests");
  const vectors: [string, string, number][] = [
    ["vmdk", "iotest-version3.vmdk", 1 * MiB], ["vmdk", "afl9-skyport.vmdk", 1 * MiB], ["vmdk", "afl9-trinity.vmdk", 1 * MiB],
    ["vhd", "d2v-zerofilled.vhd", 1 * MiB], ["vhd", "virtualpc-dynamic.vhd", 1 * MiB], ["vhd", "hyperv2012r2-dynamic.vhd", 1 * MiB], ["vhd", "afl5.img", 1 * MiB],
    ["vhdx", "iotest-dynamic-1G.vhdx", 4 * MiB], ["vhdx", "test-disk2vhd.vhdx", 4 * MiB], ["vhdx", "iotest-dirtylog-10G-4M.vhdx", 6 * MiB],
    ["raw-detect", "grub_mbr.raw", 1 * MiB],
  ];
  for (const [target, file, limit] of vectors) {
    await b.step(`vector ${file}`, async () => b.put(target, file, await bunzipHead(join(iotests, `${file}.bz2`), limit)));
  }
  await b.step("govmomi ova", async () => {
    await b.put("ova", "ttylinux.ova", await bunzipHead(join(VECTORS, "govmomi", "ttylinux-pc_i486-16.1.ova.bz2"), 4 * MiB));
    await b.put("ovf", "ttylinux.ovf", await readFile(join(VECTORS, "govmomi", "ttylinux-pc_i486-16.1.ovf")));
  });
}

async function buildTextSeeds(b: Builder): Promise<void> {
  await b.step("ovf fixtures", async () => {
    const folder = join(REPO_ROOT, "tests", "fixtures", "ovf");
    for (const file of (await readdir(folder)).filter((f) => f.endsWith(".ovf"))) await b.put("ovf", file, await readFile(join(folder, file)));
  });
  await b.step("vmx", async () => {
    // The ESXi VMX of the VMX tests, read from their source so the two never drift.
    const text = await readFile(join(REPO_ROOT, "tests", "ovf", "vmx.test.ts"), "utf8");
    const match = /ESXI_VMX = `([^`]*)`/.exec(text);
    if (match?.[1] !== undefined) await b.put("vmx", "esxi.vmx", match[1]);
    await b.put(
      "vmx",
      "workstation.vmx",
      '.encoding = "UTF-8"\nconfig.version = "8"\nvirtualHW.version = "19"\ndisplayName = "db |22main|22"\nguestOS = "ubuntu-64"\nfirmware = "efi"\n' +
        'uefi.secureBoot.enabled = "TRUE"\nnumvcpus = "4"\ncpuid.coresPerSocket = "2"\nmemsize = "8192"\nnvme0.present = "TRUE"\nnvme0:0.present = "TRUE"\n' +
        'nvme0:0.fileName = "db.vmdk"\nsata0.present = "TRUE"\nsata0:1.present = "TRUE"\nsata0:1.deviceType = "cdrom-image"\nsata0:1.fileName = "ubuntu.iso"\n' +
        'ide0:0.present = "TRUE"\nide0:0.fileName = "data.vmdk"\nethernet0.present = "TRUE"\nethernet0.virtualDev = "vmxnet3"\nethernet0.addressType = "static"\n' +
        'ethernet0.address = "00:50:56:01:02:03"\nethernet0.networkName = "VM Network"\nbios.hddOrder = "nvme0:0"\n',
    );
  });
  const env = (inner: string): string =>
    `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`;
  await b.step("soap hand-written", async () => {
    await b.put("soap", "fault.xml", env(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>The attempted operation cannot be performed in the current state (Powered on).</faultstring><detail><InvalidPowerStateFault xmlns="urn:vim25" xsi:type="InvalidPowerState"><requestedState>poweredOn</requestedState><existingState>poweredOn</existingState></InvalidPowerStateFault></detail></soapenv:Fault>`));
    await b.put("soap", "task-error.xml", env(`<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="Task">task-42</obj><propSet><name>info</name><val xsi:type="TaskInfo"><key>task-42</key><state>error</state><error><fault xsi:type="FileNotFound"><file>[LocalDS_0] x.vmdk</file></fault><localizedMessage>File [LocalDS_0] x.vmdk was not found</localizedMessage></error></val></propSet></objects><token>1</token></returnval></RetrievePropertiesExResponse>`));
    await b.put("soap", "moref.xml", env(`<CreateVM_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-7</returnval></CreateVM_TaskResponse>`));
  });
}

function soapCall(sim: Vcsim, body: string, cookie?: string): Promise<{ text: string; cookie?: string }> {
  const envelope = `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:vim25"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;
  return new Promise((resolve, reject) => {
    const req = request(sim.url, { method: "POST", ca: sim.caPem, timeout: 30_000, headers: { "content-type": "text/xml; charset=utf-8", soapaction: "urn:vim25/8.0.2.0", ...(cookie === undefined ? {} : { cookie }) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", () => {
        const setCookie = res.headers["set-cookie"]?.[0]?.split(";")[0];
        resolve({ text: Buffer.concat(chunks).toString("utf8"), ...(setCookie === undefined ? {} : { cookie: setCookie }) });
      });
      res.once("error", reject);
    });
    req.once("timeout", () => req.destroy(new Error("vcsim did not answer in 30 s")));
    req.once("error", reject);
    req.end(envelope);
  });
}

/** Real responses: service content, a session, a VM's properties, a task error, faults. */
async function captureVcsim(b: Builder): Promise<void> {
  if (!existsSync(TOOLS.vcsim)) throw new Error(`${TOOLS.vcsim} is missing (npm run setup builds it)`);
  const sim = await startVcsim();
  try {
    const si = '<_this type="ServiceInstance">ServiceInstance</_this>';
    await b.put("soap", "vcsim-service-content.xml", (await soapCall(sim, `<RetrieveServiceContent>${si}</RetrieveServiceContent>`)).text);
    const login = await soapCall(sim, `<Login><_this type="SessionManager">SessionManager</_this><userName>${sim.username}</userName><password>${sim.password}</password></Login>`);
    // The response holds the session, never the password; the cookie is not stored.
    await b.put("soap", "vcsim-login.xml", login.text);
    const cookie = login.cookie;
    const badLogin = await soapCall(sim, `<Login><_this type="SessionManager">SessionManager</_this><userName>nobody</userName><password>wrong</password></Login>`);
    await b.put("soap", "vcsim-fault-login.xml", badLogin.text);
    const find = await soapCall(sim, `<FindByInventoryPath><_this type="SearchIndex">SearchIndex</_this><inventoryPath>DC0/vm/DC0_H0_VM0</inventoryPath></FindByInventoryPath>`, cookie);
    await b.put("soap", "vcsim-find.xml", find.text);
    const vm = /<returnval type="VirtualMachine">([^<]+)</.exec(find.text)?.[1] ?? "vm-1";
    const props = (type: string, ref: string, paths: readonly string[]): string =>
      `<RetrievePropertiesEx><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>${type}</type>${paths.map((p) => `<pathSet>${p}</pathSet>`).join("")}</propSet><objectSet><obj type="${type}">${ref}</obj></objectSet></specSet><options></options></RetrievePropertiesEx>`;
    await b.put("soap", "vcsim-vm-props.xml", (await soapCall(sim, props("VirtualMachine", vm, ["config.hardware.device", "runtime.powerState", "summary.config", "layoutEx"]), cookie)).text);
    const power = await soapCall(sim, `<PowerOnVM_Task><_this type="VirtualMachine">${vm}</_this></PowerOnVM_Task>`, cookie);
    await b.put("soap", "vcsim-power-on.xml", power.text);
    const task = /<returnval type="Task">([^<]+)</.exec(power.text)?.[1];
    if (task !== undefined) {
      for (let i = 0; i < 20; i++) {
        const info = await soapCall(sim, props("Task", task, ["info"]), cookie);
        if (/<state>(error|success)<\/state>/.test(info.text)) {
          await b.put("soap", "vcsim-task-info.xml", info.text);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await b.put("soap", "vcsim-fault-notfound.xml", (await soapCall(sim, props("VirtualMachine", "vm-does-not-exist", ["name"]), cookie)).text);
  } finally {
    await sim.stop();
  }
}

async function buildOva(b: Builder): Promise<void> {
  const stream = await readFile(join(b.dir, "vmdk", "stream.vmdk"));
  const ovf = await readFile(join(VECTORS, "govmomi", "ttylinux-pc_i486-16.1.ovf"), "utf8");
  const diskName = "ttylinux-pc_i486-16.1-disk1.vmdk";
  const descriptor = ovf.replace(/ovf:size="\d+"/, `ovf:size="${stream.length}"`);
  const sha = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");
  const manifest = `SHA256(ttylinux.ovf)= ${sha(descriptor)}\nSHA256(${diskName})= ${sha(stream)}\n`;
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.once("end", resolve);
    pack.once("error", reject);
  });
  const entry = (name: string, data: Buffer | string): Promise<void> =>
    new Promise((resolve, reject) => pack.entry({ name, mtime: new Date(EPOCH * 1000), mode: 0o644 }, data, (err) => (err ? reject(err) : resolve())));
  await entry("ttylinux.ovf", descriptor);
  await entry("ttylinux.mf", manifest);
  await entry(diskName, stream);
  // A name over 100 bytes, so the archive carries a pax extended header as well.
  await entry(`${"notes-".repeat(20)}.txt`, "x");
  pack.finalize();
  await ended;
  await b.put("ova", "built.ova", Buffer.concat(chunks));
}

async function buildInspectImages(b: Builder, work: string): Promise<void> {
  const staging = join(work, "root");
  const files: Record<string, string | Buffer> = {
    "usr/lib/os-release": DEBIAN_12_OS_RELEASE,
    "etc/fstab": `UUID=${ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n/dev/sdb1 /srv ext4 defaults 0 2\n`,
    "etc/hostname": "guest\n",
    "boot/grub/grub.cfg": `set default="0"\nmenuentry 'Debian GNU/Linux' {\n\tlinux\t/boot/vmlinuz-${KERNEL} root=UUID=${ROOT_UUID} ro quiet\n\tinitrd\t/boot/initrd.img-${KERNEL}\n}\n`,
    [`boot/vmlinuz-${KERNEL}`]: Buffer.concat([Buffer.from("MZ"), Buffer.alloc(2048, 0x90)]),
    [`usr/lib/modules/${KERNEL}/modules.builtin`]: "kernel/drivers/ata/ahci.ko\nkernel/drivers/block/virtio_blk.ko\n",
    [`usr/lib/modules/${KERNEL}/kernel/drivers/nvme/host/nvme.ko`]: "\x7fELF",
    [`usr/lib/modules/${KERNEL}/kernel/drivers/scsi/hv_storvsc.ko.xz`]: "\xfd7zXZ",
    [`usr/lib/modules/${KERNEL}/kernel/drivers/net/ethernet/amazon/ena/ena.ko`]: "\x7fELF",
    [`usr/lib/modules/${KERNEL}/kernel/drivers/virtio/virtio_pci.ko.zst`]: "(\xb5/\xfd",
  };
  for (let i = 0; i < 40; i++) files[`usr/lib/filler-${i.toString().padStart(3, "0")}.conf`] = `# filler ${i}\n`;
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(staging, path)), { recursive: true });
    await writeFile(join(staging, path), content);
  }
  await symlink("../usr/lib/os-release", join(staging, "etc/os-release"));
  await symlink("usr/lib", join(staging, "lib"));
  const ext4 = async (name: string, sizeBytes: number, blockBytes: number): Promise<string> => {
    const image = join(work, name);
    await tool("mke2fs", ["-q", "-F", "-t", "ext4", "-b", String(blockBytes), "-U", ROOT_UUID, "-L", "root", "-E", `hash_seed=${HASH_SEED},root_owner=0:0`, "-d", staging, image, `${sizeBytes / 1024}k`]);
    return image;
  };
  const assemble = async (name: string, sizeBytes: number, table: string, parts: readonly { image: string; offsetBytes: number }[]): Promise<void> => {
    const disk = join(work, name);
    await writeFile(disk, "");
    await truncate(disk, sizeBytes);
    await tool("sfdisk", ["--no-reread", "--no-tell-kernel", "-q", disk], table);
    const fh = await open(disk, "r+");
    try {
      for (const part of parts) {
        const data = await readFile(part.image);
        await fh.write(data, 0, data.length, part.offsetBytes);
      }
      if (!table.includes("gpt")) await fh.write(Buffer.from([0xfa, 0xf4, 0xeb, 0xfd]), 0, 4, 0);
    } finally {
      await fh.close();
    }
    await b.put("inspect", name, await readFile(disk));
  };
  await b.step("inspect mbr ext4", async () => {
    const root = await ext4("mbr-root.img", 6 * MiB, 1024);
    await assemble("mbr-ext4.raw", 8 * MiB, "label: dos\nlabel-id: 0x5eed1234\nunit: sectors\n\nstart=2048, size=12288, type=83, bootable\n", [{ image: root, offsetBytes: MiB }]);
  });
  await b.step("inspect gpt uefi", async () => {
    const esp = join(work, "esp.img");
    await writeFile(esp, "");
    await truncate(esp, 2 * MiB);
    await tool("mkfs.vfat", ["--invariant", "-i", "1234ABCD", "-n", "ESP", esp]);
    const loader = join(work, "BOOTX64.EFI");
    await writeFile(loader, Buffer.concat([Buffer.from("MZ"), Buffer.alloc(510)]));
    await tool("mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT"]);
    await tool("mcopy", ["-i", esp, loader, "::/EFI/BOOT/BOOTX64.EFI"]);
    const root = await ext4("gpt-root.img", 4 * MiB, 4096);
    await assemble(
      "gpt-uefi.raw",
      8 * MiB,
      "label: gpt\nlabel-id: 0F0E0D0C-0B0A-4908-8706-050403020100\nunit: sectors\n\n" +
        "start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=A0000000-0000-4000-8000-000000000001\n" +
        "start=6144, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=A0000000-0000-4000-8000-000000000002\n",
      [{ image: esp, offsetBytes: MiB }, { image: root, offsetBytes: 3 * MiB }],
    );
  });
  await b.step("inspect ntfs (empty)", async () => {
    const ntfs = join(work, "ntfs.img");
    await writeFile(ntfs, "");
    await truncate(ntfs, 6 * MiB);
    await tool("mkntfs", ["-F", "-q", "-Q", "-s", "512", "-c", "4096", "-p", "2048", "-H", "255", "-S", "63", "-L", "Windows", ntfs]);
    await assemble("ntfs-empty.raw", 8 * MiB, "label: dos\nlabel-id: 0x5eed5678\nunit: sectors\n\nstart=2048, size=12288, type=7, bootable\n", [{ image: ntfs, offsetBytes: MiB }]);
  });
  await b.step("inspect windows (ntfs-3g)", async () => {
    // Windows/System32/drivers with enough files to need index blocks; needs FUSE.
    const path = await buildWindowsImage(work, { drivers: ["vmbus.sys", "storvsc.sys", "netvsc.sys"] }, "windows");
    await b.put("inspect", "windows.raw", await readFile(path));
  });
}

async function buildAll(dir: string): Promise<string[]> {
  const b = new Builder(dir);
  const work = await mkdtemp(join(tmpdir(), "pw-fuzz-work-"));
  try {
    await b.step("format images", () => buildFormatImages(b, work));
    await buildVectorSeeds(b);
    await buildTextSeeds(b);
    await b.step("vcsim capture", () => captureVcsim(b));
    await b.step("ova", () => buildOva(b));
    await b.step("inspect images", () => buildInspectImages(b, work));
    // raw-detect sees one of each format, so detection itself is fuzzed across magics.
    for (const [target, name] of [["vmdk", "sparse.vmdk"], ["vmdk", "stream.vmdk"], ["vhd", "dynamic.vhd"], ["vhd", "fixed.vhd"], ["vhdx", "dynamic.vhdx"], ["qcow2", "v3-4k.qcow2"], ["vmdk-descriptor", "flat.vmdk"]] as const) {
      await b.step(`raw-detect ${name}`, async () => b.put("raw-detect", name, await readFile(join(dir, target, name))));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  await writeFile(join(dir, "NOTES.txt"), b.notes.join("\n"));
  return b.notes;
}

/** The cache folder: PW_FUZZ_SEED_DIR, or one per recipe version in the temp dir. */
export function seedCacheDir(): string {
  return process.env.PW_FUZZ_SEED_DIR ?? join(tmpdir(), `pw-fuzz-seeds-v${SEED_RECIPE_VERSION}`);
}

/** Builds the seed cache if missing; returns the notes of builders that were skipped. */
export async function ensureSeeds(log: (line: string) => void = () => {}): Promise<string> {
  const dir = seedCacheDir();
  if (existsSync(join(dir, ".complete"))) return dir;
  const building = `${dir}.building-${process.pid}`;
  await rm(building, { recursive: true, force: true });
  await mkdir(building, { recursive: true });
  log(`fuzz: building seeds in ${dir} (once)`);
  const notes = await buildAll(building);
  for (const note of notes) log(`fuzz: seed ${note}`);
  await writeFile(join(building, ".complete"), "");
  try {
    await rename(building, dir);
  } catch {
    // Another process finished first; its seeds are the same.
    await rm(building, { recursive: true, force: true });
  }
  return dir;
}

/** Loads the seeds of the given targets from the cache folder. */
export async function loadSeeds(dir: string, targets: readonly string[]): Promise<SeedSet> {
  const byTarget = new Map<string, Seed[]>();
  for (const target of targets) {
    const folder = join(dir, target);
    const names = existsSync(folder) ? (await readdir(folder)).sort() : [];
    byTarget.set(target, await Promise.all(names.map(async (n) => makeSeed(`${target}/${n}`, await readFile(join(folder, n))))));
  }
  const companions = new Map<string, Buffer>();
  const folder = join(dir, "_companions");
  if (existsSync(folder)) for (const n of await readdir(folder)) companions.set(basename(n), await readFile(join(folder, n)));
  return { byTarget, companions };
}
