// npm run compare:v2v — our guest fixups beside virt-v2v, on the same guest (issue 21).
//
// The guest is the Debian 12 VMware guest of tests/harness/debian-guest.ts: its initramfs lacks
// virtio, its fstab and grub.cfg say /dev/sda1. Both tools make it boot on virtio:
// - ours: `fixups: "auto"` on a qcow2 overlay of the source (sdk/fixups), libguestfs inside;
// - virt-v2v: `virt-v2v -i disk <copy> -o local -os <dir> -of qcow2`, its own conversion.
// Each result is test-booted on virtio (the marker on the serial console), and `virt-diff`
// (libguestfs) lists what each changed on the disk against the source. Run one after the other
// on a quiet machine: both are CPU-bound under TCG here. The last line is JSON.
import { execFile } from "node:child_process";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { openDisk } from "../sdk/disk/open.ts";
import { fixedSource } from "../sdk/fixups/index.ts";
import { testBoot } from "../sdk/clouds/local/test-boot.ts";
import { buildDebianGuest, DEBIAN_GUEST_MARKER } from "../tests/harness/debian-guest.ts";
import { fileSha256 } from "../tests/harness/disk.ts";

const exec = promisify(execFile);
const TIMEOUT_MS = 300_000;
const dir = join(process.env.PW_BENCH_DIR ?? tmpdir(), `pw-compare-v2v-${process.pid}`);
const env = { ...process.env, LIBGUESTFS_BACKEND: "direct", LIBGUESTFS_BACKEND_SETTINGS: process.env.LIBGUESTFS_BACKEND_SETTINGS ?? "force_tcg", LC_ALL: "C" };

interface Side {
  readonly tool: string;
  readonly seconds: number;
  readonly booted: boolean;
  readonly bootSeconds?: number;
  readonly bootDetail: string;
  readonly changed: readonly string[];
  readonly sourceUnchanged: boolean;
}

/** virt-diff's list of files that differ (+ added, - removed, = changed). */
async function changedFiles(source: string, sourceFormat: string, result: string, resultFormat: string): Promise<string[]> {
  const { stdout } = await exec("virt-diff", [`--format=${sourceFormat}`, "-a", source, `--format=${resultFormat}`, "-A", result], { env, maxBuffer: 64 * 1024 * 1024 }).catch((error: { stdout?: string; code?: number }) => {
    // virt-diff exits 0 either way; a real failure has no output.
    if (error.stdout) return { stdout: error.stdout };
    throw error;
  });
  // "<op> <type> <mode> <size> <path>" per file; the content diffs of small text files follow, indented.
  return stdout.split("\n").map((line) => line.replace(/\s+/g, " ").trim()).filter((line) => /^[-+=] [-dlbcps] [0-7]{4} \d+ \//.test(line));
}

async function boot(path: string, format: string): Promise<{ booted: boolean; bootSeconds?: number; detail: string }> {
  const result = await testBoot(path, { firmware: "bios", marker: DEBIAN_GUEST_MARKER, bus: "virtio", format, timeoutMs: TIMEOUT_MS });
  if (result.kind === "booted") return { booted: true, bootSeconds: result.bootMs / 1000, detail: `marker after ${(result.bootMs / 1000).toFixed(1)} s` };
  return { booted: false, detail: `${result.kind}${"detail" in result ? `: ${result.detail}` : ""}` };
}

async function ours(source: string, sha: string): Promise<Side> {
  const disk = await openDisk(source, { format: "raw" });
  const started = performance.now();
  const fixed = await fixedSource({ image: source, format: "raw", source: disk, policy: "auto", target: "local", firmware: "bios", workDir: join(dir, "ours"), onStep: (line) => console.log(`  ours: ${line}`) });
  const seconds = (performance.now() - started) / 1000;
  try {
    const overlay = join(dir, "ours", "fixups.qcow2");
    const result = await boot(overlay, "qcow2");
    const changed = await changedFiles(source, "raw", overlay, "qcow2");
    return { tool: "portable-workload fixups: auto", seconds, booted: result.booted, ...(result.bootSeconds === undefined ? {} : { bootSeconds: result.bootSeconds }), bootDetail: result.detail, changed, sourceUnchanged: (await fileSha256(source)) === sha };
  } finally {
    await fixed.release();
    await disk.close();
  }
}

async function v2v(source: string, sha: string): Promise<Side> {
  const out = join(dir, "v2v");
  await mkdir(out, { recursive: true });
  const started = performance.now();
  // virt-v2v reads the source through a copy-on-write overlay of its own and writes a new disk.
  const failed = await exec("virt-v2v", ["-i", "disk", source, "-o", "local", "-os", out, "-of", "qcow2", "-on", "guest"], { env, maxBuffer: 64 * 1024 * 1024 }).then(
    () => undefined,
    (error: { stderr?: string }) => (error.stderr ?? String(error)).split("\n").find((line) => line.includes("error")) ?? "failed",
  );
  const seconds = (performance.now() - started) / 1000;
  if (failed !== undefined) return { tool: "virt-v2v -i disk -o local", seconds, booted: false, bootDetail: `virt-v2v did not convert: ${failed.trim()}`, changed: [], sourceUnchanged: (await fileSha256(source)) === sha };
  const disk = (await readdir(out)).find((f) => f.startsWith("guest-sd"));
  if (disk === undefined) throw new Error(`virt-v2v wrote no disk into ${out}: ${(await readdir(out)).join(", ")}`);
  const result = await boot(join(out, disk), "qcow2");
  const changed = await changedFiles(source, "raw", join(out, disk), "qcow2");
  return { tool: "virt-v2v -i disk -o local", seconds, booted: result.booted, ...(result.bootSeconds === undefined ? {} : { bootSeconds: result.bootSeconds }), bootDetail: result.detail, changed, sourceUnchanged: (await fileSha256(source)) === sha };
}

const guest = await buildDebianGuest();
await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
try {
  const source = join(dir, "guest.raw");
  await copyFile(guest.path, source);
  const sha = await fileSha256(source);
  console.log(`guest: Debian 12 (kernel ${guest.kernelVersion}), VMware initramfs, /dev/sda1 names; test boots on virtio, BIOS, under TCG`);
  const before = await boot(source, "raw");
  console.log(`source as is: ${before.booted ? "boots" : "does not boot"} (${before.detail})`);
  const sides = [await ours(source, sha), await v2v(source, sha)];
  for (const side of sides) {
    console.log(`\n${side.tool}: ${side.seconds.toFixed(1)} s to convert; ${side.booted ? "boots" : "does not boot"} (${side.bootDetail}); source ${side.sourceUnchanged ? "unchanged" : "CHANGED"}`);
    console.log(`  ${side.changed.length} file(s) changed:`);
    for (const line of side.changed.slice(0, 40)) console.log(`    ${line}`);
    if (side.changed.length > 40) console.log(`    … ${side.changed.length - 40} more`);
  }
  console.log(JSON.stringify({ sourceBoots: before.booted, results: sides.map((s) => ({ tool: s.tool, seconds: Number(s.seconds.toFixed(1)), booted: s.booted, bootSeconds: s.bootSeconds, filesChanged: s.changed.length, sourceUnchanged: s.sourceUnchanged })) }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
