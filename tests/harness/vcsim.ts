// vcsim, govmomi's vSphere simulator, on loopback with its own credentials.
import { randomBytes } from "node:crypto";
import { connect } from "node:tls";
import { startService } from "./process.ts";
import { TOOLS } from "./tools.ts";

export interface Vcsim {
  /** The SOAP endpoint without credentials, e.g. https://127.0.0.1:41234/sdk */
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** PEM of the simulator's self-signed certificate, so clients can keep TLS verification on. */
  readonly caPem: string;
  stop(): Promise<void>;
}

export interface VcsimOptions {
  /** The login password; a random one by default (tests of escaping pass one with XML specials). */
  readonly password?: string;
}

export async function startVcsim(extraArgs: readonly string[] = [], options: VcsimOptions = {}): Promise<Vcsim> {
  const username = "pw-admin";
  const password = options.password ?? randomBytes(12).toString("base64url");
  const service = await startService({
    name: "vcsim",
    command: TOOLS.vcsim,
    args: ["-l", "127.0.0.1:0", "-username", username, "-password", password, ...extraArgs],
    ready: /^export GOVC_URL=(\S+)/,
  });
  try {
    const url = new URL(service.address);
    url.username = "";
    url.password = "";
    const caPem = await peerCertificatePem(url.hostname, Number(url.port));
    return { url: url.toString(), username, password, caPem, stop: () => service.stop() };
  } catch (err) {
    await service.stop();
    throw err;
  }
}

/**
 * Reads the server certificate once without verifying it: trust on first use, which is
 * sound here because we started the process ourselves on loopback a moment ago.
 */
function peerCertificatePem(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, rejectUnauthorized: false }, () => {
      const der = socket.getPeerCertificate(true).raw;
      socket.end();
      const body = der.toString("base64").replace(/.{64}/g, "$&\n");
      resolve(`-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`);
    });
    socket.once("error", reject);
  });
}
