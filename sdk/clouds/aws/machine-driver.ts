// The AWS platform's machines (machine-driver.ts): the workload's EC2 instance, so that a move
// away from AWS stops it and reads its volumes (live-volume.ts) instead of our last upload.
//
// The instance is the official `aws.ec2.Instance` (components/placements/aws.ts), which Pulumi
// creates after our cutover and deletes with the stack; this driver never creates or deletes
// one. It finds it by the tag the placement puts on it (`portable:workload` = the workload's
// name, in a live state; two such instances are AWS_INSTANCE_AMBIGUOUS), stops it (a normal
// StopInstances is the guest's ACPI shutdown; after `gracefulTimeoutMs` a forced one), starts it
// again (a rollback) and reports whether it runs. An empty machineId means "the workload's
// instance, by tag": the cutover's source machine id for AWS is "" (create could not know it).
//
// Each call makes its own clients from the placement (region, endpoint) and destroys them after.
import { StartInstancesCommand, StopInstancesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { CloudError, PortableError } from "../../errors.ts";
import type { Placement } from "../../spec/placement.ts";
import type { MachineDriver, MachineRequest } from "../../contracts/machine-driver.ts";
import { callAws } from "./call.ts";
import { createAwsClients } from "./clients.ts";
import { describeInstance, findWorkloadInstance, INSTANCE_POLL_INTERVAL_MS, waitForInstanceState, type AwsInstance } from "./instances.ts";

type AwsPlacement = Extract<Placement, { kind: "aws" }>;

/**
 * How long a forced stop may take. AWS documents instances stuck in `stopping` for several
 * minutes before a force takes; ten minutes lets it finish and still fails a cutover that
 * cannot stop its source within the quarter hour (the source is then left as it is).
 */
export const AWS_FORCE_STOP_TIMEOUT_MS = 10 * 60_000;
/** How long a start may take to reach `running` (capacity or a slow EBS attach in rare cases). */
export const AWS_START_TIMEOUT_MS = 10 * 60_000;

export interface AwsMachineDriverOptions {
  /** @default INSTANCE_POLL_INTERVAL_MS (5 s) */
  readonly pollIntervalMs?: number;
  /** @default AWS_FORCE_STOP_TIMEOUT_MS */
  readonly forceStopTimeoutMs?: number;
  /** @default AWS_START_TIMEOUT_MS */
  readonly startTimeoutMs?: number;
}

function awsPlacement(request: MachineRequest): AwsPlacement {
  if (request.placement.kind !== "aws") throw new PortableError("MACHINE_DRIVER_MISMATCH", `the AWS machine driver was given a ${request.placement.kind} placement`);
  return request.placement;
}

async function withEc2<T>(request: MachineRequest, fn: (ec2: EC2Client) => Promise<T>): Promise<T> {
  const placement = awsPlacement(request);
  const clients = createAwsClients({ region: placement.region, ...(placement.endpoint === undefined ? {} : { endpoint: placement.endpoint }) });
  try {
    return await fn(clients.ec2);
  } finally {
    clients.destroy();
  }
}

/** The instance `machineId` names, or the workload's by tag when it is ""; undefined when none lives. */
async function resolveInstance(ec2: EC2Client, request: MachineRequest, machineId: string): Promise<AwsInstance | undefined> {
  if (machineId === "") return findWorkloadInstance(ec2, request.workload.name);
  const instance = await describeInstance(ec2, machineId);
  return instance === undefined || instance.state === "terminated" ? undefined : instance;
}

const isUp = (instance: AwsInstance | undefined) => instance !== undefined && (instance.state === "pending" || instance.state === "running");

/** A driver with its own timing (tests poll in milliseconds); `awsMachineDriver` is the default. */
export function createAwsMachineDriver(options: AwsMachineDriverOptions = {}): MachineDriver {
  const pollIntervalMs = options.pollIntervalMs ?? INSTANCE_POLL_INTERVAL_MS;
  const forceStopTimeoutMs = options.forceStopTimeoutMs ?? AWS_FORCE_STOP_TIMEOUT_MS;
  const startTimeoutMs = options.startTimeoutMs ?? AWS_START_TIMEOUT_MS;

  async function sendStop(ec2: EC2Client, instanceId: string, force: boolean): Promise<void> {
    await callAws({ operation: "StopInstances", code: "EC2_STOP_INSTANCES_FAILED", context: { instanceId, force } }, () =>
      ec2.send(new StopInstancesCommand({ InstanceIds: [instanceId], ...(force ? { Force: true } : {}) })),
    );
  }

  return {
    // The instance is the official resource, created by Pulumi after the cutover: report the one
    // that exists (a kept one, or after `up`), else nothing yet. Never creates an instance.
    async create(request) {
      return withEc2(request, async (ec2) => {
        const instance = await findWorkloadInstance(ec2, request.workload.name);
        return { kind: "aws" as const, machineId: instance?.instanceId ?? "", running: isUp(instance) };
      });
    },

    async stop(request, machineId, gracefulTimeoutMs) {
      return withEc2(request, async (ec2) => {
        let instance = await resolveInstance(ec2, request, machineId);
        if (instance === undefined || instance.state === "stopped" || instance.state === "shutting-down") return { graceful: true };
        const id = instance.instanceId;
        // EC2 refuses to stop an instance that is still `pending` (IncorrectInstanceState).
        if (instance.state === "pending") {
          instance = await waitForInstanceState(ec2, id, ["running", "stopped"], { timeoutMs: startTimeoutMs, pollIntervalMs });
          if (instance === undefined) throw new CloudError("AWS_START_TIMEOUT", `instance ${id}: still pending after ${startTimeoutMs} ms; cannot stop it`, { context: { instanceId: id, timeoutMs: startTimeoutMs } });
          if (instance.state === "stopped") return { graceful: true };
        }
        if (gracefulTimeoutMs > 0) {
          // A normal stop: EC2 sends the guest an ACPI shutdown. One already `stopping` is on its way.
          if (instance.state === "running") await sendStop(ec2, id, false);
          if ((await waitForInstanceState(ec2, id, ["stopped"], { timeoutMs: gracefulTimeoutMs, pollIntervalMs })) !== undefined) return { graceful: true };
        }
        await sendStop(ec2, id, true);
        if ((await waitForInstanceState(ec2, id, ["stopped"], { timeoutMs: forceStopTimeoutMs, pollIntervalMs })) === undefined) {
          throw new CloudError("AWS_STOP_TIMEOUT", `instance ${id}: not stopped ${forceStopTimeoutMs} ms after a forced StopInstances`, { context: { instanceId: id, timeoutMs: forceStopTimeoutMs } });
        }
        return { graceful: false };
      });
    },

    async isRunning(request, machineId) {
      return withEc2(request, async (ec2) => isUp(await resolveInstance(ec2, request, machineId)));
    },

    async start(request, machineId) {
      await withEc2(request, async (ec2) => {
        const instance = await resolveInstance(ec2, request, machineId);
        if (instance === undefined) {
          throw new CloudError("AWS_INSTANCE_NOT_FOUND", `workload ${request.workload.name}: no EC2 instance ${machineId === "" ? "tagged portable:workload=" + request.workload.name : machineId} to start`, {
            context: { workload: request.workload.name, instanceId: machineId },
          });
        }
        const id = instance.instanceId;
        if (instance.state === "running") return;
        // StartInstances refuses an instance that is still `stopping`: let it stop first.
        if (instance.state === "stopping" && (await waitForInstanceState(ec2, id, ["stopped"], { timeoutMs: forceStopTimeoutMs, pollIntervalMs })) === undefined) {
          throw new CloudError("AWS_STOP_TIMEOUT", `instance ${id}: still stopping after ${forceStopTimeoutMs} ms; cannot start it`, { context: { instanceId: id, timeoutMs: forceStopTimeoutMs } });
        }
        if (instance.state !== "pending") {
          await callAws({ operation: "StartInstances", code: "EC2_START_INSTANCES_FAILED", context: { instanceId: id } }, () => ec2.send(new StartInstancesCommand({ InstanceIds: [id] })));
        }
        if ((await waitForInstanceState(ec2, id, ["running"], { timeoutMs: startTimeoutMs, pollIntervalMs })) === undefined) {
          throw new CloudError("AWS_START_TIMEOUT", `instance ${id}: not running ${startTimeoutMs} ms after StartInstances`, { context: { instanceId: id, timeoutMs: startTimeoutMs } });
        }
      });
    },

    // Nothing to do: the instance is the official aws.ec2.Instance, and Pulumi deletes it (with
    // its AMI) when the placement leaves AWS. Terminating it here would race the engine.
    async destroy(request) {
      awsPlacement(request);
    },

    wantsRunning: (placement) => placement.kind === "aws" && placement.launch,
    createdAfterCutover: true,
  };
}

export const awsMachineDriver: MachineDriver = createAwsMachineDriver();
