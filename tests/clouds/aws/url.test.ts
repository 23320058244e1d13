import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPortableError } from "../../../sdk/errors.ts";
import { isEbsUrl, parseEbsUrl } from "../../../sdk/clouds/aws/url.ts";

function rejectsWith(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseEbsUrl(text),
    (err: unknown) => isPortableError(err) && err.code === "EBS_URL_INVALID" && pattern.test(err.message) && !err.message.includes(text.split("?")[1] ?? "\0"),
  );
}

describe("ebs:// URLs", () => {
  it("GIVEN a snapshot URL WHEN parsed THEN id, region, endpoint and size come out typed", () => {
    assert.ok(isEbsUrl("ebs://snap-0123abcd?region=eu-west-1") && !isEbsUrl("disk.raw"));
    assert.deepEqual(parseEbsUrl("ebs://snap-0123abcd?region=eu-west-1&endpoint=http://127.0.0.1:5000&size=1048576"), {
      tags: {},
      snapshotId: "snap-0123abcd",
      region: "eu-west-1",
      endpoint: "http://127.0.0.1:5000",
      virtualSizeBytes: 1048576,
    });
  });

  it("GIVEN a new-snapshot URL WHEN parsed THEN tags, KMS key, parent, manifests and image settings come out", () => {
    const url = parseEbsUrl(
      "ebs://?region=us-east-1&description=web%20disk&tag=app=web&tag=env=prod&kms=arn:aws:kms:us-east-1:1:key/k&timeout=120" +
        "&parent=snap-0a&parent-manifest=/tmp/p.json&manifest-out=/tmp/m.json&image=web-1&arch=arm64&boot=uefi&ena=false&root=/dev/sda1",
    );
    assert.equal(url.snapshotId, undefined);
    assert.deepEqual(url.tags, { app: "web", env: "prod" });
    assert.equal(url.description, "web disk");
    assert.equal(url.kmsKeyArn, "arn:aws:kms:us-east-1:1:key/k");
    assert.equal(url.timeoutMinutes, 120);
    assert.equal(url.parentSnapshotId, "snap-0a");
    assert.equal(url.parentManifestPath, "/tmp/p.json");
    assert.equal(url.manifestOutPath, "/tmp/m.json");
    assert.deepEqual(url.image, { name: "web-1", architecture: "arm64", bootMode: "uefi", enaSupport: false, rootDeviceName: "/dev/sda1" });
  });

  it("GIVEN malformed or unsafe URLs WHEN parsed THEN EBS_URL_INVALID says why, without echoing the query", () => {
    rejectsWith("ebs://vol-123?region=x", /not a snapshot id/);
    rejectsWith("ebs://AKIAX:secret@snap-01?region=x", /credentials do not belong/);
    rejectsWith("ebs://?region=x&secret_access_key=abc", /looks like a credential/);
    rejectsWith("ebs://?region=x&colour=blue", /unknown parameter "colour"/);
    rejectsWith("ebs://?region=x&parent=snap-01", /parent and parent-manifest go together/);
    rejectsWith("ebs://snap-01?region=x&description=d", /only apply to a new snapshot/);
    rejectsWith("ebs://?region=x&arch=arm64", /need image=NAME/);
    rejectsWith("ebs://?region=x&region=y", /given 2 times/);
    rejectsWith("ebs://?region=x&endpoint=http://user:pw@host", /endpoint must be/);
    rejectsWith("s3://bucket", /scheme must be ebs/);
  });
});
