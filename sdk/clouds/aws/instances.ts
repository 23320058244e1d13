// EC2 instances as the AWS machine driver and the live-volume reader see them: a workload's
// instance found by its `portable:workload` tag (components/placements/aws.ts tags the official
// aws.ec2.Instance so), or by id; its state and the EBS volumes attached at each device name;
// and a bounded wait for a state. DescribeInstances only, through our retries (call.ts).
import { DescribeInstancesCommand, type EC2Client, type Filter, type Instance } from "@aws-sdk/client-ec2";
import { CloudError } from "../../errors.ts";
import { callAws } from "./call.ts";

/** The tag the aws placement puts on the workload's instance (and AMI): its workload name. */
export const WORKLOAD_TAG = "portable:workload";

/** States of an instance that still exists and can run again; terminated ones are gone. */
export const LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"] as const;
export type InstanceStateName = "pending" | "running" | "shutting-down" | "terminated" | "stopping" | "stopped";

export interface AttachedVolume {
  /** As the instance's block device mapping names it, e.g. /dev/xvda, /dev/sdf. */
  readonly deviceName: string;
  readonly volumeId: string;
}

export interface AwsInstance {
  readonly instanceId: string;
  readonly state: InstanceStateName;
  readonly volumes: readonly AttachedVolume[];
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * DescribeInstances poll interval while waiting for a state. EC2's own waiters poll every 15 s;
 * a stop or start takes tens of seconds, so 5 s costs at most a few seconds of downtime.
 */
export const INSTANCE_POLL_INTERVAL_MS = 5_000;

function toInstance(raw: Instance): AwsInstance {
  return {
    instanceId: raw.InstanceId ?? "",
    state: (raw.State?.Name ?? "pending") as InstanceStateName,
    volumes: (raw.BlockDeviceMappings ?? []).flatMap((m) => (m.DeviceName !== undefined && m.Ebs?.VolumeId !== undefined ? [{ deviceName: m.DeviceName, volumeId: m.Ebs.VolumeId }] : [])),
    tags: Object.fromEntries((raw.Tags ?? []).flatMap((t) => (t.Key === undefined ? [] : [[t.Key, t.Value ?? ""]]))),
  };
}

async function describe(ec2: EC2Client, filters: Filter[], context: Record<string, string>): Promise<AwsInstance[]> {
  const found: AwsInstance[] = [];
  let token: string | undefined;
  do {
    const page = await callAws({ operation: "DescribeInstances", code: "EC2_DESCRIBE_INSTANCES_FAILED", context }, () =>
      ec2.send(new DescribeInstancesCommand({ Filters: filters, ...(token === undefined ? {} : { NextToken: token }) })),
    );
    for (const reservation of page.Reservations ?? []) for (const raw of reservation.Instances ?? []) found.push(toInstance(raw));
    token = page.NextToken === "" ? undefined : page.NextToken;
  } while (token !== undefined);
  return found;
}

/**
 * The instance with this id, or undefined when EC2 has none (a filter, not InstanceIds, so an
 * unknown id is an empty answer rather than InvalidInstanceID.NotFound). Terminated instances
 * are returned as such; callers decide what "gone" means to them.
 */
export async function describeInstance(ec2: EC2Client, instanceId: string): Promise<AwsInstance | undefined> {
  const found = await describe(ec2, [{ Name: "instance-id", Values: [instanceId] }], { instanceId });
  return found[0];
}

/**
 * The workload's instance: tagged `portable:workload=<workload>` and not terminated. More than
 * one is AWS_INSTANCE_AMBIGUOUS: stopping or reading the wrong one would lose the guest's writes.
 */
export async function findWorkloadInstance(ec2: EC2Client, workload: string): Promise<AwsInstance | undefined> {
  const found = await describe(
    ec2,
    [
      { Name: `tag:${WORKLOAD_TAG}`, Values: [workload] },
      { Name: "instance-state-name", Values: [...LIVE_INSTANCE_STATES] },
    ],
    { workload },
  );
  if (found.length > 1) {
    throw new CloudError("AWS_INSTANCE_AMBIGUOUS", `workload ${workload}: ${found.length} EC2 instances carry the tag ${WORKLOAD_TAG}=${workload} (${found.map((i) => `${i.instanceId} ${i.state}`).join(", ")}); keep one, or terminate the others`, {
      context: { workload, instances: found.map((i) => i.instanceId).join(",") },
    });
  }
  return found[0];
}

export interface WaitForStateOptions {
  readonly timeoutMs: number;
  /** @default INSTANCE_POLL_INTERVAL_MS */
  readonly pollIntervalMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Polls until the instance is in one of `wanted` and returns it, or returns undefined when
 * `timeoutMs` passes first (the caller chooses the error or the next step). An instance that
 * terminates or vanishes meanwhile is AWS_INSTANCE_TERMINATED: its volumes may be gone with it.
 */
export async function waitForInstanceState(ec2: EC2Client, instanceId: string, wanted: readonly InstanceStateName[], options: WaitForStateOptions): Promise<AwsInstance | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const instance = await describeInstance(ec2, instanceId);
    if (instance !== undefined && wanted.includes(instance.state)) return instance;
    if (instance === undefined || instance.state === "terminated" || instance.state === "shutting-down") {
      throw new CloudError("AWS_INSTANCE_TERMINATED", `instance ${instanceId}: ${instance === undefined ? "no longer exists" : `is ${instance.state}`} while waiting for ${wanted.join(" or ")}`, {
        context: { instanceId, state: instance?.state },
      });
    }
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, Math.min(options.pollIntervalMs ?? INSTANCE_POLL_INTERVAL_MS, Math.max(0, deadline - Date.now()))));
    options.signal?.throwIfAborted();
  }
}
