// The quickstart as a Pulumi program (the root Pulumi.yaml points here). Configuration:
//   portable:image       path of a bootable raw image      (npm run demo builds one)
//   portable:placement   JSON placement; default {"kind":"local","dir":".portable/local"}
// A vsphere placement reads the vCenter password from the environment (VSPHERE_PASSWORD, or the
// variable its passwordEnv names), in this program and in the engine's provider processes alike.
import { statSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import type { PlacementInput } from "../../sdk/spec/placement.ts";
import { quickstart } from "./program.ts";

const config = new pulumi.Config("portable");
const image = config.require("image");
const placement = config.getObject<Record<string, unknown>>("placement") ?? { kind: "local", dir: ".portable/local", bootMarker: "PORTABLE-BOOT-OK" };

export const { machineId, disks } = quickstart({
  image: { path: image, sizeBytes: statSync(image).size },
  placement: placement as PlacementInput,
});
