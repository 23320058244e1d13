// Where the sdk lives at run time, for dynamic providers. A provider's methods are serialized
// into the engine's provider process, so they capture only plain data (this path) and
// `require` the sdk inside each method (see DESIGN.md "Provider hygiene"). In this repo the sdk
// runs as TypeScript (Node 24 strips types); an installed package runs dist/ JavaScript.
import { dirname, join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js";

/** Absolute path of an sdk module, e.g. sdkModule("migrate/disk-placement"). */
export function sdkModule(name: string): string {
  return join(here, "..", "sdk", `${name}${extension}`);
}

/** Absolute path of a provider-side helper in components/providers, e.g. providerModule("engine-log"). */
export function providerModule(name: string): string {
  return join(here, "providers", `${name}${extension}`);
}

/**
 * The URN a resource will have, as an input it can be given (for the provider's progress
 * messages). Built from the parent's URN without depending on the parent: an input that depends
 * on a component waits for all of the component's children, this resource among them.
 */
export function urnFor(name: string, type: string, parent: pulumi.Resource | undefined): pulumi.Output<string> {
  if (parent === undefined) return pulumi.createUrn(name, type);
  const parentUrn = new Promise<string>((resolve) => void parent.urn.apply(resolve));
  return pulumi.createUrn(name, type, pulumi.output(parentUrn));
}

/** A resource's URN as an input that does not wait for the resource's children (see urnFor). */
export function urnOf(resource: pulumi.Resource): pulumi.Output<string> {
  return pulumi.output(new Promise<string>((resolve) => void resource.urn.apply(resolve)));
}
