// A loopback HTTP proxy that forwards to an emulator (moto, Azurite) and injects faults:
// dropped connections, error statuses (503, throttling), delays and truncated bodies. Faults are
// chosen by a seeded generator or a rule, so a failing run can be replayed exactly.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Keep-alive for client connections to a test proxy; longer than any test step. */
const PROXY_KEEP_ALIVE_MS = 10 * 60_000;

export type Fault =
  | { readonly kind: "reset" }
  | { readonly kind: "status"; readonly status: number; readonly body?: string; readonly headers?: Record<string, string> }
  | { readonly kind: "delay"; readonly ms: number }
  | { readonly kind: "truncate" };

export interface FaultContext {
  /** 0-based count of requests seen by the proxy. */
  readonly index: number;
  readonly method: string;
  readonly url: string;
}

/** Decides the fault for a request, or none. */
export type FaultRule = (context: FaultContext, random: () => number) => Fault | undefined;

export interface FaultProxy {
  /** e.g. http://127.0.0.1:40123 — point the client here instead of at the emulator. */
  readonly endpoint: string;
  /** Requests that reached the emulator (truncated answers included), by `METHOD path-without-query`. */
  readonly forwarded: ReadonlyMap<string, number>;
  /** Faults injected, by kind. */
  readonly injected: ReadonlyMap<Fault["kind"], number>;
  stop(): Promise<void>;
}

/** mulberry32: a tiny seeded generator, enough to make fault schedules reproducible. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A rule that faults a fraction of matching requests, picking among the given faults.
 * `match` limits faults to some requests (e.g. only data uploads), so setup calls stay clean.
 */
export function randomFaults(rate: number, faults: readonly Fault[], match: (c: FaultContext) => boolean = () => true): FaultRule {
  return (context, random) => {
    if (!match(context) || random() >= rate) return undefined;
    return faults[Math.floor(random() * faults.length)];
  };
}

export async function startFaultProxy(upstream: string, rule: FaultRule, seed = 1): Promise<FaultProxy> {
  const target = new URL(upstream);
  const random = seededRandom(seed);
  const forwarded = new Map<string, number>();
  const injected = new Map<Fault["kind"], number>();
  let index = 0;

  function forward(req: IncomingMessage, res: ServerResponse, truncate: boolean): void {
    const upstreamReq = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
        // A fresh connection per request: a pooled one the emulator has just timed out would
        // fail with ECONNRESET, a fault nobody asked for.
        agent: false,
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        if (!truncate) {
          upstreamRes.pipe(res);
          return;
        }
        // Send half of the first chunk, then cut the connection: a body shorter than its length.
        // An answer without a body is cut at its end (after the head), never left hanging.
        upstreamRes.once("data", (chunk: Buffer) => {
          res.write(chunk.subarray(0, Math.floor(chunk.length / 2)));
          upstreamRes.destroy();
          res.socket?.destroy();
        });
        upstreamRes.once("end", () => res.socket?.destroy());
      },
    );
    upstreamReq.once("error", () => res.socket?.destroy());
    req.pipe(upstreamReq);
  }

  const server: Server = createServer((req, res) => {
    const context: FaultContext = { index: index++, method: req.method ?? "GET", url: req.url ?? "/" };
    const fault = rule(context, random);
    const key = `${context.method} ${context.url.split("?")[0]}`;
    if (fault !== undefined) injected.set(fault.kind, (injected.get(fault.kind) ?? 0) + 1);
    switch (fault?.kind) {
      case "reset":
        req.socket.destroy();
        return;
      case "status":
        req.resume();
        req.once("end", () => {
          res.writeHead(fault.status, { "content-type": "application/json", ...fault.headers });
          res.end(fault.body ?? "");
        });
        return;
      case "delay":
        setTimeout(() => {
          forwarded.set(key, (forwarded.get(key) ?? 0) + 1);
          forward(req, res, false);
        }, fault.ms);
        return;
      case "truncate":
        // The emulator still handles it; only the answer is cut.
        forwarded.set(key, (forwarded.get(key) ?? 0) + 1);
        forward(req, res, true);
        return;
      default:
        forwarded.set(key, (forwarded.get(key) ?? 0) + 1);
        forward(req, res, false);
    }
  });
  // Outlive any client's idle keep-alive: with Node's 5 s default, a client reusing a connection
  // after a long local step (hashing a 2 GiB image) races the close and sees ECONNRESET.
  server.keepAliveTimeout = PROXY_KEEP_ALIVE_MS;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    forwarded,
    injected,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
