// One disk placement (sdk/migrate/disk-placement.ts placeDisk) in its own process, so the chaos
// runner can SIGKILL it at any point. Arguments come as one JSON argv; the vCenter password
// comes from PW_CHAOS_VSPHERE_PASSWORD, cloud credentials from the usual environment.
// Prints `progress <scannedBytes>` lines, then `ok <json>` and exits 0, or `error <CODE> <message>` and exits 2 (UNCODED when the
// error is not a PortableError: the runner counts that as an unclean failure).
import { placeDisk } from "../../sdk/migrate/disk-placement.ts";
import { isPortableError } from "../../sdk/errors.ts";

interface ChildArgs {
  readonly workload: string;
  readonly disk: string;
  readonly source: string;
  readonly target: string;
  readonly stateDir: string;
  readonly vsphere?: { readonly url: string; readonly username: string; readonly caPem: string };
}

const args = JSON.parse(process.argv[2] ?? "{}") as ChildArgs;
const password = process.env.PW_CHAOS_VSPHERE_PASSWORD ?? "";
try {
  const placed = await placeDisk({
    workload: args.workload,
    disk: args.disk,
    source: args.source,
    sourceFormat: "raw",
    target: args.target,
    stateDir: args.stateDir,
    // Verified here too, under faults (reads through the proxy); the runner then reads every
    // byte back again, without faults.
    verify: { mode: "full" },
    // The runner kills at a seeded fraction of the disk, so it needs to see how far we are.
    onProgress: (p) => process.stdout.write(`progress ${p.scannedBytes}\n`),
    ...(args.vsphere === undefined ? {} : { vsphere: { ...args.vsphere, password } }),
  });
  process.stdout.write(`ok ${JSON.stringify({ location: placed.location, resumed: placed.resumed, blocksSent: placed.blocksSent })}\n`);
  process.exit(0);
} catch (error) {
  const code = isPortableError(error) ? error.code : "UNCODED";
  const message = error instanceof Error ? error.message : String(error);
  process.stdout.write(`error ${code} ${message.replace(/\s+/g, " ").slice(0, 400)}\n`);
  process.exit(2);
}
