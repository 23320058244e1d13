// StartSnapshot: opens a pending snapshot that blocks are then written into.
import { randomUUID } from "node:crypto";
import { StartSnapshotCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { z } from "zod";
import { CloudError, InvalidArgsError } from "../../errors.ts";
import { callAws } from "./call.ts";
import { volumeSizeGiB } from "./ebs-block.ts";

/**
 * StartSnapshot's Timeout, in minutes: how long the snapshot may stay pending before EBS errors
 * it out. 60 is the service default; the API accepts 10 to 4320.
 */
export const DEFAULT_SNAPSHOT_TIMEOUT_MINUTES = 60;

export const startSnapshotOptionsSchema = z.object({
  /** Bytes of the disk; the snapshot's VolumeSize is this rounded up to whole GiB. */
  virtualSizeBytes: z.number().int().positive(),
  description: z.string().max(255).optional(),
  tags: z.record(z.string().min(1).max(127), z.string().max(255)).optional(),
  /** The snapshot this one is an incremental child of. */
  parentSnapshotId: z.string().regex(/^snap-[0-9a-f]+$/, "a snapshot id such as snap-0123abcd").optional(),
  /** A KMS key ARN; passed through, and turns on encryption. */
  kmsKeyArn: z.string().min(1).optional(),
  /** Encrypt with the account's default key even without kmsKeyArn. */
  encrypted: z.boolean().optional(),
  timeoutMinutes: z.number().int().min(10).max(4320).optional(),
  /** Makes a retried StartSnapshot idempotent; one is generated when absent. */
  clientToken: z.string().min(1).max(64).optional(),
});
export type StartSnapshotOptions = z.input<typeof startSnapshotOptionsSchema>;

export interface StartedSnapshot {
  readonly snapshotId: string;
  readonly volumeSizeGiB: number;
}

/** Reports every invalid field at once, each with its path (house style). */
export function parseOptions<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
  throw new InvalidArgsError("EBS_INVALID_OPTIONS", `${what}: ${issues.join("; ")}`, { context: { issues: issues.length } });
}

export async function startSnapshot(ebs: EBSClient, options: StartSnapshotOptions, signal?: AbortSignal): Promise<StartedSnapshot> {
  const o = parseOptions(startSnapshotOptionsSchema, options, "StartSnapshot options");
  const size = volumeSizeGiB(o.virtualSizeBytes);
  const clientToken = o.clientToken ?? randomUUID();
  const out = await callAws(
    { operation: "StartSnapshot", code: "EBS_START_SNAPSHOT_FAILED", context: { volumeSizeGiB: size, parentSnapshotId: o.parentSnapshotId }, ...(signal ? { signal } : {}) },
    () =>
      ebs.send(
        new StartSnapshotCommand({
          VolumeSize: size,
          ClientToken: clientToken,
          Timeout: o.timeoutMinutes ?? DEFAULT_SNAPSHOT_TIMEOUT_MINUTES,
          ...(o.description === undefined ? {} : { Description: o.description }),
          ...(o.tags === undefined ? {} : { Tags: Object.entries(o.tags).map(([Key, Value]) => ({ Key, Value })) }),
          ...(o.parentSnapshotId === undefined ? {} : { ParentSnapshotId: o.parentSnapshotId }),
          ...(o.kmsKeyArn === undefined ? {} : { KmsKeyArn: o.kmsKeyArn, Encrypted: true }),
          ...(o.kmsKeyArn === undefined && o.encrypted === true ? { Encrypted: true } : {}),
        }),
        signal ? { abortSignal: signal } : {},
      ),
  );
  if (out.SnapshotId === undefined) {
    throw new CloudError("EBS_START_SNAPSHOT_FAILED", "StartSnapshot: the answer carries no SnapshotId", { context: { volumeSizeGiB: size } });
  }
  return { snapshotId: out.SnapshotId, volumeSizeGiB: size };
}
