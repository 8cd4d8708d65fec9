// Drives Debian's Chromium (headless) through the review page, as a reviewer
// and then an admin would. Run by tests/integration/review_page.rs:
//
//   node tests/browser/review.mjs <api url> <reviewer key> <artifact dir> \
//        <job to approve> <job to reject> <admin key>
//
// Prints one JSON line with what it saw; exits non-zero on any failure,
// including a script error or a Content-Security-Policy violation on the page.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [api, reviewerKey, artifactDir, approveId, rejectId, adminKey] = process.argv.slice(2);
if (!api || !reviewerKey || !artifactDir || !approveId || !rejectId || !adminKey) {
  console.error("usage: review.mjs <api url> <reviewer key> <artifact dir> <approve job> <reject job> <admin key>");
  process.exit(2);
}
mkdirSync(artifactDir, { recursive: true });

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  // As root, without a sandbox; no background traffic on a closed network.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20000);
  page.on("pageerror", (err) => problems.push("page error: " + err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) problems.push("console error: " + msg.text());
  });

  await page.goto(api + "/review");
  await page.fill("#api-key", reviewerKey);
  await page.click("#key-save");
  await page.waitForSelector("#who:not([hidden])");
  seen.signed_in_as = (await page.textContent("#who-text")).trim();

  const cardOf = (id) => page.locator(`li.card[data-job-id="${id}"]`);
  // Waits in the page for one of a video's events, never for ever: a video that
  // does not load fails the run with what Chromium knew about it.
  const videoEvent = (locator, event, act) => locator.evaluate((video, [event, act]) => new Promise((resolve, reject) => {
    const state = () => `src=${video.currentSrc || video.src || "(none)"} readyState=${video.readyState} networkState=${video.networkState}`;
    if (event === "loadedmetadata" && video.readyState >= 1) return resolve();
    const timer = setTimeout(() => reject(new Error(`no ${event} in 20 s: ${state()}`)), 20000);
    video.addEventListener(event, () => { clearTimeout(timer); resolve(); }, { once: true });
    video.addEventListener("error", () => { clearTimeout(timer); reject(new Error(`the video did not load (${video.error && video.error.code}): ${state()}`)); }, { once: true });
    if (act === "load" && video.networkState !== HTMLMediaElement.NETWORK_LOADING) {
      // Chromium may put off preloading a video it has not shown yet: ask for it.
      video.preload = "auto";
      video.load();
    }
    if (act === "seek") video.currentTime = Math.min(1, video.duration / 2);
  }), [event, act]);
  for (const id of [approveId, rejectId]) {
    await cardOf(id).waitFor();
    await cardOf(id).scrollIntoViewIfNeeded();
    // The video plays from its presigned URL: Chromium loads its metadata.
    await videoEvent(cardOf(id).locator("video"), "loadedmetadata", "load");
    // Its events are listed (the job's history ends in "completed").
    await cardOf(id).locator("ol.events li", { hasText: "completed" }).first().waitFor();
    // A frame from the middle of the video, for the screenshot.
    await videoEvent(cardOf(id).locator("video"), "seeked", "seek");
  }
  seen.prompt = (await cardOf(approveId).locator('[data-role="prompt"]').textContent()).trim();
  seen.video_width = await cardOf(approveId).locator("video").evaluate((v) => v.videoWidth);
  seen.queue_before = await page.locator("li.card").count();

  const rejectCard = cardOf(rejectId);
  // Rejecting without a reason is stopped on the page, before any request.
  await rejectCard.locator('[data-role="reject"]').click();
  seen.reject_without_reason = (await rejectCard.locator('[data-role="error"]').textContent()).trim();
  await rejectCard.locator('[data-role="reason"]').selectOption("unreadable_text");
  await rejectCard.locator('[data-role="note"]').fill("The label on the bottle is <b>blurred</b>");
  await page.screenshot({ path: join(artifactDir, "review-queue.png"), fullPage: true });

  await cardOf(approveId).locator('[data-role="approve"]').click();
  await cardOf(approveId).locator('[data-role="outcome"]').waitFor();
  seen.approved_badge = (await cardOf(approveId).locator('[data-role="status"]').textContent()).trim();

  await rejectCard.locator('[data-role="reject"]').click();
  await rejectCard.locator('[data-role="outcome"]').waitFor();
  seen.rejected_badge = (await rejectCard.locator('[data-role="status"]').textContent()).trim();
  // The reviewer's note comes back in the job's events as text, not markup.
  await rejectCard.locator("ol.events li", { hasText: "<b>blurred</b>" }).first().waitFor();
  seen.note_is_text = (await rejectCard.locator("ol.events b").count()) === 0;
  await page.screenshot({ path: join(artifactDir, "review-page.png"), fullPage: true });

  // A fresh load lists neither: they left the queue.
  await page.click("#refresh");
  await page.waitForFunction(([a, b]) => !document.querySelector(`li.card[data-job-id="${a}"]`)
    && !document.querySelector(`li.card[data-job-id="${b}"]`), [approveId, rejectId]);
  seen.queue_after = await page.locator("li.card").count();

  // The admin view draws the real GET /videos/stats.
  await page.click("#key-forget");
  await page.fill("#api-key", adminKey);
  await page.click("#key-save");
  await page.waitForSelector("#who:not([hidden])");
  await page.click("#tab-stats");
  // A bar of a zero count has no height, so wait for it to exist rather than to show.
  await page.locator('figure[data-chart="jobs_by_status"] rect.bar').nth(9).waitFor({ state: "attached" });
  seen.status_bars = await page.locator('figure[data-chart="jobs_by_status"] rect.bar').count();
  seen.charts = await page.locator("figure.chart").evaluateAll((figures) => figures.map((f) => f.getAttribute("data-chart")));
  seen.approved_bar = Number(await page.locator('figure[data-chart="jobs_by_status"] rect.bar').nth(5).getAttribute("data-value"));
  seen.rejected_bar = Number(await page.locator('figure[data-chart="jobs_by_status"] rect.bar').nth(6).getAttribute("data-value"));
  seen.stuck_count = Number((await page.textContent('[data-role="stuck-count"]')).trim());
  await page.screenshot({ path: join(artifactDir, "review-stats.png"), fullPage: true });
} catch (err) {
  problems.push(String(err && err.stack || err));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ seen, problems }));
process.exit(problems.length ? 1 : 0);
