// Get Page Ranges, paged and windowed: the allocated ranges of a page blob, in order.
//
// The service may answer a large or fragmented blob slowly or in pages (NextMarker); asking for
// one window of the blob at a time bounds each answer, and the continuation token is followed
// within a window. Every page is its own retried call, restarted from the last token.
import type { PageBlobClient } from "@azure/storage-blob";
import { CloudError } from "../../errors.ts";
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

/**
 * The pages of a managed disk's incremental snapshot that differ from an earlier incremental
 * snapshot of the same disk (Get Page Ranges with `x-ms-previous-snapshot-url`): the pages
 * written since and the pages cleared since, merged, ascending, clipped to `limitBytes`. One
 * window at a time; an answer that says it is incomplete (a continuation marker) is refused
 * rather than read past, so nothing is ever missed.
 */
export async function listChangedPageRanges(client: PageBlobClient, name: string, previousSnapshotUrl: string, limitBytes: number, options: CallOptions = {}): Promise<PageRange[]> {
  const out: PageRange[] = [];
  for (let windowStart = 0; windowStart < limitBytes; windowStart += PAGE_RANGES_WINDOW_BYTES) {
    const count = Math.min(PAGE_RANGES_WINDOW_BYTES, limitBytes - windowStart);
    const answer = await azureCall(
      { operation: "Get Page Ranges Diff", blob: name, offsetBytes: windowStart, lengthBytes: count },
      () => client.getPageRangesDiffForManagedDisks(windowStart, count, previousSnapshotUrl, options.signal === undefined ? {} : { abortSignal: options.signal }),
      options,
    );
    // The SDK drops the continuation marker of this call, so an answer that may have been cut
    // short (as long as a page of answers gets) is refused: the caller scans instead.
    const listed = [...(answer.pageRange ?? []), ...(answer.clearRange ?? [])];
    if (listed.length >= PAGE_RANGES_PER_CALL) {
      throw new CloudError("AZURE_DIFF_INCOMPLETE", `Get Page Ranges Diff ${name}: ${listed.length} ranges for ${windowStart}+${count} may be a cut-off answer`, { context: { blob: name, offsetBytes: windowStart } });
    }
    // The SDK turns an inclusive {start, end} into count = end - start, one byte short: one more
    // byte is read rather than one missed.
    const ranges = listed
      .map((r) => ({ start: Math.max(r.offset, windowStart), end: Math.min(r.offset + (r.count ?? 0) + 1, windowStart + count) }))
      .filter((r) => r.end > r.start)
      .sort((a, b) => a.start - b.start);
    for (const r of ranges) {
      const last = out.at(-1);
      if (last !== undefined && last.offsetBytes + last.lengthBytes >= r.start) {
        const end = Math.max(last.offsetBytes + last.lengthBytes, r.end);
        out[out.length - 1] = { offsetBytes: last.offsetBytes, lengthBytes: end - last.offsetBytes };
      } else out.push({ offsetBytes: r.start, lengthBytes: r.end - r.start });
    }
  }
  return out;
}
