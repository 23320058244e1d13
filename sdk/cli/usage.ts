// Usage lines of the commands main.ts imports only when they run, so `portable --help` and
// the disk commands need not load them.

export const INSPECT_GUEST_USAGE = `inspect --guest <image> [--target aws|azure|vsphere|local|kvm]... [--firmware bios|uefi]
        [--arch x86_64|i386|arm64] [--bus scsi|sata|ide|nvme] [--json] [-f fmt]
                                           will the guest boot there? OS, boot mode, drivers per
                                           target, fstab and firmware findings; exit 1 on an error`;

export const REPLICATE_USAGE = `  replicate <source> <target> --state <dir> [--key K] [--verify full|sampled|none] [--json]
                                           send only the blocks that changed since the last pass
                                           (target: a raw file path, ebs://?region=R, azblob://…);
                                           a pass killed midway resumes where it stopped
  plan <source> --state <dir> [--key K] [--mode warm|cold] [--json]
                                           bytes to move, transfer time and expected downtime`;

export const PLAN_COMMENT_USAGE = `  plan-comment [<preview.json>|-]          \`pulumi preview --json\` → a Markdown plan for a PR comment`;
