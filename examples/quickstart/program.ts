// The quickstart workload: a small Debian guest (BIOS, one SATA disk, one NIC) described once
// and placed wherever `placement` says. `index.ts` runs it as a Pulumi program; `demo.ts` runs it
// through the Automation API and moves it local → vSphere → local.
import { Workload } from "../../components/workload.ts";
import type { PlacementInput } from "../../sdk/spec/placement.ts";

export interface QuickstartOptions {
  /** A bootable raw image (demo.ts builds one from Debian packages). */
  readonly image: { readonly path: string; readonly sizeBytes: number };
  /** A vsphere placement reads the vCenter password from VSPHERE_PASSWORD (or its passwordEnv). */
  readonly placement: PlacementInput;
  readonly stateDir?: string;
}

export function quickstart(options: QuickstartOptions) {
  const web = new Workload("web", {
    spec: {
      name: "web",
      cpu: { sockets: 1, coresPerSocket: 2 },
      memoryMiB: 256,
      firmware: { type: "bios" },
      disks: [{ id: "disk0", sizeBytes: options.image.sizeBytes, source: { kind: "file", path: options.image.path, format: "raw" }, bus: "sata", bootOrder: 0 }],
      nics: [{ network: "VM Network" }],
      guestOs: { family: "linux", distribution: "debian", version: "12" },
      tags: { app: "quickstart" },
    },
    placement: options.placement,
    migration: { mode: "warm", source: "keep", verify: "full" },
    ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
  });
  return { machineId: web.machineId, disks: web.disks };
}
