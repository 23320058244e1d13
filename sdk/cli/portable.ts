#!/usr/bin/env node
// The `portable` command's entry. It only prepares the process, then loads the body (main.ts).
//
// - File reads and writes run on libuv's thread pool, which must be sized before it first starts.
//   Four threads (libuv's default) already saturate these two-core machines; more only add
//   futex contention (docs/decisions/0008-raw-holes-and-startup.md).
// - Node's compile cache keeps V8's bytecode of our modules and of zod between runs, which
//   shortens every start. It is best effort: Node turns it off itself when the cache folder
//   cannot be written, and PORTABLE_NO_COMPILE_CACHE=1 turns it off on purpose.
import { enableCompileCache } from "node:module";

process.env.UV_THREADPOOL_SIZE ??= "4";
if (process.env.PORTABLE_NO_COMPILE_CACHE !== "1") enableCompileCache?.();

// `portable map x.qcow2 --json | head` closes the pipe early: that is the reader's choice, not
// an error worth a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});

const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
