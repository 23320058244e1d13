// Messages from a dynamic provider to the engine, on a resource: what `pulumi up` shows beside
// it, and what Automation API listeners get as diagnostic events. @pulumi/pulumi gives a
// provider process no log API (pulumi.log needs the program's engine connection), but every
// provider plugin is started with the engine's gRPC address as its first argument and may call
// the engine's Log RPC, which takes a resource URN. Written by hand because no
// package does this; it uses the engine client and messages that @pulumi/pulumi ships.
//
// Best effort: a message that cannot be sent is dropped, never an error of the operation.
import { createRequire } from "node:module";
import { throttledProgress, type ProgressReport } from "../../sdk/transfer/progress.ts";

interface EngineClient {
  log(request: unknown, callback: (err: Error | null) => void): void;
}

let client: EngineClient | null | undefined;

/** Requires from @pulumi/pulumi's own folder: its proto modules and its copy of grpc-js. */
function fromPulumi(): NodeJS.Require {
  return createRequire(createRequire(import.meta.url).resolve("@pulumi/pulumi"));
}

function engine(): EngineClient | null {
  if (client !== undefined) return client;
  const address = process.argv[2];
  try {
    if (address === undefined || !/^[\w.-]+:\d+$/.test(address)) throw new Error("no engine address");
    const pulumiRequire = fromPulumi();
    const grpc = pulumiRequire("@grpc/grpc-js") as { credentials: { createInsecure(): unknown } };
    const { EngineClient: Client } = pulumiRequire("./proto/engine_grpc_pb.js") as { EngineClient: new (address: string, credentials: unknown) => EngineClient };
    client = new Client(address, grpc.credentials.createInsecure());
  } catch {
    client = null;
  }
  return client;
}

/** Sends a message about the resource `urn` to the engine; ephemeral ones show while it runs. */
export function logToEngine(urn: string, message: string, options: { readonly ephemeral?: boolean; readonly severity?: "info" | "warning" } = {}): Promise<void> {
  const target = engine();
  if (target === null) return Promise.resolve();
  const proto = fromPulumi()("./proto/engine_pb.js") as {
    LogRequest: new () => { setSeverity(v: number): void; setMessage(v: string): void; setUrn(v: string): void; setEphemeral(v: boolean): void };
    LogSeverity: { INFO: number; WARNING: number };
  };
  const request = new proto.LogRequest();
  request.setSeverity(options.severity === "warning" ? proto.LogSeverity.WARNING : proto.LogSeverity.INFO);
  request.setMessage(message);
  request.setUrn(urn);
  request.setEphemeral(options.ephemeral === true);
  return new Promise((resolve) => target.log(request, () => resolve()));
}

/**
 * A progress callback for a long copy that reports on the resource `urn` every few seconds
 * (sdk/transfer/progress.ts); undefined when the resource's URN is not known.
 */
export function progressOnResource(urn: string | undefined, label: string): ((progress: ProgressReport) => void) | undefined {
  if (urn === undefined || urn === "") return undefined;
  return throttledProgress(label, (line) => void logToEngine(urn, line, { ephemeral: true }));
}

/** A step worth keeping in the log of `pulumi up` (a fixup, a test boot), on the resource `urn`. */
export function stepsOnResource(urn: string | undefined, label: string): ((line: string) => void) | undefined {
  if (urn === undefined || urn === "") return undefined;
  return (line) => void logToEngine(urn, `${label}: ${line}`);
}
