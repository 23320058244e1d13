// Guest OS identities across VMware guestId, the OVF/CIM OS id, AWS platform/architecture and
// Azure osType.
//
// Sources (compiled 2026-11-28):
// - CIM ids: DMTF CIM_OperatingSystem.OSType value map (CIM schema 2.x), as used by
//   OperatingSystemSection/@ovf:id (DSP0243 §9.7); cross-checked against govmomi ovf/cim.go
//   (vmware/govmomi commit b356a6bcc904, 2026-03-13), which pairs the same ids with guestIds.
// - VMware guestIds: vSphere API VirtualMachineGuestOsIdentifier.
// - AWS: EC2 `Platform` ("Linux/UNIX" | "Windows") and `Architecture` (i386 | x86_64 | arm64) of
//   RegisterImage/ImportImage; current-generation (Nitro) types run 64-bit guests only.
// - Azure: OSDisk `osType` ("Linux" | "Windows"); FreeBSD images on Azure declare "Linux".
import { NotCapableError } from "../../errors.ts";
import type { Architecture, GuestOs, GuestOsFamily } from "../workload.ts";

export type AwsPlatform = "Linux/UNIX" | "Windows";
export type AzureOsType = "Linux" | "Windows";

/** One known guest: its neutral identity and how VMware and CIM name it. */
export interface GuestOsRow {
  readonly vmwareGuestId: string;
  readonly cimOsId: number;
  readonly family: GuestOsFamily;
  readonly distribution?: string;
  readonly version?: string;
  readonly architecture: Architecture;
}

/**
 * Known guests. Order matters for the reverse lookups: the first row that matches a neutral
 * guest wins, so generic rows come after specific ones of the same family.
 */
export const GUEST_OS_TABLE: readonly GuestOsRow[] = [
  { vmwareGuestId: "ubuntu64Guest", cimOsId: 94, family: "linux", distribution: "ubuntu", architecture: "x86_64" },
  { vmwareGuestId: "ubuntuGuest", cimOsId: 93, family: "linux", distribution: "ubuntu", architecture: "i386" },
  { vmwareGuestId: "debian12_64Guest", cimOsId: 96, family: "linux", distribution: "debian", version: "12", architecture: "x86_64" },
  { vmwareGuestId: "debian11_64Guest", cimOsId: 96, family: "linux", distribution: "debian", version: "11", architecture: "x86_64" },
  { vmwareGuestId: "debian10_64Guest", cimOsId: 96, family: "linux", distribution: "debian", version: "10", architecture: "x86_64" },
  { vmwareGuestId: "rhel9_64Guest", cimOsId: 80, family: "linux", distribution: "rhel", version: "9", architecture: "x86_64" },
  { vmwareGuestId: "rhel8_64Guest", cimOsId: 80, family: "linux", distribution: "rhel", version: "8", architecture: "x86_64" },
  { vmwareGuestId: "rhel7_64Guest", cimOsId: 80, family: "linux", distribution: "rhel", version: "7", architecture: "x86_64" },
  { vmwareGuestId: "rhel6_64Guest", cimOsId: 80, family: "linux", distribution: "rhel", version: "6", architecture: "x86_64" },
  { vmwareGuestId: "rhel6Guest", cimOsId: 79, family: "linux", distribution: "rhel", version: "6", architecture: "i386" },
  { vmwareGuestId: "centos64Guest", cimOsId: 107, family: "linux", distribution: "centos", architecture: "x86_64" },
  { vmwareGuestId: "centosGuest", cimOsId: 106, family: "linux", distribution: "centos", architecture: "i386" },
  { vmwareGuestId: "oracleLinux64Guest", cimOsId: 109, family: "linux", distribution: "oracle", architecture: "x86_64" },
  { vmwareGuestId: "sles15_64Guest", cimOsId: 85, family: "linux", distribution: "sles", version: "15", architecture: "x86_64" },
  { vmwareGuestId: "sles64Guest", cimOsId: 85, family: "linux", distribution: "sles", architecture: "x86_64" },
  { vmwareGuestId: "other26xLinux64Guest", cimOsId: 100, family: "linux", version: "2.6", architecture: "x86_64" },
  { vmwareGuestId: "other26xLinuxGuest", cimOsId: 99, family: "linux", version: "2.6", architecture: "i386" },
  { vmwareGuestId: "otherLinux64Guest", cimOsId: 101, family: "linux", architecture: "x86_64" },
  { vmwareGuestId: "otherLinuxGuest", cimOsId: 36, family: "linux", architecture: "i386" },
  // ESXi on Arm guest ids; CIM has no Arm-specific value, so 101 (Linux 64-bit) is the closest.
  { vmwareGuestId: "arm-ubuntu-64", cimOsId: 94, family: "linux", distribution: "ubuntu", architecture: "arm64" },
  { vmwareGuestId: "arm-other-64", cimOsId: 101, family: "linux", architecture: "arm64" },
  { vmwareGuestId: "windows2019srv_64Guest", cimOsId: 121, family: "windows", distribution: "windows-server", version: "2019", architecture: "x86_64" },
  { vmwareGuestId: "windows9Server64Guest", cimOsId: 116, family: "windows", distribution: "windows-server", version: "2016", architecture: "x86_64" },
  { vmwareGuestId: "windows8Server64Guest", cimOsId: 112, family: "windows", distribution: "windows-server", version: "2012", architecture: "x86_64" },
  { vmwareGuestId: "windows7Server64Guest", cimOsId: 103, family: "windows", distribution: "windows-server", version: "2008r2", architecture: "x86_64" },
  { vmwareGuestId: "winNetStandard64Guest", cimOsId: 70, family: "windows", distribution: "windows-server", version: "2003", architecture: "x86_64" },
  { vmwareGuestId: "winNetStandardGuest", cimOsId: 69, family: "windows", distribution: "windows-server", version: "2003", architecture: "i386" },
  { vmwareGuestId: "windows9_64Guest", cimOsId: 120, family: "windows", distribution: "windows", version: "10", architecture: "x86_64" },
  { vmwareGuestId: "windows7_64Guest", cimOsId: 105, family: "windows", distribution: "windows", version: "7", architecture: "x86_64" },
  { vmwareGuestId: "winXPProGuest", cimOsId: 67, family: "windows", distribution: "windows", version: "xp", architecture: "i386" },
  { vmwareGuestId: "win2000ServGuest", cimOsId: 58, family: "windows", distribution: "windows-server", version: "2000", architecture: "i386" },
  { vmwareGuestId: "freebsd13_64Guest", cimOsId: 78, family: "freebsd", version: "13", architecture: "x86_64" },
  { vmwareGuestId: "freebsd64Guest", cimOsId: 78, family: "freebsd", architecture: "x86_64" },
  { vmwareGuestId: "freebsdGuest", cimOsId: 42, family: "freebsd", architecture: "i386" },
  { vmwareGuestId: "solaris11_64Guest", cimOsId: 81, family: "solaris", version: "11", architecture: "x86_64" },
  { vmwareGuestId: "solaris10_64Guest", cimOsId: 81, family: "solaris", version: "10", architecture: "x86_64" },
  { vmwareGuestId: "solaris10Guest", cimOsId: 29, family: "solaris", version: "10", architecture: "i386" },
  { vmwareGuestId: "other64Guest", cimOsId: 102, family: "other", architecture: "x86_64" },
  { vmwareGuestId: "otherGuest", cimOsId: 1, family: "other", architecture: "i386" },
];

/**
 * CIM ids that name a family but no row above (DSP0243 producers such as VirtualBox write
 * these): the family and architecture they imply.
 */
const CIM_FAMILY: Readonly<Record<number, { family: GuestOsFamily; distribution?: string; version?: string; architecture: Architecture }>> = {
  0: { family: "other", architecture: "x86_64" },
  2: { family: "other", architecture: "x86_64" },
  18: { family: "windows", architecture: "i386" },
  36: { family: "linux", architecture: "i386" },
  41: { family: "other", architecture: "i386" },
  65: { family: "other", architecture: "i386" },
  71: { family: "windows", distribution: "windows", architecture: "x86_64" },
  73: { family: "windows", distribution: "windows", architecture: "i386" },
  74: { family: "windows", distribution: "windows", architecture: "x86_64" },
  76: { family: "windows", distribution: "windows-server", architecture: "i386" },
  77: { family: "windows", distribution: "windows-server", architecture: "x86_64" },
  79: { family: "linux", distribution: "rhel", architecture: "i386" },
  80: { family: "linux", distribution: "rhel", architecture: "x86_64" },
  82: { family: "linux", distribution: "suse", architecture: "i386" },
  83: { family: "linux", distribution: "suse", architecture: "x86_64" },
  84: { family: "linux", distribution: "sles", architecture: "i386" },
  95: { family: "linux", distribution: "debian", architecture: "i386" },
  96: { family: "linux", distribution: "debian", architecture: "x86_64" },
  97: { family: "linux", architecture: "i386" },
  98: { family: "linux", architecture: "x86_64" },
  113: { family: "windows", distribution: "windows", version: "8", architecture: "i386" },
  114: { family: "windows", distribution: "windows", architecture: "x86_64" },
  115: { family: "windows", distribution: "windows-server", architecture: "x86_64" },
  117: { family: "windows", distribution: "windows", architecture: "i386" },
  118: { family: "windows", distribution: "windows", architecture: "x86_64" },
  119: { family: "windows", distribution: "windows", architecture: "i386" },
};

function neutral(row: { family: GuestOsFamily; distribution?: string; version?: string; architecture: Architecture }): GuestOs {
  return {
    family: row.family,
    architecture: row.architecture,
    ...(row.distribution === undefined ? {} : { distribution: row.distribution }),
    ...(row.version === undefined ? {} : { version: row.version }),
  };
}

/**
 * Reads a VMware guestId. Ids not in the table are classified by their stem (e.g.
 * "rhel10_64Guest" is Linux x86_64), and undefined comes back only when the stem is unknown.
 */
export function guestOsFromVmwareId(guestId: string): GuestOs | undefined {
  const row = GUEST_OS_TABLE.find((r) => r.vmwareGuestId.toLowerCase() === guestId.toLowerCase());
  if (row !== undefined) return neutral(row);
  const id = guestId.toLowerCase();
  const architecture: Architecture = id.startsWith("arm-") ? "arm64" : /64/.test(id) ? "x86_64" : "i386";
  const stems: readonly [RegExp, GuestOsFamily, string?][] = [
    [/^win|^windows/, "windows"],
    [/^(arm-)?ubuntu/, "linux", "ubuntu"],
    [/^(arm-)?debian/, "linux", "debian"],
    [/^(arm-)?rhel|^redhat/, "linux", "rhel"],
    [/^centos/, "linux", "centos"],
    [/^(arm-)?rocky|^rockylinux/, "linux", "rocky"],
    [/^almalinux/, "linux", "almalinux"],
    [/^oraclelinux/, "linux", "oracle"],
    [/^sles|^opensuse|^suse/, "linux", "sles"],
    [/^(arm-)?photon|^vmwarephoton/, "linux", "photon"],
    [/^amazonlinux/, "linux", "amazon"],
    [/linux|^(arm-)?fedora|^asianux|^coreos|^mandr|^turbolinux/, "linux"],
    [/^(arm-)?freebsd/, "freebsd"],
    [/^solaris/, "solaris"],
    [/^other/, "other"],
  ];
  for (const [pattern, family, distribution] of stems) {
    if (pattern.test(id)) {
      const version = /(\d+)(_64)?guest$/.exec(id)?.[1];
      return neutral({ family, architecture, ...(distribution === undefined ? {} : { distribution }), ...(version === undefined || family === "windows" ? {} : { version }) });
    }
  }
  return undefined;
}

/** Reads an OVF OperatingSystemSection/@ovf:id. Undefined for ids this table does not know. */
export function guestOsFromCimId(cimOsId: number, version?: string): GuestOs | undefined {
  const rows = GUEST_OS_TABLE.filter((r) => r.cimOsId === cimOsId);
  const exact = version === undefined ? undefined : rows.find((r) => r.version === version);
  const row = exact ?? rows.find((r) => r.version === undefined) ?? rows[0];
  if (row !== undefined) return neutral({ ...row, ...(version === undefined ? {} : { version }) });
  const family = CIM_FAMILY[cimOsId];
  return family === undefined ? undefined : neutral({ ...family, ...(version === undefined ? {} : { version }) });
}

/**
 * VirtualBox OSType names (Main/src-all/Global.cpp): "Ubuntu_64", "Windows2019_64", "RedHat",
 * "FreeBSD_64", "Solaris11_64", "Other". The suffix "_64" means x86_64; "_arm64" means arm64.
 */
export function guestOsFromVirtualBoxType(osType: string): GuestOs | undefined {
  const t = osType.toLowerCase();
  const architecture: Architecture = t.endsWith("_arm64") ? "arm64" : t.endsWith("_64") ? "x86_64" : "i386";
  const base = t.replace(/_(arm)?64$/, "");
  const table: readonly [RegExp, GuestOsFamily, string?][] = [
    [/^ubuntu/, "linux", "ubuntu"],
    [/^debian/, "linux", "debian"],
    [/^redhat|^rhel/, "linux", "rhel"],
    [/^oracle/, "linux", "oracle"],
    [/^opensuse|^suse/, "linux", "sles"],
    [/^fedora/, "linux", "fedora"],
    [/^archlinux/, "linux", "arch"],
    [/^linux|^gentoo|^mandriva|^turbolinux|^xandros/, "linux"],
    [/^win|^windows/, "windows"],
    [/^freebsd/, "freebsd"],
    [/^solaris|^opensolaris/, "solaris"],
    [/^other|^dos|^os2|^netware|^l4|^qnx|^jrockit|^macos|^openbsd|^netbsd/, "other"],
  ];
  for (const [pattern, family, distribution] of table) {
    if (pattern.test(base)) return neutral({ family, architecture, ...(distribution === undefined ? {} : { distribution }) });
  }
  return undefined;
}

/** The best-matching row for a neutral guest: distribution and version if they match, else the family's generic row. */
function rowFor(guest: GuestOs): GuestOsRow {
  const sameArch = GUEST_OS_TABLE.filter((r) => r.family === guest.family && r.architecture === guest.architecture);
  const candidates = sameArch.length > 0 ? sameArch : GUEST_OS_TABLE.filter((r) => r.family === guest.family);
  const byDistro = candidates.filter((r) => r.distribution === guest.distribution);
  return (
    byDistro.find((r) => r.version === guest.version) ??
    byDistro.find((r) => r.version === undefined) ??
    candidates.find((r) => r.distribution === undefined && r.version === undefined) ??
    (candidates[0] as GuestOsRow)
  );
}

/** The vSphere guestId for a guest: every family has a generic id, so this never fails. */
export function vmwareGuestIdFor(guest: GuestOs): string {
  return rowFor(guest).vmwareGuestId;
}

/** The CIM OS id for OperatingSystemSection/@ovf:id. */
export function cimOsIdFor(guest: GuestOs): number {
  return rowFor(guest).cimOsId;
}

export interface AwsGuestMapping {
  readonly platform: AwsPlatform;
  readonly architecture: "x86_64" | "arm64";
}

function notCapable(code: string, target: string, reason: string, guest: GuestOs): never {
  throw new NotCapableError(code, `${target}: cannot run guest ${guest.family}${guest.distribution ? `/${guest.distribution}` : ""} (${guest.architecture}): ${reason}`, {
    context: { target, family: guest.family, architecture: guest.architecture },
  });
}

/**
 * EC2 platform and architecture. Solaris and unidentified guests have no EC2 platform; 32-bit
 * guests do not run on current-generation (Nitro) types, which are all this library places.
 */
export function awsGuestFor(guest: GuestOs): AwsGuestMapping {
  if (guest.family === "solaris") notCapable("AWS_GUEST_OS_UNSUPPORTED", "aws", "EC2 offers no Solaris platform", guest);
  if (guest.family === "other") notCapable("AWS_GUEST_OS_UNSUPPORTED", "aws", "EC2 needs a Linux/UNIX or Windows guest and this one is unidentified", guest);
  if (guest.architecture === "i386") notCapable("AWS_GUEST_ARCH_UNSUPPORTED", "aws", "current-generation EC2 instance types run 64-bit guests only", guest);
  if (guest.family === "windows" && guest.architecture === "arm64") {
    notCapable("AWS_GUEST_OS_UNSUPPORTED", "aws", "EC2 has no Windows on Graviton (arm64)", guest);
  }
  const architecture = guest.architecture === "arm64" ? "arm64" : "x86_64";
  return { platform: guest.family === "windows" ? "Windows" : "Linux/UNIX", architecture };
}

/** Azure OSDisk osType. Azure runs Linux, FreeBSD (declared as Linux) and Windows guests only. */
export function azureOsTypeFor(guest: GuestOs): AzureOsType {
  if (guest.family === "solaris") notCapable("AZURE_GUEST_OS_UNSUPPORTED", "azure", "Azure does not run Solaris guests", guest);
  if (guest.family === "other") notCapable("AZURE_GUEST_OS_UNSUPPORTED", "azure", "Azure needs osType Linux or Windows and this guest is unidentified", guest);
  if (guest.architecture === "i386") notCapable("AZURE_GUEST_ARCH_UNSUPPORTED", "azure", "Azure VM sizes run 64-bit guests only", guest);
  return guest.family === "windows" ? "Windows" : "Linux";
}

