// A local machine definition → the qemu-system-x86_64 argument vector. Always an array handed
// to spawn(), never a shell string; values inside QEMU's `key=value,...` options escape commas by
// doubling them, as QEMU's option parser expects.
import { InvalidArgsError } from "../../errors.ts";
import type { Accel } from "./accel.ts";
import type { ResolvedFirmware } from "./firmware.ts";
import { checkMachine, type LocalDiskAttachment, type LocalMachineDefinition, type QemuDiskFormat } from "./machine.ts";

/** SeaBIOS and OVMF (with its "verbose-dynamic" feature) write their log to this I/O port. */
export const FIRMWARE_DEBUG_PORT = "0x402";
/** NVMe's serial number field is 20 ASCII bytes (NVMe base spec, Identify Controller SN). */
const NVME_SERIAL_BYTES = 20;

export interface QemuRuntime {
  readonly accel: Accel;
  readonly firmware: ResolvedFirmware;
  /** The machine's own copy of the UEFI variable store. Required for UEFI. */
  readonly varsPath?: string;
  /** Where the first serial port (ttyS0 / COM1) is written. */
  readonly serialLogPath: string;
  /** Where the firmware's debug port is written (SeaBIOS prints "No bootable device." there). */
  readonly firmwareLogPath?: string;
  /** A QMP server socket (unix), for clean shutdown. */
  readonly qmpSocketPath?: string;
  readonly pidFilePath?: string;
  /** Exit instead of rebooting, so a panic or a reset ends a test boot. */
  readonly noReboot?: boolean;
}

/** The engine's format names → QEMU's block drivers. */
export function qemuDiskFormat(format: string): QemuDiskFormat {
  switch (format) {
    case "qcow2":
    case "raw":
    case "vmdk":
    case "vhdx":
    case "vpc":
      return format;
    case "vhd":
      return "vpc";
    default:
      throw new InvalidArgsError("LOCAL_FORMAT_UNSUPPORTED", `local: QEMU cannot attach a "${format}" disk`, { context: { format } });
  }
}

/** Escapes a value for QEMU's `key=value,...` syntax; control characters are refused. */
export function qemuOptionValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(value)) throw new InvalidArgsError("LOCAL_PATH_INVALID", `local: ${JSON.stringify(value)} contains a control character`);
  return value.replaceAll(",", ",,");
}

function diskDevice(disk: LocalDiskAttachment, index: number, sataPort: number, idePosition: number): string {
  const common = `drive=drive${index},id=disk${index}${disk.bootIndex === undefined ? "" : `,bootindex=${disk.bootIndex}`}`;
  switch (disk.bus) {
    case "virtio":
      return `virtio-blk-pci,${common}`;
    case "scsi":
      return `scsi-hd,bus=scsi0.0,${common}`;
    case "sata":
      return `ide-hd,bus=sata0.${sataPort},${common}`;
    case "ide":
      return `ide-hd,bus=ide.${idePosition >> 1},unit=${idePosition & 1},${common}`;
    case "nvme":
      return `nvme,serial=${disk.id.slice(0, NVME_SERIAL_BYTES)},${common}`;
  }
}

export function renderQemuArgs(machine: LocalMachineDefinition, runtime: QemuRuntime): string[] {
  checkMachine(machine);
  const { firmware } = runtime;
  if (firmware.type !== machine.firmware.type || (firmware.type === "uefi" && firmware.secureBoot !== machine.firmware.secureBoot)) {
    throw new InvalidArgsError("LOCAL_FIRMWARE_MISMATCH", `local: machine "${machine.name}" wants ${machine.firmware.type}${machine.firmware.secureBoot ? " with secure boot" : ""}, but the resolved firmware differs`);
  }
  const smm = firmware.type === "uefi" && firmware.requiresSmm;
  const args: string[] = [
    "-name", machine.name,
    "-machine", `${machine.machineType}${smm ? ",smm=on" : ""}`,
    "-accel", runtime.accel,
    ...(runtime.accel === "kvm" ? ["-cpu", "host"] : []),
    "-smp", `${machine.sockets * machine.coresPerSocket},sockets=${machine.sockets},cores=${machine.coresPerSocket},threads=1`,
    "-m", String(machine.memoryMiB),
    "-nodefaults", "-no-user-config", "-display", "none",
  ];
  if (firmware.type === "uefi") {
    if (runtime.varsPath === undefined) throw new InvalidArgsError("LOCAL_VARS_MISSING", `local: machine "${machine.name}" boots UEFI and needs its own variable store`);
    // A secure-boot build refuses a variable store writable outside SMM.
    if (smm) args.push("-global", "driver=cfi.pflash01,property=secure,value=on");
    args.push(
      "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${qemuOptionValue(firmware.codePath)}`,
      "-drive", `if=pflash,format=raw,unit=1,file=${qemuOptionValue(runtime.varsPath)}`,
    );
  }
  // strict: boot only from devices with a bootindex, never fall through to PXE or a floppy.
  args.push("-boot", "strict=on");
  args.push("-chardev", `file,id=serial0,path=${qemuOptionValue(runtime.serialLogPath)}`, "-serial", "chardev:serial0");
  if (runtime.firmwareLogPath !== undefined) {
    args.push("-chardev", `file,id=fwlog,path=${qemuOptionValue(runtime.firmwareLogPath)}`, "-device", `isa-debugcon,iobase=${FIRMWARE_DEBUG_PORT},chardev=fwlog`);
  }
  if (runtime.qmpSocketPath !== undefined) {
    args.push("-chardev", `socket,id=qmp,path=${qemuOptionValue(runtime.qmpSocketPath)},server=on,wait=off`, "-mon", "chardev=qmp,mode=control");
  }
  if (runtime.pidFilePath !== undefined) args.push("-pidfile", runtime.pidFilePath);
  if (runtime.noReboot === true) args.push("-no-reboot");
  if (machine.disks.some((d) => d.bus === "scsi")) args.push("-device", "virtio-scsi-pci,id=scsi0");
  if (machine.disks.some((d) => d.bus === "sata")) args.push("-device", "ich9-ahci,id=sata0");
  let sataPort = 0;
  let idePosition = 0;
  machine.disks.forEach((disk, index) => {
    const flags = [disk.readOnly === true ? ",readonly=on" : "", disk.snapshot === true ? ",snapshot=on" : ""].join("");
    args.push("-drive", `file=${qemuOptionValue(disk.path)},format=${disk.format},if=none,id=drive${index},cache=writeback${flags}`);
    args.push("-device", diskDevice(disk, index, sataPort, idePosition));
    if (disk.bus === "sata") sataPort += 1;
    if (disk.bus === "ide") idePosition += 1;
  });
  machine.nics.forEach((nic, index) => {
    args.push("-netdev", `user,id=net${index}`, "-device", `${nic.model},netdev=net${index},mac=${nic.macAddress}`);
  });
  return args;
}
