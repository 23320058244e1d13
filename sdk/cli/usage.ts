// Usage text of every `portable` command, apart from the commands themselves, so that `--help`
// (of the whole CLI or of one command) loads none of them. helpFor() is the one place that
// answers `portable <command> … --help`.

export const INSPECT_USAGE = `  inspect <image> [--json] [-f fmt]        format, virtual size, allocated bytes, extents; for an
                                           OVA, its disks with their <file.ova>!<entry> locations`;

export const INSPECT_GUEST_USAGE = `inspect --guest <image> [--target aws|azure|vsphere|local|kvm]... [--firmware bios|uefi]
        [--arch x86_64|i386|arm64] [--bus scsi|sata|ide|nvme] [--json] [-f fmt]
                                           will the guest boot there? OS, boot mode, drivers per
                                           target, fstab and firmware findings; exit 1 on an error`;

export const CONVERT_USAGE = `  convert <in> <out> -O <fmt> [-f fmt] [-o key=value]... [--overwrite] [--concurrency N] [--json]
                                           stream any format into another ('-' writes to stdout);
                                           --json prints the result and the engine's seconds
  convert <in> ebs://?region=R[&key=value]...
                                           upload as an EBS snapshot; prints snap-… [ami-…]
                                           (keys: sdk/clouds/aws/url.ts); ebs://snap-…?region=R
                                           as <in> reads a snapshot back
  convert <in> azblob://<account>/<container>/<blob>|<SAS URL> [--overwrite]
                                           upload as a fixed VHD page blob (credentials from
                                           AZURE_STORAGE_* env, see sdk/clouds/azure/url.ts);
                                           either form as <in> reads a page blob or disk SAS
  convert <in> azdisk://<subscription>/<group>/<disk>?location=L[&sku=…&osType=…]
                                           create a managed disk for Upload, fill it, revoke
                                           its SAS; as <in> reads a managed disk (read SAS)`;

export const COMPARE_USAGE = `  compare <a> <b> [--json]                 exit 0 if the guest sees the same bytes, 1 if not`;

export const MAP_USAGE = `  map <image> [--json] [-f fmt]            the extent map (data / zero ranges)`;

export const OVF_USAGE = `  ovf <file.ovf|file.ova|file.vmx|-> [--json] [--no-verify]
                                           the Workload and disk references, manifest check and
                                           problems ('-' reads an OVA streamed on stdin); exit 1
                                           if the manifest fails or a system makes no valid Workload`;

export const REPLICATE_USAGE = `  replicate <source> <target> --state <dir> [--key K] [--verify full|sampled|none] [--json] [-f fmt]
                                           send only the blocks that changed since the last pass
                                           (target: a raw file path, ebs://?region=R, azblob://…);
                                           a pass killed midway resumes where it stopped`;

export const PLAN_USAGE = `  plan <source> --state <dir> [--key K] [--mode warm|cold] [--json] [-f fmt]
                                           bytes to move, transfer time and expected downtime`;

export const TEST_BOOT_USAGE = `test-boot <image> --marker M [--firmware bios|uefi] [--target local|aws|azure|vsphere|kvm]
        [--bus virtio|scsi|sata|ide|nvme] [--fixups none|auto|<fixups.json>] [--timeout S] [--json] [-f fmt]
                                           boot it in a throw-away QEMU (the target's bus) and wait
                                           for M on the serial console; --fixups applies them to an
                                           overlay first (libguestfs); exit 1 if it does not boot`;

export const PLAN_COMMENT_USAGE = `  plan-comment [<preview.json>|-]          \`pulumi preview --json\` → a Markdown plan for a PR comment`;

export const VSPHERE_USAGE = `usage: portable vsphere <command> [connection options]

  ls [--json]                               list VMs: name, power state, CPUs, memory, guest
  copy-disk <vm> <diskIndex|label> <out> [-O fmt] [-o key=value]... [--overwrite] [--no-snapshot]
                                            copy a VM's disk to a local image (default raw); a
                                            powered-on VM is read through a temporary snapshot

connection (flags override environment):
  --url URL          VSPHERE_URL, e.g. https://vcenter.example.com/sdk
  --username NAME    VSPHERE_USERNAME
  --password-env VAR the variable holding the password (default VSPHERE_PASSWORD); there is
                     no password flag, so it never lands in a shell history or process list
  --ca-file PEM      trust these CAs (VSPHERE_CA_FILE)
  --thumbprint HEX   pin the server certificate, SHA-1 or SHA-256 (VSPHERE_THUMBPRINT)
  --insecure         skip certificate checks (VSPHERE_INSECURE=1); never the default`;

const VSPHERE_SUMMARY = `  vsphere ls [--json] | copy-disk <vm> <diskIndex|label> <out> [-O fmt]
                                           list vSphere VMs / copy a VM's disk (VSPHERE_URL,
                                           VSPHERE_USERNAME, VSPHERE_PASSWORD; see \`portable vsphere --help\`)`;

const SOURCES = `images: a path (format detected unless -f), <file.ova>!<entry> (a disk inside an OVA, read in
place; \`portable ovf\` and \`portable inspect file.ova\` list them), ebs://snap-…, azblob://…, azdisk://…
formats: raw, vmdk, vhd (alias vpc), vhdx, qcow2`;

export const USAGE = `usage: portable <command> [options]   (portable <command> --help: that command alone)

${INSPECT_USAGE}
  ${INSPECT_GUEST_USAGE}
${CONVERT_USAGE}
${COMPARE_USAGE}
${MAP_USAGE}
${OVF_USAGE}

${REPLICATE_USAGE}
${PLAN_USAGE}
${PLAN_COMMENT_USAGE}
  ${TEST_BOOT_USAGE}
${VSPHERE_SUMMARY}

${SOURCES}`;

/** A command's usage blocks (each indented two, as in USAGE) as a help page of its own. */
function page(command: string, ...blocks: string[]): string {
  return `usage: portable ${command} [options]\n\n${blocks.join("\n")}\n\n${SOURCES}`;
}

const isGuest = (arg: string): boolean => arg === "--guest" || arg.startsWith("--guest=");

const COMMAND_HELP: Readonly<Record<string, (args: readonly string[]) => string>> = {
  inspect: (args) => (args.some(isGuest) ? page("inspect --guest", `  ${INSPECT_GUEST_USAGE}`) : page("inspect", INSPECT_USAGE, `  ${INSPECT_GUEST_USAGE}`)),
  convert: () => page("convert", CONVERT_USAGE),
  compare: () => page("compare", COMPARE_USAGE),
  map: () => page("map", MAP_USAGE),
  ovf: () => page("ovf", OVF_USAGE),
  replicate: () => page("replicate", REPLICATE_USAGE),
  plan: () => page("plan", PLAN_USAGE),
  "plan-comment": () => page("plan-comment", PLAN_COMMENT_USAGE),
  "test-boot": () => page("test-boot", `  ${TEST_BOOT_USAGE}`),
  // One page for vsphere and each of its subcommands: they share the connection options.
  vsphere: () => VSPHERE_USAGE,
};

/**
 * The help page when `args` (a command's arguments, before any "--") ask for it with --help or
 * -h; undefined otherwise, and for an unknown command (which then fails as unknown).
 */
export function helpFor(command: string, args: readonly string[]): string | undefined {
  const end = args.indexOf("--");
  const own = end < 0 ? args : args.slice(0, end);
  if (!own.some((arg) => arg === "--help" || arg === "-h")) return undefined;
  return Object.hasOwn(COMMAND_HELP, command) ? COMMAND_HELP[command]?.(own) : undefined;
}
