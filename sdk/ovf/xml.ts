// Safe XML for OVF descriptors: fast-xml-parser does the parsing; this module refuses what no
// OVF needs and what makes XML dangerous, before the parser sees a byte.
//
// - A DTD (<!DOCTYPE), entity, element or attribute declarations are refused outright: they
//   are how "billion laughs" expansion and external entities (XXE, file and URL reads) work,
//   and DSP0243 descriptors never carry a DTD. Turning off entity processing in the parser is
//   not relied on alone.
// - Only XML's five predefined entities and numeric character references are decoded, here,
//   by hand; any other reference is an error rather than passed through.
// - Size is bounded before parsing, and nesting depth by the parser.
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { FormatError } from "../errors.ts";

/**
 * Largest descriptor read. Real ones are tens of KiB (the biggest of govmomi's ~800 fixtures is
 * under 200 KiB); 4 MiB leaves room for vApps with hundreds of systems, while the parsed tree
 * (roughly 10× the text) stays far below the library's memory bound.
 */
export const OVF_MAX_DESCRIPTOR_BYTES = 4 * 1024 * 1024;
/** OVF nests about 8 deep (Envelope/VirtualSystemCollection/VirtualSystem/Section/Item/field). */
export const XML_MAX_DEPTH = 64;

export interface XmlElement {
  /** Local name, without its namespace prefix. */
  readonly name: string;
  /** The prefix as written (e.g. "vmw", "vbox", "rasd"), or "" when none. */
  readonly prefix: string;
  /** Attributes by local name; the prefixed spelling too ("ovf:id" and "id"). */
  readonly attrs: Readonly<Record<string, string>>;
  readonly children: readonly XmlElement[];
  /** Concatenated text content, trimmed, entities decoded. */
  readonly text: string;
}

const FORBIDDEN_MARKUP = /<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)\b/i;

const PREDEFINED: Readonly<Record<string, string>> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function decodeEntities(value: string, where: string): string {
  if (!value.includes("&")) return value;
  return value.replace(/&([^;\s&]{0,32});?/g, (whole, name: string) => {
    if (!whole.endsWith(";")) throw new FormatError("XML_ENTITY_INVALID", `xml: bare "&" in ${where}`, { context: { where } });
    const predefined = PREDEFINED[name];
    if (predefined !== undefined) return predefined;
    const numeric = /^#(x[0-9a-f]{1,6}|[0-9]{1,7})$/i.exec(name);
    if (numeric !== null) {
      const digits = numeric[1] as string;
      const code = digits.startsWith("x") || digits.startsWith("X") ? parseInt(digits.slice(1), 16) : parseInt(digits, 10);
      if (code > 0 && code <= 0x10ffff) return String.fromCodePoint(code);
    }
    throw new FormatError("XML_ENTITY_UNDEFINED", `xml: undefined entity "&${name};" in ${where} (only the five XML entities and character references are allowed)`, {
      context: { entity: name, where },
    });
  });
}

/** Decodes descriptor bytes: UTF-8 (with or without BOM) or UTF-16 with a BOM. */
export function decodeXmlBytes(bytes: Buffer, name: string): string {
  if (bytes.length > OVF_MAX_DESCRIPTOR_BYTES) {
    throw new FormatError("OVF_DESCRIPTOR_TOO_LARGE", `ovf: descriptor ${name} is ${bytes.length} bytes, over the ${OVF_MAX_DESCRIPTOR_BYTES}-byte limit`, {
      context: { sizeBytes: bytes.length, limitBytes: OVF_MAX_DESCRIPTOR_BYTES },
    });
  }
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return bytes.subarray(2).toString("utf16le");
  if (bytes[0] === 0xfe && bytes[1] === 0xff) {
    const swapped = Buffer.from(bytes.subarray(2));
    swapped.swap16();
    return swapped.toString("utf16le");
  }
  const text = bytes.toString("utf8");
  return text.startsWith("\ufeff") ? text.slice(1) : text;
}

type FxpNode = Record<string, unknown>;

function toElement(tag: string, node: FxpNode, depth: number): XmlElement {
  if (depth > XML_MAX_DEPTH) throw new FormatError("XML_TOO_DEEP", `xml: elements nest deeper than ${XML_MAX_DEPTH}`, { context: { depth } });
  const colon = tag.indexOf(":");
  const prefix = colon >= 0 ? tag.slice(0, colon) : "";
  const name = colon >= 0 ? tag.slice(colon + 1) : tag;
  const attrs: Record<string, string> = {};
  const rawAttrs = (node[":@"] ?? {}) as Record<string, unknown>;
  for (const [key, value] of Object.entries(rawAttrs)) {
    const attrName = key.startsWith("@_") ? key.slice(2) : key;
    const decoded = decodeEntities(String(value), `attribute ${attrName} of <${tag}>`);
    attrs[attrName] = decoded;
    const attrColon = attrName.indexOf(":");
    if (attrColon >= 0 && attrName.slice(0, attrColon) !== "xmlns") attrs[attrName.slice(attrColon + 1)] ??= decoded;
  }
  const children: XmlElement[] = [];
  let text = "";
  for (const child of (node[tag] ?? []) as FxpNode[]) {
    const key = Object.keys(child).find((k) => k !== ":@");
    if (key === undefined) continue;
    if (key === "#text") text += decodeEntities(String(child[key]), `<${tag}>`);
    // CDATA is literal: its "&" and "<" are data, never references.
    else if (key === "#cdata") text += ((child[key] ?? []) as FxpNode[]).map((t) => String(t["#text"] ?? "")).join("");
    else if (key.startsWith("?") || key === "#comment") continue;
    else children.push(toElement(key, child, depth + 1));
  }
  return { name, prefix, attrs, children, text: text.trim() };
}

/**
 * Parses descriptor text into an element tree. Throws FormatError with a stable code:
 * XML_DTD_FORBIDDEN, XML_MALFORMED, XML_ENTITY_UNDEFINED, XML_TOO_DEEP.
 */
export function parseXml(text: string, name: string): XmlElement {
  const forbidden = FORBIDDEN_MARKUP.exec(text);
  if (forbidden !== null) {
    const line = text.slice(0, forbidden.index).split("\n").length;
    throw new FormatError(
      "XML_DTD_FORBIDDEN",
      `xml: ${name} line ${line} holds a <!${forbidden[1]?.toUpperCase()}> declaration; DTDs and entity declarations are refused (entity expansion and external entities)`,
      { context: { name, line, declaration: forbidden[1]?.toUpperCase() } },
    );
  }
  const valid = XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (valid !== true) {
    throw new FormatError("XML_MALFORMED", `xml: ${name} is not well-formed: ${valid.err.msg} (line ${valid.err.line}, column ${valid.err.col})`, {
      context: { name, line: valid.err.line, column: valid.err.col, xmlCode: valid.err.code },
    });
  }
  const parser = new XMLParser({
    preserveOrder: true,
    ignoreAttributes: false,
    attributeNamePrefix: "@_",
    removeNSPrefix: false,
    processEntities: false,
    htmlEntities: false,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    commentPropName: "#comment",
    cdataPropName: "#cdata",
    maxNestedTags: XML_MAX_DEPTH,
  });
  let nodes: FxpNode[];
  try {
    nodes = parser.parse(text) as FxpNode[];
  } catch (err) {
    throw new FormatError("XML_MALFORMED", `xml: ${name} could not be parsed: ${(err as Error).message}`, { context: { name }, cause: err });
  }
  const roots = nodes.filter((n) => {
    const key = Object.keys(n).find((k) => k !== ":@");
    return key !== undefined && !key.startsWith("?") && key !== "#comment" && key !== "#text";
  });
  const root = roots[0];
  if (root === undefined || roots.length !== 1) {
    throw new FormatError("XML_MALFORMED", `xml: ${name} has ${roots.length} root elements; exactly one is required`, { context: { name } });
  }
  const tag = Object.keys(root).find((k) => k !== ":@") as string;
  return toElement(tag, root, 0);
}

export function childrenNamed(element: XmlElement | undefined, name: string): XmlElement[] {
  return element === undefined ? [] : element.children.filter((c) => c.name === name);
}

export function childNamed(element: XmlElement | undefined, name: string): XmlElement | undefined {
  return element?.children.find((c) => c.name === name);
}

/** Text of the first child with this local name, or undefined when absent or empty. */
export function childText(element: XmlElement | undefined, name: string): string | undefined {
  const text = childNamed(element, name)?.text;
  return text === undefined || text === "" ? undefined : text;
}
