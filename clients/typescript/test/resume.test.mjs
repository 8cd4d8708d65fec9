// Resuming a paused notification endpoint, offline (a fetch of our own).
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

test("resumeEndpoint posts only the endpoint by default and resolves with what was sent again", async () => {
  const resumed = {
    endpoint: "https://hooks.example.com",
    resumed: true,
    redeliveries: [
      { job_id: "job_5", status: "failed", queued: true },
      { job_id: "job_4", status: "completed", queued: false },
    ],
    more: true,
  };
  const { asked, client } = answering([{ body: resumed }]);

  assert.deepEqual(await client.resumeEndpoint("https://hooks.example.com"), resumed);

  assert.equal(asked.length, 1);
  assert.equal(asked[0].method, "POST");
  assert.equal(asked[0].url.pathname + asked[0].url.search, "/videos/webhook-endpoints/resume");
  assert.equal(asked[0].headers.Authorization, "Bearer vj_test");
  assert.equal(asked[0].headers["Content-Type"], "application/json");
  assert.deepEqual(JSON.parse(asked[0].body), { endpoint: "https://hooks.example.com" });
  assert.ok(!("send_held" in JSON.parse(asked[0].body)), "send_held is left out: the API's default (true)");
});

test("resumeEndpoint with sendHeld false sends send_held: false, and resumed: false comes back as the API says", async () => {
  const notPaused = { endpoint: "http://10.0.0.5:8080", resumed: false, redeliveries: [], more: false };
  const { asked, client } = answering([{ body: notPaused }]);

  assert.deepEqual(await client.resumeEndpoint("http://10.0.0.5:8080", { sendHeld: false }), notPaused);
  await client.resumeEndpoint("http://10.0.0.5:8080", {});

  assert.deepEqual(asked.map((r) => [r.method, r.url.pathname, JSON.parse(r.body)]), [
    ["POST", "/videos/webhook-endpoints/resume", { endpoint: "http://10.0.0.5:8080", send_held: false }],
    ["POST", "/videos/webhook-endpoints/resume", { endpoint: "http://10.0.0.5:8080" }],
  ]);
});

test("resumeEndpoint refused (not scheme://host[:port]) throws the API's error naming the field", async () => {
  const refusal = {
    error: { code: "invalid_request", message: "is scheme://host[:port], as the account and the delivery log write it", field: "endpoint" },
  };
  const { client } = answering([{ status: 400, body: refusal }]);
  await assert.rejects(
    client.resumeEndpoint("hooks.example.com"),
    (err) => err instanceof ApiError && err.status === 400 && err.code === "invalid_request" && err.field === "endpoint",
  );
});

test("account's paused_endpoints come back as the API wrote them", async () => {
  const account = {
    user_id: "demo",
    role: "user",
    credits: 996,
    active_jobs: 1,
    max_active_jobs: 5,
    paused_endpoints: [{ endpoint: "https://hooks.example.com", paused_at: "2026-12-01T10:00:00.000Z", consecutive_failures: 15 }],
  };
  const { asked, client } = answering([{ body: account }]);
  const answer = await client.account();
  assert.deepEqual(answer.paused_endpoints, account.paused_endpoints);
  assert.deepEqual([asked[0].method, asked[0].url.pathname, asked[0].body], ["GET", "/videos/account", undefined]);
});
