// Azurite's blob service, an Azure Storage emulator, on loopback and in memory.
import { startService } from "./process.ts";
import { TOOLS } from "./tools.ts";

/** Azurite's built-in development account (documented, not a secret). */
const ACCOUNT_NAME = "devstoreaccount1";
const ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface Azurite {
  /** e.g. http://127.0.0.1:41234/devstoreaccount1 */
  readonly blobEndpoint: string;
  readonly accountName: string;
  readonly accountKey: string;
  readonly connectionString: string;
  stop(): Promise<void>;
}

export async function startAzurite(): Promise<Azurite> {
  const service = await startService({
    name: "azurite",
    command: TOOLS.azuriteBlob,
    args: [
      "--blobHost", "127.0.0.1",
      "--blobPort", "0",
      "--inMemoryPersistence",
      "--skipApiVersionCheck",
      "--disableTelemetry",
      "--silent",
    ],
    ready: /successfully listens on (http:\/\/127\.0\.0\.1:\d+)/,
  });
  const blobEndpoint = `${service.address}/${ACCOUNT_NAME}`;
  return {
    blobEndpoint,
    accountName: ACCOUNT_NAME,
    accountKey: ACCOUNT_KEY,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT_NAME};AccountKey=${ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    stop: () => service.stop(),
  };
}
