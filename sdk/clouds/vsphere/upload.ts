// A streaming HTTP upload as a sequential ByteTarget: the body of one PUT to a datastore
// (/folder) or an NFC lease device URL. Format writers append to it; close() ends the request
// and checks the answer. Memory stays at the socket's buffer: each write waits for `drain`.
import { once } from "node:events";
import type { Writable } from "node:stream";
import { CloudError, InvalidArgsError } from "../../errors.ts";
import type { ByteTarget } from "../../disk/types.ts";
import { drain, type VsphereClient } from "./client.ts";

export interface UploadOptions {
  readonly method?: "PUT" | "POST";
  readonly headers?: Record<string, string | number>;
  /** A copy of every byte sent, e.g. a file a test checks with qemu-img. Ended by close(). */
  readonly tee?: Writable;
  /** Names the transfer in messages. */
  readonly what: string;
  readonly signal?: AbortSignal;
}

export interface UploadTarget extends ByteTarget {
  /** Stops the upload: the request is destroyed and close() will not be called. */
  abort(): void;
  readonly bytesSent: number;
}

function statusError(status: number, what: string, host: string, body: string): CloudError {
  const code = status === 404 ? "VSPHERE_FILE_NOT_FOUND" : status === 401 || status === 403 ? "VSPHERE_NO_PERMISSION" : "VSPHERE_HTTP_ERROR";
  const detail = body.replace(/\s+/g, " ").trim().slice(0, 200);
  return new CloudError(code, `vsphere: ${what} on ${host}: HTTP ${status}${detail === "" ? "" : `: ${detail}`}`, { context: { status } });
}

export function startUpload(client: VsphereClient, url: URL, options: UploadOptions): UploadTarget {
  const headers: Record<string, string | number> = {
    "content-type": "application/octet-stream",
    ...(client.cookie === undefined ? {} : { cookie: client.cookie }),
    ...options.headers,
  };
  const { request, response } = client.start(options.method ?? "PUT", url, headers, options.what, client.requestTimeoutMs, options.signal);
  let position = 0;
  let failure: Error | undefined;
  // An answer before close() ends the body is a refusal (or a server that stopped reading).
  let ended = false;
  const settled = response.then(
    (res) => {
      if (!ended && (res.statusCode ?? 0) >= 300) failure ??= statusError(res.statusCode ?? 0, options.what, url.host, "");
      return res;
    },
    (err: unknown) => {
      failure ??= err as Error;
      throw err;
    },
  );
  settled.catch(() => {});

  /** Resolves on `drain`, or on `close` (a destroyed request never drains). */
  function drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        request.off("drain", done);
        request.off("close", done);
        resolve();
      };
      request.on("drain", done);
      request.on("close", done);
    });
  }

  async function push(data: Buffer): Promise<void> {
    if (failure !== undefined) throw failure;
    if (options.tee !== undefined && !options.tee.write(data)) await once(options.tee, "drain");
    if (!request.write(data)) {
      await Promise.race([drained(), settled.then(() => undefined, () => undefined)]);
      if (failure !== undefined) throw failure;
    }
    position += data.length;
  }

  return {
    name: options.what,
    sequential: true,
    get bytesSent() {
      return position;
    },
    async write(offsetBytes, data) {
      if (offsetBytes !== position) {
        throw new InvalidArgsError("SEQUENTIAL_TARGET", `${options.what}: an upload at 0x${position.toString(16)} cannot write at 0x${offsetBytes.toString(16)}`);
      }
      await push(data);
    },
    async truncate(lengthBytes) {
      if (lengthBytes < position) throw new InvalidArgsError("SEQUENTIAL_TARGET", `${options.what}: an upload cannot shrink`);
      const zeros = Buffer.alloc(Math.min(1 << 20, Math.max(1, lengthBytes - position)));
      while (position < lengthBytes) await push(zeros.subarray(0, Math.min(zeros.length, lengthBytes - position)));
    },
    async close() {
      if (failure !== undefined) throw failure;
      ended = true;
      request.end();
      const res = await settled;
      const body = await drain(res);
      if (options.tee !== undefined) {
        options.tee.end();
        await once(options.tee, "finish");
      }
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) throw statusError(status, options.what, url.host, body);
    },
    abort() {
      failure ??= new CloudError("VSPHERE_UPLOAD_ABORTED", `vsphere: ${options.what} was aborted`);
      request.destroy();
      options.tee?.destroy();
    },
  };
}
