import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";

describe("fault proxy (test harness)", () => {
  const upstream = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.end(`echo ${req.method} ${req.url}`));
  });
  let base = "";
  let proxy: FaultProxy;
  before(async () => {
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    proxy = await startFaultProxy(base, ({ index }) =>
      [undefined, { kind: "status", status: 503 } as const, { kind: "reset" } as const, { kind: "delay", ms: 20 } as const][index % 4],
    );
  });
  after(async () => {
    await proxy?.stop();
    upstream.close();
  });

  it("GIVEN a rule THEN requests are forwarded, answered 503, reset, or delayed, and counted", async () => {
    assert.equal(await (await fetch(`${proxy.endpoint}/a`)).text(), "echo GET /a");
    assert.equal((await fetch(`${proxy.endpoint}/b`)).status, 503);
    await assert.rejects(fetch(`${proxy.endpoint}/c`));
    assert.equal(await (await fetch(`${proxy.endpoint}/d?x=1`)).text(), "echo GET /d?x=1");
    assert.equal(proxy.forwarded.get("GET /a"), 1);
    assert.equal(proxy.forwarded.get("GET /d"), 1);
    assert.equal(proxy.forwarded.has("GET /b"), false);
    assert.deepEqual([proxy.injected.get("status"), proxy.injected.get("reset"), proxy.injected.get("delay")], [1, 1, 1]);
  });
});
