// Where the sdk lives at run time, for dynamic providers. A provider's methods are serialized
// into the engine's provider process, so they capture only plain data (this path) and
// `require` the sdk inside each method (see DESIGN.md "Provider hygiene"). In this repo the sdk
// runs as TypeScript (Node 24 strips types); an installed package runs dist/ JavaScript.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

/** Absolute path of an sdk module, e.g. sdkModule("migrate/disk-placement"). */
export function sdkModule(name: string): string {
  return join(here, "..", "sdk", `${name}${extension}`);
}
