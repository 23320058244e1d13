// The local datastore and machine lifecycle: disks stay inside the folder, machines start with a
// pid file and QMP socket, stop cleanly, restart, and leave no process behind (checked by pid).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatastore, type LocalDatastore } from "../../../sdk/clouds/local/datastore.ts";
import { machineStatus, startMachine, stopMachine, type RunningMachine } from "../../../sdk/clouds/local/lifecycle.ts";
import { defineMachine } from "../../../sdk/clouds/local/machine.ts";
import { connectQmp } from "../../../sdk/clouds/local/qmp.ts";
import { resolveFirmware } from "../../../sdk/clouds/local/firmware.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import { openDisk } from "../../../sdk/disk/open.ts";
import { parseWorkload } from "../../../sdk/spec/workload.ts";
import { memorySource, qemuInfo } from "../../harness/disk.ts";

const MiB = 1024 * 1024;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it holds no resources but is not running either.
  try {
    const procStat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return procStat.slice(procStat.lastIndexOf(")") + 2, procStat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function hasCode(code: string): (err: unknown) => boolean {
  return (err) => isPortableError(err) && err.code === code;
}

describe("local: datastore", () => {
  let root: string;
  let store: LocalDatastore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "pw-ds-"));
    store = await openDatastore(root);
  });
  after(() => rm(root, { recursive: true, force: true }));

  it("GIVEN names that would leave the folder WHEN used THEN they are refused", () => {
    for (const name of ["../x", "a/b", "", ".hidden", "x".repeat(64)]) {
      assert.throws(() => store.diskPath(name, "qcow2"), hasCode("LOCAL_NAME_INVALID"), name);
    }
    assert.throws(() => store.diskPath("ok", "vmdk" as "raw"), hasCode("LOCAL_DATASTORE_FORMAT"));
    assert.equal(store.diskPath("web.root-1", "raw"), join(root, "disks", "web.root-1.raw"));
  });

  it("GIVEN a source WHEN imported as qcow2 THEN qemu-img reads it back, it is listed, and a second import is refused", async () => {
    const data = Buffer.alloc(4 * MiB);
    data.fill(0xab, MiB, 2 * MiB);
    const disk = await store.importDisk("root", memorySource(data));
    assert.equal(disk.format, "qcow2");
    assert.equal((await qemuInfo(disk.path)).format, "qcow2");
    const back = await openDisk(disk.path);
    try {
      assert.deepEqual(await back.read(MiB, 16), Buffer.alloc(16, 0xab));
    } finally {
      await back.close();
    }
    await assert.rejects(store.importDisk("root", memorySource(data), { format: "raw" }), hasCode("LOCAL_DISK_EXISTS"));
    await store.createDisk("blank", 8 * MiB, { format: "raw" });
    assert.deepEqual((await store.listDisks()).map((d) => `${d.name}.${d.format}`), ["blank.raw", "root.qcow2"]);
    await store.removeDisk("blank");
    assert.equal(await store.findDisk("blank"), undefined);
  });
});

describe("local: machine lifecycle", () => {
  let root: string;
  let store: LocalDatastore;
  const started: number[] = [];
  before(async () => {
    // A short folder: QMP's unix socket path must stay under 108 bytes.
    root = await mkdtemp(join(tmpdir(), "pw-lm-"));
    store = await openDatastore(root);
  });
  after(async () => {
    for (const pid of started) {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    }
    await rm(root, { recursive: true, force: true });
  });

  for (const firmware of ["bios", "uefi"] as const) {
    it(`GIVEN a ${firmware} machine with a blank disk WHEN started, stopped over QMP and restarted THEN no process is left`, { timeout: 120_000 }, async () => {
      const name = `vm-${firmware}`;
      const disk = await store.createDisk(`${name}-root`, 64 * MiB);
      const workload = parseWorkload({
        name,
        memoryMiB: 256,
        firmware: { type: firmware },
        guestOs: { family: "linux" },
        disks: [{ id: "root", sizeBytes: 64 * MiB, bus: "sata", bootOrder: 0 }],
        nics: [{ network: "default" }],
      });
      const machine = defineMachine(workload, { disks: { root: { path: disk.path, format: "qcow2" } } });

      const first: RunningMachine = await startMachine(store, machine);
      started.push(first.pid);
      assert.ok(alive(first.pid));
      assert.equal(Number((await readFile(first.files.pidFile, "utf8")).trim()), first.pid);
      assert.deepEqual(await machineStatus(store, name), { state: "running", pid: first.pid });
      const qmp = await connectQmp(first.files.qmpSocket);
      try {
        assert.deepEqual(await qmp.execute("query-status"), { status: "running", singlestep: false, running: true });
      } finally {
        qmp.close();
      }
      await assert.rejects(startMachine(store, machine), hasCode("LOCAL_MACHINE_RUNNING"));
      if (firmware === "uefi") {
        const fw = await resolveFirmware({ type: "uefi", secureBoot: false });
        assert.ok(fw.type === "uefi");
        assert.equal((await stat(join(first.files.dir, "uefi-vars.fd"))).size, (await stat(fw.varsTemplatePath)).size);
      }

      // Firmware sitting at "no bootable device" ignores the ACPI power button, so QMP quit ends it.
      const stopped = await stopMachine(store, name, { graceMs: 1_000 });
      assert.equal(stopped.method, "quit");
      assert.equal(alive(first.pid), false);
      assert.equal(existsSync(first.files.pidFile), false);
      assert.equal(existsSync(first.files.qmpSocket), false);
      assert.deepEqual(await machineStatus(store, name), { state: "stopped" });

      const second = await startMachine(store, machine);
      started.push(second.pid);
      assert.notEqual(second.pid, first.pid);
      assert.ok(alive(second.pid));
      assert.equal((await stopMachine(store, name, { graceMs: 1_000 })).method, "quit");
      assert.equal(alive(second.pid), false);
      assert.equal(alive(first.pid), false);
      assert.deepEqual(await stopMachine(store, name), { method: "not-running" });
    });
  }

  it("GIVEN a machine QEMU cannot start WHEN started THEN the error carries QEMU's own message", { timeout: 60_000 }, async () => {
    const workload = parseWorkload({ name: "vm-bad", memoryMiB: 128, guestOs: { family: "linux" }, disks: [{ id: "root", sizeBytes: MiB, bootOrder: 0 }] });
    const machine = defineMachine(workload, { disks: { root: { path: join(root, "missing.qcow2"), format: "qcow2" } } });
    await assert.rejects(startMachine(store, machine), (err: unknown) => hasCode("LOCAL_QEMU_EXITED")(err) && /missing\.qcow2/.test((err as Error).message));
    assert.deepEqual(await machineStatus(store, "vm-bad"), { state: "stopped" });
  });
});
