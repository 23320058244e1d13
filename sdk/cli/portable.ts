#!/usr/bin/env node
// The `portable` command's entry. It only prepares the process, then loads the body (main.ts).
//
// - File reads and writes, and deflate, run on libuv's thread pool, which must be sized before it
//   first starts: one thread per core (2 to 8). More threads than cores only add contention: on
//   two cores, 2 threads beat libuv's default 4 on every pair of bench:convert
//   (docs/decisions/0008-raw-holes-and-startup.md).
// - Node's compile cache keeps V8's bytecode of our modules and of zod between runs, which
//   shortens every start. It is best effort: Node turns it off itself when the cache folder
//   cannot be written, and PORTABLE_NO_COMPILE_CACHE=1 turns it off on purpose.
import { enableCompileCache } from "node:module";
import { availableParallelism } from "node:os";

process.env.UV_THREADPOOL_SIZE ??= String(Math.min(8, Math.max(2, availableParallelism())));
if (process.env.PORTABLE_NO_COMPILE_CACHE !== "1") enableCompileCache?.();

// `portable map x.qcow2 --json | head` closes the pipe early: that is the reader's choice, not
// an error worth a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});

const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
