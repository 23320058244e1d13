// The SOAP client against vcsim: login faults, transparent re-login, TLS modes, continuation,
// and that the password never shows in an error.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { VsphereFault } from "../../../sdk/clouds/vsphere/faults.ts";
import { listVms } from "../../../sdk/clouds/vsphere/inventory.ts";
import { escapeXml, moRef, parseSoapBody, toXml } from "../../../sdk/clouds/vsphere/xml.ts";
import { isPortableError } from "../../../sdk/errors.ts";
import { startVcsim, type Vcsim } from "../../harness/vcsim.ts";
import { connect } from "./helpers.ts";

const PASSWORD = `p<a&s"s'w>rd-${Date.now()}`;

function codeOf(err: unknown): string | undefined {
  return isPortableError(err) ? err.code : undefined;
}

describe("vSphere SOAP client (vcsim)", () => {
  let sim: Vcsim;
  before(async () => {
    sim = await startVcsim([], { password: PASSWORD });
  });
  after(() => sim?.stop());

  it("GIVEN a password full of XML specials WHEN logging in THEN it is escaped and accepted", async () => {
    const client = await connect(sim);
    assert.equal(client.loginCount, 1);
    assert.match(client.serviceContent.about.apiType, /VirtualCenter/);
    await client.logout();
  });

  it("GIVEN a wrong password WHEN logging in THEN VSPHERE_INVALID_LOGIN, and neither password appears in the error", async () => {
    const wrong = `${PASSWORD}-wrong`;
    const err = await connect(sim, { password: wrong }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof VsphereFault, String(err));
    assert.equal(err.code, "VSPHERE_INVALID_LOGIN");
    assert.equal(err.faultType, "InvalidLogin");
    const text = `${err.message} ${JSON.stringify(err.context)} ${String(err.stack)}`;
    assert.ok(!text.includes(wrong) && !text.includes(PASSWORD), "no password in the error");
  });

  it("GIVEN a session terminated from another session WHEN the next call is made THEN the client logs in again and the call succeeds", async () => {
    const client = await connect(sim);
    const admin = await connect(sim);
    await admin.call("TerminateSession", admin.serviceContent.sessionManager, { sessionId: [client.sessionKey ?? ""] });
    // CurrentTime needs a session (vcsim lets RetrieveProperties through without one).
    const time = await client.call("CurrentTime", moRef("ServiceInstance", "ServiceInstance"));
    assert.equal(typeof time, "string");
    assert.equal(client.loginCount, 2, "one transparent re-login");
    // And a logged-out session is renewed the same way.
    await client.call("Logout", client.serviceContent.sessionManager);
    assert.ok((await listVms(client)).length > 0);
    assert.equal(client.loginCount, 3);
    await client.logout();
    await admin.logout();
  });

  it("GIVEN many VMs WHEN listed one object per page THEN ContinueRetrievePropertiesEx gathers them all", async () => {
    const client = await connect(sim);
    const all = await listVms(client);
    const paged = await listVms(client, { maxObjects: 1 });
    assert.ok(all.length >= 4);
    assert.deepEqual(paged.map((v) => v.ref.value), all.map((v) => v.ref.value));
    await client.logout();
  });

  it("GIVEN TLS settings WHEN connecting THEN the default refuses the self-signed certificate, insecure accepts it, and a pin must match", async () => {
    const base = { url: sim.url, username: sim.username, password: PASSWORD };
    const untrusted = await VsphereClient.connect(base).then(() => undefined, (e: unknown) => e);
    assert.equal(codeOf(untrusted), "VSPHERE_TLS_UNTRUSTED");
    assert.ok(!String((untrusted as Error).message).includes(PASSWORD));

    const insecure = await VsphereClient.connect({ ...base, insecure: true });
    await insecure.logout();

    const cert = new X509Certificate(sim.caPem);
    for (const pin of [cert.fingerprint, cert.fingerprint256, cert.fingerprint256.replace(/:/g, "").toLowerCase()]) {
      const pinned = await VsphereClient.connect({ ...base, thumbprint: pin });
      assert.equal(pinned.loginCount, 1);
      await pinned.logout();
    }
    const wrongPin = `${cert.fingerprint256.slice(0, -2)}${cert.fingerprint256.endsWith("00") ? "11" : "00"}`;
    const mismatch = await VsphereClient.connect({ ...base, thumbprint: wrongPin }).then(() => undefined, (e: unknown) => e);
    assert.equal(codeOf(mismatch), "VSPHERE_TLS_THUMBPRINT_MISMATCH");
    const bad = await VsphereClient.connect({ ...base, thumbprint: "not-hex" }).then(() => undefined, (e: unknown) => e);
    assert.equal(codeOf(bad), "VSPHERE_INVALID_OPTIONS");
    assert.ok(!String((bad as Error).message).includes(PASSWORD));
  });

  it("GIVEN a managed object that does not exist WHEN called THEN a typed fault, not a crash", async () => {
    const client = await connect(sim);
    await assert.rejects(client.call("PowerOnVM_Task", moRef("VirtualMachine", "vm-does-not-exist")), (err) => codeOf(err) === "VSPHERE_OBJECT_NOT_FOUND");
    await client.logout();
  });
});

describe("vim25 XML", () => {
  it("GIVEN values with XML specials and control characters WHEN serialised THEN they are escaped or refused", () => {
    assert.equal(escapeXml(`a<b>&"c'`), "a&lt;b&gt;&amp;&quot;c&apos;");
    assert.equal(toXml("spec", { $type: "Foo", name: "x&y", ref: moRef("Folder", "group-1"), list: ["1", "2"], skip: undefined }), '<spec xsi:type="Foo"><name>x&amp;y</name><ref type="Folder">group-1</ref><list>1</list><list>2</list></spec>');
    assert.throws(() => toXml("name", "bell\u0007"), (err) => codeOf(err) === "VSPHERE_INVALID_XML_CHAR");
  });

  it("GIVEN a response with a DTD or an unknown entity WHEN parsed THEN it is refused", () => {
    const env = (inner: string): string => `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`;
    assert.deepEqual(parseSoapBody(env("<R><returnval>a &amp; &#x41;</returnval></R>")), { name: "R", value: { returnval: ["a & A"] } });
    assert.throws(() => parseSoapBody(`<!DOCTYPE x [<!ENTITY e "boom">]>${env("<R>&e;</R>")}`), (err) => codeOf(err) === "VSPHERE_BAD_RESPONSE");
    assert.throws(() => parseSoapBody(env("<R><returnval>&e;</returnval></R>")), (err) => codeOf(err) === "VSPHERE_BAD_RESPONSE");
  });
});
