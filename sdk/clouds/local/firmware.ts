// Firmware for the local target: SeaBIOS (QEMU's built-in default) or OVMF, found through the
// firmware descriptors QEMU installs (docs/interop/firmware.json in QEMU's tree, Debian ships them
// in /usr/share/qemu/firmware), the same way libvirt picks firmware. The descriptors name the
// code and the variable-store template and say which builds do secure boot and need SMM.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { NotCapableError } from "../../errors.ts";
import type { Firmware } from "../../spec/workload.ts";

/** Where distributions install QEMU firmware descriptors; earlier folders override later ones. */
export const FIRMWARE_DESCRIPTOR_DIRS = ["/etc/qemu/firmware", "/usr/share/qemu/firmware"] as const;

/** A descriptor file is a few hundred bytes; anything larger is not one. */
const DESCRIPTOR_MAX_BYTES = 64 * 1024;

const descriptorSchema = z.object({
  "interface-types": z.array(z.string()),
  mapping: z.object({
    device: z.string(),
    executable: z.object({ filename: z.string(), format: z.string().default("raw") }).optional(),
    "nvram-template": z.object({ filename: z.string(), format: z.string().default("raw") }).optional(),
  }),
  targets: z.array(z.object({ architecture: z.string(), machines: z.array(z.string()) })),
  features: z.array(z.string()).default([]),
});

export type ResolvedFirmware =
  | { readonly type: "bios" }
  | {
      readonly type: "uefi";
      readonly secureBoot: boolean;
      /** The read-only code flash. */
      readonly codePath: string;
      /** The variable store each machine copies for itself. */
      readonly varsTemplatePath: string;
      /** Secure-boot builds keep their variables in SMM: the machine needs `smm=on`. */
      readonly requiresSmm: boolean;
      /** The descriptor this came from, for messages. */
      readonly descriptor: string;
    };

export interface FirmwareLookupOptions {
  /** Folders searched for descriptors. @default FIRMWARE_DESCRIPTOR_DIRS */
  readonly descriptorDirs?: readonly string[];
}

function matchesMachine(patterns: readonly string[], machine: string): boolean {
  return patterns.some((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`).test(machine));
}

/**
 * Chooses the firmware for a workload on x86_64 q35. BIOS needs nothing (SeaBIOS is built in).
 * UEFI takes the highest-priority descriptor (lowest file name, as the interop spec orders them)
 * that loads from flash and matches `secureBoot`: with secure boot, one that also has enrolled
 * keys, so the firmware actually enforces signatures.
 */
export async function resolveFirmware(firmware: Pick<Firmware, "type" | "secureBoot">, options: FirmwareLookupOptions = {}): Promise<ResolvedFirmware> {
  if (firmware.type === "bios") return { type: "bios" };
  const dirs = options.descriptorDirs ?? FIRMWARE_DESCRIPTOR_DIRS;
  const seen = new Set<string>();
  const files: Array<{ name: string; path: string }> = [];
  for (const dir of dirs) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith(".json") || seen.has(name)) continue;
      seen.add(name);
      files.push({ name, path: join(dir, name) });
    }
  }
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const file of files) {
    const text = await readFile(file.path, "utf8").catch(() => "");
    if (text.length === 0 || text.length > DESCRIPTOR_MAX_BYTES) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      continue;
    }
    const parsed = descriptorSchema.safeParse(raw);
    if (!parsed.success) continue;
    const d = parsed.data;
    const { executable, "nvram-template": vars } = d.mapping;
    if (!d["interface-types"].includes("uefi") || d.mapping.device !== "flash" || executable === undefined || vars === undefined) continue;
    if (executable.format !== "raw" || vars.format !== "raw") continue;
    if (!d.targets.some((t) => t.architecture === "x86_64" && matchesMachine(t.machines, "pc-q35-7.2"))) continue;
    const secure = d.features.includes("secure-boot");
    if (firmware.secureBoot !== secure) continue;
    if (firmware.secureBoot && !d.features.includes("enrolled-keys")) continue;
    return {
      type: "uefi",
      secureBoot: secure,
      codePath: executable.filename,
      varsTemplatePath: vars.filename,
      requiresSmm: d.features.includes("requires-smm"),
      descriptor: file.path,
    };
  }
  throw new NotCapableError(
    "LOCAL_FIRMWARE_NOT_FOUND",
    `local: no UEFI firmware${firmware.secureBoot ? " with secure boot and enrolled keys" : " without secure boot"} for x86_64 q35 in ${dirs.join(", ")} (install Debian's ovmf)`,
    { context: { secureBoot: firmware.secureBoot } },
  );
}
