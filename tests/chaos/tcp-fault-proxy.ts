// A loopback TCP proxy that injects faults into whole connections: resets (an RST after some
// bytes went up), truncations (the answer cut after some bytes came back, then both sides
// closed) and delays (the connection stalls before it carries anything). It works below TLS, so
// it sits in front of vcsim's HTTPS endpoint with certificate verification left on: the client
// still verifies the server's certificate through the relayed bytes (the name is 127.0.0.1 on
// either port). The HTTP-level proxy (tests/harness/fault-proxy.ts) covers moto and Azurite,
// where status answers (5xx, throttling) need to be forged, which TLS makes impossible here.
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { seededRandom } from "../harness/fault-proxy.ts";

export type TcpFaultKind = "reset" | "truncate" | "delay";

export interface TcpFaultOptions {
  /** Share of connections that get a fault. */
  readonly rate: number;
  readonly kinds: readonly TcpFaultKind[];
  /** A reset or truncation happens after 1..this many bytes in its direction (log-uniform). */
  readonly maxThresholdBytes: number;
  /** A delayed connection waits a uniform 0..this many ms before relaying. */
  readonly maxDelayMs: number;
}

export interface TcpFaultProxy {
  /** host:port to dial instead of the upstream. */
  readonly host: string;
  readonly port: number;
  readonly connections: () => number;
  /** Faults that fired (a reset whose threshold was never reached does not count). */
  readonly injected: ReadonlyMap<TcpFaultKind, number>;
  /** Turns faults on or off (verification and final resumes run clean). */
  setEnabled(enabled: boolean): void;
  stop(): Promise<void>;
}

export async function startTcpFaultProxy(upstreamHost: string, upstreamPort: number, options: TcpFaultOptions, seed: number): Promise<TcpFaultProxy> {
  const random = seededRandom(seed);
  const injected = new Map<TcpFaultKind, number>();
  const sockets = new Set<Socket>();
  let enabled = true;
  let connections = 0;
  const count = (kind: TcpFaultKind) => injected.set(kind, (injected.get(kind) ?? 0) + 1);
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  };

  const server: Server = createServer((client) => {
    connections++;
    track(client);
    const faulted = enabled && random() < options.rate;
    const kind = faulted ? options.kinds[Math.floor(random() * options.kinds.length)] : undefined;
    // Log-uniform, so a fault lands as often in a small SOAP exchange as in a 64 MiB upload.
    const threshold = Math.floor(Math.exp(random() * Math.log(options.maxThresholdBytes)));
    const delayMs = Math.floor(random() * options.maxDelayMs);
    client.pause();
    const start = () => {
      if (client.destroyed) return;
      const upstream = connect({ host: upstreamHost, port: upstreamPort });
      track(upstream);
      const closeBoth = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.once("error", closeBoth);
      client.once("error", closeBoth);
      client.once("close", () => upstream.destroy());
      upstream.once("close", () => client.destroy());
      let up = 0;
      let down = 0;
      client.on("data", (chunk: Buffer) => {
        up += chunk.length;
        if (kind === "reset" && up > threshold) {
          count("reset");
          const send = chunk.subarray(0, chunk.length - (up - threshold));
          if (send.length > 0) upstream.write(send);
          client.resetAndDestroy();
          upstream.resetAndDestroy();
          return;
        }
        if (!upstream.write(chunk)) client.pause();
      });
      upstream.on("drain", () => client.resume());
      upstream.on("data", (chunk: Buffer) => {
        down += chunk.length;
        if (kind === "truncate" && down > threshold) {
          count("truncate");
          const send = chunk.subarray(0, chunk.length - (down - threshold));
          client.end(send);
          upstream.destroy();
          client.destroySoon();
          return;
        }
        if (!client.write(chunk)) upstream.pause();
      });
      client.on("drain", () => upstream.resume());
      client.resume();
    };
    if (kind === "delay") {
      count("delay");
      setTimeout(start, delayMs);
    } else start();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: "127.0.0.1",
    port,
    connections: () => connections,
    injected,
    setEnabled(value) {
      enabled = value;
    },
    stop: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
