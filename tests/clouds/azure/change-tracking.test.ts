// Azure change tracking's client, against answers shaped as Azure documents Get Page Ranges with
// x-ms-previous-snapshot-url (a PageList of PageRange and ClearRange, inclusive byte offsets),
// served on loopback to the real storage SDK, rather than Azurite's, which ignores the previous
// snapshot and lists every page, never a cleared one. The snapshot keeping is checked too.
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import type { AccessUri, GrantAccessData } from "@azure/arm-compute";
import { azureChangeTracking, snapshotToken } from "../../../sdk/clouds/azure/change-tracking.ts";
import { pageBlobClientFor } from "../../../sdk/clouds/azure/open-url.ts";
import { listChangedPageRanges } from "../../../sdk/clouds/azure/page-ranges.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Serves `body` as the page list of any blob; records each request's headers. */
async function pageListServer(body: string): Promise<{ url: string; seen: IncomingHttpHeaders[]; stop(): Promise<void> }> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { "content-type": "application/xml", "x-ms-blob-content-length": String(4 * MiB), "x-ms-version": "2025-01-05" });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/account/snapshots/pit-new.vhd?sv=2025-01-05&sr=b&sp=r&sig=c2lnbmF0dXJl`, seen, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}

const DIFF = `<?xml version="1.0" encoding="utf-8"?>
<PageList><PageRange><Start>0</Start><End>524287</End></PageRange><ClearRange><Start>524288</Start><End>1048575</End></ClearRange><PageRange><Start>3145728</Start><End>3146239</End></PageRange><PageRange><Start>3670016</Start><End>4194303</End></PageRange></PageList>`;

function fakeSnapshots(): { snapshots: { grantAccess(rg: string, name: string, data: GrantAccessData): Promise<AccessUri>; revokeAccess(rg: string, name: string): Promise<void>; delete(rg: string, name: string): Promise<void>; createOrUpdate(): Promise<never> }; ops: string[] } {
  const ops: string[] = [];
  return {
    ops,
    snapshots: {
      async grantAccess(_rg, name) {
        ops.push(`grant ${name}`);
        return { accessSAS: `http://127.0.0.1:9/account/snapshots/${name}.vhd?sig=b2xk` };
      },
      async revokeAccess(_rg, name) {
        ops.push(`revoke ${name}`);
      },
      async delete(_rg, name) {
        ops.push(`delete ${name}`);
      },
      async createOrUpdate() {
        throw new Error("not used");
      },
    },
  };
}

describe("Azure change tracking (page-range diffs of incremental snapshots, as Azure documents them)", () => {
  it("GIVEN a diff answer with written and cleared pages WHEN read THEN both become ranges, merged and clipped to the disk, and the earlier snapshot's SAS went in x-ms-previous-snapshot-url", async () => {
    const server = await pageListServer(DIFF);
    try {
      const client = await pageBlobClientFor({ kind: "sas", url: server.url });
      const previous = "http://127.0.0.1:9/account/snapshots/pit-old.vhd?sv=2025-01-05&sig=b2xk";
      const ranges = await listChangedPageRanges(client, "pit-new", previous, 3 * MiB + 768 * KiB);
      assert.deepEqual(ranges, [
        { offsetBytes: 0, lengthBytes: 1 * MiB },
        { offsetBytes: 3 * MiB, lengthBytes: 512 },
        { offsetBytes: 3 * MiB + 512 * KiB, lengthBytes: 256 * KiB },
      ]);
      assert.equal(server.seen[0]!["x-ms-previous-snapshot-url"], previous);
    } finally {
      await server.stop();
    }
  });

  it("GIVEN an answer as long as a page of answers WHEN read THEN it is refused as possibly cut off (the SDK drops this call's marker)", async () => {
    const many = Array.from({ length: 10_000 }, (_, i) => `<PageRange><Start>${i * 1024}</Start><End>${i * 1024 + 511}</End></PageRange>`).join("");
    const server = await pageListServer(`<?xml version="1.0" encoding="utf-8"?><PageList>${many}</PageList>`);
    try {
      const client = await pageBlobClientFor({ kind: "sas", url: server.url });
      await assert.rejects(listChangedPageRanges(client, "pit-new", "http://127.0.0.1:9/x?sig=b2xk", 16 * MiB), (error: Error & { code?: string }) => error.code === "AZURE_DIFF_INCOMPLETE");
    } finally {
      await server.stop();
    }
  });

  it("GIVEN a tracked pass WHEN committed, failed or final THEN it keeps the snapshot the record names, deletes the other, and revokes every SAS it asked for", async () => {
    const server = await pageListServer(DIFF);
    try {
      for (const c of [
        { committed: true, final: false, kept: true, ops: ["grant pit-old", "revoke pit-old", "delete pit-old"] },
        { committed: false, final: false, kept: false, ops: ["grant pit-old", "revoke pit-old"] },
        { committed: true, final: true, kept: false, ops: ["grant pit-old", "revoke pit-old", "delete pit-old"] },
      ]) {
        const { snapshots, ops } = fakeSnapshots();
        let kept: boolean | undefined;
        const tracking = azureChangeTracking({ compute: { snapshots }, resourceGroupName: "rg", snapshotName: "pit-new", readSasUrl: server.url, virtualSizeBytes: 4 * MiB, final: c.final, release: async (keep) => void (kept = keep) });
        assert.equal(tracking.changes.token, snapshotToken("pit-new"));
        const ranges = await tracking.changes.changedSince(snapshotToken("pit-old"));
        assert.ok(ranges !== undefined);
        if (c.committed) tracking.changes.committed();
        await tracking.release();
        assert.equal(kept, c.kept);
        assert.deepEqual(ops, c.ops);
      }
    } finally {
      await server.stop();
    }
  });

  it("GIVEN a grant refused (the kept snapshot is gone) or a token not ours WHEN asked THEN the tracker cannot say, and the pass scans", async () => {
    const { snapshots } = fakeSnapshots();
    snapshots.grantAccess = async () => {
      throw Object.assign(new Error("The Resource 'Microsoft.Compute/snapshots/pit-old' was not found."), { statusCode: 404, code: "ResourceNotFound" });
    };
    const tracking = azureChangeTracking({ compute: { snapshots }, resourceGroupName: "rg", snapshotName: "pit-new", readSasUrl: "http://127.0.0.1:9/x?sig=b2xk", virtualSizeBytes: 4 * MiB, final: false, release: async () => {} });
    assert.equal(await tracking.changes.changedSince(snapshotToken("pit-old")), undefined);
    assert.equal(await tracking.changes.changedSince("ebs-snapshot:snap-0123456789abcdef0"), undefined);
    assert.equal(await tracking.changes.changedSince("azure-snapshot:../../x"), undefined);
  });
});
