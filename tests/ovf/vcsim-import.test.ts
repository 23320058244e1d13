// Our OVF through a real VMware-side parser: vcsim's OvfManager.CreateImportSpec runs govmomi's
// ovf.Unmarshal and import mapping (the code govc import.ovf uses). vcsim maps IDE and SCSI
// controllers only (resource type 20, SATA/NVMe, is "unsupported" there: a simulator limit, see
// govmomi simulator/ovf_manager.go), so the workload here uses those two buses.
import assert from "node:assert/strict";
import { request } from "node:https";
import { after, before, describe, it } from "node:test";
import { XMLParser } from "fast-xml-parser";
import { writeOvf } from "../../sdk/ovf/ovf-writer.ts";
import { parseWorkload } from "../../sdk/spec/workload.ts";
import { startVcsim, type Vcsim } from "../harness/vcsim.ts";

const parser = new XMLParser({ ignoreAttributes: false, removeNSPrefix: true, processEntities: false, isArray: (name) => ["deviceChange", "error", "fileItem", "warning"].includes(name) });

function escapeXml(value: string): string {
  return value.replace(/[<>&]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;" })[c] as string);
}

function soap(sim: Vcsim, method: string, inner: string, cookie?: string): Promise<{ status: number; body: Record<string, unknown>; cookie?: string }> {
  const envelope =
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:vim25">` +
    `<soapenv:Body><${method}>${inner}</${method}></soapenv:Body></soapenv:Envelope>`;
  return new Promise((resolve, reject) => {
    const req = request(
      sim.url,
      { method: "POST", ca: sim.caPem, headers: { "content-type": "text/xml; charset=utf-8", soapaction: "urn:vim25/8.0.2.0", ...(cookie === undefined ? {} : { cookie }) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const parsed = parser.parse(Buffer.concat(chunks).toString("utf8")) as { Envelope: { Body: Record<string, unknown> } };
          const setCookie = res.headers["set-cookie"]?.[0]?.split(";")[0];
          resolve({ status: res.statusCode ?? 0, body: parsed.Envelope.Body, ...(setCookie === undefined ? {} : { cookie: setCookie }) });
        });
      },
    );
    req.once("error", reject);
    req.end(envelope);
  });
}

async function findByPath(sim: Vcsim, cookie: string, path: string): Promise<{ type: string; value: string }> {
  const reply = await soap(sim, "FindByInventoryPath", `<_this type="SearchIndex">SearchIndex</_this><inventoryPath>${path}</inventoryPath>`, cookie);
  const ref = (reply.body.FindByInventoryPathResponse as { returnval?: { "#text": string; "@_type": string } }).returnval;
  assert.ok(ref !== undefined, `vcsim has ${path}`);
  return { type: ref["@_type"], value: ref["#text"] };
}

describe("OVF writer against vcsim's OVF import (govmomi)", () => {
  let sim: Vcsim;
  before(async () => {
    sim = await startVcsim();
  });
  after(() => sim?.stop());

  it("GIVEN our descriptor for a 4-vCPU SCSI+IDE workload WHEN vcsim builds an import spec THEN no errors, and CPUs, memory, guest, hardware version, disks and files match", async () => {
    const workload = parseWorkload({
      name: "imported-vm",
      cpu: { sockets: 2, coresPerSocket: 2 },
      memoryMiB: 3072,
      disks: [
        { id: "boot", sizeBytes: 2 * 2 ** 30, bus: "scsi", bootOrder: 0 },
        { id: "old", sizeBytes: 2 ** 30, bus: "ide" },
      ],
      nics: [{ network: "VM Network", model: "VMXNET3" }],
      guestOs: { family: "linux", distribution: "ubuntu", architecture: "x86_64" },
    });
    // Both disks get files: vcsim dereferences every disk's fileRef (a blank disk crashes it).
    const ovf = writeOvf(workload, [
      { diskId: "boot", href: "imported-vm-disk1.vmdk", sizeBytes: 12345 },
      { diskId: "old", href: "imported-vm-disk2.vmdk", sizeBytes: 678 },
    ]);
    const login = await soap(sim, "Login", `<_this type="SessionManager">SessionManager</_this><userName>${sim.username}</userName><password>${sim.password}</password>`);
    assert.ok(login.cookie !== undefined);
    const cookie = login.cookie;
    const datastore = await findByPath(sim, cookie, "DC0/datastore/LocalDS_0");
    const pool = await findByPath(sim, cookie, "DC0/host/DC0_C0/Resources");
    const reply = await soap(
      sim,
      "CreateImportSpec",
      `<_this type="OvfManager">OvfManager</_this><ovfDescriptor>${escapeXml(ovf)}</ovfDescriptor>` +
        `<resourcePool type="${pool.type}">${pool.value}</resourcePool><datastore type="${datastore.type}">${datastore.value}</datastore>` +
        `<cisp><locale></locale><deploymentOption></deploymentOption><entityName>imported-vm</entityName></cisp>`,
      cookie,
    );
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const result = (reply.body.CreateImportSpecResponse as { returnval: Record<string, unknown> }).returnval;
    assert.equal(result.error, undefined, JSON.stringify(result.error));
    const config = (result.importSpec as { configSpec: Record<string, unknown> }).configSpec;
    assert.equal(String(config.numCPUs), "4");
    assert.equal(String(config.memoryMB), "3072");
    assert.equal(config.guestId, "ubuntu64Guest");
    assert.equal(config.version, "vmx-11");
    const devices = (config.deviceChange as { device: { "@_type": string } }[]).map((c) => c.device["@_type"]);
    assert.equal(devices.filter((t) => t === "VirtualDisk").length, 2, devices.join(","));
    assert.ok(devices.includes("ParaVirtualSCSIController"), devices.join(","));
    assert.ok(devices.includes("VirtualIDEController"), devices.join(","));
    assert.ok(devices.includes("VirtualVmxnet3"), devices.join(","));
    const files = result.fileItem as { path: string; size: string }[];
    assert.deepEqual(
      files.map((f) => [f.path, String(f.size)]),
      [
        ["imported-vm-disk1.vmdk", "12345"],
        ["imported-vm-disk2.vmdk", "678"],
      ],
    );
  });
});
