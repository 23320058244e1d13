// A small, deterministic mutation fuzzer: a seeded PRNG, byte- and structure-level mutations,
// checksum fix-ups, crash classification and a delta-debugging shrinker.
//
// Hand-written rather than a package: Jazzer.js (the maintained coverage-guided fuzzer for
// Node) is a libFuzzer native addon that needs a native build and source instrumentation,
// which this workplace cannot provide, and its open-source line is no longer maintained; jsfuzz,
// the pure-JS one, was archived in 2021; fast-check generates values from arbitraries but does
// not mutate a corpus of real images. Without coverage feedback, the depth comes from real seeds,
// format-aware field tweaks and checksum fix-ups (so a mutated header is not refused by its CRC
// before anything interesting runs).
//
// Every input is a pure function of (master seed, target name, iteration index), so a crash is
// reproduced from its three numbers alone, and a killed worker's input is rebuilt by the parent.
import { isPortableError } from "../../sdk/errors.ts";

/** A 32-bit PRNG (mulberry32): fast, tiny state, and good enough to pick mutations. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** A uniform 32-bit unsigned integer. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n); 0 when n ≤ 0. */
  int(n: number): number {
    if (n <= 1) return 0;
    return Math.floor((this.next() / 0x1_0000_0000) * n);
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(items.length)] as T;
  }
}

/** FNV-1a over the parts, for per-iteration seeds and short fixture hashes. */
export function hash32(...parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    const text = `${String(part)}\u0000`;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

/** An integer field of a format header, for structure-aware tweaks. */
export interface Field {
  /** Byte offset; negative counts from the end of the input (the VHD footer). */
  readonly offset: number;
  readonly width: 1 | 2 | 4 | 8;
  readonly endian: "le" | "be";
  readonly name: string;
}

/** What a target tells the mutator about its inputs. */
export interface MutationHints {
  /** Header fields worth setting to boundary values. */
  readonly fields?: readonly Field[];
  /** Text tokens to insert or overwrite with (descriptors, XML, VMX). */
  readonly tokens?: readonly string[];
  /** Inputs are text: prefer token and line mutations over bit flips. */
  readonly text?: boolean;
  /** Recomputes checksums the reader verifies, so mutations get past them. */
  readonly fixup?: (input: Buffer) => void;
  /** Largest input handed to the target. */
  readonly maxBytes?: number;
}

/** A seed with its "hot" offsets: the starts of non-zero 512-byte sectors, where metadata lives. */
export interface Seed {
  readonly name: string;
  readonly data: Buffer;
  readonly hot: readonly number[];
}

const SECTOR = 512;
/** Hot offsets kept per seed: enough to cover every metadata sector of the small seeds. */
const MAX_HOT = 4096;

export function makeSeed(name: string, data: Buffer): Seed {
  const all: number[] = [];
  for (let o = 0; o < data.length; o += SECTOR) {
    const end = Math.min(data.length, o + SECTOR);
    for (let i = o; i < end; i++) {
      if (data[i] !== 0) {
        all.push(o);
        break;
      }
    }
  }
  // Keep an even sample across the whole image, not just its first sectors.
  const stride = Math.max(1, Math.ceil(all.length / MAX_HOT));
  return { name, data, hot: all.filter((_, i) => i % stride === 0) };
}

/**
 * Boundary values for integer fields: zero, one, all-ones, sign edges, 2^32 and 2^53 (the
 * narrowing limits the readers must check), and sector/cluster counts that size tables.
 */
export const INTERESTING: readonly bigint[] = [
  0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x1ffn, 0x200n, 0x1000n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
  0x100000n, 0x200000n, 0x7fffffffn, 0x80000000n, 0xfffffffen, 0xffffffffn, 0x100000000n, 0x100000200n,
  2n ** 40n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n,
  // sector counts: 1 GiB, 2 TiB, 8 PiB in 512-byte sectors
  2n ** 21n, 2n ** 32n, 2n ** 44n,
];

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x3c, 0x3e];

function writeInt(buf: Buffer, offset: number, width: 1 | 2 | 4 | 8, endian: "le" | "be", value: bigint): void {
  if (offset < 0 || offset + width > buf.length) return;
  const masked = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++) {
    const byte = Number((masked >> BigInt(8 * i)) & 0xffn);
    buf[endian === "le" ? offset + i : offset + width - 1 - i] = byte;
  }
}

function readInt(buf: Buffer, offset: number, width: 1 | 2 | 4 | 8, endian: "le" | "be"): bigint {
  let value = 0n;
  for (let i = 0; i < width; i++) {
    const byte = BigInt(buf[endian === "le" ? offset + i : offset + width - 1 - i] ?? 0);
    value |= byte << BigInt(8 * i);
  }
  return value;
}

function pickOffset(rng: Rng, seed: Seed | undefined, length: number): number {
  if (length === 0) return 0;
  if (seed !== undefined && seed.hot.length > 0 && rng.chance(0.7)) {
    const base = rng.pick(seed.hot);
    if (base < length) return Math.min(length - 1, base + rng.int(SECTOR));
  }
  // Head and tail hold most headers (and the VHD footer).
  if (rng.chance(0.2)) return rng.int(Math.min(length, 4096));
  if (rng.chance(0.1)) return Math.max(0, length - 1 - rng.int(Math.min(length, 1024)));
  return rng.int(length);
}

const WIDTHS: readonly (1 | 2 | 4 | 8)[] = [1, 2, 4, 8];

/** Values a text field (an XML attribute or element, a VMX or descriptor value) is set to. */
export const TEXT_VALUES: readonly string[] = [
  "", "0", "1", "-1", "2", "63", "64", "255", "256", "4096", "65535", "2147483647", "2147483648", "4294967295", "4294967296",
  "9007199254740991", "9007199254740993", "18446744073709551615", "99999999999999999999", "1e309", "-0", "NaN", "0x10", " 12 ", "1.5",
  "byte", "byte * 2^20", "byte * 2^70", "MegaBytes", "GigaBytes", "KB", "TRUE", "FALSE", "true", "efi", "bios", "scsi", "nvme", "ide",
  "../x", "/etc/passwd", "C:\\x", "ovf:/disk/", "ovf:/file/", "x".repeat(2000),
];

/** Replaces the content of one quoted value or element text with a boundary value, keeping the syntax. */
function replaceValue(input: Buffer, rng: Rng, tokens: readonly string[]): Buffer {
  const text = input.toString("latin1");
  const spans: [number, number][] = [];
  for (const match of text.matchAll(/"([^"\n]{0,200})"|>([^<]{1,200})</g)) {
    const start = (match.index ?? 0) + 1;
    spans.push([start, start + (match[1] ?? match[2] ?? "").length]);
    if (spans.length >= 4096) break;
  }
  if (spans.length === 0) return input;
  const [start, end] = rng.pick(spans);
  const value = rng.chance(0.8) || tokens.length === 0 ? rng.pick(TEXT_VALUES) : rng.pick(tokens);
  return Buffer.concat([input.subarray(0, start), Buffer.from(value, "latin1"), input.subarray(end)]);
}

function mutateOnce(input: Buffer, rng: Rng, seed: Seed, other: Seed, hints: MutationHints): Buffer {
  const n = input.length;
  // Text targets: half the mutations keep the syntax and change a value, so the parser's
  // semantic checks see the input rather than its tokenizer refusing it.
  if (hints.text === true && rng.chance(0.5)) return replaceValue(input, rng, hints.tokens ?? []);
  const op = rng.int(hints.text === true ? 14 : 12);
  switch (op) {
    case 0: {
      // bit flip
      const at = pickOffset(rng, seed, n);
      if (n > 0) input[at] = (input[at] ?? 0) ^ (1 << rng.int(8));
      return input;
    }
    case 1: {
      // byte set
      const at = pickOffset(rng, seed, n);
      if (n > 0) input[at] = rng.chance(0.5) ? rng.pick(INTERESTING_BYTES) : rng.int(256);
      return input;
    }
    case 2:
    case 3: {
      // interesting integer at a random (hot) offset
      const width = rng.pick(WIDTHS);
      const at = pickOffset(rng, seed, n) & ~(width - 1);
      writeInt(input, at, width, rng.chance(0.5) ? "le" : "be", rng.pick(INTERESTING));
      return input;
    }
    case 4:
    case 5: {
      // structure-aware: a known header field to a boundary value, or nudged by a little
      const field = hints.fields !== undefined && hints.fields.length > 0 ? rng.pick(hints.fields) : undefined;
      if (field === undefined) return mutateOnce(input, rng, seed, other, { ...hints, fields: undefined });
      const at = field.offset < 0 ? n + field.offset : field.offset;
      if (at < 0 || at + field.width > n) return input;
      let value: bigint;
      if (rng.chance(0.6)) value = rng.pick(INTERESTING);
      else {
        const delta = BigInt(rng.int(33) - 16) * (rng.chance(0.3) ? 512n : 1n);
        value = readInt(input, at, field.width, field.endian) + delta;
      }
      writeInt(input, at, field.width, field.endian, value);
      return input;
    }
    case 6: {
      // duplicate a chunk over another place (tables copied onto tables)
      if (n < 2) return input;
      const len = 1 + rng.int(Math.min(n, rng.chance(0.5) ? 64 : 4096));
      const from = rng.int(n - len + 1);
      const to = pickOffset(rng, seed, n);
      input.copy(input, to, from, from + len);
      return input;
    }
    case 7: {
      // delete a chunk (shifts everything after it)
      if (n < 2) return input;
      const len = 1 + rng.int(Math.min(n - 1, rng.chance(0.5) ? 16 : 4096));
      const at = pickOffset(rng, seed, n - len);
      return Buffer.concat([input.subarray(0, at), input.subarray(at + len)]);
    }
    case 8: {
      // insert a duplicated chunk
      if (n < 1) return input;
      const len = 1 + rng.int(Math.min(n, 512));
      const from = rng.int(n - len + 1);
      const at = pickOffset(rng, seed, n);
      return Buffer.concat([input.subarray(0, at), input.subarray(from, from + len), input.subarray(at)]);
    }
    case 9: {
      // splice with another seed: this one's head, the other's tail
      const at = pickOffset(rng, seed, Math.min(n, other.data.length));
      return Buffer.concat([input.subarray(0, at), other.data.subarray(at)]);
    }
    case 10: {
      // truncate, often on a sector boundary
      if (n === 0) return input;
      let at = rng.int(n);
      if (rng.chance(0.5)) at &= ~(SECTOR - 1);
      return Buffer.from(input.subarray(0, at));
    }
    case 11: {
      // extend with zeros or noise
      const len = 1 + rng.int(rng.chance(0.5) ? 512 : 65536);
      const tail = Buffer.alloc(len);
      if (rng.chance(0.3)) for (let i = 0; i < len; i++) tail[i] = rng.int(256);
      return Buffer.concat([input, tail]);
    }
    case 12: {
      // text: insert or overwrite with a token
      const tokens = hints.tokens ?? [];
      if (tokens.length === 0) return input;
      const token = Buffer.from(rng.pick(tokens), "utf8");
      const at = rng.int(n + 1);
      if (rng.chance(0.5)) return Buffer.concat([input.subarray(0, at), token, input.subarray(at)]);
      return Buffer.concat([input.subarray(0, at), token, input.subarray(Math.min(n, at + token.length))]);
    }
    default: {
      // text: duplicate, drop or swap whole lines
      const lines = input.toString("latin1").split("\n");
      if (lines.length < 2) return input;
      const i = rng.int(lines.length);
      const j = rng.int(lines.length);
      const kind = rng.int(3);
      if (kind === 0) lines.splice(j, 0, lines[i] as string);
      else if (kind === 1) lines.splice(i, 1);
      else [lines[i], lines[j]] = [lines[j] as string, lines[i] as string];
      return Buffer.from(lines.join("\n"), "latin1");
    }
  }
}

/** Input of iteration `index`: a seed, 1 to 8 stacked mutations, then (usually) checksum fix-ups. */
export function makeInput(seeds: readonly Seed[], hints: MutationHints, masterSeed: number, target: string, index: number): { input: Buffer; seed: string } {
  const rng = new Rng(hash32(masterSeed, target, index));
  const seed = rng.pick(seeds);
  const other = rng.pick(seeds);
  let input: Buffer = Buffer.from(seed.data);
  const count = 1 + rng.int(rng.chance(0.6) ? 2 : 8);
  for (let m = 0; m < count; m++) input = mutateOnce(input, rng, seed, other, hints);
  const maxBytes = hints.maxBytes ?? 32 * 1024 * 1024;
  if (input.length > maxBytes) input = Buffer.from(input.subarray(0, maxBytes));
  // Leave a bad checksum now and then, so the refusal paths stay covered too.
  if (hints.fixup !== undefined && rng.chance(0.85)) hints.fixup(input);
  return { input, seed: seed.name };
}

/** How one run ended. "ok" covers success and coded PortableErrors alike. */
export type Outcome =
  | { readonly kind: "ok"; readonly code?: string }
  | { readonly kind: "crash" | "hang" | "memory"; readonly message: string; readonly signature: string };

/** A reader broke a promise the fuzz harness checks (extents contiguous, reads exact). */
export class InvariantError extends Error {
  override readonly name = "InvariantError";
}

/** The top stack frame inside the repository: one bug, one signature, whatever its input. */
function topFrame(err: Error): string {
  const frames = (err.stack ?? "").split("\n").slice(1);
  const ours = frames.find((f) => /\/(sdk|tests)\//.test(f) && !/tests\/fuzz\//.test(f)) ?? frames[0] ?? "";
  const match = /((?:sdk|tests)\/[^\s):]+):(\d+)/.exec(ours);
  return match === null ? ours.trim() : `${match[1]}:${match[2]}`;
}

/** Success and a PortableError with a code are fine; anything else thrown is a crash. */
export function classify(err: unknown): Outcome {
  if (err === undefined) return { kind: "ok" };
  if (isPortableError(err) && typeof err.code === "string" && /^[A-Z][A-Z0-9_]+$/.test(err.code)) return { kind: "ok", code: err.code };
  if (err instanceof Error) {
    return { kind: "crash", message: `${err.name}: ${err.message}`.slice(0, 500), signature: `${err.name}@${topFrame(err)}` };
  }
  return { kind: "crash", message: `non-Error thrown: ${String(err)}`.slice(0, 500), signature: "non-error" };
}

/**
 * Delta debugging on bytes: drop tail halves, then chunks of shrinking size, then zero chunks,
 * keeping each step while `stillFails` holds. Bounded by `maxRuns`.
 */
export async function shrink(input: Buffer, stillFails: (candidate: Buffer) => Promise<boolean>, maxRuns = 400): Promise<Buffer> {
  let best = input;
  let runs = 0;
  const attempt = async (candidate: Buffer): Promise<boolean> => {
    if (runs >= maxRuns) return false;
    runs++;
    if (await stillFails(candidate)) {
      best = candidate;
      return true;
    }
    return false;
  };
  // 1. Truncate: find the shortest prefix that still fails (halving the removed tail).
  for (let cut = best.length >> 1; cut >= 1 && runs < maxRuns; ) {
    if (cut < best.length && (await attempt(Buffer.from(best.subarray(0, best.length - cut))))) continue;
    cut >>= 1;
  }
  // 2. Remove chunks, from large to small (ddmin's complement step).
  for (let chunk = Math.max(1, best.length >> 2); chunk >= 1 && runs < maxRuns; chunk >>= 1) {
    for (let at = 0; at + chunk <= best.length && runs < maxRuns; ) {
      const candidate = Buffer.concat([best.subarray(0, at), best.subarray(at + chunk)]);
      if (!(await attempt(candidate))) at += chunk;
    }
    if (chunk < 64) break;
  }
  // 3. Zero chunks that are not needed (keeps offsets, makes the fixture compress and read well).
  for (let chunk = Math.max(512, best.length >> 3); chunk >= 16 && runs < maxRuns; chunk >>= 2) {
    for (let at = 0; at < best.length && runs < maxRuns; at += chunk) {
      const end = Math.min(best.length, at + chunk);
      if (best.subarray(at, end).every((b) => b === 0)) continue;
      const candidate = Buffer.from(best);
      candidate.fill(0, at, end);
      await attempt(candidate);
    }
  }
  return best;
}
