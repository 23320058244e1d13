// Retries with exponential backoff and full jitter, for every cloud call that moves data. It sits
// beside errors.ts, under every floor: the drivers (sdk/clouds) and sdk/transfer both use it.
//
// Full jitter (a random delay between 0 and the exponential cap) spreads retries of many
// concurrent block uploads apart, so a throttled service is not hit again in lockstep.
import { CloudError } from "./errors.ts";

export interface RetryOptions {
  /** Attempts in all, the first included. */
  readonly attempts?: number;
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** True when the error is worth another try (throttling, 5xx, network). */
  readonly isRetryable: (error: unknown) => boolean;
  /** Told before each wait, e.g. to count or log retries. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  readonly signal?: AbortSignal;
  /** Names the operation in the final error, e.g. "PutSnapshotBlock snap-1 block 42". */
  readonly operation: string;
  /** Injected in tests for a deterministic schedule. */
  readonly random?: () => number;
}

/** Eight attempts with a 100 ms base reach the 10 s cap: about half a minute of patience in all. */
export const DEFAULT_RETRY_ATTEMPTS = 8;
export const DEFAULT_RETRY_BASE_DELAY_MS = 100;
export const DEFAULT_RETRY_MAX_DELAY_MS = 10_000;

export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const attempts = options.attempts ?? DEFAULT_RETRY_ATTEMPTS;
  const base = options.baseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS;
  const max = options.maxDelayMs ?? DEFAULT_RETRY_MAX_DELAY_MS;
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      if (!options.isRetryable(error)) throw error;
      if (attempt >= attempts) {
        throw new CloudError("RETRIES_EXHAUSTED", `${options.operation}: failed after ${attempt} attempts: ${describe(error)}`, {
          context: { operation: options.operation, attempts: attempt },
          cause: error,
        });
      }
      const delayMs = Math.floor(random() * Math.min(max, base * 2 ** (attempt - 1)));
      options.onRetry?.(error, attempt, delayMs);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Node network failures that a retry can cure. */
const NETWORK_ERROR_CODES = new Set([
  "ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_SOCKET", "ECONNABORTED",
]);

/** True for throttling, 5xx and network errors, recognised across the AWS and Azure SDKs. */
export function isTransientError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const e = error as {
    code?: unknown; name?: unknown; statusCode?: unknown; message?: unknown;
    $metadata?: { httpStatusCode?: number }; $retryable?: unknown; cause?: unknown;
  };
  const status = e.$metadata?.httpStatusCode ?? (typeof e.statusCode === "number" ? e.statusCode : undefined);
  if (status !== undefined && (status === 429 || status >= 500)) return true;
  if (e.$retryable !== undefined) return true;
  const name = String(e.name ?? "");
  if (/Throttl|TooManyRequests|RequestTimeout|ServerBusy|InternalError|ServiceUnavailable/i.test(name)) return true;
  if (typeof e.code === "string" && (NETWORK_ERROR_CODES.has(e.code) || /Throttl|ServerBusy/i.test(e.code))) return true;
  if (/socket hang up|ECONNRESET|premature close|aborted/i.test(String(e.message ?? ""))) return true;
  return e.cause !== undefined && e.cause !== error && isTransientError(e.cause);
}
