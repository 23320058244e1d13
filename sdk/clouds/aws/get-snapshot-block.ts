// GetSnapshotBlock: reads one 512 KiB block and checks it against the SHA-256 the service
// returns with it, so a block damaged in transit is fetched again rather than written out.
import { GetSnapshotBlockCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { CloudError } from "../../errors.ts";
import { callAws } from "./call.ts";
import { EBS_BLOCK_BYTES, sha256 } from "./ebs-block.ts";

export interface GetBlockOptions {
  readonly signal?: AbortSignal;
  readonly onRetry?: (error: unknown, attempt: number) => void;
  /** @default AWS_CALL_ATTEMPTS */
  readonly attempts?: number;
}

export async function getSnapshotBlock(ebs: EBSClient, snapshotId: string, blockIndex: number, blockToken: string, options: GetBlockOptions = {}): Promise<Buffer> {
  const offsetBytes = blockIndex * EBS_BLOCK_BYTES;
  const context = { snapshotId, blockIndex, offsetBytes };
  return callAws(
    {
      operation: "GetSnapshotBlock",
      code: "EBS_GET_BLOCK_FAILED",
      context,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
      ...(options.attempts === undefined ? {} : { attempts: options.attempts }),
    },
    async () => {
      const out = await ebs.send(
        new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: blockIndex, BlockToken: blockToken }),
        options.signal ? { abortSignal: options.signal } : {},
      );
      if (out.BlockData === undefined) {
        throw new CloudError("EBS_SHORT_BLOCK", `GetSnapshotBlock ${snapshotId} block ${blockIndex} (offset 0x${offsetBytes.toString(16)}): no data`, { context });
      }
      const data = Buffer.from(await out.BlockData.transformToByteArray());
      if (data.length !== EBS_BLOCK_BYTES) {
        throw new CloudError("EBS_SHORT_BLOCK", `GetSnapshotBlock ${snapshotId} block ${blockIndex} (offset 0x${offsetBytes.toString(16)}): ${data.length} bytes, expected ${EBS_BLOCK_BYTES}`, {
          context: { ...context, lengthBytes: data.length },
        });
      }
      if (out.ChecksumAlgorithm !== "SHA256" || out.Checksum === undefined) {
        throw new CloudError("EBS_CHECKSUM_MISSING", `GetSnapshotBlock ${snapshotId} block ${blockIndex} (offset 0x${offsetBytes.toString(16)}): no SHA256 checksum to verify (${String(out.ChecksumAlgorithm)})`, {
          context,
        });
      }
      const actual = sha256(data).toString("base64");
      if (actual !== out.Checksum) {
        throw new CloudError("EBS_CHECKSUM_MISMATCH", `GetSnapshotBlock ${snapshotId} block ${blockIndex} (offset 0x${offsetBytes.toString(16)}): SHA-256 ${actual} differs from the service's ${out.Checksum}`, {
          context,
        });
      }
      return data;
    },
  );
}
