// Contracts floor (sdk/contracts): the shapes the platform drivers (sdk/clouds) implement and
// sdk/transfer and sdk/migrate use. It imports only sdk/disk, sdk/spec and sdk/errors.
//
// Change tracking by kept snapshots (DiskSource.changes), as the clouds do it: a pass reads a
// snapshot of the live disk and, when it commits, keeps that snapshot as its token; the next pass
// asks the service for the blocks that differ between the kept snapshot and its own (EBS
// ListChangedBlocks, an Azure page-range diff). The rule, in one place:
// - a committed pass keeps its snapshot and deletes the one it diffed against;
// - a pass that did not commit deletes its own and leaves the record's;
// - a cutover's final pass keeps none (no later pass will ask).
// A diff that fails or a token of another kind answers "cannot say": the pass scans everything.
import type { ChangeTracking, DirtyRange, DiskSource } from "../disk/types.ts";

export interface SnapshotTrackingOptions {
  /** This pass's snapshot, as the platform names it. */
  readonly snapshot: string;
  /** The token's prefix, e.g. `ebs-snapshot:`. */
  readonly prefix: string;
  /** A well-formed snapshot name of this platform (a token from elsewhere is never diffed). */
  readonly valid: (snapshot: string) => boolean;
  /** The ranges that differ between `earlier` and this pass's snapshot (throws when it cannot say). */
  readonly diff: (earlier: string) => Promise<readonly DirtyRange[]>;
  /** Ends the view's read; deletes its snapshot unless `keep`. */
  readonly releaseView: (keep: boolean) => Promise<void>;
  /** Deletes an earlier kept snapshot (one already gone is fine). */
  readonly deleteSnapshot: (snapshot: string) => Promise<void>;
  /** The cutover's final pass. */
  readonly final: boolean;
}

export function snapshotTracking(options: SnapshotTrackingOptions): { readonly changes: ChangeTracking; release(): Promise<void> } {
  let since: string | undefined;
  let committed = false;
  return {
    changes: {
      token: `${options.prefix}${options.snapshot}`,
      async changedSince(token) {
        const earlier = token.startsWith(options.prefix) ? token.slice(options.prefix.length) : undefined;
        if (earlier === undefined || earlier === options.snapshot || !options.valid(earlier)) return undefined;
        since = earlier;
        let ranges: readonly DirtyRange[];
        try {
          ranges = await options.diff(earlier);
        } catch {
          return undefined;
        }
        return (async function* () {
          yield* ranges;
        })();
      },
      committed() {
        committed = true;
      },
    },
    async release() {
      await options.releaseView(committed && !options.final);
      // The record now names this pass's snapshot (after a final pass, one no later pass needs).
      if (since !== undefined && committed) await options.deleteSnapshot(since).catch(() => {});
    },
  };
}

/**
 * A snapshot's view as the pass's source: with tracking, its changes, and closing it releases
 * through the tracking (which decides what is kept); else the view's own release. `after` runs
 * last either way (a client to close).
 */
export function snapshotSource(source: DiskSource, tracking: { readonly changes: ChangeTracking; release(): Promise<void> } | undefined, releaseView: () => Promise<void>, after: () => void = () => {}): DiskSource {
  return {
    ...source,
    extents: () => source.extents(),
    // A snapshot reader allocates its own buffers (as the drivers always read it).
    read: (o, l) => source.read(o, l),
    ...(tracking === undefined ? {} : { changes: tracking.changes }),
    close: async () => {
      try {
        await (tracking?.release() ?? releaseView());
      } finally {
        after();
      }
    },
  };
}
