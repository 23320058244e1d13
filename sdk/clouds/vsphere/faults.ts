// vim25 faults as typed errors: a SOAP fault or a task's LocalizedMethodFault becomes a
// VsphereFault (a CloudError) whose stable code names the fault family, so callers and tests
// branch on `code` rather than on server wording.
import { CloudError, type ErrorContext } from "../../errors.ts";
import { xsiType, type XValue } from "./xml.ts";

/**
 * Fault type (the xsi:type, as the vim25 WSDL names it) → code. Subtypes map to their family:
 * InvalidPowerState is an InvalidState, CannotCreateFile and FileLocked are FileFaults.
 */
export const VSPHERE_FAULT_CODES: Readonly<Record<string, string>> = {
  InvalidLogin: "VSPHERE_INVALID_LOGIN",
  NotAuthenticated: "VSPHERE_NOT_AUTHENTICATED",
  NoPermission: "VSPHERE_NO_PERMISSION",
  FileNotFound: "VSPHERE_FILE_NOT_FOUND",
  FileAlreadyExists: "VSPHERE_FILE_ALREADY_EXISTS",
  CannotCreateFile: "VSPHERE_FILE_FAULT",
  FileFault: "VSPHERE_FILE_FAULT",
  FileLocked: "VSPHERE_FILE_FAULT",
  InvalidState: "VSPHERE_INVALID_STATE",
  InvalidPowerState: "VSPHERE_INVALID_STATE",
  InvalidDatastoreState: "VSPHERE_INVALID_STATE",
  TaskInProgress: "VSPHERE_INVALID_STATE",
  DuplicateName: "VSPHERE_DUPLICATE_NAME",
  AlreadyExists: "VSPHERE_DUPLICATE_NAME",
  ManagedObjectNotFound: "VSPHERE_OBJECT_NOT_FOUND",
  NotFound: "VSPHERE_NOT_FOUND",
  InvalidArgument: "VSPHERE_INVALID_ARGUMENT",
  InvalidRequest: "VSPHERE_INVALID_ARGUMENT",
  InvalidVmConfig: "VSPHERE_INVALID_CONFIG",
  InvalidDeviceSpec: "VSPHERE_INVALID_CONFIG",
  InvalidDeviceOperation: "VSPHERE_INVALID_CONFIG",
  DeviceUnsupportedForVmPlatform: "VSPHERE_INVALID_CONFIG",
  NotSupported: "VSPHERE_NOT_SUPPORTED",
  MethodNotFound: "VSPHERE_NOT_SUPPORTED",
  MethodDisabled: "VSPHERE_NOT_SUPPORTED",
  RequestCanceled: "VSPHERE_TASK_CANCELED",
  Timedout: "VSPHERE_TIMEOUT",
  InsufficientResourcesFault: "VSPHERE_INSUFFICIENT_RESOURCES",
  OutOfBounds: "VSPHERE_INVALID_ARGUMENT",
  SystemError: "VSPHERE_SYSTEM_ERROR",
};

/** A fault the server reported. `faultType` is its xsi:type, e.g. "InvalidPowerState". */
export class VsphereFault extends CloudError {
  readonly faultType: string;
  constructor(code: string, message: string, faultType: string, context: ErrorContext = {}) {
    super(code, message, { context: { ...context, faultType } });
    this.faultType = faultType;
  }
}

export function codeForFault(faultType: string, fallback = "VSPHERE_FAULT"): string {
  return VSPHERE_FAULT_CODES[faultType] ?? fallback;
}

/** Text of a leaf element, whatever its shape. */
function leafText(value: unknown): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as { $text?: unknown }).$text === "string") return (v as { $text: string }).$text;
  return undefined;
}

/**
 * The fault inside a SOAP Fault body: `detail` holds one element (`<XxxFault xsi:type="Xxx">`);
 * vcsim and vCenter both set xsi:type, and the element name minus "Fault" is the fallback.
 */
export function faultFromSoap(body: XValue, method: string): VsphereFault {
  const fault = typeof body === "object" ? body : {};
  const message = leafText(fault.faultstring) ?? "";
  const detail = Array.isArray(fault.detail) ? fault.detail[0] : undefined;
  let faultType = "Unknown";
  if (typeof detail === "object") {
    const key = Object.keys(detail).find((k) => !k.startsWith("$"));
    if (key !== undefined) faultType = xsiType(detail[key]) ?? key.replace(/Fault$/, "");
  }
  const code = codeForFault(faultType);
  return new VsphereFault(code, `vsphere: ${method} failed: ${faultType}${message === "" ? "" : `: ${message}`}`, faultType, { method });
}

/** A task's `info.error` (LocalizedMethodFault: `fault` plus `localizedMessage`). */
export function faultFromTask(error: unknown, taskName: string, taskRef: string): VsphereFault {
  const e = (Array.isArray(error) ? error[0] : error) as Record<string, unknown> | undefined;
  const faultType = xsiType(e?.fault) ?? "Unknown";
  const message = leafText(e?.localizedMessage) ?? "";
  const code = codeForFault(faultType, "VSPHERE_TASK_FAILED");
  return new VsphereFault(code, `vsphere: task ${taskName} (${taskRef}) failed: ${faultType}${message === "" ? "" : `: ${message}`}`, faultType, {
    task: taskRef,
    operation: taskName,
  });
}
