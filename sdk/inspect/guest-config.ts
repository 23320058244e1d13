// Parsers for the guest's own configuration text: os-release, fstab, grub.cfg and
// modules.builtin. Pure functions over strings, so tests feed them text directly.
//
// Refs: os-release(5); fstab(5); GRUB manual §"linux" and §"menuentry"; the kernel's
// Documentation/kbuild/kbuild.rst (modules.builtin lists `kernel/<path>/<name>.ko`).

/** os-release(5): KEY=value lines, values optionally quoted with shell-style escapes. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m?.[1] === undefined || m[2] === undefined) continue;
    let value = m[2].trim();
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.endsWith(quote) && value.length >= 2) {
      value = value.slice(1, -1);
      if (quote === '"') value = value.replace(/\\(["\\`$])/g, "$1");
    }
    out[m[1]] = value;
  }
  return out;
}

export interface FstabEntry {
  readonly line: number;
  readonly spec: string;
  readonly mountPoint: string;
  readonly type: string;
  readonly options: string;
}

/** fstab(5): six whitespace-separated fields, `#` comments, octal escapes such as `\040`. */
export function parseFstab(text: string): FstabEntry[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  const entries: FstabEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const [spec, mountPoint, type, options] = line.split(/\s+/);
    if (spec === undefined || mountPoint === undefined) return;
    entries.push({ line: i + 1, spec: unescape(spec), mountPoint: unescape(mountPoint), type: type ?? "auto", options: options ?? "defaults" });
  });
  return entries;
}

/**
 * Kernel names that differ between hypervisors: /dev/sdX (SCSI, SATA), /dev/xvdX (Xen),
 * /dev/vdX (virtio-blk), /dev/hdX (IDE), /dev/nvmeXnY (NVMe). A disk called sda on vSphere is
 * nvme0n1 on Nitro and vda on KVM; fstab should name it by UUID, LABEL or PARTUUID.
 */
const UNSTABLE_DEVICE = /^\/dev\/(sd[a-z]+\d*|xvd[a-z]+\d*|vd[a-z]+\d*|hd[a-z]+\d*|nvme\d+n\d+(p\d+)?)$/;

export function isUnstableDeviceName(spec: string): boolean {
  return UNSTABLE_DEVICE.test(spec);
}

export interface GrubEntry {
  readonly title: string;
  /** The kernel image path of the entry's `linux` line, e.g. `/boot/vmlinuz-6.1.0-56-amd64`. */
  readonly kernelPath?: string;
  /** The kernel version taken from the image name (`vmlinuz-<version>`). */
  readonly kernelVersion?: string;
  /** The `root=` kernel argument. */
  readonly root?: string;
}

/** The menu entries of a grub.cfg, in order; the first is the default unless `set default` says otherwise. */
export function parseGrubConfig(text: string): { entries: GrubEntry[]; defaultIndex: number } {
  const entries: GrubEntry[] = [];
  let current: { title: string; kernelPath?: string; root?: string } | undefined;
  let defaultIndex = 0;
  const flush = (): void => {
    if (current === undefined) return;
    const version = current.kernelPath === undefined ? undefined : /vmlinuz-([^/\s]+)$/.exec(current.kernelPath)?.[1];
    entries.push({ title: current.title, ...(current.kernelPath === undefined ? {} : { kernelPath: current.kernelPath }), ...(version === undefined ? {} : { kernelVersion: version }), ...(current.root === undefined ? {} : { root: current.root }) });
    current = undefined;
  };
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const menu = /^menuentry\s+(['"])(.*?)\1/.exec(line);
    if (menu !== null) {
      flush();
      current = { title: menu[2] ?? "" };
      continue;
    }
    const def = /^set\s+default=["']?(\d+)["']?$/.exec(line);
    if (def?.[1] !== undefined) defaultIndex = Number(def[1]);
    const linux = /^(linux|linuxefi|linux16)\s+(\S+)(.*)$/.exec(line);
    if (linux !== null && current !== undefined) {
      current.kernelPath = linux[2];
      const root = /(?:^|\s)root=(\S+)/.exec(linux[3] ?? "");
      if (root?.[1] !== undefined) current.root = root[1];
    }
  }
  flush();
  return { entries, defaultIndex: defaultIndex < entries.length ? defaultIndex : 0 };
}

/** A module's name as the kernel knows it: basename without `.ko[.xz|.zst|.gz]`, `-` as `_`. */
export function moduleName(path: string): string | undefined {
  const base = path.slice(path.lastIndexOf("/") + 1);
  const m = /^(.+)\.ko(\.(xz|zst|gz))?$/.exec(base);
  return m?.[1]?.replaceAll("-", "_");
}

/** Module names listed in modules.builtin (one `kernel/…/name.ko` per line). */
export function parseModulesBuiltin(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const name = moduleName(line.trim());
    if (name !== undefined) names.add(name);
  }
  return names;
}

/** Orders kernel versions like `6.1.0-56-amd64` numerically, part by part. */
export function compareKernelVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    const nx = Number(x);
    const ny = Number(y);
    const diff = Number.isInteger(nx) && Number.isInteger(ny) && x !== "" && y !== "" ? nx - ny : x.localeCompare(y);
    if (diff !== 0) return diff;
  }
  return 0;
}
