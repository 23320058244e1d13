// PropertyCollector: reading properties (RetrievePropertiesEx with its continuation token) and
// following changes (WaitForUpdatesEx), which is how task completion and lease readiness are
// observed without polling. Each wait gets its own collector, as govmomi's property.Wait does,
// so concurrent waits never consume each other's updates; if the collector goes away (the
// session was renewed underneath it) the wait falls back to polling.
import { CloudError, isPortableError } from "../../errors.ts";
import type { VsphereClient } from "./client.ts";
import { faultFromTask } from "./faults.ts";
import { expect, xs, type MoRef, type SoapInput, type XValue } from "./xml.ts";

/** Objects per RetrievePropertiesEx page; the server may return fewer and a token for the rest. */
export const RETRIEVE_PAGE_OBJECTS = 500;
/** Longest single WaitForUpdatesEx; short enough to notice a deadline or an abort promptly. */
export const WAIT_FOR_UPDATES_MAX_SECONDS = 10;
/** Polling interval when WaitForUpdatesEx is unavailable. */
export const POLL_INTERVAL_MS = 500;
/** A task that runs longer than this is reported as VSPHERE_TASK_TIMEOUT unless told otherwise. */
export const DEFAULT_TASK_TIMEOUT_MS = 30 * 60_000;

export type PropertyValue = XValue | XValue[];

export interface ObjectContent {
  readonly obj: MoRef;
  readonly props: ReadonlyMap<string, PropertyValue>;
}

const retrieveResultSchema = xs.object({
  token: xs.string().optional(),
  objects: xs.many(xs.object({ obj: xs.ref(), propSet: xs.many(xs.object({ name: xs.string(), val: z_any() })) })),
});

function z_any() {
  // A property value stays as parsed (its schema depends on the property).
  return xs.many(xs.any()).transform((v) => (v.length === 1 ? v[0] : v) as PropertyValue);
}

export interface PropertySpecInput {
  readonly type: string;
  readonly pathSet: readonly string[];
}

export interface ObjectSpecInput {
  readonly obj: MoRef;
  /** Traverse a ContainerView's `view` instead of reading the view itself. */
  readonly viewTraversal?: boolean;
}

function filterSpec(propSet: readonly PropertySpecInput[], objectSet: readonly ObjectSpecInput[]): SoapInput {
  return {
    propSet: propSet.map((p) => ({ type: p.type, all: false, pathSet: [...p.pathSet] })),
    objectSet: objectSet.map((o) => ({
      obj: o.obj,
      skip: o.viewTraversal === true,
      selectSet: o.viewTraversal === true ? [{ $type: "TraversalSpec", name: "traverseView", type: "ContainerView", path: "view", skip: false }] : undefined,
    })),
  };
}

function toContents(value: unknown): { token: string | undefined; objects: ObjectContent[] } {
  // No objects: vCenter omits returnval; vcsim sends it empty.
  if (value === undefined || value === "") return { token: undefined, objects: [] };
  const result = expect(retrieveResultSchema, value, "RetrieveResult");
  return {
    token: result.token,
    objects: result.objects.map((o) => ({ obj: o.obj, props: new Map(o.propSet.map((p) => [p.name, p.val])) })),
  };
}

/** RetrievePropertiesEx, following ContinueRetrievePropertiesEx tokens to the end. */
export async function retrieveProperties(
  client: VsphereClient,
  propSet: readonly PropertySpecInput[],
  objectSet: readonly ObjectSpecInput[],
  options: { readonly maxObjects?: number } = {},
): Promise<ObjectContent[]> {
  const pc = client.serviceContent.propertyCollector;
  let page = toContents(await client.call("RetrievePropertiesEx", pc, { specSet: filterSpec(propSet, objectSet), options: { maxObjects: options.maxObjects ?? RETRIEVE_PAGE_OBJECTS } }));
  const all = [...page.objects];
  const seen = new Set<string>();
  while (page.token !== undefined) {
    if (seen.has(page.token)) throw new CloudError("VSPHERE_BAD_RESPONSE", "vsphere: RetrievePropertiesEx returned the same continuation token twice");
    seen.add(page.token);
    page = toContents(await client.call("ContinueRetrievePropertiesEx", pc, { token: page.token }));
    all.push(...page.objects);
  }
  return all;
}

/** Properties of one object; a path the object lacks is absent from the map. */
export async function getProperties(client: VsphereClient, ref: MoRef, paths: readonly string[]): Promise<ReadonlyMap<string, PropertyValue>> {
  const [content] = await retrieveProperties(client, [{ type: ref.type, pathSet: paths }], [{ obj: ref }]);
  if (content === undefined) {
    throw new CloudError("VSPHERE_OBJECT_NOT_FOUND", `vsphere: ${ref.type} ${ref.value} not found`, { context: { type: ref.type, value: ref.value } });
  }
  return content.props;
}

/** Objects of some types below a container (a folder, a datacenter), through a ContainerView. */
export async function containerContents(
  client: VsphereClient,
  container: MoRef,
  type: string,
  paths: readonly string[],
  options: { readonly recursive?: boolean; readonly maxObjects?: number } = {},
): Promise<ObjectContent[]> {
  const view = expect(xs.ref(), await client.call("CreateContainerView", client.serviceContent.viewManager, { container, type: [type], recursive: options.recursive ?? true }), "ContainerView");
  try {
    return await retrieveProperties(client, [{ type, pathSet: paths }], [{ obj: view, viewTraversal: true }], options.maxObjects === undefined ? {} : { maxObjects: options.maxObjects });
  } finally {
    await client.call("DestroyView", view).catch(() => {});
  }
}

const updateSetSchema = xs.object({
  version: xs.string(),
  filterSet: xs.many(
    xs.object({
      objectSet: xs.many(xs.object({ obj: xs.ref(), changeSet: xs.many(xs.object({ name: xs.string(), op: xs.string(), val: z_any().optional() })) })),
    }),
  ),
});

export interface WatchOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Names what is awaited in a timeout message, e.g. "task CreateVM_Task task-12". */
  readonly what: string;
  readonly timeoutCode?: string;
}

/**
 * Follows some properties of one object until `check` returns a value (not undefined), and
 * returns it. `check` sees the latest value of every path (absent = unset).
 */
export async function watchObject<T>(
  client: VsphereClient,
  ref: MoRef,
  paths: readonly string[],
  check: (props: ReadonlyMap<string, PropertyValue>) => T | undefined,
  options: WatchOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  const timeout = (): CloudError =>
    new CloudError(options.timeoutCode ?? "VSPHERE_WAIT_TIMEOUT", `vsphere: ${options.what}: not done within ${options.timeoutMs} ms`, {
      context: { timeoutMs: options.timeoutMs, object: ref.value },
    });
  let collector: MoRef | undefined;
  try {
    collector = expect(xs.ref(), await client.call("CreatePropertyCollector", client.serviceContent.propertyCollector), "PropertyCollector");
    await client.call("CreateFilter", collector, { spec: filterSpec([{ type: ref.type, pathSet: paths }], [{ obj: ref }]), partialUpdates: false });
  } catch (err) {
    if (!isPortableError(err) || !["VSPHERE_NOT_SUPPORTED", "VSPHERE_NOT_AUTHENTICATED"].includes(err.code)) throw err;
    collector = undefined;
  }
  const state = new Map<string, PropertyValue>();
  try {
    let version = "";
    while (collector !== undefined) {
      options.signal?.throwIfAborted();
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw timeout();
      const waitSeconds = Math.max(1, Math.min(WAIT_FOR_UPDATES_MAX_SECONDS, Math.ceil(remainingMs / 1000)));
      let value: unknown;
      try {
        value = await client.call("WaitForUpdatesEx", collector, { version, options: { maxWaitSeconds: waitSeconds } }, {
          timeoutMs: waitSeconds * 1000 + client.requestTimeoutMs,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
      } catch (err) {
        // The collector belonged to a session that was renewed: poll instead.
        if (isPortableError(err) && err.code === "VSPHERE_OBJECT_NOT_FOUND") {
          collector = undefined;
          break;
        }
        throw err;
      }
      if (value === undefined) continue;
      const update = expect(updateSetSchema, value, "UpdateSet");
      version = update.version;
      for (const filter of update.filterSet) {
        for (const object of filter.objectSet) {
          for (const change of object.changeSet) {
            if (change.op === "remove" || change.op === "indirectRemove" || change.val === undefined) state.delete(change.name);
            else state.set(change.name, change.val);
          }
        }
      }
      const done = check(state);
      if (done !== undefined) return done;
    }
    for (;;) {
      options.signal?.throwIfAborted();
      const done = check(await getProperties(client, ref, paths));
      if (done !== undefined) return done;
      if (Date.now() >= deadline) throw timeout();
      await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - Date.now()))));
    }
  } finally {
    if (collector !== undefined) await client.call("DestroyPropertyCollector", collector).catch(() => {});
  }
}

const taskInfoSchema = xs.object({
  key: xs.string().optional(),
  name: xs.string().optional(),
  descriptionId: xs.string().optional(),
  state: xs.string(),
  progress: xs.int().optional(),
  error: xs.any().optional(),
  result: xs.any().optional(),
});

export interface TaskOptions {
  readonly timeoutMs?: number;
  /** Percent complete as the server reports it (not every task reports progress). */
  readonly onProgress?: (percent: number) => void;
  readonly signal?: AbortSignal;
}

/**
 * Waits for a task to succeed and returns its result, or throws its fault as a VsphereFault
 * (code from faults.ts, VSPHERE_TASK_FAILED for an unmapped fault). Past `timeoutMs` throws
 * VSPHERE_TASK_TIMEOUT; the task itself keeps running on the server.
 */
export async function waitForTask(client: VsphereClient, task: MoRef, operation: string, options: TaskOptions = {}): Promise<PropertyValue | undefined> {
  let lastProgress = -1;
  return watchObject(
    client,
    task,
    ["info"],
    (props) => {
      const raw = props.get("info");
      if (raw === undefined) return undefined;
      const info = expect(taskInfoSchema, raw, `TaskInfo of ${task.value}`);
      if (info.progress !== undefined && info.progress !== lastProgress) {
        lastProgress = info.progress;
        options.onProgress?.(info.progress);
      }
      if (info.state === "success") {
        if (lastProgress !== 100) options.onProgress?.(100);
        return { result: (raw as Record<string, unknown>).result as PropertyValue | undefined };
      }
      if (info.state === "error") throw faultFromTask(info.error, operation, task.value);
      return undefined;
    },
    {
      timeoutMs: options.timeoutMs ?? DEFAULT_TASK_TIMEOUT_MS,
      what: `task ${operation} (${task.value})`,
      timeoutCode: "VSPHERE_TASK_TIMEOUT",
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    },
  ).then((r) => {
    const result = r.result;
    return Array.isArray(result) && result.length === 1 ? result[0] : result;
  });
}

/** Calls a `*_Task` method and waits for it. */
export async function runTask(
  client: VsphereClient,
  method: string,
  thisRef: MoRef,
  args: Readonly<Record<string, SoapInput>>,
  options: TaskOptions = {},
): Promise<PropertyValue | undefined> {
  const task = expect(xs.ref(), await client.call(method, thisRef, args, options.signal === undefined ? {} : { signal: options.signal }), `${method} task`);
  return waitForTask(client, task, method, options);
}
