// Get Page Ranges, paged and windowed: the allocated ranges of a page blob, in order.
//
// The service may answer a large or fragmented blob slowly or in pages (NextMarker); asking for
// one window of the blob at a time bounds each answer, and the continuation token is followed
// within a window. Every page is its own retried call, restarted from the last token.
import type { PageBlobClient } from "@azure/storage-blob";
import { azureCall, type CallOptions } from "./call.ts";

/**
 * Bytes of blob covered per Get Page Ranges call. 1 GiB keeps a 2 TiB disk at 2048 calls and
 * each answer small even for a fragmented blob.
 */
export const PAGE_RANGES_WINDOW_BYTES = 1024 * 1024 * 1024;
/** Ranges per answer page (maxresults); the service's own cap is larger. */
export const PAGE_RANGES_PER_CALL = 10_000;

export interface PageRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Allocated ranges of [0, limitBytes), ascending, clipped to the limit and merged where adjacent. */
export async function* listPageRanges(
  client: PageBlobClient,
  name: string,
  limitBytes: number,
  options: CallOptions = {},
): AsyncGenerator<PageRange> {
  let pending: PageRange | undefined;
  let cursor = 0;
  for (let windowStart = 0; windowStart < limitBytes; windowStart += PAGE_RANGES_WINDOW_BYTES) {
    const count = Math.min(PAGE_RANGES_WINDOW_BYTES, limitBytes - windowStart);
    let token: string | undefined;
    do {
      const continuationToken = token;
      const page = await azureCall(
        { operation: "Get Page Ranges", blob: name, offsetBytes: windowStart, lengthBytes: count },
        async () => {
          const pages = client
            .listPageRanges(windowStart, count, options.signal === undefined ? {} : { abortSignal: options.signal })
            .byPage({ maxPageSize: PAGE_RANGES_PER_CALL, ...(continuationToken === undefined ? {} : { continuationToken }) });
          const next = await pages.next();
          return next.done === true ? undefined : next.value;
        },
        options,
      );
      for (const range of page?.pageRange ?? []) {
        // Ranges are inclusive; clip to the window and never step backwards.
        const start = Math.max(range.start, cursor, windowStart);
        const end = Math.min(range.end + 1, windowStart + count);
        if (end <= start) continue;
        if (pending !== undefined && pending.offsetBytes + pending.lengthBytes === start) {
          pending = { offsetBytes: pending.offsetBytes, lengthBytes: end - pending.offsetBytes };
        } else {
          if (pending !== undefined) yield pending;
          pending = { offsetBytes: start, lengthBytes: end - start };
        }
        cursor = end;
      }
      token = page?.continuationToken === "" ? undefined : page?.continuationToken;
    } while (token !== undefined);
  }
  if (pending !== undefined) yield pending;
}
