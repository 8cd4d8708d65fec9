// The delivery log and redelivery, offline (a fetch of our own).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiError, VideoJobsClient } from "../dist/index.js";

/**
 * A fetch that answers each request with the next of `answers` (`{status, body}`;
 * the last one again once they run out), recording what was asked for.
 */
function answering(answers) {
  const asked = [];
  const fetch = async (url, init = {}) => {
    asked.push({ url: new URL(url), method: init.method, headers: init.headers ?? {}, body: init.body });
    const { status = 200, body } = answers[Math.min(asked.length - 1, answers.length - 1)];
    return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  };
  return { asked, client: new VideoJobsClient({ baseUrl: "http://api.invalid", apiKey: "vj_test", fetch }) };
}

const attempt = (jobId, at, overrides = {}) => ({
  job_id: jobId,
  status: "completed",
  at,
  trigger: "scheduled",
  attempt: 1,
  endpoint: "https://hooks.example.com",
  outcome: "failed",
  http_status: null,
  error_class: "notify_network",
  duration_ms: 5003,
  ...overrides,
});

test("deliveries reads the job's log, its id escaped as one path segment", async () => {
  const log = { job_id: "job_1", deliveries: [attempt("job_1", "2026-12-01T10:00:01.000Z")] };
  const { asked, client } = answering([{ body: log }]);
  assert.deepEqual(await client.deliveries("job_1"), log);
  await client.deliveries("a/b");
  assert.deepEqual(asked.map((r) => [r.method, r.url.pathname, r.url.search, r.body]), [
    ["GET", "/videos/jobs/job_1/deliveries", "", undefined],
    ["GET", "/videos/jobs/a%2Fb/deliveries", "", undefined],
  ]);
  assert.equal(asked[0].headers.Authorization, "Bearer vj_test");
});

test("failedDeliveriesPage sends every filter URL-encoded under the API's names, and none when none is given", async () => {
  const { asked, client } = answering([{ body: { deliveries: [], next_cursor: null } }]);
  await client.failedDeliveriesPage({
    limit: 10,
    cursor: "c/1+=",
    since: new Date(Date.UTC(2026, 11, 1)),
    until: "2026-12-02T00:00:00+02:00",
    errorClass: "notify_http_500",
  });
  await client.failedDeliveriesPage();
  assert.equal(asked[0].method, "GET");
  assert.equal(asked[0].url.pathname, "/videos/deliveries");
  assert.equal(
    asked[0].url.search,
    "?limit=10&cursor=c%2F1%2B%3D&since=2026-12-01T00%3A00%3A00.000Z&until=2026-12-02T00%3A00%3A00%2B02%3A00&error_class=notify_http_500",
  );
  assert.equal(asked[1].url.pathname + asked[1].url.search, "/videos/deliveries");
});

test("failedDeliveries follows next_cursor with the same filters, through empty pages, until it is null", async () => {
  const { asked, client } = answering([
    { body: { deliveries: [attempt("job_3", "2026-12-01T12:00:00.000Z")], next_cursor: "c1" } },
    { body: { deliveries: [], next_cursor: "c2" } },
    { body: { deliveries: [], next_cursor: "c3" } },
    { body: { deliveries: [attempt("job_2", "2026-12-01T11:00:00.000Z"), attempt("job_1", "2026-12-01T10:00:00.000Z")], next_cursor: null } },
  ]);
  const seen = [];
  for await (const failed of client.failedDeliveries({ pageSize: 2, since: "2026-12-01T00:00:00Z", errorClass: "notify_network" })) {
    seen.push(failed.job_id);
  }
  assert.deepEqual(seen, ["job_3", "job_2", "job_1"]);
  const query = "since=2026-12-01T00%3A00%3A00Z&error_class=notify_network";
  assert.deepEqual(
    asked.map((r) => r.url.search),
    [`?limit=2&${query}`, `?limit=2&cursor=c1&${query}`, `?limit=2&cursor=c2&${query}`, `?limit=2&cursor=c3&${query}`],
  );
});

test("failedDeliveries ends on an empty last page", async () => {
  const { asked, client } = answering([{ body: { deliveries: [], next_cursor: null } }]);
  const seen = [];
  for await (const failed of client.failedDeliveries()) seen.push(failed);
  assert.deepEqual(seen, []);
  assert.equal(asked.length, 1);
  assert.equal(asked[0].url.search, "");
});

test("redeliver sends no body for the job's latest notification, and the status when one is asked for", async () => {
  const queued = { redeliveries: [{ job_id: "job_1", status: "approved", queued: true }], more: false };
  const standing = { redeliveries: [{ job_id: "job_1", status: "completed", queued: false }], more: false };
  const { asked, client } = answering([{ status: 202, body: queued }, { status: 202, body: standing }]);
  assert.deepEqual(await client.redeliver("job_1"), queued);
  assert.deepEqual(await client.redeliver("job_1", { status: "completed" }), standing);
  assert.deepEqual(asked.map((r) => [r.method, r.url.pathname, r.body]), [
    ["POST", "/videos/jobs/job_1/redeliver", undefined],
    ["POST", "/videos/jobs/job_1/redeliver", JSON.stringify({ status: "completed" })],
  ]);
  assert.equal(asked[0].headers["Content-Type"], undefined);
  assert.equal(asked[1].headers["Content-Type"], "application/json");
});

test("redeliver refused (a job without a webhook_url) throws the API's error", async () => {
  const refusal = { error: { code: "wrong_state", message: "the job has no webhook_url to notify", next_step: "Nothing to send." } };
  const { client } = answering([{ status: 409, body: refusal }]);
  await assert.rejects(client.redeliver("job_1"), (err) => err instanceof ApiError && err.status === 409 && err.code === "wrong_state");
});

test("recoverDeliveries posts since, a Date as ISO 8601 UTC and text as given", async () => {
  const answer = { redeliveries: [{ job_id: "job_5", status: "failed", queued: true }], more: true };
  const { asked, client } = answering([{ status: 202, body: answer }]);
  assert.deepEqual(await client.recoverDeliveries(new Date(Date.UTC(2026, 11, 1))), answer);
  await client.recoverDeliveries("2026-12-01T00:00:00+02:00");
  assert.deepEqual(asked.map((r) => [r.method, r.url.pathname, r.url.search, JSON.parse(r.body)]), [
    ["POST", "/videos/deliveries/redeliver", "", { since: "2026-12-01T00:00:00.000Z" }],
    ["POST", "/videos/deliveries/redeliver", "", { since: "2026-12-01T00:00:00+02:00" }],
  ]);
  assert.equal(asked[0].headers["Content-Type"], "application/json");
});
