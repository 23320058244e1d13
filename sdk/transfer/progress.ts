// Progress of a long disk transfer as one line a person reads in `pulumi up` or a log: how far
// the scan is, what was sent, the rate and the time left. Throttled, so a provider reports every
// few seconds however fast the blocks go; the first and the last report always pass.
import { formatBytes } from "../units.ts";
import type { ReplicateProgress } from "./replicate.ts";

export type ProgressReport = ReplicateProgress;

/** How often a transfer reports at most. */
export const PROGRESS_INTERVAL_MS = 2_000;

export function progressLine(label: string, progress: ReplicateProgress, elapsedSeconds: number): string {
  const { scannedBytes, virtualSizeBytes, bytesSent } = progress;
  const percent = virtualSizeBytes === 0 ? 100 : Math.floor((scannedBytes / virtualSizeBytes) * 100);
  const rate = elapsedSeconds > 0 ? scannedBytes / elapsedSeconds : 0;
  const left = rate > 0 ? (virtualSizeBytes - scannedBytes) / rate : undefined;
  const eta = scannedBytes >= virtualSizeBytes ? "done" : left === undefined ? "ETA unknown" : `ETA ${Math.ceil(left)} s`;
  return `${label}: ${percent}% (${formatBytes(scannedBytes)} of ${formatBytes(virtualSizeBytes)} scanned), ${formatBytes(bytesSent)} sent, ${formatBytes(rate)}/s, ${eta}`;
}

/**
 * An onProgress callback that calls `emit` with a progress line at most every `intervalMs`,
 * plus the first report and the one that finishes the scan.
 */
export function throttledProgress(label: string, emit: (line: string) => void, intervalMs = PROGRESS_INTERVAL_MS, now: () => number = Date.now): (progress: ReplicateProgress) => void {
  const started = now();
  let last: number | undefined;
  let finished = false;
  return (progress) => {
    const at = now();
    const done = progress.scannedBytes >= progress.virtualSizeBytes;
    if (finished || (last !== undefined && at - last < intervalMs && !done)) return;
    last = at;
    finished = done;
    emit(progressLine(label, progress, (at - started) / 1000));
  };
}
