// Managed-disk control calls for the Upload flow: create an empty disk in the ReadyToUpload
// state, grant a write (or read) SAS on it, and revoke that SAS, which turns the uploaded VHD
// into a usable disk. The data itself goes through the page-blob sink (page-blob-sink.ts, mode
// "upload") or the page-blob source, pointed at the SAS.
//
// ARM cannot run here (DESIGN.md, "Real parts"), so these take the narrow `ManagedDisksApi`
// that ComputeManagementClient.disks satisfies; tests pass a recording stand-in. The Pulumi
// component uses azure-native where it can; these serve the CLI and the dynamic providers.
import type { AccessUri, Disk, GrantAccessData } from "@azure/arm-compute";
import { z } from "zod";
import { CloudError, InvalidArgsError } from "../../errors.ts";
import { VHD_FOOTER_BYTES } from "../../disk/formats/vhd/layout.ts";
import { describeAzureError, statusOf } from "./call.ts";
import { vhdBlobSizeFor } from "./page-blob-sink.ts";

const MIB = 1024 * 1024;

/** The part of ComputeManagementClient.disks used here (its pollers are awaitable). */
export interface ManagedDisksApi {
  createOrUpdate(resourceGroupName: string, diskName: string, disk: Disk): PromiseLike<Disk>;
  grantAccess(resourceGroupName: string, diskName: string, grantAccessData: GrantAccessData): PromiseLike<AccessUri>;
  revokeAccess(resourceGroupName: string, diskName: string): PromiseLike<void>;
}

/**
 * One hour: enough to upload a few hundred GiB at the ~60 MiB/s a standard disk takes, short
 * enough that a leaked SAS soon stops working. Callers moving more pass their own.
 */
export const DEFAULT_SAS_DURATION_SECONDS = 3600;

const DiskRef = z.object({
  resourceGroupName: z.string().min(1),
  diskName: z.string().min(1).max(80),
});

const CreateUploadDiskArgs = DiskRef.extend({
  location: z.string().min(1),
  /** The fixed VHD's length: a whole MiB of disk plus the 512-byte footer (vhdBlobSizeFor). */
  uploadSizeBytes: z.number().int().positive().refine((n) => (n - VHD_FOOTER_BYTES) % MIB === 0 && n > VHD_FOOTER_BYTES, {
    message: "must be a whole number of MiB plus the 512-byte VHD footer (see vhdBlobSizeFor)",
  }),
  /** @default "Standard_LRS" */
  sku: z.enum(["Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS", "PremiumV2_LRS"]).default("Standard_LRS"),
  osType: z.enum(["Linux", "Windows"]).optional(),
  hyperVGeneration: z.enum(["V1", "V2"]).optional(),
  tags: z.record(z.string(), z.string()).optional(),
});
export type CreateUploadDiskArgs = z.input<typeof CreateUploadDiskArgs>;

function parse<T extends z.ZodType>(schema: T, input: unknown, operation: string): z.output<T> {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new InvalidArgsError("INVALID_ARGS", `${operation}: ${issues.join("; ")}`, { context: { operation, issues: issues.join("; ") } });
  }
  return result.data;
}

async function arm<T>(operation: string, diskName: string, fn: () => PromiseLike<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    // ARM's own client retries throttling and 5xx; what reaches here is final.
    throw new CloudError("AZURE_DISK_CALL_FAILED", `${operation} disk ${diskName} failed: ${describeAzureError(error)}`, {
      context: { operation, disk: diskName, status: statusOf(error) },
      cause: error,
    });
  }
}

/** The upload size for a disk of `virtualSizeBytes`, as createUploadDisk expects it. */
export const uploadSizeBytesFor = vhdBlobSizeFor;

/** Creates an empty managed disk ready for upload (createOption "Upload"). */
export async function createUploadDisk(disks: ManagedDisksApi, args: CreateUploadDiskArgs): Promise<Disk> {
  const a = parse(CreateUploadDiskArgs, args, "createUploadDisk");
  return arm("Create (Upload)", a.diskName, () =>
    disks.createOrUpdate(a.resourceGroupName, a.diskName, {
      location: a.location,
      sku: { name: a.sku },
      ...(a.tags === undefined ? {} : { tags: a.tags }),
      creationData: { createOption: "Upload", uploadSizeBytes: a.uploadSizeBytes },
      ...(a.osType === undefined ? {} : { osType: a.osType }),
      ...(a.hyperVGeneration === undefined ? {} : { hyperVGeneration: a.hyperVGeneration }),
    }),
  );
}

const GrantArgs = DiskRef.extend({
  access: z.enum(["Read", "Write"]),
  durationSeconds: z.number().int().positive().max(7 * 24 * 3600).default(DEFAULT_SAS_DURATION_SECONDS),
});
export type GrantDiskAccessArgs = z.input<typeof GrantArgs>;

/** Grants a SAS on the disk: "Write" for an upload, "Read" to export it. Returns the SAS URL. */
export async function grantDiskAccess(disks: ManagedDisksApi, args: GrantDiskAccessArgs): Promise<string> {
  const a = parse(GrantArgs, args, "grantDiskAccess");
  const uri = await arm(`Grant ${a.access} access to`, a.diskName, () =>
    disks.grantAccess(a.resourceGroupName, a.diskName, { access: a.access, durationInSeconds: a.durationSeconds }),
  );
  if (uri.accessSAS === undefined || uri.accessSAS === "") {
    throw new CloudError("AZURE_NO_SAS", `Grant ${a.access} access to disk ${a.diskName}: the answer holds no SAS URL`, {
      context: { disk: a.diskName },
    });
  }
  return uri.accessSAS;
}

/** Revokes the SAS; after an upload this moves the disk from ActiveUpload to Unattached. */
export async function revokeDiskAccess(disks: ManagedDisksApi, args: z.input<typeof DiskRef>): Promise<void> {
  const a = parse(DiskRef, args, "revokeDiskAccess");
  await arm("Revoke access to", a.diskName, () => disks.revokeAccess(a.resourceGroupName, a.diskName));
}

/**
 * The whole Upload flow around `upload`: create the disk, grant write access, run `upload`
 * with the SAS URL, and revoke access even when the upload fails (a disk left in ActiveUpload
 * cannot be attached or deleted until its SAS is revoked).
 */
export async function withUploadDisk<T>(
  disks: ManagedDisksApi,
  args: CreateUploadDiskArgs & { readonly durationSeconds?: number },
  upload: (sasUrl: string) => Promise<T>,
): Promise<{ readonly disk: Disk; readonly result: T }> {
  const disk = await createUploadDisk(disks, args);
  const ref = { resourceGroupName: args.resourceGroupName, diskName: args.diskName };
  const sasUrl = await grantDiskAccess(disks, { ...ref, access: "Write", ...(args.durationSeconds === undefined ? {} : { durationSeconds: args.durationSeconds }) });
  let result: T;
  try {
    result = await upload(sasUrl);
  } catch (error) {
    await revokeDiskAccess(disks, ref).catch(() => {});
    throw error;
  }
  await revokeDiskAccess(disks, ref);
  return { disk, result };
}

