// The AWS placement's replica state beside its snapshots: objects in the S3 bucket it names
// (contracts/state-store.ts), with S3's conditional writes (If-None-Match: *, If-Match).
import { checkName, StateConflictError, type PutCondition, type StateStore } from "../../contracts/state-store.ts";

/** Objects in an S3 bucket under `prefix`; the bucket is created on the first write if missing. */
export async function s3StateStore(options: { readonly bucket: string; readonly region: string; readonly endpoint?: string; readonly prefix?: string }): Promise<StateStore> {
  const s3 = await import("@aws-sdk/client-s3");
  const client = new s3.S3Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint, forcePathStyle: true }),
    maxAttempts: 3,
  });
  const prefix = options.prefix ?? "portable-state/";
  const reference = `s3://${options.bucket}/${prefix}`;
  const statusOf = (error: unknown) => (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const ensureBucket = async () => {
    await client.send(new s3.CreateBucketCommand({ Bucket: options.bucket, ...(options.region === "us-east-1" ? {} : { CreateBucketConfiguration: { LocationConstraint: options.region as never } }) })).catch((error: { name?: string }) => {
      if (error.name !== "BucketAlreadyOwnedByYou" && error.name !== "BucketAlreadyExists") throw error;
    });
  };
  const put = async (name: string, text: string, condition: PutCondition): Promise<string> => {
    const answer = await client.send(new s3.PutObjectCommand({
      Bucket: options.bucket,
      Key: `${prefix}${checkName(name)}`,
      Body: text,
      ContentType: "application/json",
      ...(condition.ifAbsent === true ? { IfNoneMatch: "*" } : {}),
      ...(condition.ifMatch === undefined ? {} : { IfMatch: condition.ifMatch }),
    }));
    return answer.ETag ?? "";
  };
  return {
    reference,
    async get(name) {
      try {
        const answer = await client.send(new s3.GetObjectCommand({ Bucket: options.bucket, Key: `${prefix}${checkName(name)}` }));
        return { text: await answer.Body!.transformToString("utf8"), etag: answer.ETag ?? "" };
      } catch (error) {
        if ((error as { name?: string }).name === "NoSuchKey" || (error as { name?: string }).name === "NoSuchBucket" || statusOf(error) === 404) return undefined;
        throw error;
      }
    },
    async put(name, text, condition = {}) {
      try {
        return await put(name, text, condition);
      } catch (error) {
        if (statusOf(error) === 412 || statusOf(error) === 409) throw new StateConflictError(reference, name, condition);
        if ((error as { name?: string }).name !== "NoSuchBucket") throw error;
        await ensureBucket();
        return put(name, text, condition);
      }
    },
    async delete(name) {
      await client.send(new s3.DeleteObjectCommand({ Bucket: options.bucket, Key: `${prefix}${checkName(name)}` })).catch((error) => {
        if ((error as { name?: string }).name !== "NoSuchBucket") throw error;
      });
    },
  };
}

