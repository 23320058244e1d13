// Guest fixups as declared data (issue 21): what the migration changes inside the guest so that
// it boots on its new platform. A Workload's migration policy names them: "auto" (derived from
// the readiness findings for the target, sdk/fixups/derive.ts), "none", or an explicit list.
// They are applied to a copy-on-write overlay of the source, never to the source itself.
import { z } from "zod";

const moduleName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a kernel module name (letters, digits, _ and -)");
const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]{0,127}$/, "a package name (lower case letters, digits, + . -)");
const serviceName = z.string().regex(/^[A-Za-z0-9@_.:-]{1,128}$/, "a service unit name");

export const fixupSchema = z.discriminatedUnion("kind", [
  z.object({
    /** Adds kernel modules to the initramfs and rebuilds it with the guest's tool (update-initramfs, dracut). */
    kind: z.literal("initramfs-drivers"),
    drivers: z.array(moduleName).min(1).max(64),
  }).strict(),
  z.object({
    /** Rewrites /dev/sdXN-style names in /etc/fstab and the boot loader's root= to UUID=. */
    kind: z.literal("device-names"),
  }).strict(),
  z.object({
    /** Adds console=<device>,<baud> to the kernel command line (grub.cfg and /etc/default/grub). */
    kind: z.literal("serial-console"),
    device: z.string().regex(/^tty[A-Za-z]{1,4}\d{1,3}$/).default("ttyS0"),
    baud: z.number().int().positive().default(115200),
  }).strict(),
  z.object({
    /** Removes packages (dpkg --purge, rpm -e), e.g. VMware Tools off vSphere. Absent ones are skipped. */
    kind: z.literal("remove-packages"),
    packages: z.array(packageName).min(1).max(64),
  }).strict(),
  z.object({
    /** Disables systemd units, e.g. vmtoolsd. Absent ones are skipped. */
    kind: z.literal("disable-services"),
    services: z.array(serviceName).min(1).max(64),
  }).strict(),
  z.object({
    /** Writes a file (its parent folder must exist). */
    kind: z.literal("write-file"),
    path: z.string().regex(/^\/[^\0]{1,4095}$/, "an absolute path").refine((p) => !p.split("/").includes(".."), "no .. components"),
    content: z.string().max(1024 * 1024),
    mode: z.number().int().min(0).max(0o7777).default(0o644),
  }).strict(),
]);
export type Fixup = z.infer<typeof fixupSchema>;
export type FixupInput = z.input<typeof fixupSchema>;
export type FixupKind = Fixup["kind"];

export const fixupsPolicySchema = z.union([z.enum(["auto", "none"]), z.array(fixupSchema).max(32)]).default("none");
export type FixupsPolicy = z.infer<typeof fixupsPolicySchema>;

export const testBootPolicySchema = z
  .object({
    /** Printed alone on a line on the guest's serial console once it is up. */
    marker: z.string().min(1).max(128),
    /** @default 300 (software emulation is slow) */
    timeoutSeconds: z.number().int().min(10).max(3600).default(300),
  })
  .strict();
export type TestBootPolicy = z.infer<typeof testBootPolicySchema>;
