// OVF manifests (.mf, DSP0243 §5.1): one digest line per file of the package,
// "SHA256(disk1.vmdk)= 3a5c…" as ovftool writes it, or "SHA1 (x.ovf) = 06…" as some tools space it.
import { createHash } from "node:crypto";
import { FormatError } from "../errors.ts";
import type { ByteSource } from "../disk/types.ts";

export type DigestAlgorithm = "sha1" | "sha256" | "sha512";

export interface ManifestLine {
  readonly algorithm: DigestAlgorithm;
  readonly file: string;
  readonly digest: string;
  readonly line: number;
}

/** A .mf is a few lines per file; 1 MiB is thousands of files. */
export const MANIFEST_MAX_BYTES = 1024 * 1024;
/** Bytes hashed per read. */
const HASH_READ_BYTES = 1024 * 1024;

const DIGEST_BYTES: Readonly<Record<DigestAlgorithm, number>> = { sha1: 20, sha256: 32, sha512: 64 };

/** Parses a manifest; a line that is not a digest line is a FormatError naming the line. */
export function parseManifest(text: string, name = "manifest"): ManifestLine[] {
  if (text.length > MANIFEST_MAX_BYTES) {
    throw new FormatError("MANIFEST_TOO_LARGE", `mf: ${name} is over ${MANIFEST_MAX_BYTES} bytes`, { context: { name } });
  }
  const lines: ManifestLine[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    if (raw.trim() === "") return;
    const match = /^\s*(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$/.exec(raw);
    if (match === null) {
      throw new FormatError("MANIFEST_LINE_INVALID", `mf: ${name} line ${index + 1} is not "ALG(file)= digest": ${JSON.stringify(raw.slice(0, 120))}`, {
        context: { name, line: index + 1 },
      });
    }
    const algorithm = (match[1] as string).toLowerCase() as DigestAlgorithm;
    const digest = (match[3] as string).toLowerCase();
    if (digest.length !== DIGEST_BYTES[algorithm] * 2) {
      throw new FormatError("MANIFEST_LINE_INVALID", `mf: ${name} line ${index + 1}: a ${algorithm} digest has ${DIGEST_BYTES[algorithm] * 2} hex digits, not ${digest.length}`, {
        context: { name, line: index + 1 },
      });
    }
    lines.push({ algorithm, file: match[2] as string, digest, line: index + 1 });
  });
  return lines;
}

export function formatManifest(entries: readonly { readonly file: string; readonly sha256: string }[]): string {
  return entries.map((e) => `SHA256(${e.file})= ${e.sha256}\n`).join("");
}

/** Hashes a whole source in bounded reads. */
export async function digestSource(source: ByteSource, algorithm: DigestAlgorithm): Promise<string> {
  const hash = createHash(algorithm);
  for (let at = 0; at < source.sizeBytes; at += HASH_READ_BYTES) {
    hash.update(await source.read(at, Math.min(HASH_READ_BYTES, source.sizeBytes - at)));
  }
  return hash.digest("hex");
}

export interface ManifestCheck {
  readonly file: string;
  readonly algorithm: DigestAlgorithm;
  readonly expected: string;
  /** Undefined when the file is not in the package. */
  readonly actual?: string;
  readonly ok: boolean;
}

export interface ManifestReport {
  /** True when every listed file exists and matches, and every package file is listed. */
  readonly ok: boolean;
  readonly checks: readonly ManifestCheck[];
  /** Package files (other than the manifest and certificate) that the manifest does not list. */
  readonly unlisted: readonly string[];
}

/** Checks every manifest line against the package's files, opened through `open`. */
export async function verifyManifest(
  lines: readonly ManifestLine[],
  files: readonly string[],
  open: (file: string) => Promise<ByteSource>,
  isExempt: (file: string) => boolean,
): Promise<ManifestReport> {
  const checks: ManifestCheck[] = [];
  for (const line of lines) {
    if (!files.includes(line.file)) {
      checks.push({ file: line.file, algorithm: line.algorithm, expected: line.digest, ok: false });
      continue;
    }
    const source = await open(line.file);
    try {
      const actual = await digestSource(source, line.algorithm);
      checks.push({ file: line.file, algorithm: line.algorithm, expected: line.digest, actual, ok: actual === line.digest });
    } finally {
      await source.close();
    }
  }
  const unlisted = files.filter((f) => !isExempt(f) && !lines.some((l) => l.file === f));
  return { ok: checks.every((c) => c.ok) && unlisted.length === 0, checks, unlisted };
}
