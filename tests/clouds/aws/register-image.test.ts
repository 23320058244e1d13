import assert from "node:assert/strict";
import { DescribeImagesCommand } from "@aws-sdk/client-ec2";
import { after, before, describe, it } from "node:test";
import { isPortableError } from "../../../sdk/errors.ts";
import { createAwsClients, createEbsSnapshotSink, registerImage, registerImageInput, type AwsClients } from "../../../sdk/clouds/aws/index.ts";
import { startMoto, type Moto } from "../../harness/moto.ts";
import { BLOCK, GiB, useMotoCredentials } from "./helpers.ts";

describe("RegisterImage from an EBS snapshot", () => {
  it("GIVEN boot mode, ENA, architecture and root device WHEN the request is built THEN the root mapping points at the snapshot", () => {
    assert.deepEqual(
      registerImageInput({ snapshotId: "snap-0abc", name: "web (v1)", architecture: "arm64", bootMode: "uefi", enaSupport: true, rootDeviceName: "/dev/sda1", volumeSizeGiB: 16 }),
      {
        Name: "web (v1)",
        Architecture: "arm64",
        BootMode: "uefi",
        EnaSupport: true,
        VirtualizationType: "hvm",
        RootDeviceName: "/dev/sda1",
        BlockDeviceMappings: [{ DeviceName: "/dev/sda1", Ebs: { SnapshotId: "snap-0abc", VolumeType: "gp3", DeleteOnTermination: true, VolumeSize: 16 } }],
      },
    );
    const defaults = registerImageInput({ snapshotId: "snap-0abc", name: "plain" });
    assert.equal(defaults.BootMode, "legacy-bios");
    assert.equal(defaults.Architecture, "x86_64");
    assert.equal(defaults.RootDeviceName, "/dev/xvda");
  });

  it("GIVEN invalid settings WHEN the request is built THEN every problem is reported at once with its path", () => {
    assert.throws(
      () => registerImageInput({ snapshotId: "vol-1", name: "x", bootMode: "bios" as never }),
      (err: unknown) => isPortableError(err) && err.code === "EBS_INVALID_OPTIONS" && /snapshotId/.test(err.message) && /name/.test(err.message) && /bootMode/.test(err.message),
    );
  });

  describe("against moto", () => {
    let moto: Moto;
    let clients: AwsClients;
    before(async () => {
      moto = await startMoto();
      useMotoCredentials(moto.credentials);
      clients = createAwsClients({ region: moto.region, endpoint: moto.endpoint });
    });
    after(async () => {
      clients?.destroy();
      await moto?.stop();
    });

    it("GIVEN a completed snapshot WHEN registered THEN an AMI id comes back and EC2 lists it by name", async () => {
      const sink = await createEbsSnapshotSink(clients.ebs, { virtualSizeBytes: GiB, ec2: clients.ec2 });
      await sink.write(0, Buffer.alloc(BLOCK, 0x42));
      await sink.finish();
      const imageId = await registerImage(clients.ec2, { snapshotId: sink.snapshotId, name: "pw-test-image", bootMode: "uefi" });
      assert.match(imageId, /^ami-[0-9a-f]+$/);
      // moto keeps only the name and description (it drops the block device mapping), so the
      // mapping is checked on the request above, not here.
      const images = await clients.ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
      assert.equal(images.Images?.[0]?.Name, "pw-test-image");
    });
  });
});
