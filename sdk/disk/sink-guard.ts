// Enforces the DiskSink write contract (types.ts) for every writer with one set of error codes,
// so a caller that breaks it gets the same answer from any format.
import { InvalidArgsError } from "../errors.ts";

const SECTOR_BYTES = 512;

export class SinkWriteGuard {
  readonly #format: string;
  readonly #targetName: string;
  readonly #virtualSizeBytes: number;
  #nextOffsetBytes = 0;
  #closed = false;

  constructor(format: string, targetName: string, virtualSizeBytes: number) {
    this.#format = format;
    this.#targetName = targetName;
    this.#virtualSizeBytes = virtualSizeBytes;
  }

  /** The lowest offset the next write may start at. */
  get nextOffsetBytes(): number {
    return this.#nextOffsetBytes;
  }

  /** Checks one write against the contract and advances past it; throws InvalidArgsError if broken. */
  accept(offsetBytes: number, lengthBytes: number): void {
    const where = `${this.#format}: write at ${offsetBytes} (+${lengthBytes}) to ${this.#targetName}`;
    const context = { offsetBytes, lengthBytes, nextOffsetBytes: this.#nextOffsetBytes, virtualSizeBytes: this.#virtualSizeBytes };
    if (this.#closed) throw new InvalidArgsError("SINK_CLOSED", `${where}: the sink is already finished or aborted`, { context });
    const endBytes = offsetBytes + lengthBytes;
    // Only the end of the source may be unaligned, and nothing can follow it: the next write
    // must start on a sector at or past this one's end.
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes % SECTOR_BYTES !== 0) {
      throw new InvalidArgsError("SINK_WRITE_UNALIGNED", `${where}: offsets must be multiples of ${SECTOR_BYTES}`, { context });
    }
    if (offsetBytes < this.#nextOffsetBytes) {
      throw new InvalidArgsError("SINK_WRITE_ORDER", `${where}: writes must increase (next allowed ${this.#nextOffsetBytes})`, { context });
    }
    if (endBytes > this.#virtualSizeBytes) {
      throw new InvalidArgsError("SINK_WRITE_RANGE", `${where}: ends past the ${this.#virtualSizeBytes}-byte disk`, { context });
    }
    this.#nextOffsetBytes = endBytes;
  }

  /** For finish(): closes the sink, refusing a second finish() or a finish() after abort(). */
  finishing(): void {
    if (this.#closed) {
      throw new InvalidArgsError("SINK_CLOSED", `${this.#format}: finish() on ${this.#targetName} after finish() or abort()`);
    }
    this.#closed = true;
  }

  /** For abort(): closes the sink; returns false when it already was closed. */
  close(): boolean {
    const wasOpen = !this.#closed;
    this.#closed = true;
    return wasOpen;
  }
}
