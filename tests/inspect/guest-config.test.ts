// The guest configuration parsers, on text as distributions write it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareKernelVersions, isUnstableDeviceName, moduleName, parseFstab, parseGrubConfig, parseModulesBuiltin, parseOsRelease } from "../../sdk/inspect/guest-config.ts";

describe("guest configuration parsers", () => {
  it("GIVEN os-release with quotes, escapes and comments WHEN parsed THEN values are unquoted", () => {
    const parsed = parseOsRelease('# comment\nNAME="Red Hat \\"Enterprise\\" Linux"\nID=rhel\nVERSION_ID=\'9.4\'\nbad line\n');
    assert.deepEqual(parsed, { NAME: 'Red Hat "Enterprise" Linux', ID: "rhel", VERSION_ID: "9.4" });
  });

  it("GIVEN an fstab with comments, blank lines and \\040 WHEN parsed THEN entries keep their line numbers", () => {
    const entries = parseFstab("# x\n\nUUID=abc / ext4 defaults 0 1\n/dev/sdb1 /mnt/my\\040disk ext4 nofail 0 2\n");
    assert.deepEqual(
      entries.map((e) => [e.line, e.spec, e.mountPoint, e.options]),
      [
        [3, "UUID=abc", "/", "defaults"],
        [4, "/dev/sdb1", "/mnt/my disk", "nofail"],
      ],
    );
  });

  it("GIVEN device names WHEN judged THEN kernel names are unstable and persistent names are not", () => {
    for (const name of ["/dev/sda", "/dev/sda1", "/dev/xvdb2", "/dev/vda1", "/dev/hdc", "/dev/nvme0n1p2"]) assert.ok(isUnstableDeviceName(name), name);
    for (const name of ["UUID=abc", "LABEL=root", "/dev/mapper/vg-root", "/dev/disk/by-uuid/abc", "PARTUUID=1"]) assert.ok(!isUnstableDeviceName(name), name);
  });

  it("GIVEN a grub.cfg with set default=1 WHEN parsed THEN the second entry's kernel is the default", () => {
    const config = parseGrubConfig("set default=\"1\"\nmenuentry 'A' {\n linux /vmlinuz-5.10.0-1-amd64 root=/dev/sda1 ro\n}\nmenuentry \"B\" --class x {\n\tlinux\t/boot/vmlinuz-6.1.0-9-amd64 root=UUID=x\n}\n");
    assert.equal(config.defaultIndex, 1);
    assert.deepEqual(config.entries, [
      { title: "A", kernelPath: "/vmlinuz-5.10.0-1-amd64", kernelVersion: "5.10.0-1-amd64", root: "/dev/sda1" },
      { title: "B", kernelPath: "/boot/vmlinuz-6.1.0-9-amd64", kernelVersion: "6.1.0-9-amd64", root: "UUID=x" },
    ]);
  });

  it("GIVEN module paths WHEN named THEN compression suffixes go and dashes become underscores", () => {
    assert.equal(moduleName("kernel/drivers/nvme/host/nvme-core.ko"), "nvme_core");
    assert.equal(moduleName("ena.ko.xz"), "ena");
    assert.equal(moduleName("hv_netvsc.ko.zst"), "hv_netvsc");
    assert.equal(moduleName("modules.builtin"), undefined);
    assert.deepEqual([...parseModulesBuiltin("kernel/drivers/virtio/virtio.ko\nkernel/fs/ext4/ext4.ko\n\n")], ["virtio", "ext4"]);
  });

  it("GIVEN kernel versions WHEN sorted THEN numeric parts order numerically", () => {
    const versions = ["6.1.0-10-amd64", "6.1.0-9-amd64", "5.10.0-28-amd64"].sort(compareKernelVersions);
    assert.deepEqual(versions, ["5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64"]);
  });
});
