// Looks for known credentials in text and files: each secret in plain text, URL-encoded,
// JSON-escaped, and base64 / base64url at each of the three byte alignments (so a secret inside
// a longer base64 blob, e.g. a Basic auth header or an encoded state file, is found too).
// Findings are grouped by "place" (state files, logs, CLI output, ...) for the report.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";

export interface Secret {
  /** e.g. "vcsim password"; never the value. */
  readonly name: string;
  readonly value: string;
}

export interface Finding {
  readonly place: string;
  readonly item: string;
  readonly secret: string;
  readonly form: string;
}

export interface PlaceCounts {
  /** Texts and files scanned. */
  items: number;
  bytes: number;
  found: number;
}

/** Files larger than this are disk images, not state or logs; they are skipped (and counted). */
const MAX_SCAN_FILE_BYTES = 64 * 1024 * 1024;
/** A base64 core shorter than this would match by chance. */
const MIN_FORM_CHARS = 8;

function base64Cores(value: Buffer, alphabet: "base64" | "base64url"): string[] {
  const cores: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset), value]).toString(alphabet);
    // Quartets that mix padding bytes or the unknown bytes after the secret are dropped.
    const start = offset === 0 ? 0 : 4;
    const end = Math.floor((offset + value.length) / 3) * 4;
    const core = encoded.slice(start, end);
    if (core.length >= MIN_FORM_CHARS) cores.push(core);
  }
  return cores;
}

/** Every form a secret is looked for in, as [form, text]. */
export function secretForms(value: string): Array<[string, string]> {
  const forms = new Map<string, string>();
  const add = (form: string, text: string) => {
    if (text.length >= Math.min(MIN_FORM_CHARS, value.length) && ![...forms.values()].includes(text)) forms.set(form, text);
  };
  add("plain", value);
  add("url-encoded", encodeURIComponent(value));
  add("json", JSON.stringify(value).slice(1, -1));
  const bytes = Buffer.from(value, "utf8");
  base64Cores(bytes, "base64").forEach((core, i) => add(`base64@${i}`, core));
  base64Cores(bytes, "base64url").forEach((core, i) => add(`base64url@${i}`, core));
  return [...forms];
}

export class SecretScanner {
  readonly #secrets: ReadonlyArray<{ name: string; forms: Array<[string, Buffer]> }>;
  readonly places = new Map<string, PlaceCounts>();
  readonly findings: Finding[] = [];
  /** Files skipped as too large to be state or logs. */
  readonly skipped: string[] = [];

  constructor(secrets: readonly Secret[]) {
    this.#secrets = secrets.map((s) => ({ name: s.name, forms: secretForms(s.value).map(([form, text]) => [form, Buffer.from(text)] as [string, Buffer]) }));
  }

  #counts(place: string): PlaceCounts {
    let counts = this.places.get(place);
    if (counts === undefined) this.places.set(place, (counts = { items: 0, bytes: 0, found: 0 }));
    return counts;
  }

  scanBuffer(place: string, item: string, data: Buffer): number {
    const counts = this.#counts(place);
    counts.items++;
    counts.bytes += data.length;
    let found = 0;
    for (const secret of this.#secrets) {
      for (const [form, needle] of secret.forms) {
        if (data.indexOf(needle) >= 0) {
          this.findings.push({ place, item, secret: secret.name, form });
          found++;
          break; // one finding per secret per item
        }
      }
    }
    counts.found += found;
    return found;
  }

  scanText(place: string, item: string, text: string): number {
    return this.scanBuffer(place, item, Buffer.from(text, "utf8"));
  }

  async scanFile(place: string, path: string): Promise<number> {
    const info = await stat(path);
    if (info.size > MAX_SCAN_FILE_BYTES) {
      this.skipped.push(path);
      return 0;
    }
    return this.scanBuffer(place, path, await readFile(path));
  }

  /** Every regular file under `dir`, recursively (those `include` accepts). */
  async scanDir(place: string, dir: string, include: (path: string) => boolean = () => true): Promise<number> {
    this.#counts(place);
    let found = 0;
    const entries = await readdir(dir, { withFileTypes: true, recursive: true });
    for (const entry of entries) {
      const path = join(entry.parentPath, entry.name);
      if (entry.isFile() && include(path)) found += await this.scanFile(place, path);
    }
    return found;
  }
}
