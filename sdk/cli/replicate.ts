// `portable replicate` and `portable plan`: faces over sdk/transfer/replicate.ts and
// sdk/migrate/plan.ts. The replica's state (manifest, journal) lives in --state (a directory).
import { parseArgs } from "node:util";
import { InvalidArgsError } from "../errors.ts";
import { describePlan, planMigration } from "../migrate/plan.ts";
import { FileReplicaStore } from "../transfer/checkpoint.ts";
import { replicaStoreFor } from "../migrate/disk-placement.ts";
import { openReplicaTarget } from "../clouds/registry.ts";
import { replicate } from "../transfer/replicate.ts";
import { verifyReplica } from "../transfer/verify.ts";
import { formatBytes, progressReporter, usageError, withDisk } from "./common.ts";


const DEFAULT_STATE = ".portable/replicas";

function keyFor(target: string, given: string | undefined): string {
  if (given !== undefined) return given;
  const base = target.replace(/\?.*$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "").slice(-100);
  if (base === "") throw new InvalidArgsError("USAGE", "give --key: no key can be made from the target");
  return base;
}

export async function replicateCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { state: { type: "string" }, key: { type: "string" }, verify: { type: "string" }, json: { type: "boolean" }, f: { type: "string" } },
  });
  const [input, output] = positionals;
  if (input === undefined || output === undefined || positionals.length > 2) usageError("replicate takes <source> <target>");
  const verify = values.verify ?? "sampled";
  if (!["full", "sampled", "none"].includes(verify)) usageError(`--verify is full, sampled or none, not "${verify}"`);
  // Beside the target when its platform keeps state there (ebs://?…&state-bucket=B, azblob://…, a local datastore disk).
  const store = await replicaStoreFor(output, values.state ?? DEFAULT_STATE);
  const key = keyFor(output, values.key);
  return withDisk(input, values.f, async (source) => {
    const { target, close } = await openReplicaTarget(output, source.virtualSizeBytes);
    const progress = progressReporter(`replicate ${source.format} → ${target.name}`);
    try {
      const result = await replicate(source, target, {
        store,
        key,
        onProgress: (p) => progress.update({ doneBytes: p.scannedBytes, totalBytes: p.virtualSizeBytes, dataBytesWritten: p.bytesSent }),
      });
      progress.stop();
      let verified: Awaited<ReturnType<typeof verifyReplica>> | undefined;
      if (verify !== "none") {
        const committed = await store.loadCommitted(key);
        const back = await target.openReadBack(committed!);
        try {
          verified = await verifyReplica(back, result.manifest, verify === "full" ? { mode: "full" } : { mode: "sampled", blocks: 64 });
        } finally {
          await back.close();
        }
      }
      const summary = {
        key,
        location: result.location,
        pass: result.passes,
        resumed: result.resumed,
        blocksSent: result.blocksSent,
        blocksCleared: result.blocksCleared,
        bytesSent: result.bytesSent,
        blocksResumed: result.blocksResumed,
        seconds: Number(result.seconds.toFixed(2)),
        digest: result.digest,
        state: result.reference,
        ...(verified === undefined ? {} : { verify: { mode: verified.mode, blocksChecked: verified.blocksChecked, ok: verified.ok, mismatches: verified.mismatches } }),
      };
      if (values.json === true) console.log(JSON.stringify(summary));
      else {
        process.stderr.write(
          `pass ${result.passes}${result.resumed ? ` (resumed, ${result.blocksResumed} blocks already done)` : ""}: ${result.blocksSent} blocks sent ` +
            `(${formatBytes(result.bytesSent)}, ${result.blocksCleared} cleared) in ${result.seconds.toFixed(1)} s` +
            `${verified === undefined ? "" : `; verify (${verified.mode}, ${verified.blocksChecked} blocks): ${verified.ok ? "ok" : `FAILED at blocks ${verified.mismatches.join(", ")}`}`}\n`,
        );
        console.log(result.location);
      }
      return verified === undefined || verified.ok ? 0 : 1;
    } catch (error) {
      progress.stop();
      throw error;
    } finally {
      close();
    }
  });
}

export async function planCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { state: { type: "string" }, key: { type: "string" }, mode: { type: "string" }, json: { type: "boolean" }, f: { type: "string" } },
  });
  const [input] = positionals;
  if (input === undefined || positionals.length > 1) usageError("plan takes one source");
  const mode = values.mode ?? "warm";
  if (mode !== "warm" && mode !== "cold") usageError(`--mode is warm or cold, not "${mode}"`);
  const store = new FileReplicaStore(values.state ?? DEFAULT_STATE);
  const committed = values.key === undefined ? undefined : await store.loadCommitted(values.key);
  const plan = await withDisk(input, values.f, (source) =>
    planMigration([{ key: values.key ?? input, source, ...(committed === undefined ? {} : { committed }) }], { mode }),
  );
  console.log(values.json === true ? JSON.stringify(plan) : describePlan(plan));
  return 0;
}
