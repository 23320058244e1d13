// OVF descriptor → Workload(s) plus disk references.
//
// Reads OVF 1.x (DSP0243 1.1, namespace .../ovf/envelope/1) and 2.x (DSP0243 2.1, .../envelope/2)
// envelopes: References, DiskSection, NetworkSection, VirtualSystem and VirtualSystemCollection,
// VirtualHardwareSection with RASD Items and the 2.x EthernetPortItem/StorageItem (EPASD/SASD),
// OperatingSystemSection and ProductSection, plus the VMware `vmw:` extensions (osType,
// CoresPerSocket, Config firmware/secure boot, vTPM) and VirtualBox `vbox:Machine`.
//
// Elements are matched by local name, so `ovf:Item` and `Item` read alike (ovftool 3.x writes
// every element prefixed). What does not fit the Workload is reported as a problem with its
// path, never dropped silently; what cannot be read at all is a FormatError.
import { FormatError } from "../errors.ts";
import { guestOsFromCimId, guestOsFromVirtualBoxType, guestOsFromVmwareId } from "../spec/mappings/guest-os.ts";
import { safeParseWorkload, type DiskBus, type DiskSourceRef, type GuestOs, type Workload, type WorkloadInput } from "../spec/workload.ts";
import { bytesPerUnit } from "./units.ts";
import { childNamed, childrenNamed, childText, decodeXmlBytes, parseXml, type XmlElement } from "./xml.ts";

export const OVF_NAMESPACE_1 = "http://schemas.dmtf.org/ovf/envelope/1";
export const OVF_NAMESPACE_2 = "http://schemas.dmtf.org/ovf/envelope/2";
/** ProductSection property prefix that carries Workload tags (written by ovf-writer.ts). */
export const TAG_PROPERTY_PREFIX = "portable.tag.";

/** CIM_ResourceAllocationSettingData.ResourceType values (DSP1041 / CIM schema 2.x). */
export const RESOURCE_TYPE = {
  other: 1,
  processor: 3,
  memory: 4,
  ideController: 5,
  parallelScsiHba: 6,
  ethernetAdapter: 10,
  floppy: 14,
  cdDrive: 15,
  dvdDrive: 16,
  disk: 17,
  otherStorage: 20,
  usbController: 23,
  graphics: 24,
  logicalDisk: 31,
  sound: 35,
} as const;

/** A problem found while reading: where (a path into the descriptor) and what. */
export interface OvfProblem {
  readonly code: string;
  readonly path: string;
  readonly message: string;
}

export interface OvfFile {
  readonly id: string;
  readonly href: string;
  readonly sizeBytes?: number;
  readonly compression?: "gzip";
  /** Set when the file is split into chunks `href.000000000`, `href.000000001`, … (DSP0243 §5.3). */
  readonly chunkSizeBytes?: number;
}

export interface OvfDisk {
  readonly diskId: string;
  readonly capacityBytes?: number;
  readonly populatedSizeBytes?: number;
  readonly format?: string;
  readonly file?: OvfFile;
}

/** A disk attached to a virtual system: where the Workload disk's bytes live. */
export interface OvfDiskAttachment {
  /** The Workload disk id. */
  readonly id: string;
  readonly diskId: string;
  readonly bus: DiskBus;
  readonly file?: OvfFile;
  readonly format?: string;
}

export interface OvfProduct {
  readonly product?: string;
  readonly vendor?: string;
  readonly version?: string;
  readonly fullVersion?: string;
  readonly properties: readonly { readonly key: string; readonly type?: string; readonly value?: string }[];
}

export interface OvfVirtualSystem {
  readonly id: string;
  /** Undefined when the system could not be made into a valid Workload; see `problems`. */
  readonly workload?: Workload;
  readonly attachments: readonly OvfDiskAttachment[];
  readonly product?: OvfProduct;
  readonly virtualSystemType?: string;
  /** vmw:osType, vbox OSType or CIM id, as written. */
  readonly osSource?: string;
}

export interface OvfDescriptor {
  readonly ovfVersion: "1.x" | "2.x";
  readonly files: readonly OvfFile[];
  readonly disks: readonly OvfDisk[];
  readonly networks: readonly { readonly name: string; readonly description?: string }[];
  readonly systems: readonly OvfVirtualSystem[];
  readonly problems: readonly OvfProblem[];
}

export interface ReadOvfOptions {
  /** Names the descriptor in messages. */
  readonly name?: string;
  /** Where a referenced file's bytes are, for each disk's Workload `source`. Default: `{kind: "file", path: href}`. */
  readonly sourceFor?: (file: OvfFile) => DiskSourceRef;
}

function attr(element: XmlElement | undefined, name: string): string | undefined {
  const value = element?.attrs[name];
  return value === undefined || value === "" ? undefined : value;
}

function integer(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*\d+\s*$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Workload ids allow letters, digits, ".", "_" and "-", 63 at most. */
function safeId(value: string, fallback: string): string {
  const cleaned = value.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 63);
  return cleaned === "" ? fallback : cleaned;
}

/** "00-16-8B-DB-00-5E", "080027FAE441" or "00:50:56:aa:bb:cc" → "00:16:8b:db:00:5e". */
export function normalizeMac(value: string): string | undefined {
  const hex = value.replace(/[-:.\s]/g, "").toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(":");
}

class Reader {
  readonly problems: OvfProblem[] = [];
  problem(code: string, path: string, message: string): void {
    this.problems.push({ code, path, message });
  }
}

function readFiles(envelope: XmlElement, reader: Reader): OvfFile[] {
  const files: OvfFile[] = [];
  childrenNamed(childNamed(envelope, "References"), "File").forEach((file, index) => {
    const path = `References.File[${index}]`;
    const id = attr(file, "id");
    const href = attr(file, "href");
    if (id === undefined || href === undefined) {
      reader.problem("OVF_FILE_INCOMPLETE", path, "File needs ovf:id and ovf:href; skipped");
      return;
    }
    const compression = attr(file, "compression");
    if (compression !== undefined && compression !== "gzip" && compression !== "identity") {
      reader.problem("OVF_COMPRESSION_UNKNOWN", `${path}.compression`, `compression "${compression}" is not defined by DSP0243 (gzip or identity)`);
    }
    const sizeBytes = integer(attr(file, "size"));
    const chunkSizeBytes = integer(attr(file, "chunkSize"));
    files.push({
      id,
      href,
      ...(sizeBytes === undefined ? {} : { sizeBytes }),
      ...(compression === "gzip" ? { compression: "gzip" as const } : {}),
      ...(chunkSizeBytes === undefined ? {} : { chunkSizeBytes }),
    });
  });
  return files;
}

/** Resolves `${key}` capacities against ProductSection property defaults (DSP0243 §9.5.1). */
function propertyDefaults(envelope: XmlElement): Map<string, string> {
  const values = new Map<string, string>();
  const visit = (element: XmlElement): void => {
    for (const child of element.children) {
      if (child.name === "ProductSection") {
        for (const property of childrenNamed(child, "Property")) {
          const key = attr(property, "key");
          const value = attr(property, "value");
          if (key !== undefined && value !== undefined) values.set(key, value);
        }
      } else visit(child);
    }
  };
  visit(envelope);
  return values;
}

function readDisks(envelope: XmlElement, files: readonly OvfFile[], reader: Reader): OvfDisk[] {
  const properties = propertyDefaults(envelope);
  const disks: OvfDisk[] = [];
  const sections = [...childrenNamed(envelope, "DiskSection"), ...childrenNamed(envelope, "Section").filter((s) => /DiskSection/.test(s.attrs["xsi:type"] ?? ""))];
  for (const section of sections) {
    childrenNamed(section, "Disk").forEach((disk, index) => {
      const path = `DiskSection.Disk[${index}]`;
      const diskId = attr(disk, "diskId");
      if (diskId === undefined) {
        reader.problem("OVF_DISK_INCOMPLETE", path, "Disk has no ovf:diskId; skipped");
        return;
      }
      let capacityText = attr(disk, "capacity");
      const reference = capacityText === undefined ? null : /^\$\{(.+)\}$/.exec(capacityText);
      if (reference !== null && reference !== undefined) {
        capacityText = properties.get(reference[1] as string);
        if (capacityText === undefined) reader.problem("OVF_CAPACITY_UNRESOLVED", `${path}.capacity`, `capacity refers to property "${reference[1]}", which has no default value`);
      }
      const units = attr(disk, "capacityAllocationUnits");
      const perUnit = bytesPerUnit(units);
      const capacity = integer(capacityText);
      let capacityBytes: number | undefined;
      if (capacity !== undefined && perUnit !== undefined) capacityBytes = capacity * perUnit;
      else if (capacityText !== undefined) reader.problem("OVF_CAPACITY_INVALID", `${path}.capacity`, `capacity "${capacityText}" in units "${units ?? "byte"}" is not a byte count`);
      const fileRef = attr(disk, "fileRef");
      const file = fileRef === undefined ? undefined : files.find((f) => f.id === fileRef);
      if (fileRef !== undefined && file === undefined) reader.problem("OVF_FILE_REF_UNKNOWN", `${path}.fileRef`, `fileRef "${fileRef}" names no File in References`);
      const populated = integer(attr(disk, "populatedSize"));
      const format = attr(disk, "format");
      disks.push({
        diskId,
        ...(capacityBytes === undefined ? {} : { capacityBytes }),
        ...(populated === undefined ? {} : { populatedSizeBytes: populated }),
        ...(format === undefined ? {} : { format }),
        ...(file === undefined ? {} : { file }),
      });
    });
  }
  return disks;
}

function readNetworks(envelope: XmlElement): { name: string; description?: string }[] {
  return childrenNamed(childNamed(envelope, "NetworkSection"), "Network").flatMap((network) => {
    const name = attr(network, "name");
    if (name === undefined) return [];
    const description = childText(network, "Description");
    return [{ name, ...(description === undefined ? {} : { description }) }];
  });
}

interface HardwareItem {
  readonly element: XmlElement;
  readonly path: string;
  readonly kind: "Item" | "EthernetPortItem" | "StorageItem";
  readonly resourceType?: number;
  readonly instanceId?: string;
  field(name: string): string | undefined;
}

function hardwareItems(section: XmlElement, sectionPath: string): HardwareItem[] {
  const counters = new Map<string, number>();
  const items: HardwareItem[] = [];
  for (const element of section.children) {
    if (element.name !== "Item" && element.name !== "EthernetPortItem" && element.name !== "StorageItem") continue;
    const index = counters.get(element.name) ?? 0;
    counters.set(element.name, index + 1);
    const field = (name: string): string | undefined => childText(element, name);
    const resourceType = integer(field("ResourceType"));
    const instanceId = field("InstanceID");
    items.push({
      element,
      path: `${sectionPath}.${element.name}[${index}]`,
      kind: element.name,
      field,
      ...(resourceType === undefined ? {} : { resourceType }),
      ...(instanceId === undefined ? {} : { instanceId }),
    });
  }
  return items;
}

/** The bus a disk controller item presents: by ResourceType, refined by ResourceSubType. */
function busOf(controller: HardwareItem): DiskBus | undefined {
  const subtype = (controller.field("ResourceSubType") ?? "").toLowerCase();
  if (subtype.includes("nvme")) return "nvme";
  if (controller.resourceType === RESOURCE_TYPE.ideController) return "ide";
  if (controller.resourceType === RESOURCE_TYPE.parallelScsiHba) return "scsi";
  if (controller.resourceType === RESOURCE_TYPE.otherStorage) {
    if (subtype.includes("ahci") || subtype.includes("sata")) return "sata";
    if (subtype.includes("sas") || subtype.includes("scsi")) return "scsi";
    return undefined;
  }
  return undefined;
}

interface VboxHints {
  vcpus?: number;
  memoryMiB?: number;
  uefi?: boolean;
  macs: string[];
  osType?: string;
}

/** What VirtualBox's own machine section adds to the RASD items (VirtualBox-settings.xsd). */
function readVboxMachine(system: XmlElement): VboxHints {
  const machine = childrenNamed(system, "Machine").find((m) => m.prefix === "vbox" || m.attrs.OSType !== undefined);
  const hints: VboxHints = { macs: [] };
  if (machine === undefined) return hints;
  const hardware = childNamed(machine, "Hardware");
  const vcpus = integer(attr(childNamed(hardware, "CPU"), "count"));
  if (vcpus !== undefined) hints.vcpus = vcpus;
  const memory = integer(attr(childNamed(hardware, "Memory"), "RAMSize"));
  if (memory !== undefined) hints.memoryMiB = memory;
  const firmware = attr(childNamed(hardware, "Firmware"), "type");
  if (firmware !== undefined) hints.uefi = /^EFI/i.test(firmware);
  for (const adapter of childrenNamed(childNamed(hardware, "Network"), "Adapter")) {
    if (attr(adapter, "enabled") === "false") continue;
    const mac = normalizeMac(attr(adapter, "MACAddress") ?? "");
    if (mac !== undefined) hints.macs.push(mac);
  }
  const osType = attr(machine, "OSType");
  if (osType !== undefined) hints.osType = osType;
  return hints;
}

function readProduct(system: XmlElement): OvfProduct | undefined {
  const section = childNamed(system, "ProductSection");
  if (section === undefined) return undefined;
  const fields: Record<string, string> = {};
  for (const [key, element] of [
    ["product", "Product"],
    ["vendor", "Vendor"],
    ["version", "Version"],
    ["fullVersion", "FullVersion"],
  ] as const) {
    const value = childText(section, element);
    if (value !== undefined) fields[key] = value;
  }
  const properties = childrenNamed(section, "Property").flatMap((p) => {
    const key = attr(p, "key");
    if (key === undefined) return [];
    const type = attr(p, "type");
    const value = attr(p, "value");
    return [{ key, ...(type === undefined ? {} : { type }), ...(value === undefined ? {} : { value }) }];
  });
  return { ...fields, properties };
}

function readGuestOs(system: XmlElement, vbox: VboxHints, systemPath: string, reader: Reader): { guestOs: GuestOs; source?: string } {
  const section = childNamed(system, "OperatingSystemSection");
  const vmwareId = attr(section, "osType");
  if (vmwareId !== undefined) {
    const guest = guestOsFromVmwareId(vmwareId);
    if (guest !== undefined) return { guestOs: guest, source: `vmw:osType=${vmwareId}` };
  }
  const vboxType = childText(section, "OSType") ?? vbox.osType;
  if (vboxType !== undefined) {
    const guest = guestOsFromVirtualBoxType(vboxType);
    if (guest !== undefined) return { guestOs: guest, source: `vbox:OSType=${vboxType}` };
  }
  const cimId = integer(attr(section, "id"));
  if (cimId !== undefined) {
    const guest = guestOsFromCimId(cimId, attr(section, "version"));
    if (guest !== undefined) return { guestOs: guest, source: `ovf:id=${cimId}` };
  }
  reader.problem("OVF_GUEST_OS_UNKNOWN", `${systemPath}.OperatingSystemSection`, `guest OS not recognised (ovf:id ${attr(section, "id") ?? "absent"}, osType ${vmwareId ?? "absent"}); read as family "other"`);
  return { guestOs: { family: "other", architecture: "x86_64" } };
}

function readSystem(system: XmlElement, systemPath: string, disks: readonly OvfDisk[], reader: Reader, options: ReadOvfOptions): OvfVirtualSystem {
  const id = attr(system, "id") ?? `system-${systemPath}`;
  const hardwareSection = childNamed(system, "VirtualHardwareSection");
  const hwPath = `${systemPath}.VirtualHardwareSection`;
  const items = hardwareSection === undefined ? [] : hardwareItems(hardwareSection, hwPath);
  if (hardwareSection === undefined) reader.problem("OVF_NO_HARDWARE", systemPath, "VirtualSystem has no VirtualHardwareSection");
  const vbox = readVboxMachine(system);
  const virtualSystemType = childText(childNamed(hardwareSection, "System"), "VirtualSystemType");

  let vcpus: number | undefined;
  let coresPerSocket = 1;
  let memoryMiB: number | undefined;
  const attachments: OvfDiskAttachment[] = [];
  const nics: NonNullable<WorkloadInput["nics"]> = [];
  let vtpm = false;
  const byInstance = new Map(items.filter((i) => i.instanceId !== undefined).map((i) => [i.instanceId as string, i]));

  for (const item of items) {
    switch (item.resourceType) {
      case RESOURCE_TYPE.processor: {
        vcpus = integer(item.field("VirtualQuantity"));
        if (vcpus === undefined) reader.problem("OVF_CPU_INVALID", `${item.path}.VirtualQuantity`, "processor item has no whole VirtualQuantity");
        const cores = integer(childText(item.element, "CoresPerSocket"));
        if (cores !== undefined && cores > 0) coresPerSocket = cores;
        break;
      }
      case RESOURCE_TYPE.memory: {
        const quantity = integer(item.field("VirtualQuantity"));
        const units = item.field("AllocationUnits");
        const perUnit = bytesPerUnit(units);
        if (quantity === undefined || perUnit === undefined) {
          reader.problem("OVF_MEMORY_INVALID", item.path, `memory ${item.field("VirtualQuantity") ?? "?"} in units "${units ?? "byte"}" is not a byte quantity`);
        } else memoryMiB = Math.ceil((quantity * perUnit) / 2 ** 20);
        break;
      }
      case RESOURCE_TYPE.ethernetAdapter: {
        const connection = item.field("Connection");
        const mac = normalizeMac(item.field("Address") ?? "") ?? vbox.macs[nics.length];
        const model = item.field("ResourceSubType");
        if (connection === undefined) reader.problem("OVF_NIC_UNCONNECTED", `${item.path}.Connection`, "network adapter names no network; read as network \"none\"");
        nics.push({
          network: connection ?? "none",
          macPolicy: mac === undefined ? { kind: "generated" } : { kind: "static", address: mac },
          addressing: { kind: "dhcp" },
          ...(model === undefined ? {} : { model }),
        });
        break;
      }
      case RESOURCE_TYPE.disk:
      case RESOURCE_TYPE.logicalDisk: {
        const host = item.field("HostResource");
        const match = host === undefined ? null : /^(?:ovf:)?\/disk\/(.+)$/.exec(host);
        if (match === null) {
          reader.problem("OVF_DISK_UNREFERENCED", `${item.path}.HostResource`, `disk item refers to "${host ?? "nothing"}", not to a DiskSection disk (ovf:/disk/<id>); skipped`);
          break;
        }
        const diskId = match[1] as string;
        const disk = disks.find((d) => d.diskId === diskId);
        if (disk === undefined) {
          reader.problem("OVF_DISK_UNKNOWN", `${item.path}.HostResource`, `disk "${diskId}" is not in the DiskSection; skipped`);
          break;
        }
        const parentId = item.field("Parent");
        const controller = parentId === undefined ? undefined : byInstance.get(parentId);
        let bus = controller === undefined ? undefined : busOf(controller);
        if (bus === undefined) {
          reader.problem("OVF_DISK_BUS_UNKNOWN", `${item.path}.Parent`, `disk "${diskId}" sits on ${controller === undefined ? "no known controller" : `controller ${parentId} (${controller.field("ResourceSubType") ?? `type ${controller.resourceType}`})`}; read as scsi`);
          bus = "scsi";
        }
        attachments.push({
          id: safeId(diskId, `disk${attachments.length}`),
          diskId,
          bus,
          ...(disk.file === undefined ? {} : { file: disk.file }),
          ...(disk.format === undefined ? {} : { format: disk.format }),
        });
        break;
      }
      case RESOURCE_TYPE.other:
        if ((item.field("ResourceSubType") ?? "").toLowerCase() === "vmware.vtpm") vtpm = true;
        break;
      default:
        break;
    }
  }

  vcpus ??= vbox.vcpus;
  memoryMiB ??= vbox.memoryMiB;
  if (vcpus === undefined) {
    reader.problem("OVF_CPU_MISSING", hwPath, "no processor item; read as 1 vCPU");
    vcpus = 1;
  }
  if (memoryMiB === undefined) reader.problem("OVF_MEMORY_MISSING", hwPath, "no memory item");
  if (vcpus % coresPerSocket !== 0) {
    reader.problem("OVF_CORES_PER_SOCKET_INVALID", hwPath, `${vcpus} vCPUs do not divide into sockets of ${coresPerSocket} cores; read as ${vcpus} sockets of 1 core`);
    coresPerSocket = 1;
  }

  // VMware writes firmware and secure boot as vmw:Config keys (ovftool 4+ and vCenter 6.5+).
  const configs = new Map<string, string>();
  for (const config of childrenNamed(hardwareSection, "Config").concat(childrenNamed(hardwareSection, "ExtraConfig"))) {
    const key = attr(config, "key");
    const value = attr(config, "value");
    if (key !== undefined && value !== undefined) configs.set(key, value);
  }
  const firmwareValue = configs.get("firmware");
  const uefi = firmwareValue !== undefined ? firmwareValue.toLowerCase() === "efi" : (vbox.uefi ?? false);
  const secureBoot = uefi && (configs.get("uefi.secureBoot.enabled") ?? configs.get("bootOptions.efiSecureBootEnabled"))?.toLowerCase() === "true";

  const { guestOs, source } = readGuestOs(system, vbox, systemPath, reader);
  const product = readProduct(system);
  const tags: Record<string, string> = {};
  if (virtualSystemType !== undefined) tags["ovf.virtualSystemType"] = virtualSystemType.slice(0, 256);
  if (product?.product !== undefined) tags["ovf.product"] = product.product.slice(0, 256);
  if (product?.vendor !== undefined) tags["ovf.vendor"] = product.vendor.slice(0, 256);
  if (product?.version !== undefined) tags["ovf.version"] = product.version.slice(0, 256);
  for (const property of product?.properties ?? []) {
    if (property.key.startsWith(TAG_PROPERTY_PREFIX) && property.value !== undefined) tags[property.key.slice(TAG_PROPERTY_PREFIX.length)] = property.value;
  }

  const sourceFor = options.sourceFor ?? ((file: OvfFile): DiskSourceRef => ({ kind: "file", path: file.href }));
  const workloadDisks = attachments.flatMap((attachment, index) => {
    const disk = disks.find((d) => d.diskId === attachment.diskId);
    if (disk?.capacityBytes === undefined) {
      reader.problem("OVF_DISK_SIZE_UNKNOWN", `${systemPath}.disks[${index}]`, `disk "${attachment.diskId}" has no capacity; left out of the workload`);
      return [];
    }
    // OVF 1.x has no per-disk boot order: importers (vSphere, VirtualBox) boot the first disk in
    // hardware order, so that disk gets boot order 0.
    return [
      {
        id: attachment.id,
        sizeBytes: disk.capacityBytes,
        bus: attachment.bus,
        ...(attachment.file === undefined ? {} : { source: sourceFor(attachment.file) }),
        ...(index === 0 ? { bootOrder: 0 } : {}),
      },
    ];
  });

  const name = childText(system, "Name") ?? childText(childNamed(hardwareSection, "System"), "VirtualSystemIdentifier") ?? id;
  const input: WorkloadInput = {
    name: name.slice(0, 255),
    cpu: { sockets: vcpus / coresPerSocket, coresPerSocket },
    memoryMiB: memoryMiB ?? 0,
    firmware: { type: uefi ? "uefi" : "bios", secureBoot, vtpm: vtpm && uefi },
    disks: workloadDisks,
    nics,
    guestOs,
    tags,
  };
  const parsed = safeParseWorkload(input);
  if (!parsed.success) {
    for (const issue of parsed.issues) reader.problem("OVF_WORKLOAD_INVALID", `${systemPath}.workload${issue.path === "" ? "" : `.${issue.path}`}`, issue.message);
  }
  return {
    id,
    ...(parsed.success ? { workload: parsed.workload } : {}),
    attachments,
    ...(product === undefined ? {} : { product }),
    ...(virtualSystemType === undefined ? {} : { virtualSystemType }),
    ...(source === undefined ? {} : { osSource: source }),
  };
}

function collectSystems(element: XmlElement, path: string, out: { element: XmlElement; path: string }[]): void {
  const counters = new Map<string, number>();
  for (const child of element.children) {
    if (child.name !== "VirtualSystem" && child.name !== "VirtualSystemCollection") continue;
    const index = counters.get(child.name) ?? 0;
    counters.set(child.name, index + 1);
    const childPath = `${path === "" ? "" : `${path}.`}${child.name}[${index}]`;
    if (child.name === "VirtualSystem") out.push({ element: child, path: childPath });
    else collectSystems(child, childPath, out);
  }
}

/** Which OVF major version an envelope is, from its namespace. */
function ovfVersionOf(envelope: XmlElement, name: string): "1.x" | "2.x" {
  const ns = envelope.prefix === "" ? envelope.attrs.xmlns : envelope.attrs[`xmlns:${envelope.prefix}`];
  if (ns === OVF_NAMESPACE_2) return "2.x";
  if (ns === OVF_NAMESPACE_1 || ns === undefined) return "1.x";
  throw new FormatError("OVF_NAMESPACE_UNKNOWN", `ovf: ${name}: Envelope is in namespace "${ns}", not OVF 1.x or 2.x`, { context: { namespace: ns } });
}

/**
 * Parses a descriptor. Throws FormatError for what is not an OVF envelope at all (and the XML
 * codes from xml.ts); everything else becomes a problem with its path.
 */
export function readOvf(descriptor: Buffer | string, options: ReadOvfOptions = {}): OvfDescriptor {
  const name = options.name ?? "descriptor";
  const text = typeof descriptor === "string" ? descriptor : decodeXmlBytes(descriptor, name);
  const envelope = parseXml(text, name);
  if (envelope.name !== "Envelope") {
    throw new FormatError("OVF_NOT_ENVELOPE", `ovf: ${name}: root element is <${envelope.name}>, not <Envelope>`, { context: { root: envelope.name } });
  }
  const ovfVersion = ovfVersionOf(envelope, name);
  const reader = new Reader();
  const files = readFiles(envelope, reader);
  const disks = readDisks(envelope, files, reader);
  const networks = readNetworks(envelope);
  const found: { element: XmlElement; path: string }[] = [];
  collectSystems(envelope, "", found);
  if (found.length === 0) reader.problem("OVF_NO_VIRTUAL_SYSTEM", "Envelope", "the envelope holds no VirtualSystem");
  const systems = found.map(({ element, path }) => readSystem(element, path, disks, reader, options));
  disks.forEach((disk, index) => {
    if (!systems.some((system) => system.attachments.some((a) => a.diskId === disk.diskId))) {
      reader.problem("OVF_DISK_UNATTACHED", `DiskSection.Disk[${index}]`, `disk "${disk.diskId}" is attached to no virtual system`);
    }
  });
  return { ovfVersion, files, disks, networks, systems, problems: reader.problems };
}

