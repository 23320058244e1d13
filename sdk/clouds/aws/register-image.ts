// RegisterImage: an AMI whose root device is an EBS snapshot we wrote. The CLI uses this; the
// Pulumi component declares `aws.ec2.Ami` with the same settings instead.
import { RegisterImageCommand, type EC2Client, type RegisterImageCommandInput } from "@aws-sdk/client-ec2";
import { z } from "zod";
import { CloudError } from "../../errors.ts";
import { callAws } from "./call.ts";
import { parseOptions } from "./start-snapshot.ts";

export const registerImageOptionsSchema = z.object({
  snapshotId: z.string().regex(/^snap-[0-9a-f]+$/, "a snapshot id such as snap-0123abcd"),
  /** AMI names: 3–128 characters of letters, digits and ()[] ./-'@_ (EC2 RegisterImage). */
  name: z.string().regex(/^[A-Za-z0-9()[\] ./\-'@_]{3,128}$/, "3-128 characters: letters, digits, ( ) [ ] space . / - ' @ _"),
  description: z.string().max(255).optional(),
  architecture: z.enum(["x86_64", "arm64", "i386"]).default("x86_64"),
  /** "uefi-preferred" lets an instance type choose; legacy-bios suits most imported disks. */
  bootMode: z.enum(["legacy-bios", "uefi", "uefi-preferred"]).default("legacy-bios"),
  enaSupport: z.boolean().default(true),
  /** e.g. /dev/xvda, /dev/sda1 (EC2 device naming for HVM). */
  rootDeviceName: z.string().regex(/^\/dev\/(sd[a-z]{1,2}\d*|xvd[a-z]{1,2}\d*|nvme\d+n\d+)$/, "a device name such as /dev/xvda or /dev/sda1").default("/dev/xvda"),
  volumeType: z.enum(["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"]).default("gp3"),
  /** Root volume size in GiB; at least the snapshot's. @default the snapshot's size */
  volumeSizeGiB: z.number().int().positive().optional(),
  deleteOnTermination: z.boolean().default(true),
  tags: z.record(z.string().min(1).max(127), z.string().max(255)).optional(),
});
export type RegisterImageOptions = z.input<typeof registerImageOptionsSchema>;

/** The request, built apart from the call so its mapping can be checked on its own. */
export function registerImageInput(options: RegisterImageOptions): RegisterImageCommandInput {
  const o = parseOptions(registerImageOptionsSchema, options, "RegisterImage options");
  return {
    Name: o.name,
    ...(o.description === undefined ? {} : { Description: o.description }),
    Architecture: o.architecture,
    BootMode: o.bootMode,
    EnaSupport: o.enaSupport,
    // Hardware virtualisation: the only kind current instance types run.
    VirtualizationType: "hvm",
    RootDeviceName: o.rootDeviceName,
    BlockDeviceMappings: [
      {
        DeviceName: o.rootDeviceName,
        Ebs: {
          SnapshotId: o.snapshotId,
          VolumeType: o.volumeType,
          DeleteOnTermination: o.deleteOnTermination,
          ...(o.volumeSizeGiB === undefined ? {} : { VolumeSize: o.volumeSizeGiB }),
        },
      },
    ],
    ...(o.tags === undefined ? {} : { TagSpecifications: [{ ResourceType: "image", Tags: Object.entries(o.tags).map(([Key, Value]) => ({ Key, Value })) }] }),
  };
}

/**
 * Registers the AMI and returns its id. If an answer is lost and the call retried, EC2 may answer
 * InvalidAMIName.Duplicate; that is reported as it is, not hidden.
 */
export async function registerImage(ec2: EC2Client, options: RegisterImageOptions): Promise<string> {
  const input = registerImageInput(options);
  const out = await callAws({ operation: "RegisterImage", code: "EC2_REGISTER_IMAGE_FAILED", context: { snapshotId: options.snapshotId, name: input.Name } }, () =>
    ec2.send(new RegisterImageCommand(input)),
  );
  if (out.ImageId === undefined) {
    throw new CloudError("EC2_REGISTER_IMAGE_FAILED", `RegisterImage ${options.snapshotId}: the answer carries no ImageId`, { context: { snapshotId: options.snapshotId } });
  }
  return out.ImageId;
}
