// The vim25 SOAP client: one HTTPS endpoint, one session cookie, typed faults.
//
// Hand-written (see xml.ts for why). What it does, modelled on govmomi's vim25/soap.Client:
// - TLS is verified by default (system CAs, or `caPem`); `insecure: true` must be explicit;
//   `thumbprint` pins the leaf certificate (SHA-1 or SHA-256, as vCenter and `govc about.cert`
//   print them), and the pin is checked before a single request byte is sent.
// - Login keeps the `vmware_soap_session` cookie. A call answered NotAuthenticated (the session
//   expired or was terminated) logs in again once and is retried, transparently.
// - Read-only calls are retried on network errors with sdk/retry.ts's backoff; calls that
//   change state never are, because a lost answer does not say whether the server acted.
// - The password lives in a private field and never reaches a message, a log or an error.
import { X509Certificate } from "node:crypto";
import { Agent, request, type RequestOptions } from "node:https";
import type { ClientRequest, IncomingMessage } from "node:http";
import { connect, type TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { z } from "zod";
import { CloudError, InvalidArgsError, isPortableError } from "../../errors.ts";
import { isTransientError, withRetry } from "../../retry.ts";
import { faultFromSoap, VsphereFault } from "./faults.ts";
import { envelope, expect, moRef, parseSoapBody, xs, type MoRef, type SoapInput, type XValue } from "./xml.ts";

/** A SOAP call's answer may take long (a big RetrievePropertiesEx page); a hung server may not. */
export const VSPHERE_REQUEST_TIMEOUT_MS = 120_000;
/** Attempts for read-only calls on network errors (sdk/retry.ts schedule). */
export const VSPHERE_READ_ATTEMPTS = 4;
/** Sockets kept per host: SOAP calls, a few datastore range reads and uploads at once. */
const MAX_SOCKETS = 16;

export const SESSION_COOKIE = "vmware_soap_session";

/** Methods that change nothing on the server, so a retry after a lost answer is safe. */
const READ_ONLY_METHODS = new Set([
  "RetrieveServiceContent", "RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "FindByInventoryPath",
  "FindChild", "CurrentTime", "SessionIsActive",
]);

const connectOptionsSchema = z
  .object({
    /** The SDK endpoint, e.g. https://vcenter.example.com/sdk */
    url: z.url().refine((u) => /^https?:/i.test(u), "must be an https:// (or explicit http://) URL"),
    username: z.string().min(1),
    password: z.string(),
    /** PEM of CA certificates to trust instead of the system store. */
    caPem: z.union([z.string(), z.array(z.string())]).optional(),
    /** Skip all certificate checks. Only for labs; never the default. */
    insecure: z.boolean().default(false),
    /** SHA-1 (40 hex digits) or SHA-256 (64) fingerprint of the server certificate, colons optional. */
    thumbprint: z.string().transform((t) => t.replace(/[\s:]/g, "").toUpperCase()).refine((t) => /^([0-9A-F]{40}|[0-9A-F]{64})$/.test(t), "must be 40 or 64 hex digits").optional(),
    requestTimeoutMs: z.number().int().positive().default(VSPHERE_REQUEST_TIMEOUT_MS),
  })
  .strict();

export type VsphereConnectOptions = z.input<typeof connectOptionsSchema>;
type ParsedOptions = z.output<typeof connectOptionsSchema>;

const serviceContentSchema = xs.object({
  rootFolder: xs.ref(),
  propertyCollector: xs.ref(),
  viewManager: xs.ref(),
  searchIndex: xs.ref(),
  sessionManager: xs.ref(),
  fileManager: xs.ref().optional(),
  ovfManager: xs.ref().optional(),
  virtualDiskManager: xs.ref().optional(),
  about: xs.object({
    name: xs.string(),
    fullName: xs.string(),
    apiType: xs.string(),
    apiVersion: xs.string(),
    instanceUuid: xs.string().optional(),
  }),
});
export type ServiceContent = z.infer<typeof serviceContentSchema>;

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the client's request timeout (WaitForUpdatesEx waits on the server). */
  readonly timeoutMs?: number;
}

function certificateMatches(socket: TLSSocket, pin: string): boolean {
  const raw = socket.getPeerCertificate(false).raw;
  if (raw === undefined) return false;
  const cert = new X509Certificate(raw);
  const fingerprint = (pin.length === 40 ? cert.fingerprint : cert.fingerprint256).replace(/:/g, "").toUpperCase();
  return fingerprint === pin;
}

/**
 * An agent that pins a certificate: chain checks are skipped (vCenter and ESXi often use
 * self-signed certificates, which is why people pin), and the socket reaches the request only
 * after its certificate matched, so nothing (no cookie, no password) goes to an impostor.
 */
class PinnedAgent extends Agent {
  readonly #pin: string;
  constructor(pin: string) {
    super({ keepAlive: true, maxSockets: MAX_SOCKETS });
    this.#pin = pin;
  }
  override createConnection(options: RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = connect({ ...(options as object), rejectUnauthorized: false });
    const fail = (err: Error): void => {
      socket.destroy();
      callback?.(err, socket);
    };
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      socket.removeListener("error", fail);
      if (certificateMatches(socket, this.#pin)) callback?.(null, socket);
      else {
        fail(
          new CloudError("VSPHERE_TLS_THUMBPRINT_MISMATCH", `vsphere: the certificate of ${String(options.host)}:${String(options.port)} does not match the pinned thumbprint`, {
            context: { host: String(options.host) },
          }),
        );
      }
    });
    return undefined;
  }
}

function agentFor(options: ParsedOptions): Agent {
  if (options.thumbprint !== undefined) return new PinnedAgent(options.thumbprint);
  if (options.insecure) return new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, rejectUnauthorized: false });
  return new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, ...(options.caPem === undefined ? {} : { ca: options.caPem }) });
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|HOSTNAME|IP_ADDRESS_MISMATCH/;

/** A network or TLS failure as a CloudError naming the host, never the credentials. */
function networkError(err: unknown, what: string, host: string): Error {
  if (isPortableError(err)) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = String(e.code ?? "");
  if (TLS_CODES.test(code)) {
    return new CloudError("VSPHERE_TLS_UNTRUSTED", `vsphere: ${what}: the certificate of ${host} is not trusted (${code}); pass caPem, a thumbprint, or insecure: true`, {
      context: { host, tlsCode: code },
      cause: err,
    });
  }
  const error = new CloudError("VSPHERE_NETWORK", `vsphere: ${what}: ${host}: ${String(e.message ?? err)}`, { context: { host, networkCode: code }, cause: err });
  return error;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingMessage["headers"];
  readonly body: Buffer;
}

export class VsphereClient {
  readonly url: URL;
  readonly username: string;
  readonly #password: string;
  readonly #agent: Agent;
  readonly #options: ParsedOptions;
  #cookie: string | undefined;
  #relogin: Promise<void> | undefined;
  #soapAction = "urn:vim25";
  #serviceContent: ServiceContent | undefined;
  #sessionKey: string | undefined;
  #logins = 0;

  private constructor(options: ParsedOptions) {
    this.#options = options;
    this.url = new URL(options.url);
    this.username = options.username;
    this.#password = options.password;
    this.#agent = agentFor(options);
  }

  /** Connects, reads the ServiceContent and logs in. */
  static async connect(input: VsphereConnectOptions): Promise<VsphereClient> {
    const parsed = connectOptionsSchema.safeParse(input);
    if (!parsed.success) {
      // Issues name paths and rules, never values, so a password cannot leak through here.
      const issues = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
      throw new InvalidArgsError("VSPHERE_INVALID_OPTIONS", `vsphere: ${issues.join("; ")}`);
    }
    const client = new VsphereClient(parsed.data);
    try {
      await client.retrieveServiceContent();
      await client.login();
      return client;
    } catch (err) {
      client.#agent.destroy();
      throw err;
    }
  }

  get serviceContent(): ServiceContent {
    if (this.#serviceContent === undefined) throw new CloudError("VSPHERE_NOT_CONNECTED", "vsphere: not connected");
    return this.#serviceContent;
  }

  /** Logins so far, the first included: more than one means a session was renewed. */
  get loginCount(): number {
    return this.#logins;
  }

  /** The server-side key of the current session (what SessionManager.TerminateSession takes). */
  get sessionKey(): string | undefined {
    return this.#sessionKey;
  }

  /** The Cookie header value for datastore and NFC transfers. */
  get cookie(): string | undefined {
    return this.#cookie;
  }

  /** The agent (TLS settings and pin) for datastore and NFC transfers. */
  get agent(): Agent {
    return this.#agent;
  }

  get requestTimeoutMs(): number {
    return this.#options.requestTimeoutMs;
  }

  private async retrieveServiceContent(): Promise<void> {
    const value = await this.invoke("RetrieveServiceContent", moRef("ServiceInstance", "ServiceInstance"), {});
    this.#serviceContent = expect(serviceContentSchema, value, "ServiceContent");
    this.#soapAction = `urn:vim25/${this.#serviceContent.about.apiVersion}`;
  }

  private async login(): Promise<void> {
    this.#cookie = undefined;
    const value = await this.invoke("Login", this.serviceContent.sessionManager, { userName: this.username, password: this.#password });
    const session = expect(xs.object({ key: xs.string(), userName: xs.string() }), value, "Login session");
    if (this.#cookie === undefined) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: Login to ${this.url.host} set no ${SESSION_COOKIE} cookie`);
    this.#sessionKey = session.key;
    this.#logins++;
  }

  /** Logs out and closes idle connections. The client is unusable afterwards. */
  async logout(): Promise<void> {
    try {
      if (this.#cookie !== undefined) await this.invoke("Logout", this.serviceContent.sessionManager, {});
    } catch (err) {
      if (!(err instanceof VsphereFault && err.code === "VSPHERE_NOT_AUTHENTICATED")) throw err;
    } finally {
      this.#cookie = undefined;
      this.#agent.destroy();
    }
  }

  /**
   * Calls a vim25 method and returns its `returnval` as parsed (undefined for void methods).
   * A NotAuthenticated answer triggers one re-login and one retry.
   */
  async call(method: string, thisRef: MoRef, args: Readonly<Record<string, SoapInput>> = {}, options: CallOptions = {}): Promise<XValue | XValue[] | undefined> {
    const cookieUsed = this.#cookie;
    try {
      return await this.invokeWithRetry(method, thisRef, args, options);
    } catch (err) {
      if (!(err instanceof VsphereFault && err.code === "VSPHERE_NOT_AUTHENTICATED") || method === "Login" || method === "Logout") throw err;
      // One re-login shared by every call that saw the session expire.
      if (this.#cookie === cookieUsed) {
        this.#relogin ??= this.login().finally(() => {
          this.#relogin = undefined;
        });
        await this.#relogin;
      }
      return await this.invokeWithRetry(method, thisRef, args, options);
    }
  }

  private invokeWithRetry(method: string, thisRef: MoRef, args: Readonly<Record<string, SoapInput>>, options: CallOptions): Promise<XValue | XValue[] | undefined> {
    if (!READ_ONLY_METHODS.has(method)) return this.invoke(method, thisRef, args, options);
    return withRetry(() => this.invoke(method, thisRef, args, options), {
      operation: `vsphere ${method} on ${this.url.host}`,
      attempts: VSPHERE_READ_ATTEMPTS,
      isRetryable: (err) => isPortableError(err) ? err.code === "VSPHERE_NETWORK" : isTransientError(err),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    }).catch((err: unknown) => {
      throw isPortableError(err) && err.code === "RETRIES_EXHAUSTED" ? err.cause : err;
    });
  }

  private async invoke(method: string, thisRef: MoRef, args: Readonly<Record<string, SoapInput>>, options: CallOptions = {}): Promise<XValue | XValue[] | undefined> {
    const body = envelope(method, thisRef, args);
    const response = await this.send(
      {
        method: "POST",
        headers: { "content-type": "text/xml; charset=utf-8", soapaction: this.#soapAction, ...(this.#cookie === undefined ? {} : { cookie: this.#cookie }) },
        body,
        timeoutMs: options.timeoutMs ?? this.#options.requestTimeoutMs,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      },
      this.url,
      `${method}`,
    );
    const setCookie = response.headers["set-cookie"]?.map((c) => c.split(";")[0] ?? "").find((c) => c.startsWith(`${SESSION_COOKIE}=`));
    if (setCookie !== undefined) this.#cookie = setCookie;
    const text = response.body.toString("utf8");
    const contentType = String(response.headers["content-type"] ?? "");
    if (!/xml/i.test(contentType) && response.status !== 200) {
      throw new CloudError("VSPHERE_HTTP_ERROR", `vsphere: ${method} on ${this.url.host}: HTTP ${response.status}`, { context: { method, status: response.status } });
    }
    const parsed = parseSoapBody(text);
    if (parsed.name === "Fault") throw faultFromSoap(parsed.value, method);
    if (response.status !== 200) {
      throw new CloudError("VSPHERE_HTTP_ERROR", `vsphere: ${method} on ${this.url.host}: HTTP ${response.status}`, { context: { method, status: response.status } });
    }
    const value = parsed.value;
    if (typeof value !== "object") return undefined;
    const returnval = value.returnval;
    if (returnval === undefined || typeof returnval === "string") return undefined;
    return returnval.length === 1 ? returnval[0] : returnval;
  }

  /** One buffered HTTP exchange (SOAP, HEAD, small GETs), with a timeout and a size bound. */
  async send(
    req: { method: string; headers: Record<string, string>; body?: string | Buffer; timeoutMs?: number; signal?: AbortSignal; maxBytes?: number },
    url: URL,
    what: string,
  ): Promise<HttpResponse> {
    const maxBytes = req.maxBytes ?? 64 * 1024 * 1024;
    const res = await this.open(req.method, url, req.headers, what, req.timeoutMs, req.signal, (r) => r.end(req.body));
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) throw new CloudError("VSPHERE_BAD_RESPONSE", `vsphere: ${what}: response exceeds ${maxBytes} bytes`);
        chunks.push(chunk);
      }
    } catch (err) {
      res.destroy();
      throw networkError(err, what, url.host);
    }
    return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
  }

  /**
   * Starts a request and resolves with the response head. `write` sends the body (and must
   * end the request). The timeout covers socket inactivity, so a long upload that keeps moving
   * never times out, and a stalled one does.
   */
  open(
    method: string,
    url: URL,
    headers: Record<string, string | number>,
    what: string,
    timeoutMs = this.#options.requestTimeoutMs,
    signal?: AbortSignal,
    write?: (req: ClientRequest) => void,
  ): Promise<IncomingMessage> {
    const { request: req, response } = this.start(method, url, headers, what, timeoutMs, signal);
    if (write !== undefined) write(req);
    else req.end();
    return response;
  }

  /**
   * Starts a streaming request: the caller writes the body to `request` and ends it; `response`
   * settles with the answer, or with a CloudError when the connection fails or stalls for
   * `timeoutMs`.
   */
  start(
    method: string,
    url: URL,
    headers: Record<string, string | number>,
    what: string,
    timeoutMs = this.#options.requestTimeoutMs,
    signal?: AbortSignal,
  ): { readonly request: ClientRequest; readonly response: Promise<IncomingMessage> } {
    const req = request(url, { method, headers, agent: this.#agent, ...(signal === undefined ? {} : { signal }) });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.setTimeout(timeoutMs, () => {
        req.destroy(new CloudError("VSPHERE_TIMEOUT", `vsphere: ${what} on ${url.host}: no progress within ${timeoutMs} ms`, { context: { timeoutMs } }));
      });
      req.once("response", (res) => {
        res.once("error", () => {});
        resolve(res);
      });
      req.once("error", (err) => reject(networkError(err, what, url.host)));
    });
    response.catch(() => {});
    return { request: req, response };
  }
}

/** Reads a whole response body (bounded), e.g. an error page after a failed transfer. */
export async function drain(res: IncomingMessage, maxBytes = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (size < maxBytes) chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString("utf8").slice(0, maxBytes);
}
