// A local machine definition → libvirt domain XML (https://libvirt.org/formatdomain.html), for
// hosts that run machines through libvirt rather than our own QEMU process. Checked against
// libvirt's RELAX NG schema by `virt-xml-validate` in the tests.
//
// libvirt 9.0 (Debian 12) has no `bus="nvme"` disk target, so NVMe disks are passed through
// `<qemu:commandline>` with the same -drive/-device arguments our own command line uses.
import { DEFAULT_QEMU_BINARY, type Accel } from "./accel.ts";
import type { ResolvedFirmware } from "./firmware.ts";
import { checkMachine, type LocalDiskBus, type LocalMachineDefinition } from "./machine.ts";
import { qemuOptionValue } from "./qemu-args.ts";

export const LIBVIRT_QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0";

export interface LibvirtOptions {
  readonly firmware: ResolvedFirmware;
  /** Domain type: "kvm" or "qemu" (TCG). @default "kvm" */
  readonly accel?: Accel;
  /** The machine's own UEFI variable store; libvirt creates it from the template when missing. */
  readonly varsPath?: string;
  /** A file for the serial console; without one the console is a pty. */
  readonly serialLogPath?: string;
  /** @default /usr/bin/qemu-system-x86_64 */
  readonly emulator?: string;
}

function esc(value: string): string {
  return value.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", "&apos;");
}

/** vda, vdb, ..., vdz, vdaa: libvirt's own naming. */
function deviceName(prefix: string, index: number): string {
  let suffix = "";
  let n = index;
  do {
    suffix = String.fromCharCode(97 + (n % 26)) + suffix;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return prefix + suffix;
}

const TARGET: Readonly<Record<Exclude<LocalDiskBus, "nvme">, { prefix: string; bus: string }>> = {
  virtio: { prefix: "vd", bus: "virtio" },
  scsi: { prefix: "sd", bus: "scsi" },
  sata: { prefix: "sd", bus: "sata" },
  ide: { prefix: "hd", bus: "ide" },
};

export function renderLibvirtXml(machine: LocalMachineDefinition, options: LibvirtOptions): string {
  checkMachine(machine);
  const { firmware } = options;
  const accel = options.accel ?? "kvm";
  const out: string[] = [];
  out.push(`<domain type="${accel === "kvm" ? "kvm" : "qemu"}" xmlns:qemu="${LIBVIRT_QEMU_NAMESPACE}">`);
  out.push(`  <name>${esc(machine.name)}</name>`);
  out.push(`  <memory unit="MiB">${machine.memoryMiB}</memory>`);
  out.push(`  <vcpu placement="static">${machine.sockets * machine.coresPerSocket}</vcpu>`);
  out.push("  <os>");
  out.push(`    <type arch="x86_64" machine="${machine.machineType}">hvm</type>`);
  if (firmware.type === "uefi") {
    out.push(`    <loader readonly="yes" secure="${firmware.secureBoot ? "yes" : "no"}" type="pflash">${esc(firmware.codePath)}</loader>`);
    out.push(options.varsPath === undefined ? `    <nvram template="${esc(firmware.varsTemplatePath)}"/>` : `    <nvram template="${esc(firmware.varsTemplatePath)}">${esc(options.varsPath)}</nvram>`);
  }
  out.push("  </os>");
  out.push("  <features>");
  out.push("    <acpi/>");
  if (firmware.type === "uefi" && firmware.requiresSmm) out.push('    <smm state="on"/>');
  out.push("  </features>");
  out.push(accel === "kvm" ? '  <cpu mode="host-passthrough">' : '  <cpu mode="custom">');
  out.push(`    <topology sockets="${machine.sockets}" dies="1" cores="${machine.coresPerSocket}" threads="1"/>`);
  out.push("  </cpu>");
  out.push("  <on_poweroff>destroy</on_poweroff>");
  out.push("  <on_reboot>restart</on_reboot>");
  out.push("  <on_crash>destroy</on_crash>");
  out.push("  <devices>");
  out.push(`    <emulator>${esc(options.emulator ?? DEFAULT_QEMU_BINARY)}</emulator>`);
  const used: Record<string, number> = {};
  const passthrough: string[] = [];
  machine.disks.forEach((disk, index) => {
    if (disk.bus === "nvme") {
      passthrough.push(
        "-drive", `file=${qemuOptionValue(disk.path)},format=${disk.format},if=none,id=nvme-drive${index}${disk.readOnly === true ? ",readonly=on" : ""}`,
        "-device", `nvme,serial=${disk.id.slice(0, 20)},drive=nvme-drive${index},id=nvme${index}${disk.bootIndex === undefined ? "" : `,bootindex=${disk.bootIndex}`}`,
      );
      return;
    }
    const target = TARGET[disk.bus];
    const n = used[target.prefix] ?? 0;
    used[target.prefix] = n + 1;
    out.push('    <disk type="file" device="disk">');
    out.push(`      <driver name="qemu" type="${disk.format}"/>`);
    out.push(`      <source file="${esc(disk.path)}"/>`);
    out.push(`      <target dev="${deviceName(target.prefix, n)}" bus="${target.bus}"/>`);
    if (disk.bootIndex !== undefined) out.push(`      <boot order="${disk.bootIndex + 1}"/>`);
    if (disk.readOnly === true) out.push("      <readonly/>");
    out.push("    </disk>");
  });
  if (machine.disks.some((d) => d.bus === "scsi")) out.push('    <controller type="scsi" index="0" model="virtio-scsi"/>');
  if (machine.disks.some((d) => d.bus === "sata")) out.push('    <controller type="sata" index="0"/>');
  for (const nic of machine.nics) {
    out.push('    <interface type="user">');
    out.push(`      <mac address="${nic.macAddress}"/>`);
    out.push(`      <model type="${nic.model === "virtio-net-pci" ? "virtio" : nic.model}"/>`);
    out.push("    </interface>");
  }
  // The console is the first serial port, so both name the same character device.
  const source = options.serialLogPath === undefined ? [] : [`      <source path="${esc(options.serialLogPath)}"/>`];
  const type = options.serialLogPath === undefined ? "pty" : "file";
  out.push(`    <serial type="${type}">`, ...source, '      <target port="0"/>', "    </serial>");
  out.push(`    <console type="${type}">`, ...source, '      <target type="serial" port="0"/>', "    </console>");
  out.push("  </devices>");
  if (passthrough.length > 0) {
    out.push("  <qemu:commandline>");
    for (const arg of passthrough) out.push(`    <qemu:arg value="${esc(arg)}"/>`);
    out.push("  </qemu:commandline>");
  }
  out.push("</domain>");
  return `${out.join("\n")}\n`;
}
