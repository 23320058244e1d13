// Errors: one base class with a stable `code`, structured `context` and a `cause`.
//
// The brand lives under a `Symbol.for` key rather than relying on `instanceof` alone,
// because a Pulumi program, its dynamic provider process and the CLI can each load their
// own copy of this library; `isPortableError` must recognise an error from any copy.

const BRAND = Symbol.for("portable-workload.PortableError");

/** Structured facts about where an error happened: offsets, ids, paths. Never secrets. */
export type ErrorContext = Readonly<Record<string, string | number | boolean | bigint | undefined>>;

export interface PortableErrorOptions {
  readonly context?: ErrorContext;
  readonly cause?: unknown;
}

export class PortableError extends Error {
  /** Stable, machine-readable identifier such as `VHDX_BAT_OUT_OF_RANGE`. Tests assert on it. */
  readonly code: string;
  readonly context: ErrorContext;

  constructor(code: string, message: string, options: PortableErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = options.context ?? {};
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // Subclasses keep ordinary prototype checks; the base class also accepts other copies.
    if (this !== PortableError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return isPortableError(value);
  }
}

/** A disk image or descriptor is malformed or uses something we do not read. */
export class FormatError extends PortableError {}

/** A cloud or hypervisor API refused or failed a call. */
export class CloudError extends PortableError {}

/** The caller passed arguments that cannot work; nothing was attempted. */
export class InvalidArgsError extends PortableError {}

/** The target or source cannot do what was asked (for example, a sequential-only sink asked to seek). */
export class NotCapableError extends PortableError {}

export function isPortableError(value: unknown): value is PortableError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}
