// EBS change tracking's client, against answers shaped as AWS documents ListChangedBlocks
// (EBS direct API reference: ChangedBlocks[{BlockIndex, FirstBlockToken?, SecondBlockToken?}],
// BlockSize, VolumeSize, ExpiryTime, NextToken) rather than moto's, which lists only the first
// snapshot's blocks and so never a block new in the second (moto/ebs/models.py). The snapshot
// keeping is checked too: what a committed, a failed and a final pass leave.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { EBSClient } from "@aws-sdk/client-ebs";
import type { EC2Client } from "@aws-sdk/client-ec2";
import { changedRanges, ebsChangeTracking, snapshotToken } from "../../../sdk/clouds/aws/change-tracking.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Two pages as AWS answers them: a block in both snapshots, one new in the second, one cleared in it, and one past the disk. */
const PAGES: Record<string, unknown> = {
  first: {
    BlockSize: 524288,
    VolumeSize: 1,
    ExpiryTime: new Date("2026-12-05T12:00:00Z"),
    ChangedBlocks: [
      { BlockIndex: 0, FirstBlockToken: "AAABAVahm9SO60Dyi0ORySzn2ZjGjW/KN3uygGlS0QOYWesbzBbDnX2dGpmC", SecondBlockToken: "AAABAf8o0o6UFi1rDbSZGIRaCEdDyBu9TlvtCQxxoKV8qrUPQP7vcM6iWGSr" },
      { BlockIndex: 1, SecondBlockToken: "AAABAZS8lUAbhNQ+Op9BZBwtqGGBzOchE9RH6nj+ZCqCQK7W8Ucz1mHeNjZQ" },
    ],
    NextToken: "AAADARCOVW4NyKzR8WMoVgP0sNAizDbWagdRyFVVWsGzuHZWuKXk2zPqwOIb",
  },
  "AAADARCOVW4NyKzR8WMoVgP0sNAizDbWagdRyFVVWsGzuHZWuKXk2zPqwOIb": {
    BlockSize: 524288,
    VolumeSize: 1,
    ExpiryTime: new Date("2026-12-05T12:00:00Z"),
    ChangedBlocks: [
      { BlockIndex: 2, FirstBlockToken: "AAABAdUdw/x7dqyiN2s7xvZ5QvRZZLkNW3wLSkdL9D0G06VAjkYmqrrXQkO5" },
      { BlockIndex: 7, FirstBlockToken: "AAABAeDvO0O6hLmI5oJU5Fo9EqVnfPFLYfXkmaTqxw4ZeSyG9tlp7Pp6dkSm", SecondBlockToken: "AAABAcpm1gC2GpHUX3jKFQdRQ1C+Avo8ZQZ8SOsOFzmxh9UkI+AKmxtXzGXJ" },
      { BlockIndex: 2047, SecondBlockToken: "AAABAZZkY4NXh7K0ySGnhUWrDZw/oDQMSxwyDDs4mZfgpSSbvYfhEd3mrXjb" },
    ],
  },
};

function fakeEbs(answer: (input: { FirstSnapshotId: string; SecondSnapshotId: string; NextToken?: string }) => unknown): { ebs: EBSClient; calls: string[] } {
  const calls: string[] = [];
  const ebs = {
    async send(command: { constructor: { name: string }; input: { FirstSnapshotId: string; SecondSnapshotId: string; NextToken?: string } }) {
      calls.push(`${command.constructor.name} ${command.input.FirstSnapshotId}..${command.input.SecondSnapshotId} ${command.input.NextToken ?? "-"}`);
      return answer(command.input);
    },
  } as unknown as EBSClient;
  return { ebs, calls };
}

function fakeEc2(): { ec2: EC2Client; deleted: string[] } {
  const deleted: string[] = [];
  const ec2 = {
    async send(command: { input: { SnapshotId: string } }) {
      deleted.push(command.input.SnapshotId);
      return {};
    },
  } as unknown as EC2Client;
  return { ec2, deleted };
}

describe("EBS change tracking (ListChangedBlocks as AWS documents it)", () => {
  it("GIVEN two pages of changed blocks WHEN read THEN every page is followed and the blocks, new, changed and cleared, become merged ranges clipped to the disk", async () => {
    const { ebs, calls } = fakeEbs((input) => PAGES[input.NextToken ?? "first"]);
    const ranges = await changedRanges(ebs, "snap-0aaaaaaaaaaaaaaaa", "snap-0bbbbbbbbbbbbbbbb", 3 * MiB + 768 * KiB);
    assert.deepEqual(ranges, [
      { offsetBytes: 0, lengthBytes: 3 * 512 * KiB },
      { offsetBytes: 7 * 512 * KiB, lengthBytes: 256 * KiB },
    ]);
    assert.equal(calls.length, 2, "the second page is asked for with the first's NextToken");
  });

  it("GIVEN a tracked pass WHEN committed, failed or final THEN it keeps the snapshot the record names and deletes the other", async () => {
    const { ebs } = fakeEbs((input) => PAGES[input.NextToken ?? "first"]);
    const cases = [
      { committed: true, final: false, kept: true, deleted: ["snap-0aaaaaaaaaaaaaaaa"] },
      { committed: false, final: false, kept: false, deleted: [] },
      { committed: true, final: true, kept: false, deleted: ["snap-0aaaaaaaaaaaaaaaa"] },
    ];
    for (const c of cases) {
      const { ec2, deleted } = fakeEc2();
      let kept: boolean | undefined;
      const tracking = ebsChangeTracking({ ebs, ec2, snapshotId: "snap-0bbbbbbbbbbbbbbbb", virtualSizeBytes: 4 * MiB, final: c.final, release: async (keep) => void (kept = keep) });
      assert.equal(tracking.changes.token, snapshotToken("snap-0bbbbbbbbbbbbbbbb"));
      const ranges = await tracking.changes.changedSince(snapshotToken("snap-0aaaaaaaaaaaaaaaa"));
      assert.ok(ranges !== undefined);
      if (c.committed) tracking.changes.committed();
      await tracking.release();
      assert.equal(kept, c.kept, `committed ${c.committed}, final ${c.final}: this pass's snapshot kept`);
      assert.deepEqual(deleted, c.deleted, `committed ${c.committed}, final ${c.final}: the older snapshot`);
    }
  });

  it("GIVEN a token the service cannot diff against (deleted snapshot, another volume) or not ours WHEN asked THEN the tracker cannot say, and the pass scans", async () => {
    const { ebs } = fakeEbs(() => {
      throw Object.assign(new Error("The snapshot 'snap-0aaaaaaaaaaaaaaaa' does not exist."), { name: "ResourceNotFoundException", $metadata: { httpStatusCode: 404 } });
    });
    const { ec2 } = fakeEc2();
    const tracking = ebsChangeTracking({ ebs, ec2, snapshotId: "snap-0bbbbbbbbbbbbbbbb", virtualSizeBytes: 4 * MiB, final: false, release: async () => {} });
    assert.equal(await tracking.changes.changedSince(snapshotToken("snap-0aaaaaaaaaaaaaaaa")), undefined);
    assert.equal(await tracking.changes.changedSince("qemu-bitmap:pw-0123456789ab-0123456789abcdef"), undefined);
    assert.equal(await tracking.changes.changedSince("ebs-snapshot:../../etc"), undefined);
  });
});
