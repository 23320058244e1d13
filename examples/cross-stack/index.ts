// Cross-stack: a second stack places a copy of the workload another stack runs, taking the disk
// source from that stack's Workload output (`disks`), here onto the local target for a test boot.
import * as pulumi from "@pulumi/pulumi";
import { Workload } from "../../components/workload.ts";

const config = new pulumi.Config();
const source = new pulumi.StackReference(config.require("sourceStack"));
const sourceDisks = source.getOutput("disks") as pulumi.Output<Record<string, string>>;

const copy = new Workload("web-copy", {
  spec: {
    name: "web-copy",
    memoryMiB: 256,
    disks: [{ id: "disk0", sizeBytes: config.requireNumber("diskBytes"), source: { kind: "file", path: "from-stack-reference" }, bus: "sata", bootOrder: 0 }],
    guestOs: { family: "linux" },
  },
  placement: { kind: "local", dir: ".portable/copy", bootMarker: "PORTABLE-BOOT-OK" },
  // The spec names a placeholder; the real source is the other stack's disk location.
  diskSources: { disk0: sourceDisks.apply((d) => d.disk0!) },
});

export const disks = copy.disks;
