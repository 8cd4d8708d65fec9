// The job list's filters and paging, offline (a fetch of our own).
import { test } from "node:test";
import assert from "node:assert/strict";
import { VideoJobsClient } from "../dist/index.js";

/** A fetch that answers each request with the next of `pages` (JobList bodies), recording the URLs asked for. */
function paged(pages) {
  const asked = [];
  const fetch = async (url) => {
    asked.push(new URL(url));
    const page = pages[Math.min(asked.length - 1, pages.length - 1)];
    return new Response(JSON.stringify(page), { status: 200, headers: { "content-type": "application/json" } });
  };
  return { asked, client: new VideoJobsClient({ baseUrl: "http://api.invalid", apiKey: "vj_test", fetch }) };
}

const job = (id, tags = []) => ({ job_id: id, status: "failed", workflow_type: "text_to_video", tags });

test("listPage sends every filter URL-encoded under the API's names", async () => {
  const { asked, client } = paged([{ jobs: [], next_cursor: null }]);
  await client.listPage({
    limit: 10,
    cursor: "c/1+=",
    status: ["failed", "expired"],
    workflowType: "text_to_video",
    tag: "campaign:spring-26",
    parentJobId: "job_01abc",
    createdAfter: new Date(Date.UTC(2026, 4, 1)),
    createdBefore: "2026-06-01T00:00:00+02:00",
  });
  assert.equal(asked[0].pathname, "/videos/jobs");
  assert.equal(
    asked[0].search,
    "?limit=10&cursor=c%2F1%2B%3D&status=failed%2Cexpired&workflow_type=text_to_video&tag=campaign%3Aspring-26" +
      "&parent_job_id=job_01abc&created_after=2026-05-01T00%3A00%3A00.000Z&created_before=2026-06-01T00%3A00%3A00%2B02%3A00",
  );
});

test("a status given as text goes as it is, and no filter sends no query", async () => {
  const { asked, client } = paged([{ jobs: [], next_cursor: null }]);
  await client.listPage({ status: "failed,expired" });
  await client.listPage();
  await client.listPage({ status: [] });
  assert.deepEqual(asked.map((u) => u.search), ["?status=failed%2Cexpired", "", ""]);
});

test("list follows next_cursor with the same filters, through an empty page, until it is null", async () => {
  const { asked, client } = paged([
    { jobs: [job("job_1", ["promo"])], next_cursor: "c1" },
    { jobs: [], next_cursor: "c2" },
    { jobs: [], next_cursor: "c3" },
    { jobs: [job("job_2", ["promo"])], next_cursor: null },
  ]);
  const seen = [];
  for await (const listed of client.list({ pageSize: 5, tag: "promo", status: ["failed"] })) seen.push(listed.job_id);
  assert.deepEqual(seen, ["job_1", "job_2"]);
  assert.deepEqual(
    asked.map((u) => u.search),
    [
      "?limit=5&status=failed&tag=promo",
      "?limit=5&cursor=c1&status=failed&tag=promo",
      "?limit=5&cursor=c2&status=failed&tag=promo",
      "?limit=5&cursor=c3&status=failed&tag=promo",
    ],
  );
});

test("list ends on an empty last page", async () => {
  const { asked, client } = paged([{ jobs: [], next_cursor: null }]);
  const seen = [];
  for await (const listed of client.list({ workflowType: "image_to_video" })) seen.push(listed);
  assert.deepEqual(seen, []);
  assert.equal(asked.length, 1);
  assert.equal(asked[0].search, "?workflow_type=image_to_video");
});
