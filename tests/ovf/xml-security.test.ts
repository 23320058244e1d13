import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FormatError } from "../../sdk/errors.ts";
import { readOvf } from "../../sdk/ovf/ovf-reader.ts";
import { decodeXmlBytes, OVF_MAX_DESCRIPTOR_BYTES, parseXml } from "../../sdk/ovf/xml.ts";
import { MINIMAL_OVF } from "./helpers.ts";

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FormatError, `expected FormatError, got ${String(err)}`);
    return err.code;
  }
  return "no error";
}

const BILLION_LAUGHS = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/><VirtualSystem><Name>&lol9;</Name></VirtualSystem></Envelope>`;

const EXTERNAL_ENTITY = `<?xml version="1.0"?>
<!DOCTYPE Envelope [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem><Name>&xxe;</Name></VirtualSystem></Envelope>`;

const PARAMETER_ENTITY = `<?xml version="1.0"?>
<!DOCTYPE Envelope [ <!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd"> %remote; ]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>`;

const EXTERNAL_DTD = `<?xml version="1.0"?>
<!doctype Envelope SYSTEM "http://127.0.0.1:1/ovf.dtd">
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>`;

describe("XML safety", () => {
  for (const [label, text] of [
    ["billion laughs (nested entity expansion)", BILLION_LAUGHS],
    ["an external entity reading /etc/passwd", EXTERNAL_ENTITY],
    ["a parameter entity fetching a remote DTD", PARAMETER_ENTITY],
    ["an external DTD in lower case", EXTERNAL_DTD],
  ] as const) {
    it(`GIVEN a descriptor with ${label} WHEN read THEN XML_DTD_FORBIDDEN before any parsing`, () => {
      assert.equal(
        codeOf(() => readOvf(text)),
        "XML_DTD_FORBIDDEN",
      );
    });
  }

  it("GIVEN the forbidden declaration on line 2 WHEN refused THEN the message and context give the line", () => {
    try {
      parseXml(EXTERNAL_ENTITY, "evil.ovf");
      assert.fail("expected an error");
    } catch (err) {
      assert.ok(err instanceof FormatError);
      assert.equal(err.context.line, 2);
      assert.match(err.message, /evil\.ovf line 2/);
    }
  });

  it("GIVEN a reference to an undeclared entity WHEN read THEN XML_ENTITY_UNDEFINED rather than passing it through", () => {
    assert.equal(
      codeOf(() => parseXml("<a>&nbsp;</a>", "t")),
      "XML_ENTITY_UNDEFINED",
    );
    assert.equal(
      codeOf(() => parseXml('<a b="&evil;"/>', "t")),
      "XML_ENTITY_UNDEFINED",
    );
  });

  it("GIVEN the five XML entities, character references and CDATA WHEN read THEN they decode, CDATA stays literal", () => {
    const el = parseXml('<a t="&quot;x&#65;&#x42;&apos;">1 &lt; 2 &amp;&amp; 3 &gt; 2<![CDATA[ & <b> ]]></a>', "t");
    assert.equal(el.attrs.t, `"xAB'`);
    assert.equal(el.text, "1 < 2 && 3 > 2 & <b>");
  });

  it("GIVEN malformed XML WHEN read THEN XML_MALFORMED with its line", () => {
    assert.equal(
      codeOf(() => parseXml("<a><b></a>", "t")),
      "XML_MALFORMED",
    );
  });

  it("GIVEN a descriptor over the size limit WHEN decoded THEN OVF_DESCRIPTOR_TOO_LARGE without parsing it", () => {
    assert.equal(
      codeOf(() => decodeXmlBytes(Buffer.alloc(OVF_MAX_DESCRIPTOR_BYTES + 1, 0x20), "huge.ovf")),
      "OVF_DESCRIPTOR_TOO_LARGE",
    );
  });

  it("GIVEN elements nested 100 deep WHEN read THEN XML_TOO_DEEP or XML_MALFORMED, never a stack overflow", () => {
    const text = `${"<a>".repeat(100)}x${"</a>".repeat(100)}`;
    assert.ok(["XML_TOO_DEEP", "XML_MALFORMED"].includes(codeOf(() => parseXml(text, "deep"))));
  });

  it("GIVEN a UTF-16 descriptor with a BOM WHEN read THEN it parses like UTF-8", () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(MINIMAL_OVF.replace('encoding="UTF-8"', 'encoding="UTF-16"'), "utf16le")]);
    const d = readOvf(utf16, { name: "utf16.ovf" });
    assert.equal(d.systems[0]?.workload?.memoryMiB, 64);
  });

  it("GIVEN a root that is not an OVF Envelope WHEN read THEN OVF_NOT_ENVELOPE, and a foreign namespace OVF_NAMESPACE_UNKNOWN", () => {
    assert.equal(
      codeOf(() => readOvf("<Project/>")),
      "OVF_NOT_ENVELOPE",
    );
    assert.equal(
      codeOf(() => readOvf('<Envelope xmlns="urn:not-ovf"/>')),
      "OVF_NAMESPACE_UNKNOWN",
    );
  });
});
