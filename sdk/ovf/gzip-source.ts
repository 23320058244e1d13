// A ByteSource over the decompressed bytes of a gzip member stored in place (an OVA entry with
// ovf:compression="gzip", DSP0243 §5.3), read without a temp file.
//
// gzip has no random access: a deflate stream can only be decoded from its start (zlib exposes
// no way to resume mid-stream from a saved window). So this source decodes forward and keeps a
// bounded cache of the most recent decoded blocks; a read behind the cache restarts decoding
// from the start of the entry. That suits how the disk readers use it:
// - open() decodes the whole entry once to learn its size (gzip's ISIZE trailer holds the size
//   only modulo 2^32) and to check its CRC; the tail stays cached, where a streamOptimized
//   VMDK keeps its footer and grain directory;
// - a stream-optimized VMDK then reads each grain table just after that table's grains, and
//   convert() reads grains in increasing order, so one more forward pass serves the copy as
//   long as one table's grains (at most 512 × 64 KiB = 32 MiB compressed) fit in the cache.
// Cost: about two or three decode passes over the entry; memory: GZIP_CACHE_BYTES.
import { createGunzip, type Gunzip } from "node:zlib";
import { FormatError } from "../errors.ts";
import type { ByteSource } from "../disk/types.ts";

/** Decoded block size kept in the cache, and the unit of reads from it. */
export const GZIP_BLOCK_BYTES = 1024 * 1024;
/**
 * 64 MiB of decoded blocks: twice the worst-case span of one streamOptimized grain table, so a
 * table read never pushes its own grains out of the cache (see the module comment).
 */
export const GZIP_CACHE_BYTES = 64 * 1024 * 1024;
/** Compressed bytes read from the entry per step. */
const COMPRESSED_READ_BYTES = 1024 * 1024;

interface Decoder {
  readonly gunzip: Gunzip;
  readonly output: AsyncIterator<Buffer>;
  /** Decoded bytes consumed from `output` so far. */
  positionBytes: number;
  /** Bytes of the block being assembled. */
  partial: Buffer[];
  partialBytes: number;
  done: boolean;
}

export class GzipSource implements ByteSource {
  readonly name: string;
  sizeBytes = 0;
  private readonly compressed: ByteSource;
  private readonly cache = new Map<number, Buffer>();
  private decoder: Decoder | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Decode passes started; tests check that a copy does not restart for every read. */
  restarts = 0;

  private constructor(compressed: ByteSource, name: string) {
    this.compressed = compressed;
    this.name = name;
  }

  /** Decodes the entry once to learn its size; FormatError OVA_GZIP_CORRUPT if it is not valid gzip. */
  static async open(compressed: ByteSource, name = `${compressed.name} (gunzip)`): Promise<GzipSource> {
    const source = new GzipSource(compressed, name);
    await source.decodeTo(Number.POSITIVE_INFINITY);
    source.sizeBytes = source.decoder?.positionBytes ?? 0;
    return source;
  }

  private start(): Decoder {
    this.decoder?.gunzip.destroy();
    this.restarts++;
    const gunzip = createGunzip();
    const compressed = this.compressed;
    // Feed compressed bytes with backpressure: write one chunk, wait for drain when asked to.
    void (async () => {
      try {
        for (let at = 0; at < compressed.sizeBytes && !gunzip.destroyed; at += COMPRESSED_READ_BYTES) {
          const chunk = await compressed.read(at, Math.min(COMPRESSED_READ_BYTES, compressed.sizeBytes - at));
          if (gunzip.destroyed) return;
          if (!gunzip.write(chunk)) await new Promise<void>((resolve) => gunzip.once("drain", resolve).once("close", resolve));
        }
        if (!gunzip.destroyed) gunzip.end();
      } catch (err) {
        gunzip.destroy(err as Error);
      }
    })();
    const decoder: Decoder = { gunzip, output: gunzip[Symbol.asyncIterator](), positionBytes: 0, partial: [], partialBytes: 0, done: false };
    this.decoder = decoder;
    return decoder;
  }

  private remember(blockIndex: number, block: Buffer): void {
    this.cache.delete(blockIndex);
    this.cache.set(blockIndex, block);
    while (this.cache.size * GZIP_BLOCK_BYTES > GZIP_CACHE_BYTES) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.cache.delete(oldest);
    }
  }

  /** Decodes forward until block `blockIndex` is cached or the stream ends. */
  private async decodeTo(blockIndex: number): Promise<void> {
    let decoder = this.decoder;
    if (decoder === undefined || (decoder.positionBytes - decoder.partialBytes) / GZIP_BLOCK_BYTES > blockIndex) decoder = this.start();
    while (!decoder.done && !this.cache.has(blockIndex)) {
      let next: IteratorResult<Buffer>;
      try {
        next = await decoder.output.next();
      } catch (err) {
        throw new FormatError("OVA_GZIP_CORRUPT", `ova: ${this.compressed.name} is not a valid gzip stream: ${(err as Error).message}`, {
          context: { entry: this.compressed.name, decodedBytes: decoder.positionBytes },
          cause: err,
        });
      }
      if (next.done === true) {
        decoder.done = true;
        if (decoder.partialBytes > 0) this.remember(Math.floor((decoder.positionBytes - decoder.partialBytes) / GZIP_BLOCK_BYTES), Buffer.concat(decoder.partial));
        decoder.partial = [];
        decoder.partialBytes = 0;
        break;
      }
      let chunk = next.value;
      decoder.positionBytes += chunk.length;
      while (chunk.length > 0) {
        const room = GZIP_BLOCK_BYTES - decoder.partialBytes;
        const piece = chunk.subarray(0, room);
        decoder.partial.push(piece);
        decoder.partialBytes += piece.length;
        chunk = chunk.subarray(piece.length);
        if (decoder.partialBytes === GZIP_BLOCK_BYTES) {
          const start = decoder.positionBytes - chunk.length - GZIP_BLOCK_BYTES;
          this.remember(start / GZIP_BLOCK_BYTES, Buffer.concat(decoder.partial));
          decoder.partial = [];
          decoder.partialBytes = 0;
        }
      }
    }
  }

  private async block(blockIndex: number): Promise<Buffer> {
    const cached = this.cache.get(blockIndex);
    if (cached !== undefined) {
      this.remember(blockIndex, cached);
      return cached;
    }
    await this.decodeTo(blockIndex);
    return this.cache.get(blockIndex) ?? Buffer.alloc(0);
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    // One decoder: reads run one at a time, in the order they were asked for.
    const result = this.queue.then(async () => {
      const end = Math.min(this.sizeBytes, offsetBytes + lengthBytes);
      const pieces: Buffer[] = [];
      for (let position = offsetBytes; position < end; ) {
        const index = Math.floor(position / GZIP_BLOCK_BYTES);
        const block = await this.block(index);
        const within = position - index * GZIP_BLOCK_BYTES;
        const take = Math.min(block.length - within, end - position);
        if (take <= 0) break;
        pieces.push(block.subarray(within, within + take));
        position += take;
      }
      return Buffer.concat(pieces);
    });
    this.queue = result.catch(() => {});
    return result;
  }

  async close(): Promise<void> {
    this.decoder?.gunzip.destroy();
    this.decoder = undefined;
    this.cache.clear();
    await this.compressed.close();
  }
}
