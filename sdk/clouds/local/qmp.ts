// A minimal QMP (QEMU Machine Protocol) client over a unix socket: the greeting, capability
// negotiation, and one command at a time (QEMU docs, "QEMU Machine Protocol Specification").
// Hand-written: the protocol is newline-delimited JSON and we need three commands; no maintained
// npm package does this without pulling in far more.
import { connect, type Socket } from "node:net";
import { CloudError } from "../../errors.ts";

/** A reply or event line is small; a runaway peer must not grow our buffer without bound. */
const QMP_MAX_LINE_CHARS = 1024 * 1024;
export const QMP_DEFAULT_TIMEOUT_MS = 5_000;

export interface QmpClient {
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export async function connectQmp(socketPath: string, timeoutMs = QMP_DEFAULT_TIMEOUT_MS): Promise<QmpClient> {
  const socket: Socket = connect({ path: socketPath });
  let buffer = "";
  let greeted: Pending | undefined;
  const queue: Pending[] = [];
  let failure: Error | undefined;

  function fail(error: Error): void {
    failure ??= error;
    greeted?.reject(error);
    greeted = undefined;
    for (const p of queue.splice(0)) p.reject(error);
  }
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    if (buffer.length > QMP_MAX_LINE_CHARS) {
      fail(new CloudError("QMP_PROTOCOL", `qmp ${socketPath}: a message exceeds ${QMP_MAX_LINE_CHARS} characters`));
      socket.destroy();
      return;
    }
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line.length === 0) continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        fail(new CloudError("QMP_PROTOCOL", `qmp ${socketPath}: not JSON: ${line.slice(0, 200)}`));
        return;
      }
      if ("QMP" in message) {
        greeted?.resolve(message);
        greeted = undefined;
      } else if ("event" in message) {
        continue;
      } else if ("return" in message) {
        queue.shift()?.resolve(message.return);
      } else if ("error" in message) {
        const error = message.error as { class?: string; desc?: string };
        queue.shift()?.reject(new CloudError("QMP_COMMAND_FAILED", `qmp ${socketPath}: ${error.class ?? "Error"}: ${error.desc ?? "unknown"}`, { context: { class: error.class } }));
      }
    }
  });
  socket.on("error", (err) => fail(new CloudError("QMP_CONNECTION", `qmp ${socketPath}: ${err.message}`, { cause: err })));
  socket.on("close", () => fail(new CloudError("QMP_CLOSED", `qmp ${socketPath}: connection closed`)));

  function withTimeout<T>(what: string, promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CloudError("QMP_TIMEOUT", `qmp ${socketPath}: no answer to ${what} within ${timeoutMs} ms`, { context: { timeoutMs } })), timeoutMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  function execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (failure !== undefined) return Promise.reject(failure);
    const reply = new Promise<unknown>((resolve, reject) => queue.push({ resolve, reject }));
    socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    return withTimeout(command, reply);
  }

  try {
    await withTimeout("the greeting", new Promise<unknown>((resolve, reject) => {
        if (failure !== undefined) reject(failure);
        else greeted = { resolve, reject };
      }));
    await execute("qmp_capabilities");
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return { execute, close: () => socket.destroy() };
}
