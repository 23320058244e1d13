// Layout tokens: symmetric {len, get, put} descriptions of on-disk fields, after
// token-types. Hand-written because the formats need exact control of endianness, 64-bit
// fields and checked narrowing, and a token table per structure keeps parse and write in step.
import { FormatError } from "../errors.ts";

export interface Token<T> {
  readonly len: number;
  get(buf: Uint8Array, offset: number): T;
  put(buf: Uint8Array, offset: number, value: T): void;
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export const U8: Token<number> = {
  len: 1,
  get: (buf, o) => view(buf).getUint8(o),
  put: (buf, o, v) => view(buf).setUint8(o, v),
};
export const U16_LE: Token<number> = {
  len: 2,
  get: (buf, o) => view(buf).getUint16(o, true),
  put: (buf, o, v) => view(buf).setUint16(o, v, true),
};
export const U16_BE: Token<number> = {
  len: 2,
  get: (buf, o) => view(buf).getUint16(o, false),
  put: (buf, o, v) => view(buf).setUint16(o, v, false),
};
export const U32_LE: Token<number> = {
  len: 4,
  get: (buf, o) => view(buf).getUint32(o, true),
  put: (buf, o, v) => view(buf).setUint32(o, v, true),
};
export const U32_BE: Token<number> = {
  len: 4,
  get: (buf, o) => view(buf).getUint32(o, false),
  put: (buf, o, v) => view(buf).setUint32(o, v, false),
};
export const U64_LE: Token<bigint> = {
  len: 8,
  get: (buf, o) => view(buf).getBigUint64(o, true),
  put: (buf, o, v) => view(buf).setBigUint64(o, v, true),
};
export const U64_BE: Token<bigint> = {
  len: 8,
  get: (buf, o) => view(buf).getBigUint64(o, false),
  put: (buf, o, v) => view(buf).setBigUint64(o, v, false),
};

/** Fixed-length byte string (magic numbers, GUIDs, reserved areas). */
export function bytes(len: number): Token<Buffer> {
  return {
    len,
    get: (buf, o) => Buffer.from(buf.subarray(o, o + len)),
    put: (buf, o, v) => {
      if (v.length !== len) throw new RangeError(`bytes(${len}): got ${v.length} bytes`);
      buf.set(v, o);
    },
  };
}

/** Fixed-length ASCII field, NUL-padded on write and NUL-trimmed on read. */
export function ascii(len: number): Token<string> {
  return {
    len,
    get: (buf, o) => Buffer.from(buf.subarray(o, o + len)).toString("latin1").replace(/\0+$/, ""),
    put: (buf, o, v) => {
      const encoded = Buffer.from(v, "latin1");
      if (encoded.length > len) throw new RangeError(`ascii(${len}): "${v}" is too long`);
      buf.fill(0, o, o + len);
      buf.set(encoded, o);
    },
  };
}

type FieldTable = Record<string, readonly [offset: number, token: Token<unknown>]>;
type FieldValues<F extends FieldTable> = { -readonly [K in keyof F]: F[K][1] extends Token<infer T> ? T : never };

/**
 * A structure as a table of `[offset, token]` fields. Offsets are explicit (copied from the
 * spec's tables) rather than implied by order, so reserved gaps need no filler fields.
 */
export function struct<F extends FieldTable>(len: number, fields: F): Token<FieldValues<F>> {
  for (const [name, [offset, token]] of Object.entries(fields)) {
    if (offset + token.len > len) throw new RangeError(`struct: field ${name} ends past ${len}`);
  }
  return {
    len,
    get(buf, o) {
      if (o + len > buf.length) throw new RangeError(`struct: need ${len} bytes at ${o}, have ${buf.length - o}`);
      const out: Record<string, unknown> = {};
      for (const [name, [offset, token]] of Object.entries(fields)) out[name] = token.get(buf, o + offset);
      return out as FieldValues<F>;
    },
    put(buf, o, value) {
      for (const [name, [offset, token]] of Object.entries(fields)) {
        token.put(buf, o + offset, (value as Record<string, unknown>)[name]);
      }
    },
  };
}

/** Encodes a structure into a new zero-filled buffer of its length. */
export function encode<T>(token: Token<T>, value: T): Buffer {
  const buf = Buffer.alloc(token.len);
  token.put(buf, 0, value);
  return buf;
}

/**
 * Narrows an on-disk 64-bit value to a JavaScript number, throwing a FormatError instead of
 * silently losing precision above 2^53 (DESIGN.md: offsets are exact up to 8 PiB).
 */
export function toSafeNumber(value: bigint, what: string, format: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError("INT_OVERFLOW", `${format}: ${what} ${value} exceeds 2^53`, {
      context: { field: what, value },
    });
  }
  return Number(value);
}

/** Rounds up to a multiple of `unit` (a positive integer). */
export function alignUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}

export function isPowerOfTwo(value: number): boolean {
  // Math.log2 is exact for powers of two; bit tricks would stop at 2^31.
  return Number.isSafeInteger(value) && value > 0 && Number.isInteger(Math.log2(value));
}
