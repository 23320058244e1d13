// AWS clients for the EBS direct APIs and EC2, from the default credential chain (environment,
// shared config and SSO, container and instance roles). Everything else in this folder takes a
// client as an argument, so tests point one at moto and callers can bring their own.
import { EBSClient } from "@aws-sdk/client-ebs";
import { EC2Client } from "@aws-sdk/client-ec2";

export interface AwsClientOptions {
  /** @default the SDK's chain: AWS_REGION, then the shared config */
  readonly region?: string;
  /**
   * Overrides the service endpoint (an emulator such as moto). Without it the SDK's own rules
   * apply, including the AWS_ENDPOINT_URL_EBS / AWS_ENDPOINT_URL environment variables.
   */
  readonly endpoint?: string;
  /** @default AWS_REQUEST_TIMEOUT_MS */
  readonly requestTimeoutMs?: number;
}

export interface AwsClients {
  readonly ebs: EBSClient;
  readonly ec2: EC2Client;
  destroy(): void;
}

/**
 * Sockets per client. The sink keeps EBS_PUT_CONCURRENCY requests in flight; the default agent
 * cap (50) would queue the rest behind it.
 */
export const AWS_MAX_SOCKETS = 128;
/** TCP connect limit: a regional endpoint answers in milliseconds; 10 s means it is unreachable. */
export const AWS_CONNECTION_TIMEOUT_MS = 10_000;
/**
 * Whole-request limit. A 512 KiB block at a poor 100 KiB/s takes about 5 s; 60 s leaves room for
 * throttled queues, and turns a hung connection into a retry instead of a stalled upload.
 */
export const AWS_REQUEST_TIMEOUT_MS = 60_000;

export function createAwsClients(options: AwsClientOptions): AwsClients {
  const common = {
    ...(options.region === undefined ? {} : { region: options.region }),
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    // Retries are ours (call.ts): one schedule with jitter, and errors that name the block.
    // The SDK's own retries would multiply with them.
    maxAttempts: 1,
    // EBS carries its own SHA-256 per block; a second CRC over every 512 KiB body costs CPU
    // for nothing.
    requestChecksumCalculation: "WHEN_REQUIRED" as const,
    responseChecksumValidation: "WHEN_REQUIRED" as const,
    requestHandler: {
      httpAgent: { maxSockets: AWS_MAX_SOCKETS, keepAlive: true },
      httpsAgent: { maxSockets: AWS_MAX_SOCKETS, keepAlive: true },
      connectionTimeout: AWS_CONNECTION_TIMEOUT_MS,
      requestTimeout: options.requestTimeoutMs ?? AWS_REQUEST_TIMEOUT_MS,
      throwOnRequestTimeout: true,
    },
  };
  const ebs = new EBSClient(common);
  const ec2 = new EC2Client(common);
  return {
    ebs,
    ec2,
    destroy() {
      ebs.destroy();
      ec2.destroy();
    },
  };
}
