// Drives Debian's Chromium (headless) through the API's docs page, GET /docs.
// Run by tests/integration/review_page.rs:
//
//   node tests/browser/docs.mjs <api url> <artifact dir>
//
// Prints one JSON line with what it saw; exits non-zero on any failure,
// including a script error or a Content-Security-Policy violation (Chromium
// reports those as console errors).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [api, artifactDir] = process.argv.slice(2);
if (!api || !artifactDir) {
  console.error("usage: docs.mjs <api url> <artifact dir>");
  process.exit(2);
}
mkdirSync(artifactDir, { recursive: true });

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(20000);
  page.on("pageerror", (err) => problems.push("page error: " + err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push("console error: " + msg.text());
  });
  const requested = [];
  page.on("request", (request) => requested.push(request.url()));

  await page.goto(api + "/docs");
  await page.waitForSelector("#operations details.op");
  seen.notice = (await page.textContent("#notice")).trim();
  seen.operations = await page.locator("#operations details.op").count();
  seen.title = (await page.textContent("#intro h2")).trim();
  const generate = page.locator("#generateVideo");
  await generate.locator("summary").click();
  seen.generate_text = await generate.locator(".body").innerText();
  seen.schemas = await page.locator("#schemas details.op").count();
  await page.fill("#filter", "stats");
  seen.visible_after_filter = await page.locator("#operations details.op:not([hidden])").count();
  await page.fill("#filter", "");
  await page.screenshot({ path: join(artifactDir, "docs-page.png"), fullPage: false });
  seen.other_origins = requested.filter((url) => !url.startsWith(api));
} catch (err) {
  problems.push(String(err && err.stack || err));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ seen, problems }));
process.exit(problems.length ? 1 : 0);
