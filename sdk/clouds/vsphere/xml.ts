// vim25 SOAP bodies in and out. Hand-written because no maintained TypeScript vim25 client
// exists (the official SDKs are Java, Python and Go; @pulumi/vsphere cannot be installed here):
// this is the small, typed subset a migration needs, modelled on govmomi's vim25/soap.
//
// Out: values are plain objects whose key order is the WSDL sequence order (vCenter checks it,
// vcsim does not); `$type` becomes xsi:type, and managed object references carry their type
// attribute. Text is escaped, and characters XML 1.0 cannot carry are refused.
//
// In: fast-xml-parser with entity processing off, after refusing any DTD; only the five XML
// entities and numeric references are decoded, here. Every element becomes an array, because
// the schema, not the document, says what repeats; zod helpers below pick one or many.
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { z } from "zod";
import { CloudError, InvalidArgsError } from "../../errors.ts";

/** A reference to a server-side object, e.g. { type: "VirtualMachine", value: "vm-42" }. */
export interface MoRef {
  readonly type: string;
  readonly value: string;
}

const MOREF = Symbol.for("portable-workload.vsphere.MoRef");

export function moRef(type: string, value: string): MoRef {
  const ref = { type, value };
  Object.defineProperty(ref, MOREF, { value: true });
  return ref;
}

export function isMoRef(value: unknown): value is MoRef {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[MOREF] === true;
}

/** A value to serialise. Objects keep key order; arrays repeat the element. */
export type SoapInput =
  | string
  | number
  | boolean
  | undefined
  | MoRef
  | readonly SoapInput[]
  | { readonly $type?: string; readonly [key: string]: SoapInput };

/** XML 1.0 §2.2 Char: tab, LF, CR and U+0020 upwards, minus surrogates and U+FFFE/FFFF. */
const INVALID_XML_CHAR = /[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;

export function escapeXml(text: string): string {
  if (INVALID_XML_CHAR.test(text)) {
    throw new InvalidArgsError("VSPHERE_INVALID_XML_CHAR", "vsphere: a value holds a control character that XML 1.0 cannot carry");
  }
  return text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] as string);
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

/** Serialises one element named `name` (nothing for undefined). */
export function toXml(name: string, value: SoapInput): string {
  if (value === undefined) return "";
  if (!NAME.test(name)) throw new InvalidArgsError("VSPHERE_INVALID_XML_NAME", `vsphere: "${name}" is not an element name`);
  if (Array.isArray(value)) return (value as readonly SoapInput[]).map((item) => toXml(name, item)).join("");
  if (isMoRef(value)) return `<${name} type="${escapeXml(value.type)}">${escapeXml(value.value)}</${name}>`;
  if (typeof value === "object") {
    const record = value as Record<string, SoapInput>;
    // A parsed reference ({$moType, $text}) or typed leaf ({$type, $text}) goes back as it came.
    const attrs =
      (typeof record.$type === "string" ? ` xsi:type="${escapeXml(record.$type)}"` : "") +
      (typeof record.$moType === "string" ? ` type="${escapeXml(record.$moType)}"` : "");
    if (typeof record.$text === "string") return `<${name}${attrs}>${escapeXml(record.$text)}</${name}>`;
    let inner = "";
    for (const [key, child] of Object.entries(record)) {
      if (key.startsWith("$")) continue;
      inner += toXml(key, child);
    }
    return `<${name}${attrs}>${inner}</${name}>`;
  }
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

export const SOAP_ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/";
export const XSI_NS = "http://www.w3.org/2001/XMLSchema-instance";

/** A request envelope: `<method><_this type=…>…</_this>args…</method>`. */
export function envelope(method: string, thisRef: MoRef, args: Readonly<Record<string, SoapInput>>): string {
  let body = toXml("_this", thisRef);
  for (const [key, value] of Object.entries(args)) body += toXml(key, value);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<soapenv:Envelope xmlns:soapenv="${SOAP_ENVELOPE_NS}" xmlns:xsi="${XSI_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema">` +
    `<soapenv:Body><${method} xmlns="urn:vim25">${body}</${method}></soapenv:Body></soapenv:Envelope>`
  );
}

/**
 * A parsed element: a string for a leaf without attributes, otherwise an object whose keys are
 * child names (each an array), plus `$type` (xsi:type), `$moType` (a reference's type) and
 * `$text`.
 */
export type XValue = string | XObject;
export interface XObject {
  readonly [key: string]: XValue[] | string | undefined;
}

/** Largest response read: a RetrievePropertiesEx page of full VM configs is a few MiB. */
export const SOAP_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const MAX_DEPTH = 64;

const PREDEFINED: Readonly<Record<string, string>> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function decodeEntities(value: string): string {
  if (!value.includes("&")) return value;
  return value.replace(/&([^;\s&]{0,32});/g, (whole, name: string) => {
    const predefined = PREDEFINED[name];
    if (predefined !== undefined) return predefined;
    const numeric = /^#(x[0-9a-f]{1,6}|[0-9]{1,7})$/i.exec(name);
    if (numeric !== null) {
      const digits = numeric[1] as string;
      const code = /^x/i.test(digits) ? parseInt(digits.slice(1), 16) : parseInt(digits, 10);
      if (code > 0 && code <= 0x10ffff) return String.fromCodePoint(code);
    }
    throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: response uses undefined entity ${whole}`);
  });
}

function localName(name: string): string {
  const colon = name.indexOf(":");
  return colon >= 0 ? name.slice(colon + 1) : name;
}

function normalize(node: unknown, depth: number): XValue {
  if (depth > MAX_DEPTH) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: response nests deeper than ${MAX_DEPTH}`);
  if (typeof node !== "object" || node === null) return decodeEntities(String(node ?? ""));
  const out: Record<string, XValue[] | string> = {};
  let hasAttrsOrChildren = false;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === "#text") out.$text = decodeEntities(String(value));
    else if (key.startsWith("@_")) {
      const attr = key.slice(2);
      if (attr === "type") out.$moType = decodeEntities(String(value));
      else if (localName(attr) === "type" && attr.includes(":")) out.$type = decodeEntities(String(value));
      else continue;
      hasAttrsOrChildren = true;
    } else {
      hasAttrsOrChildren = true;
      out[localName(key)] = (value as unknown[]).map((child) => normalize(child, depth + 1));
    }
  }
  if (!hasAttrsOrChildren) return typeof out.$text === "string" ? out.$text : "";
  return out;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  removeNSPrefix: false,
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  isArray: (_name, _path, _leaf, isAttribute) => !isAttribute,
  maxNestedTags: MAX_DEPTH,
});

/** Parses a SOAP response into its Body's first child, local names only. */
export function parseSoapBody(text: string): { readonly name: string; readonly value: XValue } {
  if (text.length > SOAP_MAX_RESPONSE_BYTES) {
    throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: response of ${text.length} characters exceeds ${SOAP_MAX_RESPONSE_BYTES}`);
  }
  if (/<!\s*(DOCTYPE|ENTITY)/i.test(text)) throw new CloudError("VSPHERE_BAD_RESPONSE", "vsphere: response holds a DTD, which is refused");
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: response is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  let root: Record<string, unknown[]>;
  try {
    root = parser.parse(text) as Record<string, unknown[]>;
  } catch (err) {
    // The validator passes some text the parser then rejects (an unterminated declaration).
    throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: response could not be parsed: ${(err as Error).message}`, { cause: err });
  }
  const envelopeKey = Object.keys(root).find((k) => localName(k) === "Envelope");
  const env = envelopeKey === undefined ? undefined : (root[envelopeKey]?.[0] as Record<string, unknown[]> | undefined);
  const bodyKey = env === undefined ? undefined : Object.keys(env).find((k) => localName(k) === "Body");
  const body = bodyKey === undefined || env === undefined ? undefined : (env[bodyKey]?.[0] as Record<string, unknown[]> | undefined);
  const first = body === undefined ? undefined : Object.keys(body).find((k) => !k.startsWith("@_"));
  if (body === undefined || first === undefined) throw new CloudError("VSPHERE_BAD_RESPONSE", "vsphere: response has no SOAP Body content");
  return { name: localName(first), value: normalize(body[first]?.[0], 0) };
}

// zod helpers over XValue.

/** Unwraps a one-element array (the usual case for a single-valued field). */
function single(value: unknown): unknown {
  return Array.isArray(value) && value.length === 1 ? value[0] : value;
}

function text(value: unknown): unknown {
  const v = single(value);
  if (typeof v === "object" && v !== null && !Array.isArray(v) && "$text" in v) return (v as { $text: unknown }).$text;
  return v;
}

export const xs = {
  string: () => z.preprocess(text, z.string()),
  int: () => z.preprocess(text, z.string().regex(/^-?\d+$/).transform(Number)),
  bool: () => z.preprocess(text, z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1")),
  ref: () =>
    z.preprocess(single, z.object({ $moType: z.string(), $text: z.string() }).transform((o) => moRef(o.$moType, o.$text))),
  one: <S extends z.ZodType>(schema: S) => z.preprocess(single, schema),
  many: <S extends z.ZodType>(schema: S) => z.preprocess((v) => (v === undefined ? [] : v), z.array(schema)),
  /** Any element kept as parsed (a polymorphic value read by a later schema). */
  any: () => z.preprocess(single, z.union([z.string(), z.record(z.string(), z.unknown())])),
  object: <T extends z.ZodRawShape>(shape: T) => z.preprocess(single, z.looseObject(shape)),
};

/** Validates a parsed value; a mismatch is the server's fault, reported with the method. */
export function expect<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(value)"}: ${i.message}`);
  throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: unexpected ${what}: ${issues.join("; ")}`, { context: { what } });
}

/** The xsi:type of a parsed value, if any. */
export function xsiType(value: unknown): string | undefined {
  const v = single(value);
  return typeof v === "object" && v !== null && typeof (v as { $type?: unknown }).$type === "string" ? (v as { $type: string }).$type : undefined;
}

/** The text of a leaf value, typed (`{$type, $text}`) or not; undefined for anything else. */
export function textOf(value: unknown): string | undefined {
  const v = text(value);
  return typeof v === "string" ? v : undefined;
}
