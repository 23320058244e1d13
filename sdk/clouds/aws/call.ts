// One way to call AWS for every EBS/EC2 verb here: retries with backoff and full jitter on
// throttling, 5xx and network errors (sdk/retry.ts), then one CloudError that names the
// operation, the snapshot id, the block and its offset. Messages carry ids and offsets only,
// never request headers, so credentials cannot leak into them.
import { CloudError, isPortableError, type ErrorContext } from "../../errors.ts";
import { isTransientError, withRetry } from "../../retry.ts";

/**
 * Attempts per call, the first included. Eight attempts with a 100 ms base and full jitter wait
 * up to about 25 s in all: longer than the EBS throttling windows we have seen documented
 * (per-second request quotas), short enough that a dead endpoint fails the upload in under a
 * minute instead of hanging it.
 */
export const AWS_CALL_ATTEMPTS = 8;
export const AWS_RETRY_BASE_DELAY_MS = 100;
export const AWS_RETRY_MAX_DELAY_MS = 5_000;

export interface CallOptions {
  /** e.g. "PutSnapshotBlock". */
  readonly operation: string;
  /** Stable code of the CloudError thrown when the call finally fails. */
  readonly code: string;
  /** Ids and offsets for the message and the error's context. */
  readonly context: ErrorContext;
  readonly signal?: AbortSignal;
  /** Told on every retry (tests and benchmarks count them). */
  readonly onRetry?: (error: unknown, attempt: number) => void;
  /** Injected by tests for a deterministic schedule. */
  readonly random?: () => number;
  readonly attempts?: number;
}

/** Our own checks that a retry can cure, e.g. a block whose checksum did not match in transit. */
const RETRYABLE_CODES = new Set(["EBS_CHECKSUM_MISMATCH", "EBS_SHORT_BLOCK"]);

export function isRetryableAwsError(error: unknown): boolean {
  if (isPortableError(error)) return RETRYABLE_CODES.has(error.code);
  // The SDK's HTTP handler names its connect and request timeouts TimeoutError.
  if (error instanceof Error && error.name === "TimeoutError") return true;
  return isTransientError(error);
}

function where(context: ErrorContext): string {
  return Object.entries(context)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => (key === "offsetBytes" && typeof value === "number" ? `offset 0x${value.toString(16)}` : `${key} ${String(value)}`))
    .join(", ");
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

export async function callAws<T>(options: CallOptions, fn: () => Promise<T>): Promise<T> {
  const label = `${options.operation} (${where(options.context)})`;
  try {
    return await withRetry(() => fn(), {
      operation: label,
      // A call cancelled on purpose (the sink aborting after another block failed) is not retried.
      isRetryable: (error) => options.signal?.aborted !== true && isRetryableAwsError(error),
      attempts: options.attempts ?? AWS_CALL_ATTEMPTS,
      baseDelayMs: AWS_RETRY_BASE_DELAY_MS,
      maxDelayMs: AWS_RETRY_MAX_DELAY_MS,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.random === undefined ? {} : { random: options.random }),
      onRetry: (error, attempt) => options.onRetry?.(error, attempt),
    });
  } catch (error) {
    if (isPortableError(error) && error.code !== "RETRIES_EXHAUSTED") throw error;
    const retriesExhausted = isPortableError(error);
    // Our own retryable check (a checksum mismatch) keeps its code once retries run out.
    const last = retriesExhausted ? (error as Error).cause : error;
    const code = isPortableError(last) ? last.code : options.code;
    throw new CloudError(code, `${label}: ${describe(error)}`, {
      context: { operation: options.operation, ...options.context, retriesExhausted },
      cause: error,
    });
  }
}
