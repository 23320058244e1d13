// Shared by the vSphere tests: a connected client on a fresh vcsim, and a sparse raw image with
// data at a few places (random, text, an unaligned write, the last sector), built in a blink.
import { createCipheriv } from "node:crypto";
import { open } from "node:fs/promises";
import { VsphereClient } from "../../../sdk/clouds/vsphere/client.ts";
import { openVsphereDisk } from "../../../sdk/clouds/vsphere/disk-url.ts";
import { sourceSha256 } from "../../harness/disk.ts";
import type { Vcsim } from "../../harness/vcsim.ts";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function connect(sim: Vcsim, extra: Partial<Parameters<typeof VsphereClient.connect>[0]> = {}): Promise<VsphereClient> {
  return VsphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem, ...extra });
}

/** SHA-256 of what the guest sees of a datastore disk (a vsphere://…vmdk?dc=…&ds=… location). */
export async function vsphereDiskSha256(client: VsphereClient, location: string): Promise<string> {
  const disk = await openVsphereDisk(client, location);
  try {
    return await sourceSha256(disk);
  } finally {
    await disk.close();
  }
}

/** A sparse raw image of `sizeBytes` (a multiple of 1 MiB) with the same bytes for the same seed. */
export async function buildSparseRaw(path: string, sizeBytes: number, seed: number): Promise<void> {
  const file = await open(path, "w");
  try {
    await file.truncate(sizeBytes);
    const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, seed & 0xff), Buffer.alloc(16, 0));
    const random = (n: number): Buffer => cipher.update(Buffer.alloc(n));
    const text = Buffer.from(`seed ${seed}: portable-workload moves disks between clouds.\n`.repeat(20000)).subarray(0, 2 * MiB);
    await file.write(random(3 * MiB), 0, 3 * MiB, 0);
    await file.write(text, 0, text.length, Math.floor(sizeBytes / 3 / MiB) * MiB);
    await file.write(random(4096), 0, 4096, Math.floor(sizeBytes / 2 / MiB) * MiB + 12345);
    await file.write(random(MiB), 0, MiB, sizeBytes - 8 * MiB);
    await file.write(random(512), 0, 512, sizeBytes - 512);
  } finally {
    await file.close();
  }
}
