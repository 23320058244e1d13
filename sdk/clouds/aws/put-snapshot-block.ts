// PutSnapshotBlock: writes one 512 KiB block with its SHA-256 checksum.
import { PutSnapshotBlockCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { InvalidArgsError } from "../../errors.ts";
import { callAws } from "./call.ts";
import { EBS_BLOCK_BYTES } from "./ebs-block.ts";

export interface PutBlockOptions {
  readonly signal?: AbortSignal;
  readonly onRetry?: (error: unknown, attempt: number) => void;
}

/** `checksum` is the block's SHA-256 digest (32 bytes); it travels base64 as the API asks. */
export async function putSnapshotBlock(
  ebs: EBSClient,
  snapshotId: string,
  blockIndex: number,
  data: Buffer,
  checksum: Buffer,
  options: PutBlockOptions = {},
): Promise<void> {
  const offsetBytes = blockIndex * EBS_BLOCK_BYTES;
  if (data.length !== EBS_BLOCK_BYTES) {
    throw new InvalidArgsError("EBS_BLOCK_SIZE", `PutSnapshotBlock ${snapshotId} block ${blockIndex}: ${data.length} bytes, expected ${EBS_BLOCK_BYTES}`, {
      context: { snapshotId, blockIndex, offsetBytes },
    });
  }
  const base64 = checksum.toString("base64");
  const hex = checksum.toString("hex");
  await callAws(
    {
      operation: "PutSnapshotBlock",
      code: "EBS_PUT_BLOCK_FAILED",
      context: { snapshotId, blockIndex, offsetBytes },
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
    },
    () => {
      const command = new PutSnapshotBlockCommand({
        SnapshotId: snapshotId,
        BlockIndex: blockIndex,
        BlockData: data,
        DataLength: EBS_BLOCK_BYTES,
        Checksum: base64,
        ChecksumAlgorithm: "SHA256",
      });
      // SigV4 signs the payload's SHA-256. We already hold it, so hand it to the signer, which
      // then skips hashing the 512 KiB body a second time (it uses x-amz-content-sha256 when set).
      command.middlewareStack.add(
        (next) => async (args) => {
          const request = args.request as { headers?: Record<string, string> };
          if (request.headers !== undefined) request.headers["x-amz-content-sha256"] = hex;
          return next(args);
        },
        { step: "build", name: "portableKnownPayloadSha256" },
      );
      return ebs.send(command, options.signal ? { abortSignal: options.signal } : {});
    },
  );
}
