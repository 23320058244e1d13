// One workload move (sdk/migrate/machine-placement.ts moveMachine) in its own process, as the
// portable:Machine provider runs it, so the cutover chaos can SIGKILL it at a chosen point: at
// the end of a cutover step ("stop-source", "commit", …) or "final-pass:during", at the first
// progress of the final pass. Argument: the move as JSON. Prints the result as JSON on success.
import { moveMachine, vsphereConnectionFor, type PlacedDiskRecord } from "../../sdk/migrate/machine-placement.ts";
import { placementSchema } from "../../sdk/spec/placement.ts";
import { parseWorkload } from "../../sdk/spec/workload.ts";

export interface MoveChildArgs {
  readonly spec: unknown;
  readonly from: { readonly placement: unknown; readonly machineId: string; readonly disks: readonly PlacedDiskRecord[] };
  readonly to: { readonly placement: unknown; readonly targets: Readonly<Record<string, string>> };
  readonly stateDir: string;
  readonly killAt?: string;
}

const args = JSON.parse(process.argv[2]!) as MoveChildArgs;
const workload = parseWorkload(args.spec);
const toPlacement = placementSchema.parse(args.to.placement);
// As the Machine provider does: the vCenter password comes from the environment.
const vsphere = vsphereConnectionFor(toPlacement);
const die = (where: string): void => {
  process.stderr.write(`move-child: killed at ${where}\n`);
  process.kill(process.pid, "SIGKILL");
};
const result = await moveMachine({
  from: { workload, placement: placementSchema.parse(args.from.placement), disks: args.from.disks, stateDir: args.stateDir, machineId: args.from.machineId },
  to: { workload, placement: toPlacement, disks: Object.entries(args.to.targets).map(([id, target]) => ({ id, target, location: "" })), stateDir: args.stateDir, ...(vsphere ? { vsphere } : {}) },
  stateDir: args.stateDir,
  verify: "full",
  mode: "warm",
  maxPasses: 2,
  deleteSource: false,
  gracefulTimeoutMs: 1_000,
  onCutoverStep: (line) => {
    if (args.killAt !== undefined && line.startsWith(`${args.killAt}:`)) die(args.killAt);
  },
  onDiskProgress: (_disk, phase) => (phase === "final pass" && args.killAt === "final-pass:during" ? () => die("final-pass:during") : undefined),
});
process.stdout.write(`${JSON.stringify({ record: result.record, state: result.state, disks: result.disks })}\n`);
