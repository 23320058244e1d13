// The frozen overlay of a running machine's disk: while frozen, a write the guest makes (here
// through QEMU's own block layer, `qemu-io` over the monitor) lands in the overlay and the disk
// file reads as it was; release folds the write back into the disk and removes the overlay.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openDatastore, type LocalDatastore } from "../../../sdk/clouds/local/datastore.ts";
import { machineFiles, startMachine, stopMachine } from "../../../sdk/clouds/local/lifecycle.ts";
import { defineMachine } from "../../../sdk/clouds/local/machine.ts";
import { freezeDisk, freezeFile } from "../../../sdk/clouds/local/point-in-time.ts";
import { connectQmp } from "../../../sdk/clouds/local/qmp.ts";
import { parseWorkload } from "../../../sdk/spec/workload.ts";
import { fileSha256, sourceSha256 } from "../../harness/disk.ts";
import { MiB, spread, writeBlocks } from "../../transfer/replica-helpers.ts";

describe("local point in time: a frozen overlay under a running machine", () => {
  let root: string;
  let store: LocalDatastore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "pw-pit-"));
    store = await openDatastore(root);
  });
  after(async () => {
    await stopMachine(store, "pit", { graceMs: 0 }).catch(() => {});
    await rm(root, { recursive: true, force: true });
  });

  it("GIVEN a running machine WHEN its disk is frozen and the guest writes THEN the disk reads unchanged until release, which folds the write back", async () => {
    const disk = join(root, "pit.raw");
    await writeBlocks(disk, 64 * MiB, spread(20, 128), "pit"); // not bootable: SeaBIOS keeps QEMU up
    const before = await fileSha256(disk);
    const workload = parseWorkload({ name: "pit", memoryMiB: 128, disks: [{ id: "d0", sizeBytes: 64 * MiB, bus: "sata" }], guestOs: { family: "linux" } });
    const machine = defineMachine(workload, { disks: { d0: { path: disk, format: "raw" } } });
    await startMachine(store, machine, { accel: "tcg" });

    const frozen = await freezeDisk(store, machine, "d0");
    assert.equal(frozen.frozen, true);
    const qmp = await connectQmp((await machineFiles(store, "pit")).qmpSocket);
    try {
      await qmp.execute("human-monitor-command", { "command-line": 'qemu-io drive0 "write -P 0x77 0 64k"' });
    } finally {
      qmp.close();
    }
    assert.equal(await sourceSha256(frozen.source), before, "the frozen disk reads as it was before the write");
    assert.equal(await fileSha256(disk), before, "the disk file did not change");
    await frozen.release();

    const after = await readFile(disk);
    assert.ok(after.subarray(0, 64 * 1024).every((b) => b === 0x77), "the guest's write is in the disk after release");
    assert.deepEqual((await readdir((await machineFiles(store, "pit")).dir)).filter((f) => f.endsWith("-overlay.qcow2")), [], "the overlay is gone");
    assert.equal(existsSync(disk), true);
    await stopMachine(store, "pit", { graceMs: 0 });
  });

  it("GIVEN a running machine WHEN its disk file is frozen by path THEN the running QEMU is found and frozen, and a file nobody runs is read directly", async () => {
    const disk = store.diskPath("byfile", "raw");
    // A disk written by hand, not through importDisk/createDisk: disks/ exists only once one is.
    await mkdir(dirname(disk), { recursive: true });
    await writeBlocks(disk, 32 * MiB, spread(8, 64), "byfile");
    const before = await fileSha256(disk);
    const workload = parseWorkload({ name: "byfile", memoryMiB: 128, disks: [{ id: "d0", sizeBytes: 32 * MiB, bus: "sata" }], guestOs: { family: "linux" } });
    await startMachine(store, defineMachine(workload, { disks: { d0: { path: disk, format: "raw" } } }), { accel: "tcg" });
    try {
      const frozen = await freezeFile(store, disk);
      assert.equal(frozen.frozen, true, "found the machine that has the file open");
      assert.equal(await sourceSha256(frozen.source), before);
      await frozen.release();
      const other = join(root, "loose.raw");
      await writeBlocks(other, 8 * MiB, [2], "loose");
      const loose = await freezeFile(store, other);
      assert.equal(loose.frozen, false);
      await loose.release();
    } finally {
      await stopMachine(store, "byfile", { graceMs: 0 });
    }
  });

  it("GIVEN a stopped machine WHEN frozen THEN the disk is read directly", async () => {
    const disk = join(root, "still.raw");
    await writeBlocks(disk, 8 * MiB, [1, 3], "still");
    const workload = parseWorkload({ name: "still", memoryMiB: 128, disks: [{ id: "d0", sizeBytes: 8 * MiB }], guestOs: { family: "linux" } });
    const frozen = await freezeDisk(store, defineMachine(workload, { disks: { d0: { path: disk, format: "raw" } } }), "d0");
    assert.equal(frozen.frozen, false);
    assert.equal(await sourceSha256(frozen.source), await fileSha256(disk));
    await frozen.release();
  });
});
