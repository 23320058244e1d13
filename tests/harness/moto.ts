// moto's server mode, an AWS emulator, on loopback. It accepts any credentials; the
// fixed ones here exist so that secret-scanning tests have something to look for.
import { startService } from "./process.ts";
import { TOOLS } from "./tools.ts";

export interface Moto {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Drops every resource moto holds (`POST /moto-api/reset`). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export async function startMoto(): Promise<Moto> {
  const service = await startService({
    name: "moto",
    command: TOOLS.motoServer,
    args: ["-H", "127.0.0.1", "-p", "0"],
    ready: /Running on (http:\/\/127\.0\.0\.1:\d+)/,
  });
  const endpoint = service.address;
  return {
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "AKIAPWTESTKEY0000001", secretAccessKey: "pw-test-secret-key-moto" },
    async reset() {
      const response = await fetch(new URL("/moto-api/reset", endpoint), { method: "POST" });
      if (!response.ok) throw new Error(`moto reset failed: HTTP ${response.status}`);
    },
    stop: () => service.stop(),
  };
}
