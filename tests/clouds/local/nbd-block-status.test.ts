// The NBD block-status client against broken servers: a wrong greeting, an option reply that
// announces more than the limit, a refused meta context. Each ends in a coded error, promptly,
// without growing memory (QEMU is the only server it meets; the bounds are there anyway).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openDirtyBitmap } from "../../../sdk/clouds/local/nbd-block-status.ts";

const NBDMAGIC = Buffer.from("NBDMAGIC", "latin1");
const IHAVEOPT = Buffer.from("IHAVEOPT", "latin1");

async function withServer(onClient: (socket: Socket) => void, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "pw-nbd-"));
  const path = join(dir, "nbd.sock");
  const server = createServer(onClient);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    await fn(path);
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A newstyle greeting, then an answer to the first option the client sends. */
function greetThen(answer: (socket: Socket, option: number) => void): (socket: Socket) => void {
  return (socket) => {
    const flags = Buffer.alloc(2);
    flags.writeUInt16BE(3);
    socket.write(Buffer.concat([NBDMAGIC, IHAVEOPT, flags]));
    let seen = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      // 4 bytes of client flags, then the option header (magic, option, length).
      if (seen.length >= 4 + 16) {
        answer(socket, seen.readUInt32BE(4 + 8));
        seen = Buffer.alloc(0);
      }
    });
    socket.on("error", () => {});
  };
}

function optionReply(option: number, type: number, length: number, data = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(20);
  head.writeBigUInt64BE(0x3e889045565a9n, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(type, 12);
  head.writeUInt32BE(length, 16);
  return Buffer.concat([head, data]);
}

describe("NBD block-status client against broken servers", () => {
  it("GIVEN a server that is not NBD WHEN connecting THEN NBD_PROTOCOL", async () => {
    await withServer((socket) => socket.write(Buffer.alloc(18, 0x41)), async (path) => {
      await assert.rejects(openDirtyBitmap(path, "x", "b"), (error: Error & { code?: string }) => error.code === "NBD_PROTOCOL");
    });
  });

  it("GIVEN an option reply announcing 4 GiB WHEN read THEN NBD_PROTOCOL before any of it is buffered", async () => {
    await withServer(greetThen((socket, option) => socket.write(optionReply(option, 1, 0xffffffff))), async (path) => {
      await assert.rejects(openDirtyBitmap(path, "x", "b"), (error: Error & { code?: string }) => error.code === "NBD_PROTOCOL" && /limit/.test(error.message));
    });
  });

  it("GIVEN a server refusing the option WHEN negotiating THEN NBD_OPTION_REFUSED with its message", async () => {
    const message = Buffer.from("no such bitmap");
    await withServer(greetThen((socket, option) => socket.write(optionReply(option, 0x80000001, message.length, message))), async (path) => {
      await assert.rejects(openDirtyBitmap(path, "x", "b"), (error: Error & { code?: string }) => error.code === "NBD_OPTION_REFUSED" && /no such bitmap/.test(error.message));
    });
  });

  it("GIVEN a server that closes mid-handshake WHEN negotiating THEN NBD_CLOSED", async () => {
    await withServer(greetThen((socket) => socket.destroy()), async (path) => {
      await assert.rejects(openDirtyBitmap(path, "x", "b"), (error: Error & { code?: string }) => error.code === "NBD_CLOSED");
    });
  });
});
