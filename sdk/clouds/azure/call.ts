// One wrapper for every Azure Storage call that moves data or reads state: our retry policy
// (full jitter, named limits in sdk/retry.ts), and errors that name the operation, the
// offset and the blob, with any SAS signature removed.
import { CloudError, isPortableError } from "../../errors.ts";
import { isTransientError, withRetry } from "../../retry.ts";

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Told before each retry, e.g. to count retries in a benchmark or a test. */
  readonly onRetry?: (error: unknown, attempt: number) => void;
  /** Attempts in all; the default is sdk/retry.ts's DEFAULT_RETRY_ATTEMPTS. */
  readonly attempts?: number;
}

/** Where a call happened: included in the message and in the error's context. */
export interface CallSite {
  /** The REST operation, e.g. "Put Page". */
  readonly operation: string;
  /** The blob URL without its query (see redactUrl). */
  readonly blob: string;
  readonly offsetBytes?: number;
  readonly lengthBytes?: number;
}

/** Our own short reads count as transient: a cut connection can end a body early. */
export const AZURE_SHORT_READ = "AZURE_SHORT_READ";

export function isRetryableAzureError(error: unknown): boolean {
  if (isPortableError(error)) return error.code === AZURE_SHORT_READ;
  return isTransientError(error);
}

/** A URL without query or fragment: a SAS token never reaches a message or a log. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return url.replace(/\?.*$/s, "");
  }
}

/** Strips SAS signatures and keys from free text (service error messages can echo a URL). */
export function redactText(text: string): string {
  return text.replace(/([?&](sig|se|sv|sp|sr|st|skoid|sktid|skt|ske|sks|skv)=)[^&\s"']*/gi, "$1REDACTED");
}

function where(site: CallSite): string {
  const range = site.offsetBytes === undefined
    ? ""
    : ` at offset 0x${site.offsetBytes.toString(16)}${site.lengthBytes === undefined ? "" : ` (+${site.lengthBytes})`}`;
  return `${site.operation} ${site.blob}${range}`;
}

/** The parts of an Azure RestError worth printing, without its request (which holds the URL). */
export function describeAzureError(error: unknown): string {
  if (typeof error !== "object" || error === null) return String(error);
  const e = error as { statusCode?: unknown; code?: unknown; message?: unknown; name?: unknown };
  const status = typeof e.statusCode === "number" ? `HTTP ${e.statusCode} ` : "";
  const code = typeof e.code === "string" ? `${e.code}: ` : "";
  const message = typeof e.message === "string" ? e.message.split("\n")[0] ?? "" : String(error);
  return redactText(`${status}${code}${message}`);
}

export function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/**
 * Runs `fn` with retries on throttling, 5xx and network errors. A call that cannot succeed
 * (403, 404, 409, 412) or that runs out of attempts becomes a CloudError naming the call site.
 */
export async function azureCall<T>(site: CallSite, fn: () => Promise<T>, options: CallOptions = {}): Promise<T> {
  const context = {
    operation: site.operation,
    blob: site.blob,
    offsetBytes: site.offsetBytes,
    lengthBytes: site.lengthBytes,
  };
  try {
    return await withRetry(fn, {
      operation: where(site),
      isRetryable: isRetryableAzureError,
      ...(options.attempts === undefined ? {} : { attempts: options.attempts }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onRetry: (error, attempt) => options.onRetry?.(error, attempt),
    });
  } catch (error) {
    if (isPortableError(error) && error.code === "RETRIES_EXHAUSTED") {
      throw new CloudError("AZURE_RETRIES_EXHAUSTED", `${where(site)}: gave up after retries: ${describeAzureError(error.cause)}`, {
        context: { ...context, status: statusOf(error.cause) },
        cause: error.cause,
      });
    }
    if (isPortableError(error)) throw error;
    if ((error as { name?: unknown } | null)?.name === "AbortError") throw error;
    throw new CloudError("AZURE_REQUEST_FAILED", `${where(site)} failed: ${describeAzureError(error)}`, {
      context: { ...context, status: statusOf(error), azureCode: String((error as { code?: unknown }).code ?? "") },
      cause: error,
    });
  }
}
