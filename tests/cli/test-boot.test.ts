// `portable test-boot` as a user runs it, on the Debian VMware guest (tests/harness/debian-guest.ts):
// on its own bus (SATA) it boots, exit 0 with the time; bad arguments are usage errors before
// anything starts; and the image is never written.
import assert from "node:assert/strict";
import { describe, it, before } from "node:test";
import { portable } from "../harness/cli.ts";
import { buildDebianGuest, DEBIAN_GUEST_MARKER, type DebianGuest } from "../harness/debian-guest.ts";
import { fileSha256 } from "../harness/disk.ts";

describe("portable test-boot", { timeout: 600_000 }, () => {
  let guest: DebianGuest;
  before(async () => {
    guest = await buildDebianGuest();
  });

  it("GIVEN the guest on its own bus WHEN test-booted THEN exit 0, the marker's time in JSON, and the image unchanged", async () => {
    const sha = await fileSha256(guest.path);
    const result = await portable("test-boot", guest.path, "--marker", DEBIAN_GUEST_MARKER, "--bus", "sata", "--json");
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const report = JSON.parse(result.stdout) as { booted: boolean; result: { kind: string; bootMs: number } };
    assert.equal(report.booted, true);
    assert.equal(report.result.kind, "booted");
    assert.ok(report.result.bootMs > 0);
    assert.equal(await fileSha256(guest.path), sha);
  });

  it("GIVEN bad arguments WHEN run THEN a usage error names them, exit 2", async () => {
    for (const args of [["test-boot", guest.path], ["test-boot", guest.path, "--marker", "M", "--bus", "floppy"], ["test-boot", guest.path, "--marker", "M", "--target", "mars"], ["test-boot", guest.path, "--marker", "M", "--timeout", "3"]]) {
      const result = await portable(...args);
      assert.equal(result.code, 2, args.join(" "));
      assert.match(result.stderr, /USAGE/, args.join(" "));
    }
  });
});
