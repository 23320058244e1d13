// One pass over an OVA that arrives as a stream (a pipe, an HTTP download): the descriptor is
// parsed as it passes, every entry is hashed on the fly, and the manifest, which comes last, is
// checked at the end. Nothing is stored but the descriptor and manifest text (both size-limited)
// and one running digest per algorithm per entry, so memory does not grow with the disks.
//
// tar-stream parses the archive; entry names and types get the same checks as the random-access
// index (tar-index.ts). Disks are not opened here: a DiskSource needs random access, which
// openOva() gives for an OVA on disk.
import { createHash, type Hash } from "node:crypto";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { FormatError } from "../errors.ts";
import { MANIFEST_MAX_BYTES, parseManifest, type DigestAlgorithm, type ManifestCheck, type ManifestLine, type ManifestReport } from "./manifest.ts";
import { readOvf, type OvfDescriptor, type OvfProblem } from "./ovf-reader.ts";
import { checkEntryName, OVA_MAX_ENTRIES } from "./tar-index.ts";
import { OVF_MAX_DESCRIPTOR_BYTES } from "./xml.ts";

export interface OvaScan {
  readonly descriptorName: string;
  readonly descriptor: OvfDescriptor;
  readonly entries: readonly { readonly name: string; readonly sizeBytes: number }[];
  readonly manifest?: ManifestReport;
  readonly problems: readonly OvfProblem[];
}

/** The manifest may name any of these; each entry is hashed with all three as it streams by. */
const ALGORITHMS: readonly DigestAlgorithm[] = ["sha1", "sha256", "sha512"];

const LINK_TYPES = new Set(["link", "symlink"]);
const ALLOWED_TYPES = new Set(["file", "contiguous-file", "directory"]);

export async function scanOvaStream(input: Readable, name = "stdin"): Promise<OvaScan> {
  const extract = tar.extract();
  const entries: { name: string; sizeBytes: number }[] = [];
  const digests = new Map<string, Record<DigestAlgorithm, string>>();
  const problems: OvfProblem[] = [];
  let descriptorName: string | undefined;
  let descriptorText: Buffer | undefined;
  const smallTexts = new Map<string, Buffer>();
  const seen = new Set<string>();
  input.pipe(extract);
  input.once("error", (err) => extract.destroy(err));
  for await (const entry of extract) {
    const header = entry.header;
    const entryName = header.name;
    const type = header.type ?? "file";
    if (LINK_TYPES.has(type)) {
      throw new FormatError("OVA_ENTRY_LINK", `ova: ${name} holds a ${type} "${entryName}" → "${header.linkname ?? ""}"; OVA entries must be plain files`, { context: { entry: entryName } });
    }
    if (!ALLOWED_TYPES.has(type)) throw new FormatError("OVA_ENTRY_TYPE", `ova: ${name} holds a ${type} "${entryName}"; OVA entries must be plain files`, { context: { entry: entryName } });
    checkEntryName(entryName, name);
    if (type === "directory") {
      entry.resume();
      continue;
    }
    if (seen.has(entryName)) throw new FormatError("OVA_ENTRY_DUPLICATE", `ova: ${name} holds "${entryName}" twice`, { context: { entry: entryName } });
    seen.add(entryName);
    if (entries.length >= OVA_MAX_ENTRIES) throw new FormatError("OVA_TOO_MANY_ENTRIES", `ova: ${name} has more than ${OVA_MAX_ENTRIES} entries`, { context: { limit: OVA_MAX_ENTRIES } });
    const isDescriptor = descriptorName === undefined && /\.ovf$/i.test(entryName);
    const isManifest = /\.mf$/i.test(entryName);
    if (isDescriptor && entries.length > 0) {
      problems.push({ code: "OVA_DESCRIPTOR_NOT_FIRST", path: entryName, message: `the descriptor is entry ${entries.length}; DSP0243 §5.3 requires it first` });
    }
    const limit = isDescriptor ? OVF_MAX_DESCRIPTOR_BYTES : isManifest ? MANIFEST_MAX_BYTES : 0;
    const hashes = Object.fromEntries(ALGORITHMS.map((a) => [a, createHash(a)])) as Record<DigestAlgorithm, Hash>;
    const kept: Buffer[] = [];
    let sizeBytes = 0;
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      sizeBytes += chunk.length;
      for (const algorithm of ALGORITHMS) hashes[algorithm].update(chunk);
      if (limit > 0) {
        if (sizeBytes > limit) {
          throw new FormatError(isDescriptor ? "OVF_DESCRIPTOR_TOO_LARGE" : "MANIFEST_TOO_LARGE", `ova: ${entryName} in ${name} is over the ${limit}-byte limit`, { context: { entry: entryName, limitBytes: limit } });
        }
        kept.push(chunk);
      }
    }
    entries.push({ name: entryName, sizeBytes });
    digests.set(entryName, Object.fromEntries(ALGORITHMS.map((a) => [a, hashes[a].digest("hex")])) as Record<DigestAlgorithm, string>);
    if (isDescriptor) {
      descriptorName = entryName;
      descriptorText = Buffer.concat(kept);
    } else if (isManifest) smallTexts.set(entryName, Buffer.concat(kept));
  }
  if (descriptorName === undefined || descriptorText === undefined) {
    throw new FormatError("OVA_NO_DESCRIPTOR", `ova: ${name} holds no .ovf descriptor`, { context: { entries: entries.length } });
  }
  const descriptor = readOvf(descriptorText, { name: `${name}!${descriptorName}`, sourceFor: (file) => ({ kind: "ova", path: name, entry: file.href }) });
  for (const file of descriptor.files) {
    const entry = entries.find((e) => e.name === file.href);
    if (entry === undefined) {
      if (file.chunkSizeBytes === undefined) problems.push({ code: "OVF_FILE_MISSING", path: `References.File[${file.id}]`, message: `"${file.href}" is not in the archive` });
    } else if (file.sizeBytes !== undefined && file.sizeBytes !== entry.sizeBytes) {
      problems.push({ code: "OVA_FILE_SIZE_MISMATCH", path: `References.File[${file.id}].size`, message: `"${file.href}" is ${entry.sizeBytes} bytes in the archive but the descriptor says ${file.sizeBytes}` });
    }
  }
  const manifestName = `${descriptorName.replace(/\.ovf$/i, "")}.mf`;
  const manifestText = smallTexts.get(manifestName);
  let manifest: ManifestReport | undefined;
  if (manifestText !== undefined) {
    const lines: ManifestLine[] = parseManifest(manifestText.toString("utf8"), `${name}!${manifestName}`);
    const checks: ManifestCheck[] = lines.map((line) => {
      const actual = digests.get(line.file)?.[line.algorithm];
      return { file: line.file, algorithm: line.algorithm, expected: line.digest, ...(actual === undefined ? {} : { actual }), ok: actual === line.digest };
    });
    const unlisted = entries.map((e) => e.name).filter((f) => !/\.(mf|cert)$/i.test(f) && !lines.some((l) => l.file === f));
    manifest = { ok: checks.every((c) => c.ok) && unlisted.length === 0, checks, unlisted };
  }
  return { descriptorName, descriptor, entries, ...(manifest === undefined ? {} : { manifest }), problems: [...descriptor.problems, ...problems] };
}
