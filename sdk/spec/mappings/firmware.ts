// Firmware → AWS bootMode, Azure hyperVGeneration/securityType and vSphere firmware.
//
// Sources (compiled 2026-11-28):
// - AWS: RegisterImage `BootMode` ("legacy-bios" | "uefi" | "uefi-preferred") and `TpmSupport`
//   ("v2.0", NitroTPM, UEFI only); Graviton (arm64) boots UEFI only. EC2 User Guide, "Boot modes".
// - Azure: image/disk `hyperVGeneration` ("V1" BIOS | "V2" UEFI); Trusted Launch
//   (`securityType: "TrustedLaunch"`, secure boot and vTPM) needs V2; Arm64 sizes are V2 only.
//   Microsoft Learn, "Generation 2 VMs" and "Trusted launch".
// - vSphere: VirtualMachineConfigSpec `firmware` ("bios" | "efi"),
//   `bootOptions.efiSecureBootEnabled`, and a VirtualTPM device, which requires "efi".
import { NotCapableError } from "../../errors.ts";
import type { Architecture, Firmware } from "../workload.ts";

export interface AwsFirmware {
  readonly bootMode: "legacy-bios" | "uefi";
  /** Set when the workload has a vTPM (NitroTPM). */
  readonly tpmSupport?: "v2.0";
  /** Secure boot on EC2 needs UEFI variables (uefiData) holding the keys. */
  readonly secureBoot: boolean;
}

export interface AzureFirmware {
  readonly hyperVGeneration: "V1" | "V2";
  readonly securityType?: "TrustedLaunch";
}

export interface VsphereFirmware {
  readonly firmware: "bios" | "efi";
  readonly efiSecureBootEnabled: boolean;
  readonly vtpm: boolean;
}

export const FIRMWARE_TABLE = {
  bios: { aws: "legacy-bios", azure: "V1", vsphere: "bios" },
  uefi: { aws: "uefi", azure: "V2", vsphere: "efi" },
} as const;

function refuse(code: string, target: string, reason: string, architecture: Architecture): never {
  throw new NotCapableError(code, `${target}: cannot boot this firmware: ${reason}`, { context: { target, architecture } });
}

export function awsFirmwareFor(firmware: Firmware, architecture: Architecture): AwsFirmware {
  if (architecture === "arm64" && firmware.type === "bios") {
    refuse("AWS_FIRMWARE_UNSUPPORTED", "aws", "Graviton (arm64) instances boot UEFI only; this workload uses BIOS", architecture);
  }
  return {
    bootMode: FIRMWARE_TABLE[firmware.type].aws,
    secureBoot: firmware.secureBoot,
    ...(firmware.vtpm ? { tpmSupport: "v2.0" as const } : {}),
  };
}

export function azureFirmwareFor(firmware: Firmware, architecture: Architecture): AzureFirmware {
  if (architecture === "arm64" && firmware.type === "bios") {
    refuse("AZURE_FIRMWARE_UNSUPPORTED", "azure", "Arm64 sizes are Generation 2 (UEFI) only; this workload uses BIOS", architecture);
  }
  const trusted = firmware.secureBoot || firmware.vtpm;
  return { hyperVGeneration: FIRMWARE_TABLE[firmware.type].azure, ...(trusted ? { securityType: "TrustedLaunch" as const } : {}) };
}

export function vsphereFirmwareFor(firmware: Firmware): VsphereFirmware {
  return { firmware: FIRMWARE_TABLE[firmware.type].vsphere, efiSecureBootEnabled: firmware.secureBoot, vtpm: firmware.vtpm };
}
