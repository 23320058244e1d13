// The Azure placement's replica state beside its page blobs: block blobs in the same container
// (contracts/state-store.ts), with the blob service's conditional writes (If-None-Match, If-Match).
import type { ContainerClient } from "@azure/storage-blob";
import { checkName, StateConflictError, type StateStore } from "../../contracts/state-store.ts";

/** Block blobs in a container (the page blobs' own) under `prefix`. */
export function blobStateStore(container: ContainerClient, prefix = "portable-state/"): StateStore {
  const url = new URL(container.url);
  url.search = "";
  const reference = `${url.toString().replace(/\/?$/, "/")}${prefix}`;
  const statusOf = (error: unknown) => (error as { statusCode?: number }).statusCode;
  return {
    reference,
    async get(name) {
      const blob = container.getBlockBlobClient(`${prefix}${checkName(name)}`);
      try {
        const answer = await blob.download();
        const chunks: Buffer[] = [];
        for await (const chunk of answer.readableStreamBody!) chunks.push(chunk as Buffer);
        return { text: Buffer.concat(chunks).toString("utf8"), etag: answer.etag ?? "" };
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw error;
      }
    },
    async put(name, text, condition = {}) {
      const blob = container.getBlockBlobClient(`${prefix}${checkName(name)}`);
      try {
        const answer = await blob.upload(text, Buffer.byteLength(text), {
          blobHTTPHeaders: { blobContentType: "application/json" },
          conditions: { ...(condition.ifAbsent === true ? { ifNoneMatch: "*" } : {}), ...(condition.ifMatch === undefined ? {} : { ifMatch: condition.ifMatch }) },
        });
        return answer.etag ?? "";
      } catch (error) {
        if (statusOf(error) === 412 || statusOf(error) === 409) throw new StateConflictError(reference, name, condition);
        throw error;
      }
    },
    async delete(name) {
      await container.getBlockBlobClient(`${prefix}${checkName(name)}`).deleteIfExists();
    },
  };
}

