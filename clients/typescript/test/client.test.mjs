// The client against the local stack (scripts/contract-test starts one and
// sets VIDEOJOBS_URL and the demo keys).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { ApiError, RECOMMENDED_POLL_INTERVAL_MS, verifyNotification } from "../dist/index.js";
import { admin, client, png, reviewer, stackUp } from "./helpers.mjs";

before(() => {
  // Without a stack these tests cannot run: say so loudly instead of skipping.
  assert.ok(stackUp, "set VIDEOJOBS_URL and VIDEOJOBS_KEY (scripts/contract-test does)");
});

const fast = { intervalMs: 300, timeoutMs: 120_000 };

test("generate, follow it with progress, fetch the video, list it, and a reviewer approves it", async () => {
  const api = client();
  const key = `ts-${Date.now()}`;
  const job = await api.generate({ prompt: "A paper boat, from the TypeScript client", duration_seconds: 1, resolution: "480p" }, { idempotencyKey: key });
  assert.equal(job.status, "queued");
  assert.equal(job.status_label, "Waiting to start");
  assert.equal(job.replayed, false);
  assert.ok(job.estimated_time_seconds > 0);
  const again = await api.generate({ prompt: "A paper boat, from the TypeScript client", duration_seconds: 1, resolution: "480p" }, { idempotencyKey: key });
  assert.equal(again.job_id, job.job_id);
  assert.equal(again.replayed, true);

  // An in-flight job says when to ask again and when it should be done; a finished one does not.
  const hinted = await api.statusWithHint(job.job_id);
  if (["queued", "submitted", "retrying", "processing"].includes(hinted.status.status)) {
    assert.ok(hinted.retryAfterMs >= 2000 && hinted.retryAfterMs <= 30_000, JSON.stringify(hinted));
    assert.ok(Date.parse(hinted.status.estimated_completion_at) > Date.parse(hinted.status.created_at));
  } else {
    assert.equal(hinted.retryAfterMs, undefined);
    assert.equal(hinted.status.estimated_completion_at, null);
  }

  const seen = [];
  const done = await api.waitForJob(job.job_id, { ...fast, onProgress: (s) => seen.push(s) });
  assert.equal(done.status, "completed", JSON.stringify(done));
  assert.equal(done.status_label, "Ready for review");
  assert.ok(seen.length >= 1);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].progress >= seen[i - 1].progress, "progress never goes down");
  assert.equal(seen.at(-1).progress, 100);
  assert.deepEqual(done.cost, { credits: done.cost.credits, refunded: 0, charged: done.cost.credits });
  assert.equal(done.estimated_completion_at, null);
  assert.ok(Date.parse(done.expires_at) > Date.now(), "a video waiting for review says when it goes");
  assert.ok(RECOMMENDED_POLL_INTERVAL_MS >= 2000 && RECOMMENDED_POLL_INTERVAL_MS <= 5000);

  const result = await api.result(job.job_id);
  assert.equal(result.video.mime_type, "video/mp4");
  const video = await fetch(result.video.url);
  assert.equal(video.status, 200);
  assert.ok((await video.arrayBuffer()).byteLength > 1000);

  const events = await api.events(job.job_id);
  assert.equal(events.events[0].status, "queued");
  assert.equal(events.events.at(-1).status, "completed");

  let found = false;
  for await (const listed of api.list({ pageSize: 1 })) {
    if (listed.job_id === job.job_id) { found = true; break; }
  }
  assert.ok(found, "the async iterator reaches the job through the pages");

  const queue = await reviewer().reviewQueue({ limit: 100 });
  assert.ok(queue.jobs.some((j) => j.job_id === job.job_id));
  const approved = await reviewer().review(job.job_id, { decision: "approve" });
  assert.equal(approved.status, "approved");
  assert.equal(approved.status_label, "Ready to use");
});

test("animate an uploaded image", async () => {
  const api = client();
  const job = await api.animateUpload(png(320, 240), "image/png", { length: 1, frame_rate: 6, zoom_speed: 0.2 });
  const done = await api.waitForJob(job.job_id, fast);
  assert.equal(done.status, "completed", JSON.stringify(done));
  assert.equal(done.workflow_type, "image_to_video");
  const result = await api.result(job.job_id);
  assert.ok(result.video.width > 0 && result.video.height > 0 && result.video.duration_seconds > 0, JSON.stringify(result));
});

test("cancel gives the credits back; a retry and a remix make new jobs under it", async () => {
  const api = client();
  const before = await api.account();
  const job = await api.generate({ prompt: "to be canceled", duration_seconds: 3 });
  assert.equal((await api.account()).credits, before.credits - 3);
  const canceled = await api.cancel(job.job_id);
  assert.equal(canceled.status, "canceled");
  assert.deepEqual(canceled.cost, { credits: 3, refunded: 3, charged: 0 });
  assert.equal((await api.account()).credits, before.credits);
  await assert.rejects(api.cancel(job.job_id), (err) => err instanceof ApiError && err.status === 409 && err.code === "wrong_state");

  // Made again: a new job naming its parent, charged again, listed under it.
  const again = await api.retry(job.job_id, { idempotencyKey: `retry-${job.job_id}` });
  assert.equal(again.status, "queued");
  assert.equal((await api.account()).credits, before.credits - 3);
  const remixed = await api.remix(job.job_id, { duration_seconds: 1 });
  assert.equal((await api.status(remixed.job_id)).parent_job_id, job.job_id);
  const children = await api.children(job.job_id);
  assert.deepEqual(children.jobs.map((j) => j.job_id).sort(), [again.job_id, remixed.job_id].sort());
  for (const child of [again.job_id, remixed.job_id]) await api.cancel(child);
  assert.equal((await api.account()).credits, before.credits);
});

test("tags are echoed, and the list's filters find a job by its tag, kind and status", async () => {
  const api = client();
  const run = Date.now().toString(36);
  const [tagA, tagB] = [`ts-a-${run}`, `ts-b-${run}`];
  // Held in flight by the local provider (scripts/contract-test allows the fault), so that both can be canceled.
  const slow = { duration_seconds: 1, resolution: "480p", metadata: { local_faults: { delay_ms: 60_000 } } };
  const a = await api.generate({ ...slow, prompt: "tagged a", tags: [tagA, "ts:contract"] });
  const b = await api.generate({ ...slow, prompt: "tagged b", tags: [tagB] });
  assert.deepEqual((await api.status(a.job_id)).tags, [tagA, "ts:contract"]);
  assert.deepEqual((await api.status(b.job_id)).tags, [tagB]);
  await assert.rejects(api.generate({ prompt: "bad tag", tags: ["Promo"] }), (err) => err instanceof ApiError && err.status === 400);

  const ids = async (filter) => {
    const found = [];
    for await (const job of api.list({ pageSize: 2, ...filter })) found.push(job.job_id);
    return found;
  };
  assert.deepEqual(await ids({ tag: tagA }), [a.job_id]);
  assert.deepEqual(await ids({ tag: tagB }), [b.job_id]);
  assert.deepEqual(await ids({ tag: tagA, workflowType: "text_to_video", createdAfter: new Date(Date.now() - 3_600_000) }), [a.job_id]);
  assert.deepEqual(await ids({ tag: tagA, workflowType: "image_to_video" }), []);
  const page = await api.listPage({ tag: tagB, limit: 1 });
  assert.ok(page.jobs.length <= 1);

  // Canceled, they are listed under that status (the index may lag a moment).
  for (const job of [a, b]) await api.cancel(job.job_id);
  let canceled = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    canceled = await ids({ tag: tagA, status: ["canceled", "failed"] });
    if (canceled.length) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert.deepEqual(canceled, [a.job_id]);
  assert.deepEqual(await ids({ tag: tagA, status: "approved" }), []);
});

test("a batch answers each item in order, and again the same under one key", async () => {
  const api = client();
  const request = { defaults: { duration_seconds: 1, resolution: "480p" }, items: [{ ref: "a", prompt: "One" }, { ref: "b", prompt: "Two" }] };
  const key = `batch-${Date.now()}`;
  const first = await api.batch(request, { idempotencyKey: key });
  assert.deepEqual(first.items.map((i) => [i.ref, i.status]), [["a", 202], ["b", 202]]);
  const again = await api.batch(request, { idempotencyKey: key });
  assert.deepEqual(again.items.map((i) => i.job.job_id), first.items.map((i) => i.job.job_id));
  for (const item of first.items) await api.cancel(item.job.job_id);
  await assert.rejects(api.batch({ items: [{ ref: "x", prompt: "" }] }), (err) => err instanceof ApiError && err.status === 400 && err.field === "items[0].prompt");
});

test("errors are typed, with the API's code, message and next step", async () => {
  const api = client();
  await assert.rejects(api.status("job_00000000000000000000000000"), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 404);
    assert.equal(err.code, "job_not_found");
    assert.equal(err.next_step, "Check the job id.");
    return true;
  });
  await assert.rejects(api.generate({ prompt: "too long", duration_seconds: 99 }), (err) => {
    assert.equal(err.code, "invalid_request");
    assert.equal(err.field, "duration_seconds");
    return true;
  });
  await assert.rejects(client("vj_not_a_key").account(), (err) => err.status === 401 && err.code === "unauthenticated");
  const notReady = await api.generate({ prompt: "not ready yet", duration_seconds: 2 });
  await assert.rejects(api.result(notReady.job_id), (err) => err.status === 409 && err.code === "wrong_state");
});

test("a notification arrives signed, and verifies with the user's secret", async () => {
  const api = client();
  const { secret } = await api.webhookSecret();
  const received = new Promise((resolve) => {
    const server = createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        res.writeHead(204).end();
        server.close();
        resolve({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    server.listen(0, "127.0.0.1", async () => {
      const port = server.address().port;
      await api.generate({ prompt: "notify me", duration_seconds: 1, webhook_url: `http://127.0.0.1:${port}/hook` });
    });
  });
  const { headers, body } = await received;
  const notification = verifyNotification(secret, headers, body);
  assert.equal(notification.type, "job.completed");
  assert.equal(notification.status, "completed");
  assert.throws(() => verifyNotification(secret, headers, body.replace("completed", "approved")));
});

test("the delivery log of a job without a webhook_url is empty, and it cannot be sent again", async () => {
  const api = client();
  // Held in flight by the local provider (scripts/contract-test allows the fault), so that it can be canceled.
  const job = await api.generate({
    prompt: "nobody to notify",
    duration_seconds: 1,
    resolution: "480p",
    metadata: { local_faults: { delay_ms: 60_000 } },
  });
  try {
    const wrongState = (err) => err instanceof ApiError && err.status === 409 && err.code === "wrong_state";
    await assert.rejects(api.redeliver(job.job_id), wrongState);
    await assert.rejects(api.redeliver(job.job_id, { status: "completed" }), wrongState);
    const log = await api.deliveries(job.job_id);
    assert.equal(log.job_id, job.job_id);
    assert.deepEqual(log.deliveries, []);
    // Other tests' notifications may fail meanwhile: only the shape is checked.
    const page = await api.failedDeliveriesPage({ since: new Date(), limit: 5 });
    assert.ok(Array.isArray(page.deliveries), JSON.stringify(page));
    assert.ok(page.next_cursor === null || typeof page.next_cursor === "string");
    // Nothing has failed a day from now: nothing is sent again.
    assert.deepEqual(await api.recoverDeliveries(new Date(Date.now() + 86_400_000)), { redeliveries: [], more: false });
  } finally {
    // Its credits back; a failure above stays the one reported.
    await api.cancel(job.job_id).catch(() => {});
  }
});

test("stats: a user sees the queue, the typical time and their own jobs; an admin every figure", async () => {
  const mine = await client().stats();
  assert.equal(mine.scope, "user");
  assert.ok(mine.your_jobs.counted >= 1);
  assert.equal(typeof mine.queue.waiting, "number");
  const all = await admin().stats();
  assert.equal(all.scope, "admin");
  assert.ok("duplicate_callbacks" in all);
});
