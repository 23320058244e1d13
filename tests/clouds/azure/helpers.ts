// Shared pieces of the Azure tests: a recording proxy that sees every Put Page and Clear Pages
// range, deterministic mixed images, and a download of a page blob that does not use our code.
import { createCipheriv } from "node:crypto";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { open } from "node:fs/promises";
import { BlobServiceClient, newPipeline, StorageSharedKeyCredential, type ContainerClient, type PageBlobClient } from "@azure/storage-blob";
import { AZURE_PIPELINE_OPTIONS } from "../../../sdk/clouds/azure/open-url.ts";
import type { Azurite } from "../../harness/azurite.ts";

/** Keep-alive for client connections to a test proxy; longer than any test step. */
const PROXY_KEEP_ALIVE_MS = 10 * 60_000;

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** One page-blob write or clear as the service received it. */
export interface PageOp {
  readonly kind: "update" | "clear";
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** Order of arrival at the proxy. */
  readonly index: number;
  readonly blob: string;
}

export interface RecordingProxy {
  readonly endpoint: string;
  readonly ops: PageOp[];
  /** Requests by "METHOD comp" (e.g. "PUT page", "GET pagelist", "GET -"). */
  readonly requests: Map<string, number>;
  /** Answers a request instead of Azurite (a stand-in for what Azurite gets wrong), when it returns one. */
  intercept?: (req: IncomingMessage, url: URL) => Promise<{ status: number; headers: Record<string, string>; body: string } | undefined>;
  reset(): void;
  stop(): Promise<void>;
}

/**
 * A loopback proxy in front of Azurite that records the range of every Put Page call
 * (x-ms-page-write: update or clear), so tests count pages the service was asked to store.
 */
export async function startRecordingProxy(upstream: string): Promise<RecordingProxy> {
  const target = new URL(upstream);
  const ops: PageOp[] = [];
  const requests = new Map<string, number>();
  let index = 0;
  const proxy: { intercept?: RecordingProxy["intercept"] } = {};
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://proxy");
    const comp = url.searchParams.get("comp") ?? "-";
    const key = `${req.method} ${comp}${req.headers["x-ms-previous-snapshot-url"] === undefined ? "" : " diff"}`;
    requests.set(key, (requests.get(key) ?? 0) + 1);
    const answer = await proxy.intercept?.(req, url);
    if (answer !== undefined) {
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
      return;
    }
    const pageWrite = req.headers["x-ms-page-write"];
    const range = /bytes=(\d+)-(\d+)/.exec(String(req.headers["x-ms-range"] ?? req.headers.range ?? ""));
    if (comp === "page" && range !== null && (pageWrite === "update" || pageWrite === "clear")) {
      const start = Number(range[1]);
      ops.push({ kind: pageWrite, offsetBytes: start, lengthBytes: Number(range[2]) - start + 1, index: index++, blob: url.pathname });
    }
    const upstreamReq = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, agent: false },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    upstreamReq.once("error", () => res.socket?.destroy());
    req.pipe(upstreamReq);
  });
  // Outlive any client's idle keep-alive: with Node's 5 s default, a client reusing a connection
  // after a long local step (hashing a 2 GiB image) races the close and sees ECONNRESET.
  server.keepAliveTimeout = PROXY_KEEP_ALIVE_MS;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(proxy, {
    endpoint: `http://127.0.0.1:${port}`,
    ops,
    requests,
    reset() {
      ops.length = 0;
      requests.clear();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

/** A container client for Azurite, reached through `endpoint` (a proxy) if given. */
export async function containerFor(azurite: Azurite, name: string, endpoint?: string): Promise<ContainerClient> {
  const base = endpoint === undefined ? azurite.blobEndpoint : `${endpoint}/${azurite.accountName}`;
  const service = new BlobServiceClient(base, newPipeline(new StorageSharedKeyCredential(azurite.accountName, azurite.accountKey), AZURE_PIPELINE_OPTIONS));
  const container = service.getContainerClient(name);
  await container.createIfNotExists();
  return container;
}

/** A region of a generated image: pseudo-random bytes, a repeated byte, or written zeros. */
export interface Region {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly fill: "random" | number;
}

/** Deterministic pseudo-random bytes: AES-256-CTR keystream under a fixed key, seeded by offset. */
function randomBytesAt(seed: number, offsetBytes: number, lengthBytes: number): Buffer {
  const key = Buffer.alloc(32, seed & 0xff);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(seed >>> 0, 0);
  iv.writeDoubleBE(offsetBytes, 8);
  return createCipheriv("aes-256-ctr", key, iv).update(Buffer.alloc(lengthBytes));
}

/**
 * The mixed layout used for the 2 GiB round trips: a boot area, 64 scattered 96 KiB runs at
 * odd sector offsets, one 48 MiB run with a written-zero MiB inside, a constant-byte region,
 * single sectors, and the last sector.
 */
export function mixedLayout(virtualSizeBytes: number): Region[] {
  const regions: Region[] = [{ offsetBytes: 0, lengthBytes: MiB, fill: "random" }];
  const stride = Math.floor((virtualSizeBytes - 64 * MiB) / 64 / MiB) * MiB;
  for (let k = 0; k < 64; k++) regions.push({ offsetBytes: 16 * MiB + k * stride + k * 9 * 512, lengthBytes: 96 * KiB, fill: "random" });
  const half = Math.floor(virtualSizeBytes / 2 / MiB) * MiB;
  const big = Math.min(48 * MiB, Math.floor(virtualSizeBytes / 8 / MiB) * MiB);
  regions.push({ offsetBytes: half, lengthBytes: big, fill: "random" });
  regions.push({ offsetBytes: half + Math.floor(big / 6 / MiB) * MiB, lengthBytes: MiB, fill: 0 });
  regions.push({ offsetBytes: half + big + 5 * 512, lengthBytes: 3 * MiB, fill: 0x5a });
  regions.push({ offsetBytes: Math.floor(virtualSizeBytes * 0.3 / 512) * 512 + 7 * 512, lengthBytes: 512, fill: 0xab });
  regions.push({ offsetBytes: Math.floor(virtualSizeBytes * 0.8 / 512) * 512 + 3 * 512, lengthBytes: 1536, fill: "random" });
  regions.push({ offsetBytes: virtualSizeBytes - 512, lengthBytes: 512, fill: 0xee });
  return regions;
}

/** Writes a sparse raw image of the regions (later regions win where they overlap). */
export async function writeRawImage(path: string, virtualSizeBytes: number, regions: readonly Region[], seed = 6): Promise<void> {
  const handle = await open(path, "wx");
  try {
    await handle.truncate(virtualSizeBytes);
    for (const region of regions) {
      for (let done = 0; done < region.lengthBytes; done += 4 * MiB) {
        const length = Math.min(4 * MiB, region.lengthBytes - done);
        const at = region.offsetBytes + done;
        const data = region.fill === "random" ? randomBytesAt(seed, at, length) : Buffer.alloc(length, region.fill);
        await handle.write(data, 0, length, at);
      }
    }
  } finally {
    await handle.close();
  }
}

/** Sorted, merged [start, end) intervals. */
export type Intervals = Array<[number, number]>;

export function mergeIntervals(list: Iterable<[number, number]>): Intervals {
  const sorted = [...list].filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
  const out: Intervals = [];
  for (const [s, e] of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

export function intervalBytes(list: Intervals): number {
  return list.reduce((sum, [s, e]) => sum + e - s, 0);
}

/** The 512-byte sectors of a raw image, within the regions' spans, that hold a non-zero byte. */
export async function nonZeroSectors(path: string, regions: readonly Region[]): Promise<Intervals> {
  const spans = mergeIntervals(regions.map((r) => [Math.floor(r.offsetBytes / 512) * 512, Math.ceil((r.offsetBytes + r.lengthBytes) / 512) * 512]));
  const handle = await open(path, "r");
  const zero = Buffer.alloc(512);
  const found: Intervals = [];
  try {
    for (const [start, end] of spans) {
      for (let at = start; at < end; at += 4 * MiB) {
        const length = Math.min(4 * MiB, end - at);
        const buf = Buffer.alloc(length);
        await handle.read(buf, 0, length, at);
        for (let p = 0; p < length; p += 512) {
          if (!buf.subarray(p, p + 512).equals(zero)) found.push([at + p, at + p + 512]);
        }
      }
    }
  } finally {
    await handle.close();
  }
  return mergeIntervals(found);
}

/**
 * Downloads a page blob into a sparse local file with the SDK alone (Get Page Ranges, then a
 * ranged Get Blob per range), so the check of what landed in the blob does not use our source.
 */
export async function downloadPageBlob(client: PageBlobClient, path: string): Promise<number> {
  const props = await client.getProperties();
  const size = props.contentLength ?? 0;
  const handle = await open(path, "wx");
  try {
    await handle.truncate(size);
    for await (const range of client.listPageRanges(0, size)) {
      for (let at = range.start; at <= range.end; at += 4 * MiB) {
        const length = Math.min(4 * MiB, range.end + 1 - at);
        const buf = await client.downloadToBuffer(at, length);
        await handle.write(buf, 0, length, at);
      }
    }
  } finally {
    await handle.close();
  }
  return size;
}
