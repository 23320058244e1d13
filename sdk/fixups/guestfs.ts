// A libguestfs session through guestfish's remote mode: one appliance is started on an image
// (`guestfish --listen --rw -a IMAGE -i`, which mounts the guest's filesystems as the guest
// would) and each call is `guestfish --remote=PID -- <command> <args…>`. Arguments travel as
// argv words, never through a shell of ours; file contents travel as files (upload/download).
//
// Written by hand: libguestfs has no maintained Node.js binding (its bindings are C, OCaml,
// Python, Perl, Ruby, Go, Java…), and guestfish's remote mode is its documented scripting
// interface. libguestfs itself (Debian libguestfs-tools) does every guest operation.
//
// KVM is unusable on these machines: without a usable /dev/kvm the appliance runs under TCG
// (LIBGUESTFS_BACKEND_SETTINGS=force_tcg), which is slower but the same.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { open as openFile, readFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { PortableError } from "../errors.ts";
import { resolveAccel } from "../clouds/local/accel.ts";

/** Appliance start (kernel boot under TCG) and guest inspection. */
const LAUNCH_TIMEOUT_MS = 300_000;
/** One command; an initramfs rebuild under TCG takes about a minute. */
export const COMMAND_TIMEOUT_MS = 900_000;
const OUTPUT_LIMIT_BYTES = 4 * 1024 * 1024;

export class FixupError extends PortableError {}

export const GUESTFS_MISSING = "fixups need libguestfs: guestfish is not on PATH (install Debian's libguestfs-tools and linux-image-amd64; `npm run setup` does)";

/** Where guestfish is on PATH; undefined when libguestfs is not installed. */
export function findGuestfish(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter).filter(Boolean)) {
    const path = join(dir, "guestfish");
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Fails with FIXUP_ENGINE_MISSING, before anything is made, when libguestfs is not installed. */
export function requireGuestfish(): void {
  if (findGuestfish() === undefined) throw new FixupError("FIXUP_ENGINE_MISSING", GUESTFS_MISSING);
}

/** The local target's KVM probe decides: a /dev/kvm that cannot run a guest means TCG. */
async function guestfsEnv(): Promise<NodeJS.ProcessEnv> {
  const { accel } = await resolveAccel("auto");
  return {
    ...process.env,
    LIBGUESTFS_BACKEND: process.env.LIBGUESTFS_BACKEND ?? "direct",
    ...(accel === "kvm" || process.env.LIBGUESTFS_BACKEND_SETTINGS !== undefined ? {} : { LIBGUESTFS_BACKEND_SETTINGS: "force_tcg" }),
    LC_ALL: "C",
  };
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs guestfish; its stderr goes to `stderrFd` (the session's log) when given. */
function run(args: readonly string[], timeoutMs: number, env: NodeJS.ProcessEnv, stderrFd?: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("guestfish", [...args], { env, stdio: ["ignore", "pipe", stderrFd ?? "pipe"] });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout!.on("data", (chunk: Buffer) => {
      if (stdout.length < OUTPUT_LIMIT_BYTES) stdout += chunk.toString("utf8");
    });
    child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-16384)));
    child.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === "ENOENT") reject(new FixupError("FIXUP_ENGINE_MISSING", GUESTFS_MISSING));
      else reject(error);
    });
    // The process, not its pipes: a --listen server forks a daemon that inherits stderr, so a
    // stderr pipe would stay open after the launcher exits. The daemon closes stdout.
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let ended = false;
    const settle = (): void => {
      if (exited === undefined || !ended) return;
      clearTimeout(timer);
      child.stderr?.destroy();
      if (exited.signal === "SIGKILL") reject(new FixupError("FIXUP_TIMEOUT", `libguestfs: guestfish ${args.filter((a) => !a.startsWith("--remote")).slice(0, 2).join(" ")} took more than ${timeoutMs / 1000} s`));
      else resolve({ code: exited.code, stdout, stderr });
    };
    child.stdout!.once("end", () => {
      ended = true;
      settle();
    });
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      // Let stderr that is already written arrive before it is cut.
      setTimeout(settle, 50);
    });
  });
}

/** The end of the session's log: the latest errors. */
async function tail(path: string): Promise<string> {
  return (await readFile(path, "utf8").catch(() => "")).slice(-4000);
}

/** A coded error for what libguestfs said. */
export function classifyGuestfsError(stderr: string, what: string): FixupError {
  const text = stderr.replace(/\s+/g, " ").trim().slice(-2000);
  if (/Read-only file system|read-only file system|write-protected|EROFS/i.test(text)) return new FixupError("FIXUP_READ_ONLY", `${what}: the guest filesystem is read-only: ${text}`);
  if (/no operating system was found|multi-boot operating systems are not supported/i.test(text)) return new FixupError("FIXUP_NO_OS", `${what}: libguestfs found no readable operating system root on the disk (unreadable or damaged root filesystem?): ${text}`);
  if (/mount.*(wrong fs type|bad superblock|Structure needs cleaning|cannot mount)/i.test(text) || /EUCLEAN|Input\/output error/i.test(text)) return new FixupError("FIXUP_ROOT_UNREADABLE", `${what}: the guest's filesystem cannot be mounted: ${text}`);
  return new FixupError("FIXUP_FAILED", `${what}: ${text || "libguestfs failed"}`);
}

export class GuestfsSession {
  private closed = false;
  readonly pid: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly logPath: string;

  private constructor(pid: number, env: NodeJS.ProcessEnv, logPath: string) {
    this.pid = pid;
    this.env = env;
    this.logPath = logPath;
  }

  /**
   * Starts an appliance on `image` (read-write) with the guest's filesystems mounted. The
   * server's stderr (where a remote command's error is printed) goes to `logPath`.
   */
  static async open(image: string, format: string, logPath: string): Promise<GuestfsSession> {
    const env = await guestfsEnv();
    const log = await openFile(logPath, "a");
    let started: Run;
    try {
      started = await run(["--listen", "--rw", `--format=${format}`, "-a", image, "-i"], LAUNCH_TIMEOUT_MS, env, log.fd);
    } finally {
      await log.close();
    }
    const pid = /GUESTFISH_PID=(\d+)/.exec(started.stdout)?.[1];
    if (started.code !== 0 || pid === undefined) throw classifyGuestfsError(await tail(logPath) || started.stdout, `libguestfs on ${image}`);
    return new GuestfsSession(Number(pid), env, logPath);
  }

  /** Runs one guestfish command; its output, trailing newline removed. */
  async call(command: string, ...args: string[]): Promise<string> {
    if (this.closed) throw new FixupError("FIXUP_FAILED", `libguestfs: ${command} after the session ended`);
    const result = await run([`--remote=${this.pid}`, "--", command, ...args], COMMAND_TIMEOUT_MS, this.env);
    if (result.code !== 0) {
      // The remote guestfish stops at its first failed command: the session is over. It printed
      // the error on its own stderr, the session's log.
      this.closed = true;
      await this.waitGone();
      throw classifyGuestfsError(`${result.stderr}\n${await tail(this.logPath)}`.trim() || result.stdout, `libguestfs ${command}`);
    }
    return result.stdout.replace(/\n$/, "");
  }

  async isFile(path: string): Promise<boolean> {
    return (await this.call("is-file", path, "followsymlinks:true")) === "true";
  }

  async isDir(path: string): Promise<boolean> {
    return (await this.call("is-dir", path, "followsymlinks:true")) === "true";
  }

  /**
   * Runs a shell command inside the guest (chroot, with /dev, /proc and /sys). Never fails by
   * itself: the exit code comes back, so the caller names the error.
   */
  async sh(script: string): Promise<{ code: number; output: string }> {
    const marker = "__portable_rc=";
    const output = await this.call("sh", `{ ${script} ; } 2>&1; echo "${marker}$?"`);
    const at = output.lastIndexOf(marker);
    if (at < 0) throw new FixupError("FIXUP_FAILED", `libguestfs sh: no exit status in the output of ${JSON.stringify(script)}`);
    return { code: Number(output.slice(at + marker.length).trim()), output: output.slice(0, at).trimEnd() };
  }

  /** Flushes, unmounts and stops the appliance; waits until the image is closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.call("sync");
      await this.call("umount-all");
    } finally {
      if (!this.closed) {
        this.closed = true;
        await run([`--remote=${this.pid}`, "--", "exit"], 60_000, this.env).catch(() => undefined);
      }
      await this.waitGone();
    }
  }

  /** Kills the appliance without flushing (after a failure; the overlay is thrown away). */
  async abort(): Promise<void> {
    this.closed = true;
    try {
      process.kill(this.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await this.waitGone();
  }

  private async waitGone(): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      try {
        process.kill(this.pid, 0);
      } catch {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
