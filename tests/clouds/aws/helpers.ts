// Shared by the EBS tests: deterministic mixed images, and a moto with a counting proxy in front.
import { createCipheriv } from "node:crypto";
import { open } from "node:fs/promises";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const BLOCK = 512 * 1024;

/** Test credentials for the default chain (moto accepts any); never expected in any output. */
export function useMotoCredentials(credentials: { accessKeyId: string; secretAccessKey: string }): void {
  process.env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
}

export interface MixedImageLayout {
  /** Units of 1 MiB holding random (incompressible) data. */
  readonly randomUnits: number;
  readonly textUnits: number;
  /** Units written with explicit zeros: allocated, but all-zero blocks that must not be sent. */
  readonly zeroUnits: number;
  /** Units holding one small write at an odd offset: a block that is mostly zeros. */
  readonly partialUnits: number;
  /** Indexes of some 1 MiB units left as holes (the first 16), for tests that touch them. */
  readonly holeUnits: readonly number[];
}

/**
 * A sparse raw image, the same bytes for the same seed. Each 1 MiB unit is picked by an LCG:
 * 84% stay a hole; 7% random (AES-CTR keystream), 6% text, 2% explicit zeros, 1% a 4 KiB write
 * at an unaligned offset. The last sector always holds data, so the image's end is exercised.
 */
export async function buildMixedRaw(path: string, sizeBytes: number, seed: number): Promise<MixedImageLayout> {
  const file = await open(path, "w");
  const key = Buffer.alloc(16, seed & 0xff);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16, 0));
  const text = Buffer.alloc(MiB);
  for (let at = 0, n = 0; at < MiB; n++) at += text.write(`seed ${seed} line ${n}: portable-workload moves disks between clouds.\n`, at);
  const layout = { randomUnits: 0, textUnits: 0, zeroUnits: 0, partialUnits: 0, holeUnits: [] as number[] };
  let state = seed >>> 0;
  try {
    for (let unit = 0; unit < sizeBytes / MiB; unit++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      const pick = (state >>> 8) % 100;
      const at = unit * MiB;
      if (pick < 84) {
        if (layout.holeUnits.length < 16 && unit < sizeBytes / MiB - 1) layout.holeUnits.push(unit);
        continue;
      }
      if (pick < 91) {
        await file.write(cipher.update(Buffer.alloc(MiB)), 0, MiB, at);
        layout.randomUnits++;
      } else if (pick < 97) {
        await file.write(text, 0, MiB, at);
        layout.textUnits++;
      } else if (pick < 99) {
        await file.write(Buffer.alloc(MiB), 0, MiB, at);
        layout.zeroUnits++;
      } else {
        await file.write(cipher.update(Buffer.alloc(4096)), 0, 4096, at + 300 * 1024 + 512 * (state % 97));
        layout.partialUnits++;
      }
    }
    await file.write(Buffer.alloc(512, 0x5a), 0, 512, sizeBytes - 512);
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
  return layout;
}

/** PutSnapshotBlock requests the proxy forwarded for one snapshot, by block index. */
export function putsFor(forwarded: ReadonlyMap<string, number>, snapshotId: string): Map<number, number> {
  const puts = new Map<number, number>();
  const prefix = `PUT /snapshots/${snapshotId}/blocks/`;
  for (const [key, count] of forwarded) if (key.startsWith(prefix)) puts.set(Number(key.slice(prefix.length)), count);
  return puts;
}
