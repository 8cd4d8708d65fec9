// waitForJob follows the API's Retry-After, offline (a fetch of our own).
import { test } from "node:test";
import assert from "node:assert/strict";
import { VideoJobsClient, RECOMMENDED_POLL_INTERVAL_MS } from "../dist/index.js";

/** A fetch that answers each status read with the next of `answers` ([status, retryAfter?]), recording when it was asked. */
function scripted(answers) {
  const asked = [];
  const fetch = async () => {
    asked.push(Date.now());
    const [status, retryAfter] = answers[Math.min(asked.length - 1, answers.length - 1)];
    const headers = { "content-type": "application/json", ...(retryAfter ? { "retry-after": String(retryAfter) } : {}) };
    return new Response(JSON.stringify({ job_id: "job_x", status, progress: 0 }), { status: 200, headers });
  };
  return { asked, client: new VideoJobsClient({ baseUrl: "http://api.invalid", apiKey: "vj_test", fetch }) };
}

test("each wait is what the last answer's Retry-After asked for", async () => {
  const { asked, client } = scripted([["queued", 1], ["processing", 1], ["completed"]]);
  const done = await client.waitForJob("job_x");
  assert.equal(done.status, "completed");
  assert.equal(asked.length, 3);
  // Never sooner than asked (a timer may only fire late).
  assert.ok(asked[1] - asked[0] >= 990 && asked[2] - asked[1] >= 990, JSON.stringify(asked));
});

test("without a Retry-After the recommended interval applies, and intervalMs overrides either", async () => {
  const silent = scripted([["queued"], ["completed"]]);
  await silent.client.waitForJob("job_x");
  assert.ok(silent.asked[1] - silent.asked[0] >= RECOMMENDED_POLL_INTERVAL_MS - 10);

  const fixed = scripted([["queued", 30], ["completed"]]);
  await fixed.client.waitForJob("job_x", { intervalMs: 50 });
  assert.ok(fixed.asked[1] - fixed.asked[0] < 30_000, "the caller's interval wins over the hint");
});

test("statusWithHint gives the hint in milliseconds, and nothing for a finished job", async () => {
  const { client } = scripted([["processing", 7], ["completed"]]);
  assert.equal((await client.statusWithHint("job_x")).retryAfterMs, 7000);
  assert.equal((await client.statusWithHint("job_x")).retryAfterMs, undefined);
});

test("a deadline goes as the Cancel-After header", async () => {
  let sent;
  const fetch = async (_url, init) => {
    sent = init.headers;
    return new Response(JSON.stringify({ job_id: "job_x", status: "queued" }), { status: 202, headers: { "content-type": "application/json" } });
  };
  const client = new VideoJobsClient({ baseUrl: "http://api.invalid", apiKey: "vj_test", fetch });
  await client.generate({ prompt: "A kite" }, { cancelAfter: "5m" });
  assert.equal(sent["Cancel-After"], "5m");
});
