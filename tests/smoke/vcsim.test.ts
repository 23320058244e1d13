import assert from "node:assert/strict";
import { request } from "node:https";
import { after, before, describe, it } from "node:test";
import { XMLParser } from "fast-xml-parser";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";

// A deliberately raw SOAP exchange: this checks the simulator, not our client.
const parser = new XMLParser({ ignoreAttributes: false, removeNSPrefix: true, processEntities: false });

interface SoapReply {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly cookie: string | undefined;
}

function soap(sim: Vcsim, method: string, inner: string, cookie?: string): Promise<SoapReply> {
  const envelope =
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:vim25">` +
    `<soapenv:Body><${method}>${inner}</${method}></soapenv:Body></soapenv:Envelope>`;
  return new Promise((resolve, reject) => {
    const req = request(
      sim.url,
      {
        method: "POST",
        ca: sim.caPem,
        headers: {
          "content-type": "text/xml; charset=utf-8",
          soapaction: "urn:vim25/8.0.2.0",
          ...(cookie === undefined ? {} : { cookie }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const parsed = parser.parse(Buffer.concat(chunks).toString("utf8")) as {
            Envelope: { Body: Record<string, unknown> };
          };
          resolve({ status: res.statusCode ?? 0, body: parsed.Envelope.Body, cookie: res.headers["set-cookie"]?.[0] });
        });
      },
    );
    req.once("error", reject);
    req.end(envelope);
  });
}

const SERVICE_INSTANCE = `<_this type="ServiceInstance">ServiceInstance</_this>`;

describe("vcsim (vSphere simulator)", () => {
  let sim: Vcsim;
  before(async () => {
    sim = await startVcsim();
  });
  after(() => sim?.stop());

  it("GIVEN the simulator WHEN RetrieveServiceContent THEN About names vCenter", async () => {
    const reply = await soap(sim, "RetrieveServiceContent", SERVICE_INSTANCE);
    assert.equal(reply.status, 200);
    const content = (reply.body.RetrieveServiceContentResponse as { returnval: Record<string, unknown> }).returnval;
    const about = content.about as { name: string; apiType: string };
    assert.match(about.name, /vCenter/);
    assert.equal(about.apiType, "VirtualCenter");
  });

  it("WHEN Login with the right password THEN a session cookie is issued and CurrentTime works", async () => {
    const login = await soap(
      sim,
      "Login",
      `<_this type="SessionManager">SessionManager</_this><userName>${sim.username}</userName><password>${sim.password}</password>`,
    );
    assert.equal(login.status, 200);
    const session = (login.body.LoginResponse as { returnval: { userName: string } }).returnval;
    assert.equal(session.userName, sim.username);
    assert.ok(login.cookie, "a session cookie");
    const time = await soap(sim, "CurrentTime", SERVICE_INSTANCE, login.cookie.split(";")[0]);
    assert.equal(time.status, 200);
    const now = Date.parse(String((time.body.CurrentTimeResponse as { returnval: string }).returnval));
    assert.ok(Math.abs(now - Date.now()) < 3_600_000, "the server clock answers");
  });

  it("WHEN Login with a wrong password THEN an InvalidLogin fault is returned", async () => {
    const reply = await soap(
      sim,
      "Login",
      `<_this type="SessionManager">SessionManager</_this><userName>${sim.username}</userName><password>wrong-${sim.password}</password>`,
    );
    assert.equal(reply.status, 500);
    const fault = reply.body.Fault as { detail: Record<string, unknown> };
    assert.ok("InvalidLoginFault" in fault.detail, `fault detail: ${JSON.stringify(fault.detail)}`);
  });
});
