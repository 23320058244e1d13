// A read-only NBD export of a DiskSource on a Unix socket, so that QEMU (qemu-img, the libguestfs
// appliance, a test boot) can use any source the engine reads (an EBS snapshot, a page blob, a
// vSphere disk, a VMDK inside an OVA) as the backing file of a fixups overlay:
// `qemu-img create -f qcow2 -F raw -b nbd+unix:///?socket=<path> overlay.qcow2`.
//
// Written by hand: npm has no maintained NBD server. The part QEMU's client needs is small:
// the fixed newstyle handshake, NBD_OPT_GO/INFO/EXPORT_NAME, and simple replies to READ and
// DISC; everything else is refused (writes with EPERM). Protocol: NBD's proto.md
// (github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
import { createServer, type Server, type Socket } from "node:net";
import { rm } from "node:fs/promises";
import type { DiskSource } from "../disk/types.ts";

const NBDMAGIC = Buffer.from("NBDMAGIC", "latin1");
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;

const FLAG_FIXED_NEWSTYLE = 1 << 0;
const FLAG_NO_ZEROES = 1 << 1;
const CLIENT_NO_ZEROES = 1 << 1;

const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_INFO = 6;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
const INFO_EXPORT = 0;

const TRANSMIT_HAS_FLAGS = 1 << 0;
const TRANSMIT_READ_ONLY = 1 << 1;
const CMD_READ = 0;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const EPERM = 1;
const EINVAL = 22;

/** QEMU reads at most 32 MiB per request; a longer one is refused, so memory stays bounded. */
const MAX_READ_BYTES = 32 * 1024 * 1024;
/** An option's data is a name or a short list; 64 KiB bounds a hostile one. */
const MAX_OPTION_BYTES = 64 * 1024;

export interface NbdExport {
  /** `nbd+unix:///?socket=…`, as QEMU names it. */
  readonly url: string;
  close(): Promise<void>;
}

/** Reads exactly n bytes from a socket, in order. */
class Reader {
  private buffered: Buffer[] = [];
  private size = 0;
  private waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended = false;

  constructor(socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.buffered.push(chunk);
      this.size += chunk.length;
      this.pump();
    });
    socket.on("close", () => {
      this.ended = true;
      this.pump();
    });
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiting = { n, resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    const waiting = this.waiting;
    if (waiting === undefined) return;
    if (this.size >= waiting.n) {
      const all = Buffer.concat(this.buffered);
      this.buffered = [all.subarray(waiting.n)];
      this.size = all.length - waiting.n;
      this.waiting = undefined;
      waiting.resolve(all.subarray(0, waiting.n));
    } else if (this.ended) {
      this.waiting = undefined;
      waiting.reject(new Error("nbd: client closed the connection"));
    }
  }
}

function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(20);
  head.writeBigUInt64BE(REPLY_MAGIC, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(type, 12);
  head.writeUInt32BE(data.length, 16);
  return Buffer.concat([head, data]);
}

async function serve(socket: Socket, source: DiskSource): Promise<void> {
  const reader = new Reader(socket);
  const flags = TRANSMIT_HAS_FLAGS | TRANSMIT_READ_ONLY;
  const hello = Buffer.alloc(18);
  NBDMAGIC.copy(hello, 0);
  hello.writeBigUInt64BE(IHAVEOPT, 8);
  hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  socket.write(hello);
  const clientFlags = (await reader.read(4)).readUInt32BE(0);
  // Options until one starts transmission.
  for (;;) {
    const head = await reader.read(16);
    if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new Error("nbd: bad option magic");
    const option = head.readUInt32BE(8);
    const length = head.readUInt32BE(12);
    if (length > MAX_OPTION_BYTES) throw new Error(`nbd: option data of ${length} bytes`);
    await reader.read(length);
    if (option === OPT_ABORT) {
      socket.end(optionReply(option, REP_ACK));
      return;
    }
    const export_ = Buffer.alloc(10);
    export_.writeBigUInt64BE(BigInt(source.virtualSizeBytes), 0);
    export_.writeUInt16BE(flags, 8);
    if (option === OPT_EXPORT_NAME) {
      socket.write((clientFlags & CLIENT_NO_ZEROES) !== 0 ? export_ : Buffer.concat([export_, Buffer.alloc(124)]));
      break;
    }
    if (option === OPT_INFO || option === OPT_GO) {
      const info = Buffer.alloc(12);
      info.writeUInt16BE(INFO_EXPORT, 0);
      export_.copy(info, 2);
      socket.write(optionReply(option, REP_INFO, info));
      socket.write(optionReply(option, REP_ACK));
      if (option === OPT_GO) break;
      continue;
    }
    socket.write(optionReply(option, REP_ERR_UNSUP));
  }
  // Transmission: one request at a time, in order (QEMU pipelines; replies may come in any order, ours are in order).
  for (;;) {
    const request = await reader.read(28);
    if (request.readUInt32BE(0) !== REQUEST_MAGIC) throw new Error("nbd: bad request magic");
    const type = request.readUInt16BE(6);
    const handle = request.subarray(8, 16);
    const offset = Number(request.readBigUInt64BE(16));
    const length = request.readUInt32BE(24);
    const reply = (error: number, data?: Buffer): void => {
      const head = Buffer.alloc(16);
      head.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
      head.writeUInt32BE(error, 4);
      handle.copy(head, 8);
      socket.write(data === undefined ? head : Buffer.concat([head, data]));
    };
    if (type === CMD_DISC) {
      socket.end();
      return;
    }
    if (type === CMD_READ) {
      if (length > MAX_READ_BYTES || offset + length > source.virtualSizeBytes) reply(EINVAL);
      else reply(0, await source.read(offset, length));
    } else if (type === CMD_FLUSH) reply(0);
    else {
      // Writes and trims carry data we do not want: refuse, and drop the connection for writes.
      reply(EPERM);
      if (type === 1) {
        socket.destroy();
        return;
      }
    }
  }
}

/** Serves `source` read-only on the Unix socket `path` until close(). */
export async function exportDisk(source: DiskSource, path: string): Promise<NbdExport> {
  await rm(path, { force: true });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    serve(socket, source).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    url: `nbd+unix:///?socket=${path}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}
