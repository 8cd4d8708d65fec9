// A thin, typed client for the videojobs API. The types come from the API's
// own OpenAPI document (docs/openapi.json → src/schema.d.ts, by
// openapi-typescript); this file only adds fetch, errors and a few helpers.
import { createHmac, timingSafeEqual } from "node:crypto";
import type { components, operations } from "./schema.js";

type Schemas = components["schemas"];
export type GenerateRequest = Schemas["GenerateRequest"];
export type AnimateRequest = Schemas["AnimateRequest"];
export type Accepted = Schemas["Accepted"];
export type JobStatus = Schemas["JobStatus"];
export type JobStatusBody = Schemas["JobStatusBody"];
export type JobResult = Schemas["JobResult"];
export type JobEvents = Schemas["JobEvents"];
export type JobList = Schemas["JobList"];
export type Account = Schemas["Account"];
export type ReviewRequest = Schemas["ReviewRequest"];
export type ReviewQueue = Schemas["ReviewQueue"];
export type UserStats = Schemas["UserStats"];
export type AdminStats = Schemas["AdminStats"];
export type WebhookSecret = Schemas["WebhookSecret"];
export type Notification = Schemas["Notification"];
export type ErrorBody = Schemas["Error"];
export type ErrorCode = ErrorBody["error"]["code"];
export type ImageType = Schemas["UploadRequest"]["content_type"];
export type WorkflowType = Schemas["WorkflowType"];
export type Tag = Schemas["Tag"];
export type Delivery = Schemas["Delivery"];
export type JobDeliveries = Schemas["JobDeliveries"];
export type FailedDeliveries = Schemas["FailedDeliveries"];
export type Redeliveries = Schemas["Redeliveries"];
/** The body of `POST /videos/jobs/{job_id}/redeliver`: which notification (by default the job's latest). */
export type RedeliverRequest = NonNullable<operations["redeliverJobNotification"]["requestBody"]>["content"]["application/json"];
/** A notification endpoint paused after a run of failed attempts, as `account()` lists it under `paused_endpoints`. */
export type PausedEndpoint = Schemas["PausedEndpoint"];
/** The body of `POST /videos/webhook-endpoints/resume`. */
export type ResumeEndpointRequest = operations["resumeEndpoint"]["requestBody"]["content"]["application/json"];
/** What `resumeEndpoint` did: whether it resumed, and the held notifications it sent again. */
export type Resumed = Schemas["Resumed"];

/** Between polls when the answer says nothing (`Retry-After` absent). */
export const RECOMMENDED_POLL_INTERVAL_MS = 2_000;

/** Statuses in which a job is still being made. */
export const IN_FLIGHT: readonly JobStatus[] = ["queued", "submitted", "retrying", "processing"];
/** Statuses a job never leaves. */
export const TERMINAL: readonly JobStatus[] = ["approved", "rejected", "failed", "canceled", "expired"];

/** An answer that was not a success: the API's code, message and next step. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ErrorCode | string;
  readonly next_step?: string;
  readonly field?: string;
  readonly body: unknown;

  constructor(status: number, body: unknown) {
    const error = (body as Partial<ErrorBody> | null)?.error;
    super(error?.message ?? `the API answered ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = error?.code ?? (status === 404 ? "route_not_found" : "unknown");
    this.next_step = error?.next_step;
    this.field = error?.field;
    this.body = body;
  }
}

export interface ClientOptions {
  /** The API's base URL: `http://127.0.0.1:3000` locally, the stack's `ApiUrl` deployed. */
  baseUrl: string;
  /** An API key, `vj_…`. */
  apiKey: string;
  /** A fetch of your own (tests, proxies); the global one by default. */
  fetch?: typeof fetch;
}

export interface CreateOptions {
  /** The same key with the same request answers the first answer again. */
  idempotencyKey?: string;
  /** A deadline, sent as `Cancel-After`: seconds, or `90s`, `5m`, `1h30m`. Not completed by then, the job is given up and refunded. */
  cancelAfter?: string | number;
}

/**
 * Which of the caller's jobs `list` and `listPage` keep (`GET /videos/jobs`'s
 * filters), all optional and applying together. A filtered page may hold fewer
 * than `limit` jobs, even none, and still have a `next_cursor`: `list()`
 * follows it; with `listPage` pass the same filter with each `cursor`.
 */
export interface JobListFilter {
  /** In one of these statuses: `"failed,expired"` or `["failed", "expired"]`. */
  status?: string | readonly string[];
  /** Of this kind. */
  workflowType?: WorkflowType;
  /** Carrying this tag. */
  tag?: Tag;
  /** Made from this job by a retry or a remix. */
  parentJobId?: string;
  /** Created at or after this time (a `Date`, or RFC 3339 text). */
  createdAfter?: Date | string;
  /** Created before this time (a `Date`, or RFC 3339 text); later than `createdAfter`. */
  createdBefore?: Date | string;
}

/**
 * Which of the caller's failed notification attempts `failedDeliveries` and
 * `failedDeliveriesPage` keep (`GET /videos/deliveries`'s filters), all
 * optional. With `errorClass` a page may hold fewer than `limit` attempts,
 * even none, and still have a `next_cursor`: `failedDeliveries()` follows it;
 * with `failedDeliveriesPage` pass the same filter with each `cursor`.
 */
export interface FailedDeliveriesFilter {
  /** Attempts at or after this time (a `Date`, or RFC 3339 text). */
  since?: Date | string;
  /** Attempts before this time (a `Date`, or RFC 3339 text); later than `since`. */
  until?: Date | string;
  /** Attempts that failed this way: `notify_http_500`, `notify_network`, `notify_refused_address`, … */
  errorClass?: string;
}

/** A new job, and whether the answer was a replay of an earlier one. */
export type Created = Accepted & { replayed: boolean };

export interface WaitOptions {
  /** Called after every poll with the status body (progress 0–100, status_label). */
  onProgress?: (status: JobStatusBody) => void;
  /**
   * A fixed time between polls. By default each wait is what the last answer's
   * `Retry-After` asked for (longer while the job waits, shorter near its
   * end), or {@link RECOMMENDED_POLL_INTERVAL_MS} when it asked for nothing.
   */
  intervalMs?: number;
  /** Give up (with an Error) after this long; no limit by default. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class VideoJobsClient {
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
  }

  private async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ body: T; response: Response }> {
    const init: RequestInit = { method, headers: { Authorization: `Bearer ${this.apiKey}`, Accept: "application/json", ...headers } };
    if (body !== undefined) {
      (init.headers as Record<string, string>)["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await this.fetchImpl(this.baseUrl + path, init);
    const text = await response.text();
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return { body: parsed as T, response };
  }

  private async create(path: string, body: unknown, options: CreateOptions = {}): Promise<Created> {
    const headers: Record<string, string> = options.idempotencyKey ? { "Idempotency-Key": options.idempotencyKey } : {};
    if (options.cancelAfter !== undefined) headers["Cancel-After"] = String(options.cancelAfter);
    const { body: accepted, response } = await this.request<Accepted>("POST", path, body, headers);
    return { ...accepted, replayed: response.headers.get("idempotent-replayed") === "true" };
  }

  /** Text to video: `202` with the job id at once. */
  generate(request: GenerateRequest, options?: CreateOptions): Promise<Created> {
    return this.create("/videos/generate", request, options);
  }

  /** Image to video from an `image_url` or an `upload_id`. */
  animate(request: AnimateRequest, options?: CreateOptions): Promise<Created> {
    return this.create("/videos/animate", request, options);
  }

  /** Uploads a source image (presigned PUT) and returns its `upload_id`. */
  async upload(image: Uint8Array, contentType: ImageType): Promise<string> {
    const { body: slot } = await this.request<Schemas["Upload"]>("POST", "/videos/uploads", { content_type: contentType, size_bytes: image.byteLength });
    const put = await this.fetchImpl(slot.url, { method: slot.method, headers: slot.headers, body: image as unknown as BodyInit });
    if (!put.ok) throw new ApiError(put.status, { error: { code: "upload_failed", message: `the image upload was refused (${put.status})`, next_step: "Ask for a new upload and try again." } });
    return slot.upload_id;
  }

  /** Uploads `image` and animates it: the whole image-to-video flow in one call. */
  async animateUpload(image: Uint8Array, contentType: ImageType, request: Omit<AnimateRequest, "image_url" | "upload_id"> = {}, options?: CreateOptions): Promise<Created> {
    const upload_id = await this.upload(image, contentType);
    return this.animate({ ...request, upload_id }, options);
  }

  /** Where the job is now. */
  async status(jobId: string): Promise<JobStatusBody> {
    return (await this.statusWithHint(jobId)).status;
  }

  /** Where the job is now, and how long the API asks to wait before asking again (`Retry-After`), if it says. */
  async statusWithHint(jobId: string): Promise<{ status: JobStatusBody; retryAfterMs?: number }> {
    const { body, response } = await this.request<JobStatusBody>("GET", `/videos/jobs/${encodeURIComponent(jobId)}/status`);
    const seconds = Number(response.headers.get("retry-after"));
    return { status: body, retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined };
  }

  /**
   * Polls until the job is no longer in flight (`completed`, or a terminal
   * status), calling `onProgress` after every poll; resolves with the last status.
   */
  async waitForJob(jobId: string, options: WaitOptions = {}): Promise<JobStatusBody> {
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      const { status, retryAfterMs } = await this.statusWithHint(jobId);
      options.onProgress?.(status);
      if (!IN_FLIGHT.includes(status.status)) return status;
      const interval = options.intervalMs ?? retryAfterMs ?? RECOMMENDED_POLL_INTERVAL_MS;
      if (Date.now() + interval > deadline) throw new Error(`job ${jobId} is still ${status.status} after ${options.timeoutMs} ms`);
      await sleep(interval, options.signal);
    }
  }

  /** The video: presigned URL and facts (`409` until there is one, `410` once gone). */
  async result(jobId: string): Promise<JobResult> {
    return (await this.request<JobResult>("GET", `/videos/jobs/${encodeURIComponent(jobId)}/result`)).body;
  }

  /** How the job got where it is, oldest first. */
  async events(jobId: string): Promise<JobEvents> {
    return (await this.request<JobEvents>("GET", `/videos/jobs/${encodeURIComponent(jobId)}/events`)).body;
  }

  /**
   * One page of the caller's jobs, newest first, optionally filtered. A filtered
   * page may hold fewer than `limit` jobs, even none, and still have a
   * `next_cursor`: ask for it with the same filter (or use {@link list}).
   */
  async listPage(options: JobListFilter & { limit?: number; cursor?: string } = {}): Promise<JobList> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    const status = typeof options.status === "string" ? options.status : options.status?.join(",");
    if (status) query.set("status", status);
    if (options.workflowType) query.set("workflow_type", options.workflowType);
    if (options.tag) query.set("tag", options.tag);
    if (options.parentJobId) query.set("parent_job_id", options.parentJobId);
    if (options.createdAfter) query.set("created_after", timeParameter(options.createdAfter));
    if (options.createdBefore) query.set("created_before", timeParameter(options.createdBefore));
    const suffix = query.size ? `?${query}` : "";
    return (await this.request<JobList>("GET", `/videos/jobs${suffix}`)).body;
  }

  /**
   * Every one of the caller's jobs (those `filter` keeps), newest first,
   * fetched a page at a time: it follows `next_cursor` with the same filter
   * until it is `null`, through pages that a filter left empty.
   */
  async *list(options: JobListFilter & { pageSize?: number } = {}): AsyncGenerator<JobStatusBody, void, undefined> {
    const { pageSize, ...filter } = options;
    let cursor: string | undefined;
    do {
      const page = await this.listPage({ ...filter, limit: pageSize, cursor });
      yield* page.jobs;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** The caller's jobs in flight. */
  async active(): Promise<JobList> {
    return (await this.request<JobList>("GET", "/videos/jobs/active")).body;
  }

  /** Cancels an in-flight job; its credits come back. */
  async cancel(jobId: string): Promise<JobStatusBody> {
    return (await this.request<JobStatusBody>("DELETE", `/videos/jobs/${encodeURIComponent(jobId)}`)).body;
  }

  /**
   * Up to 20 jobs in one request: each item is a `generate` (or, with an image, `animate`) body over `defaults`, with its `ref`.
   * Every item is checked first (one bad field refuses the batch); each then gets its own answer, in order.
   */
  async batch(request: Schemas["BatchRequest"], options: { idempotencyKey?: string } = {}): Promise<Schemas["BatchResult"]> {
    const headers: Record<string, string> = options.idempotencyKey ? { "Idempotency-Key": options.idempotencyKey } : {};
    return (await this.request<Schemas["BatchResult"]>("POST", "/videos/batch", request, headers)).body;
  }

  /** A new job with the same inputs as one that ended without a video to keep (`failed`, `expired`, `rejected`, `canceled`). */
  retry(jobId: string, options?: CreateOptions): Promise<Created> {
    return this.create(`/videos/jobs/${encodeURIComponent(jobId)}/retry`, undefined, options);
  }

  /** A new job from any of the caller's jobs, with the fields of `overrides` changed (`null` leaves one out). */
  remix(jobId: string, overrides: Partial<GenerateRequest> | Partial<AnimateRequest> | Record<string, unknown>, options?: CreateOptions): Promise<Created> {
    return this.create(`/videos/jobs/${encodeURIComponent(jobId)}/remix`, overrides, options);
  }

  /** The jobs made from a job by a retry or a remix, newest first. */
  async children(jobId: string): Promise<JobList> {
    return (await this.request<JobList>("GET", `/videos/jobs/${encodeURIComponent(jobId)}/children`)).body;
  }

  /** Every attempt at the job's notifications (scheduled and manual), oldest first. */
  async deliveries(jobId: string): Promise<JobDeliveries> {
    return (await this.request<JobDeliveries>("GET", `/videos/jobs/${encodeURIComponent(jobId)}/deliveries`)).body;
  }

  /**
   * One page of the caller's failed notification attempts across their jobs,
   * newest first, optionally filtered. With `errorClass` a page may hold fewer
   * than `limit` attempts, even none, and still have a `next_cursor`: ask for
   * it with the same filter (or use {@link failedDeliveries}).
   */
  async failedDeliveriesPage(options: FailedDeliveriesFilter & { limit?: number; cursor?: string } = {}): Promise<FailedDeliveries> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    if (options.since) query.set("since", timeParameter(options.since));
    if (options.until) query.set("until", timeParameter(options.until));
    if (options.errorClass) query.set("error_class", options.errorClass);
    const suffix = query.size ? `?${query}` : "";
    return (await this.request<FailedDeliveries>("GET", `/videos/deliveries${suffix}`)).body;
  }

  /**
   * Every failed notification attempt of the caller (those `filter` keeps),
   * newest first, fetched a page at a time: it follows `next_cursor` with the
   * same filter until it is `null`, through pages that a filter left empty.
   */
  async *failedDeliveries(options: FailedDeliveriesFilter & { pageSize?: number } = {}): AsyncGenerator<Delivery, void, undefined> {
    const { pageSize, ...filter } = options;
    let cursor: string | undefined;
    do {
      const page = await this.failedDeliveriesPage({ ...filter, limit: pageSize, cursor });
      yield* page.deliveries;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /**
   * Sends the job's notification of `status` (by default its latest) again, now:
   * one manual attempt, outside the retry schedule (`202`). `queued: false` when a
   * request for that job and status within the last minute stands. `409` when the
   * job has no `webhook_url` or never had that status; only the job's owner.
   */
  async redeliver(jobId: string, options: RedeliverRequest = {}): Promise<Redeliveries> {
    const body = options.status === undefined ? undefined : { status: options.status };
    return (await this.request<Redeliveries>("POST", `/videos/jobs/${encodeURIComponent(jobId)}/redeliver`, body)).body;
  }

  /**
   * After an outage: one manual attempt at each of the caller's notifications
   * with a failed attempt since `since` that was never delivered, newest first,
   * at most 50 a request (`more: true`: call it again).
   */
  async recoverDeliveries(since: Date | string): Promise<Redeliveries> {
    return (await this.request<Redeliveries>("POST", "/videos/deliveries/redeliver", { since: timeParameter(since) })).body;
  }

  /**
   * Lets notifications go again to one of the caller's paused endpoints
   * (`scheme://host[:port]`, as `account().paused_endpoints` and the delivery
   * log write it) and, unless `sendHeld` is `false`, sends again each one held
   * while it was paused: one manual attempt each, at most 50 (`more: true`:
   * send the rest with {@link recoverDeliveries} from when it was paused).
   * `resumed: false` when it was not paused (or a concurrent resume did it):
   * nothing is sent. Counts as a create against the key's rate limits.
   */
  async resumeEndpoint(endpoint: string, options: { sendHeld?: ResumeEndpointRequest["send_held"] } = {}): Promise<Resumed> {
    // `send_held` is `true` when left out: sent only when the caller gives it.
    const body: ResumeEndpointRequest = options.sendHeld === undefined ? { endpoint } : { endpoint, send_held: options.sendHeld };
    return (await this.request<Resumed>("POST", "/videos/webhook-endpoints/resume", body)).body;
  }

  /** The caller's credits, role, jobs in progress and paused notification endpoints. */
  async account(): Promise<Account> {
    return (await this.request<Account>("GET", "/videos/account")).body;
  }

  /** Approve or reject a completed video (reviewer and admin keys). */
  async review(jobId: string, decision: ReviewRequest): Promise<JobStatusBody> {
    return (await this.request<JobStatusBody>("POST", `/videos/jobs/${encodeURIComponent(jobId)}/review`, decision)).body;
  }

  /** Completed videos waiting for review, oldest first (reviewer and admin keys). */
  async reviewQueue(options: { limit?: number; cursor?: string } = {}): Promise<ReviewQueue> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.cursor) query.set("cursor", options.cursor);
    const suffix = query.size ? `?${query}` : "";
    return (await this.request<ReviewQueue>("GET", `/videos/review/queue${suffix}`)).body;
  }

  /** The figures: the frontend's for a user key (`scope: "user"`), all of them for an admin. */
  async stats(): Promise<UserStats | AdminStats> {
    return (await this.request<UserStats | AdminStats>("GET", "/videos/stats")).body;
  }

  /** The secret that signs your notifications. */
  async webhookSecret(): Promise<WebhookSecret> {
    return (await this.request<WebhookSecret>("GET", "/videos/webhook-secret")).body;
  }

  /** Sends a signed `ping` to `url` (under the `webhook_url` rules) and answers what the receiver said and how long it took. */
  async testWebhook(url: string): Promise<Schemas["PingAnswer"]> {
    return (await this.request<Schemas["PingAnswer"]>("POST", "/videos/webhook-test", { url })).body;
  }

  /** A new signing secret; the old one signs too for `graceSeconds` (24 hours by default, 0 to a week). */
  async rotateWebhookSecret(options: { graceSeconds?: number } = {}): Promise<WebhookSecret> {
    const body = options.graceSeconds === undefined ? undefined : { grace_seconds: options.graceSeconds };
    return (await this.request<WebhookSecret>("POST", "/videos/webhook-secret/rotate", body)).body;
  }
}

/** A time parameter's value (`created_*`, `since`, `until`): a `Date` as ISO 8601 UTC, text as given. */
function timeParameter(time: Date | string): string {
  return time instanceof Date ? time.toISOString() : time;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Why a notification was refused. */
export class SignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SignatureError";
  }
}

export interface VerifyOptions {
  /** How far `webhook-timestamp` may be from now; 5 minutes by default. */
  toleranceSeconds?: number;
  /** Now, in Unix seconds (for tests). */
  now?: number;
}

/**
 * Verifies a notification the Standard Webhooks way and returns its body:
 * HMAC-SHA256, keyed with the base64 part of your `whsec_…` secret, over
 * `{webhook-id}.{webhook-timestamp}.{raw body}`, compared in constant time
 * with each `v1,` signature. Pass the raw body exactly as received.
 */
export function verifyNotification(
  secret: string,
  headers: Record<string, string | string[] | undefined> | Headers,
  rawBody: string | Uint8Array,
  options: VerifyOptions = {},
): Notification {
  const header = (name: string): string => {
    const value = headers instanceof Headers ? headers.get(name) : headers[name] ?? headers[name.toLowerCase()];
    const text = Array.isArray(value) ? value[0] : value;
    if (!text) throw new SignatureError(`the ${name} header is missing`);
    return text;
  };
  const id = header("webhook-id");
  const timestamp = header("webhook-timestamp");
  const signatures = header("webhook-signature");
  const seconds = Number(timestamp);
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (!/^\d+$/.test(timestamp) || Math.abs(now - seconds) > (options.toleranceSeconds ?? 300)) {
    throw new SignatureError("the webhook-timestamp is missing or too far from now");
  }
  const key = Buffer.from(secret.startsWith("whsec_") ? secret.slice(6) : secret, "base64");
  const body = typeof rawBody === "string" ? Buffer.from(rawBody, "utf8") : Buffer.from(rawBody);
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest();
  const matches = signatures.split(" ").some((candidate) => {
    const [version, value] = candidate.split(",", 2);
    if (version !== "v1" || !value) return false;
    const given = Buffer.from(value, "base64");
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!matches) throw new SignatureError("no signature matches");
  return JSON.parse(body.toString("utf8")) as Notification;
}
