// `portable test-boot <image> --marker M [--firmware bios|uefi] [--bus …] [--target …]
// [--fixups none|auto|<file.json>] [--timeout S] [--json]`: boots the disk in a throw-away QEMU
// and reports whether `marker` appeared on its serial console. With --fixups, the fixups are
// applied to a copy-on-write overlay first (sdk/fixups) and the overlay is booted; the image is
// never written. A thin face over sdk/fixups and sdk/clouds/local/test-boot.
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { InvalidArgsError } from "../errors.ts";
import { openSource } from "../clouds/registry.ts";
import { LOCAL_DISK_BUSES, type LocalDiskBus } from "../clouds/local/machine.ts";
import { INSPECT_TARGETS, type InspectTarget } from "../inspect/types.ts";
import { fixupsPolicySchema } from "../spec/fixups.ts";
import { FIRMWARE_TYPES, type FirmwareType } from "../spec/workload.ts";
import { TEST_BOOT_USAGE } from "./usage.ts";
import { oneOf } from "./common.ts";

/** Exit code when the guest did not boot (as `compare` uses 1 for "different"). */
const EXIT_NO_BOOT = 1;


/** A fixups list from a file; a missing file or bad JSON is a coded error, not a stack trace. */
async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new InvalidArgsError("FIXUPS_INVALID", `--fixups ${path}: ${(error as Error).message}`);
  }
}

export async function testBootCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      marker: { type: "string" },
      firmware: { type: "string" },
      bus: { type: "string" },
      target: { type: "string" },
      fixups: { type: "string" },
      timeout: { type: "string" },
      json: { type: "boolean" },
      f: { type: "string" },
    },
  });
  const [image] = positionals;
  if (image === undefined || positionals.length > 1 || values.marker === undefined) throw new InvalidArgsError("USAGE", `test-boot takes one image and --marker\n\nusage: portable ${TEST_BOOT_USAGE}`);
  const firmware = oneOf<FirmwareType>(values.firmware, FIRMWARE_TYPES, "--firmware", TEST_BOOT_USAGE) ?? "bios";
  const target = oneOf<InspectTarget>(values.target, INSPECT_TARGETS, "--target", TEST_BOOT_USAGE) ?? "local";
  const timeoutSeconds = values.timeout === undefined ? 300 : Number(values.timeout);
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 10) throw new InvalidArgsError("USAGE", `--timeout is whole seconds, at least 10, got "${values.timeout}"`);
  const policyText = values.fixups ?? "none";
  const policy = fixupsPolicySchema.safeParse(policyText === "auto" || policyText === "none" ? policyText : await readJson(policyText));
  if (!policy.success) throw new InvalidArgsError("FIXUPS_INVALID", `--fixups ${policyText}: ${policy.error.issues.map((i) => `${i.path.join(".") || "(list)"}: ${i.message}`).join("; ")}`);
  const { fixedSource, testBootBus } = await import("../fixups/index.ts");
  const bus: LocalDiskBus = oneOf<LocalDiskBus>(values.bus, LOCAL_DISK_BUSES, "--bus", TEST_BOOT_USAGE) ?? testBootBus(target, undefined);
  const source = await openSource(image, values.f);
  const log = (line: string): void => {
    if (values.json !== true) console.error(line);
  };
  try {
    if (policy.data === "none") {
      const { testBoot } = await import("../clouds/local/test-boot.ts");
      log(`test boot of ${image} on ${bus} (${firmware}), waiting up to ${timeoutSeconds} s for "${values.marker}"`);
      const result = await testBoot(image, { firmware, marker: values.marker, bus, timeoutMs: timeoutSeconds * 1000, ...(values.f === undefined ? {} : { format: values.f }) });
      return report(image, result.kind === "booted", { result }, values.json === true);
    }
    const workDir = join(tmpdir(), `portable-test-boot-${process.pid}`);
    const fixed = await fixedSource({ image, format: source.format, source, policy: policy.data, target, firmware, testBoot: { marker: values.marker, timeoutSeconds }, workDir, onStep: log, testBootBusOverride: bus })
      .catch((error: unknown) => ({ error }));
    if ("error" in fixed) {
      const error = fixed.error as { code?: string; message?: string; context?: { result?: string; console?: string } };
      if (error.code !== "TEST_BOOT_FAILED") throw fixed.error;
      return report(image, false, { error: { code: error.code, message: error.message }, console: error.context?.console }, values.json === true);
    }
    try {
      return report(image, true, { fixups: fixed.outcomes, fixupSeconds: fixed.seconds, result: fixed.testBoot }, values.json === true);
    } finally {
      await fixed.release();
    }
  } finally {
    await source.close();
  }
}

function report(image: string, booted: boolean, details: Record<string, unknown>, json: boolean): number {
  if (json) console.log(JSON.stringify({ image, booted, ...details }, null, 2));
  else {
    const result = details.result as { kind: string; bootMs?: number; detail?: string; console?: string } | undefined;
    for (const fixup of (details.fixups as Array<{ kind: string; detail: string; seconds: number }> | undefined) ?? []) console.log(`fixup ${fixup.kind}: ${fixup.detail} (${fixup.seconds.toFixed(1)} s)`);
    if (booted) console.log(`booted: the marker appeared after ${((result?.bootMs ?? 0) / 1000).toFixed(1)} s`);
    else {
      const error = details.error as { code: string; message: string } | undefined;
      console.log(`did not boot: ${error === undefined ? `${result?.kind}${result?.detail === undefined ? "" : `: ${result.detail}`}` : `${error.code}: ${error.message}`}`);
      const tail = (result?.console ?? (details.console as string | undefined) ?? "").trim().split("\n").slice(-15).join("\n");
      if (tail !== "") console.log(`--- console (end) ---\n${tail}`);
    }
  }
  return booted ? 0 : EXIT_NO_BOOT;
}
