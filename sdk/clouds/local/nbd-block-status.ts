// The dirty areas of a QEMU dirty bitmap, read over NBD: QEMU exports the disk's node with the
// bitmap (QMP block-export-add `bitmaps`), and NBD_CMD_BLOCK_STATUS in the meta context
// `qemu:dirty-bitmap:<name>` answers which ranges are dirty (status bit 0). Only block status is
// asked; no data is read over this connection.
//
// Written by hand: npm has no maintained NBD client, and the part needed is small: the fixed
// newstyle handshake, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT, NBD_OPT_GO, and
// BLOCK_STATUS replies (NBD's proto.md, github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md;
// QEMU's docs/interop/nbd.txt for the qemu:dirty-bitmap context). Every length the server sends
// is bounded, and every wait has a deadline: a broken peer cannot hang or exhaust us.
import { connect, type Socket } from "node:net";
import { CloudError } from "../../errors.ts";
import type { DirtyRange } from "../../disk/types.ts";

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
const SIMPLE_REPLY_MAGIC = 0x67446698;

const FLAG_FIXED_NEWSTYLE = 1 << 0;
const FLAG_NO_ZEROES = 1 << 1;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_SET_META_CONTEXT = 10;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const CMD_DISC = 2;
const CMD_BLOCK_STATUS = 7;
const REPLY_FLAG_DONE = 1;
const REPLY_TYPE_NONE = 0;
const REPLY_TYPE_BLOCK_STATUS = 5;
const REPLY_TYPE_ERROR_BIT = 1 << 15;

/** An option reply or a reply chunk larger than this is a broken server. */
const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;
/** One BLOCK_STATUS request covers at most this much (the length field is 32 bits). */
const WINDOW_BYTES = 1024 * 1024 * 1024;
export const NBD_TIMEOUT_MS = 30_000;

/** A connection to one export with one dirty bitmap's meta context negotiated. */
export interface DirtyBitmapReader {
  readonly sizeBytes: number;
  /** The dirty ranges, ascending and merged, read one window at a time (memory stays bounded). */
  dirty(): AsyncIterable<DirtyRange>;
  close(): void;
}

class Wire {
  readonly #socket: Socket;
  readonly #what: string;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #waiter: (() => void) | undefined;
  #failure: Error | undefined;

  constructor(socket: Socket, what: string) {
    this.#socket = socket;
    this.#what = what;
    socket.on("data", (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      this.#wake();
    });
    const fail = (error: Error) => {
      this.#failure ??= error;
      this.#wake();
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new CloudError("NBD_CLOSED", `nbd ${what}: the server closed the connection`)));
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  write(data: Buffer): void {
    this.#socket.write(data);
  }

  async read(length: number): Promise<Buffer> {
    if (length > MAX_PAYLOAD_BYTES) throw new CloudError("NBD_PROTOCOL", `nbd ${this.#what}: the server announced ${length} bytes (limit ${MAX_PAYLOAD_BYTES})`);
    const deadline = Date.now() + NBD_TIMEOUT_MS;
    while (this.#buffered < length) {
      if (this.#failure !== undefined) throw this.#failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new CloudError("NBD_TIMEOUT", `nbd ${this.#what}: no answer within ${NBD_TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = Buffer.from(all.subarray(0, length));
    const rest = all.subarray(length);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return out;
  }

  close(): void {
    this.#socket.destroy();
  }
}

function option(code: number, data: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64BE(IHAVEOPT, 0);
  head.writeUInt32BE(code, 8);
  head.writeUInt32BE(data.length, 12);
  return Buffer.concat([head, data]);
}

function named(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** Reads option replies to `code` until its ACK; returns the non-ACK replies. */
async function optionReplies(wire: Wire, code: number, what: string): Promise<Array<{ type: number; data: Buffer }>> {
  const replies: Array<{ type: number; data: Buffer }> = [];
  for (let n = 0; n < 1024; n++) {
    const head = await wire.read(20);
    if (head.readBigUInt64BE(0) !== OPT_REPLY_MAGIC || head.readUInt32BE(8) !== code) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: a malformed option reply`);
    const type = head.readUInt32BE(12);
    const data = await wire.read(head.readUInt32BE(16));
    if (type === REP_ACK) return replies;
    if ((type & 0x80000000) !== 0) {
      throw new CloudError("NBD_OPTION_REFUSED", `nbd ${what}: option ${code} refused (0x${type.toString(16)})${data.length > 0 ? `: ${data.toString("utf8").slice(0, 200)}` : ""}`);
    }
    replies.push({ type, data });
  }
  throw new CloudError("NBD_PROTOCOL", `nbd ${what}: too many replies to option ${code}`);
}

/**
 * Connects to `exportName` on the unix socket and negotiates the meta context of `bitmap`.
 * Throws NBD_OPTION_REFUSED when the export or the bitmap is not there.
 */
export async function openDirtyBitmap(socketPath: string, exportName: string, bitmap: string): Promise<DirtyBitmapReader> {
  const what = `${exportName} (${socketPath})`;
  const socket = connect({ path: socketPath });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const wire = new Wire(socket, what);
  try {
    const greeting = await wire.read(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC || greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: not a newstyle NBD server`);
    const serverFlags = greeting.readUInt16BE(16);
    if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: the server is not fixed newstyle`);
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
    wire.write(clientFlags);

    wire.write(option(OPT_STRUCTURED_REPLY, Buffer.alloc(0)));
    await optionReplies(wire, OPT_STRUCTURED_REPLY, what);

    const context = `qemu:dirty-bitmap:${bitmap}`;
    const queries = Buffer.alloc(4);
    queries.writeUInt32BE(1);
    wire.write(option(OPT_SET_META_CONTEXT, Buffer.concat([named(exportName), queries, named(context)])));
    const contexts = await optionReplies(wire, OPT_SET_META_CONTEXT, what);
    const found = contexts.find((r) => r.type === REP_META_CONTEXT && r.data.length >= 4 && r.data.subarray(4).toString("utf8") === context);
    if (found === undefined) throw new CloudError("NBD_OPTION_REFUSED", `nbd ${what}: the export has no bitmap "${bitmap}"`);
    const contextId = found.data.readUInt32BE(0);

    const infoCount = Buffer.alloc(2);
    wire.write(option(OPT_GO, Buffer.concat([named(exportName), infoCount])));
    const infos = await optionReplies(wire, OPT_GO, what);
    const exportInfo = infos.find((r) => r.type === REP_INFO && r.data.length >= 12 && r.data.readUInt16BE(0) === 0);
    if (exportInfo === undefined) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: no export size in the GO reply`);
    const sizeBytes = Number(exportInfo.data.readBigUInt64BE(2));
    return dirtyReader(wire, what, contextId, sizeBytes);
  } catch (error) {
    wire.close();
    throw error;
  }
}

function dirtyReader(wire: Wire, what: string, contextId: number, sizeBytes: number): DirtyBitmapReader {
  let handle = 0n;
  let busy = false;
  /** One window's status: [offset, length, dirty] runs, covering a prefix of the window. */
  const status = async (offset: number, length: number): Promise<Array<[number, number, boolean]>> => {
    const request = Buffer.alloc(28);
    const id = ++handle;
    request.writeUInt32BE(REQUEST_MAGIC, 0);
    request.writeUInt16BE(0, 4);
    request.writeUInt16BE(CMD_BLOCK_STATUS, 6);
    request.writeBigUInt64BE(id, 8);
    request.writeBigUInt64BE(BigInt(offset), 16);
    request.writeUInt32BE(length, 24);
    wire.write(request);
    const runs: Array<[number, number, boolean]> = [];
    for (;;) {
      const magic = (await wire.read(4)).readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) {
        const rest = await wire.read(12);
        throw new CloudError("NBD_BLOCK_STATUS", `nbd ${what}: block status failed (error ${rest.readUInt32BE(0)})`);
      }
      if (magic !== STRUCTURED_REPLY_MAGIC) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: a malformed reply`);
      const head = await wire.read(16);
      const flags = head.readUInt16BE(0);
      const type = head.readUInt16BE(2);
      if (head.readBigUInt64BE(4) !== id) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: a reply to another request`);
      const payload = await wire.read(head.readUInt32BE(12));
      if ((type & REPLY_TYPE_ERROR_BIT) !== 0) {
        const message = payload.length >= 6 ? payload.subarray(6, 6 + payload.readUInt16BE(4)).toString("utf8") : "";
        throw new CloudError("NBD_BLOCK_STATUS", `nbd ${what}: block status failed (error ${payload.length >= 4 ? payload.readUInt32BE(0) : "?"}${message ? `: ${message}` : ""})`);
      }
      if (type === REPLY_TYPE_BLOCK_STATUS && payload.length >= 4 && payload.readUInt32BE(0) === contextId) {
        let at = offset + runs.reduce((s, r) => s + r[1], 0);
        for (let p = 4; p + 8 <= payload.length; p += 8) {
          const runLength = payload.readUInt32BE(p);
          if (runLength === 0 || at + runLength > sizeBytes) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: a block status run outside the export`);
          runs.push([at, runLength, (payload.readUInt32BE(p + 4) & 1) === 1]);
          at += runLength;
        }
      } else if (type !== REPLY_TYPE_NONE && type !== REPLY_TYPE_BLOCK_STATUS) {
        throw new CloudError("NBD_PROTOCOL", `nbd ${what}: an unexpected reply type ${type}`);
      }
      if ((flags & REPLY_FLAG_DONE) !== 0) break;
    }
    if (runs.length === 0) throw new CloudError("NBD_PROTOCOL", `nbd ${what}: block status answered nothing for ${offset}+${length}`);
    return runs;
  };

  async function* dirty(): AsyncGenerator<DirtyRange> {
    if (busy) throw new CloudError("NBD_BUSY", `nbd ${what}: one walk at a time`);
    busy = true;
    try {
      let pending: DirtyRange | undefined;
      for (let offset = 0; offset < sizeBytes; ) {
        const runs = await status(offset, Math.min(WINDOW_BYTES, sizeBytes - offset));
        for (const [at, length, isDirty] of runs) {
          offset = at + length;
          if (!isDirty) continue;
          if (pending !== undefined && pending.offsetBytes + pending.lengthBytes === at) pending = { offsetBytes: pending.offsetBytes, lengthBytes: pending.lengthBytes + length };
          else {
            if (pending !== undefined) yield pending;
            pending = { offsetBytes: at, lengthBytes: length };
          }
        }
      }
      if (pending !== undefined) yield pending;
    } finally {
      busy = false;
    }
  }

  return {
    sizeBytes,
    dirty,
    close() {
      const request = Buffer.alloc(28);
      request.writeUInt32BE(REQUEST_MAGIC, 0);
      request.writeUInt16BE(CMD_DISC, 6);
      try {
        wire.write(request);
      } finally {
        wire.close();
      }
    },
  };
}
