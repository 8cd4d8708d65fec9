"use strict";
// The review page: plain JavaScript, no build step. Everything that comes from
// the API is put into the page as text (textContent, setAttribute), never as markup.
(function () {
  const KEY_ITEM = "videojobs.review.key";
  const PAGE_SIZE = 10;
  const REASONS = [
    ["product_changed", "Product changed"],
    ["unreadable_text", "Unreadable text"],
    ["distorted_anatomy", "Distorted hands or bodies"],
    ["rights_unclear", "Rights unclear"],
    ["needs_disclosure", "Needs AI disclosure"],
    ["poor_quality", "Poor quality"],
    ["off_brief", "Off brief"],
    ["other", "Other (explain in the note)"],
  ];
  const STATUSES = ["queued", "submitted", "retrying", "processing", "completed",
    "approved", "rejected", "failed", "canceled", "expired"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  let nextCursor = null;

  // ---- small DOM helpers -------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function notice(text, isError) {
    const node = $("notice");
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
  }

  const when = (text) => (text ? new Date(text).toLocaleString() : "—");

  // ---- the key: kept for this tab only -----------------------------------
  const storedKey = () => sessionStorage.getItem(KEY_ITEM);

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + storedKey() };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let json = null;
    try { json = await response.json(); } catch (_) { json = null; }
    return { status: response.status, body: json };
  }

  const errorText = (reply) =>
    (reply.body && reply.body.error && reply.body.error.message) || "The request failed (" + reply.status + ").";

  async function useKey(key) {
    sessionStorage.setItem(KEY_ITEM, key);
    const reply = await api("GET", "/videos/account");
    if (reply.status !== 200) {
      sessionStorage.removeItem(KEY_ITEM);
      showSignedOut();
      notice(reply.status === 401 ? "That key is not known." : errorText(reply), true);
      return false;
    }
    $("who-text").textContent = "Signed in as " + reply.body.user_id + " (" + reply.body.role + ")";
    $("who").hidden = false;
    $("key-form").hidden = true;
    if (reply.body.role === "user") notice("This key belongs to a user: only reviewers and admins can review.", true);
    else notice("");
    return true;
  }

  function showSignedOut() {
    $("who").hidden = true;
    $("key-form").hidden = false;
    $("queue").replaceChildren();
    $("charts").replaceChildren();
    $("queue-empty").hidden = true;
    $("more").hidden = true;
    $("queue-count").textContent = "";
  }

  // ---- the queue ----------------------------------------------------------
  async function loadQueue(append) {
    if (!storedKey()) return;
    const query = "?limit=" + PAGE_SIZE + (append && nextCursor ? "&cursor=" + encodeURIComponent(nextCursor) : "");
    const reply = await api("GET", "/videos/review/queue" + query);
    if (reply.status !== 200) {
      notice(errorText(reply), true);
      return;
    }
    if (!append) $("queue").replaceChildren();
    for (const job of reply.body.jobs) $("queue").append(card(job));
    nextCursor = reply.body.next_cursor;
    $("more").hidden = !nextCursor;
    const shown = $("queue").children.length;
    $("queue-empty").hidden = shown > 0;
    $("queue-count").textContent = shown ? "(" + shown + (nextCursor ? "+" : "") + ")" : "";
  }

  function facts(job) {
    const rows = [
      ["Job", job.job_id],
      ["Requested by", job.user_id],
      ["Workflow", job.workflow_type],
      ["Provider", job.provider],
      ["Created", when(job.created_at)],
      ["Completed", when(job.completed_at)],
      ["Cost", job.cost ? job.cost.credits + " credits" : "—"],
    ];
    if (job.video) {
      rows.push(["Video", job.video.width + "×" + job.video.height + ", " + job.video.duration_seconds + " s, "
        + (job.video.size_bytes / 1048576).toFixed(2) + " MB, " + job.video.mime_type]);
    }
    const list = el("dl", { class: "facts" });
    for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", {}, value));
    if (job.metadata && Object.keys(job.metadata).length) {
      list.append(el("dt", {}, "Metadata"), el("dd", {}, el("pre", {}, JSON.stringify(job.metadata, null, 2))));
    }
    return list;
  }

  async function loadEvents(jobId, list) {
    const reply = await api("GET", "/videos/jobs/" + encodeURIComponent(jobId) + "/events");
    if (reply.status !== 200) {
      list.replaceChildren(el("li", {}, errorText(reply)));
      return;
    }
    list.replaceChildren(...reply.body.events.map((e) => el("li", {},
      el("time", { datetime: e.at }, when(e.at)), " ",
      e.source + ": " + (e.previous_status ? e.previous_status + " → " : "") + e.status + " — " + e.message
        + (e.error_code ? " [" + e.error_code + "]" : "") + (e.actor ? " (by " + e.actor + ")" : ""))));
  }

  function card(job) {
    const item = el("li", { class: "card", "data-job-id": job.job_id });
    const video = el("video", { controls: true, preload: "metadata", muted: true, playsinline: true });
    const url = job.output && job.output.video_url;
    if (url && /^https?:\/\//.test(url)) video.src = url;
    const poster = job.output && job.output.thumbnail_url;
    if (poster && /^https?:\/\//.test(poster)) video.poster = poster;
    const status = el("span", { class: "badge", "data-role": "status" }, job.status_label);
    const events = el("ol", { class: "events" }, el("li", {}, "Loading…"));
    loadEvents(job.job_id, events);

    const reason = el("select", { "aria-label": "Reason", "data-role": "reason" },
      el("option", { value: "" }, "Reason…"), ...REASONS.map(([code, label]) => el("option", { value: code }, label)));
    const note = el("textarea", { "aria-label": "Note", "data-role": "note", placeholder: "Note (required for Other)", maxlength: 1000 });
    const approve = el("button", { type: "button", class: "approve", "data-role": "approve" }, "Approve");
    const reject = el("button", { type: "button", class: "reject", "data-role": "reject" }, "Reject");
    const problem = el("p", { class: "card-error", "data-role": "error", role: "alert" });
    const decide = el("div", { class: "decide" }, approve, reason, note, reject);

    async function send(decision) {
      problem.textContent = "";
      const body = { decision };
      if (reason.value) body.reason = reason.value;
      if (note.value.trim()) body.note = note.value.trim();
      if (decision === "reject" && !body.reason) {
        problem.textContent = "Choose a reason to reject the video.";
        return;
      }
      approve.disabled = reject.disabled = true;
      const reply = await api("POST", "/videos/jobs/" + encodeURIComponent(job.job_id) + "/review", body);
      if (reply.status !== 200) {
        problem.textContent = errorText(reply);
        approve.disabled = reject.disabled = false;
        return;
      }
      status.textContent = reply.body.status_label;
      status.classList.add(reply.body.status);
      item.classList.add("decided");
      item.setAttribute("data-status", reply.body.status);
      const why = reply.body.review && reply.body.review.reason ? " (" + reply.body.review.reason + ")" : "";
      decide.replaceChildren(el("p", { class: "outcome", "data-role": "outcome" },
        (reply.body.status === "approved" ? "Approved" : "Rejected") + why + "."));
      notice("Job " + job.job_id + ": " + reply.body.status_label + ".");
      loadEvents(job.job_id, events);
    }
    reason.addEventListener("change", () => { problem.textContent = ""; });
    approve.addEventListener("click", () => send("approve"));
    reject.addEventListener("click", () => send("reject"));

    item.append(
      el("div", {}, video),
      el("div", {},
        el("h3", {}, job.job_id), status,
        el("div", { class: "prompt", "data-role": "prompt" }, job.prompt || "(no prompt: animated from an image)"),
        facts(job),
        el("details", { open: true }, el("summary", {}, "Events"), events),
        decide, problem));
    return item;
  }

  // ---- the admin view: /videos/stats as inline SVG ------------------------
  function figure(name, title, ...content) {
    return el("figure", { class: "chart", "data-chart": name }, el("figcaption", {}, title), ...content);
  }

  // Vertical bars, one per [label, value].
  function columns(rows) {
    const width = 420, height = 200, top = 16, bottom = 48, left = 28;
    const max = Math.max(1, ...rows.map(([, v]) => v));
    const step = (width - left) / rows.length;
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img" });
    rows.forEach(([label, value, tone], i) => {
      const h = ((height - top - bottom) * value) / max;
      const x = left + i * step + step * 0.15;
      chart.append(svg("rect", { class: "bar " + (tone || ""), x, y: height - bottom - h, width: step * 0.7, height: Math.max(h, 0), "data-value": value }));
      chart.append(svg("text", { x: x + step * 0.35, y: height - bottom - h - 4, "text-anchor": "middle" }, value));
      // Labels hang down-left from under their bar, so that long ones fit.
      const cx = x + step * 0.35, ly = height - bottom + 12;
      chart.append(svg("text", { x: cx, y: ly, "text-anchor": "end", transform: "rotate(-30 " + cx + " " + ly + ")" }, label));
    });
    return chart;
  }

  // Horizontal bars, one per [label, fraction 0..1, caption, tone].
  function rates(rows) {
    const width = 420, line = 26, labelWidth = 140, barWidth = 200;
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + Math.max(line, rows.length * line), role: "img" });
    rows.forEach(([label, fraction, caption, tone], i) => {
      const y = i * line;
      const f = Math.min(1, Math.max(0, Number(fraction) || 0));
      chart.append(svg("text", { x: 0, y: y + 16 }, label));
      chart.append(svg("rect", { class: "track", x: labelWidth, y: y + 5, width: barWidth, height: 14 }));
      chart.append(svg("rect", { class: "bar " + (tone || ""), x: labelWidth, y: y + 5, width: barWidth * f, height: 14, "data-value": f }));
      chart.append(svg("text", { x: labelWidth + barWidth + 8, y: y + 16 }, caption));
    });
    return chart;
  }

  const percent = (rate) => (100 * (Number(rate) || 0)).toFixed(1) + " %";
  const seconds = (value) => (value === null || value === undefined ? "—" : Number(value).toFixed(1) + " s");

  function drawStats(stats) {
    const charts = [];
    const byStatus = stats.jobs_by_status || {};
    charts.push(figure("jobs_by_status", "Jobs by status",
      columns(STATUSES.map((s) => [s, Number(byStatus[s]) || 0,
        s === "failed" || s === "rejected" ? "bad" : s === "approved" ? "ok" : s === "expired" ? "warn" : ""]))));

    const ttc = stats.time_to_complete_seconds || {};
    const longest = Math.max(1, Number(ttc.p95) || 0, Number(ttc.average) || 0);
    charts.push(figure("time_to_complete", "Time to complete (" + (ttc.count || 0) + " jobs)",
      rates([["average", (Number(ttc.average) || 0) / longest, seconds(ttc.average)],
             ["95th percentile", (Number(ttc.p95) || 0) / longest, seconds(ttc.p95), "warn"]])));

    const failures = (rows, key) => rows.map((r) => [r[key], r.rate, percent(r.rate) + " (" + r.failed + "/" + r.finished + ")", "bad"]);
    charts.push(figure("failure_rate_by_provider", "Failure rate by provider",
      rates(failures(stats.failure_rate_by_provider || [], "provider"))));
    charts.push(figure("failure_rate_by_workflow_type", "Failure rate by workflow",
      rates(failures(stats.failure_rate_by_workflow_type || [], "workflow_type"))));

    const rejections = stats.rejections || { reviewed: 0, rejected: 0, rate: 0, by_reason: [] };
    charts.push(figure("rejections", "Rejections: " + percent(rejections.rate) + " of " + rejections.reviewed + " reviewed",
      rates((rejections.by_reason || []).map((r) => [r.reason, r.rate, r.count + " (" + percent(r.rate) + ")", "bad"]))));

    const stuck = stats.stuck_jobs || { count: 0, jobs: [], threshold_seconds: 0 };
    const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Job"), el("th", {}, "Status"),
      el("th", {}, "Provider"), el("th", {}, "Updated"))));
    const rows = el("tbody", {});
    for (const job of stuck.jobs || []) {
      rows.append(el("tr", {}, el("td", {}, job.job_id), el("td", {}, job.status), el("td", {}, job.provider), el("td", {}, when(job.updated_at))));
    }
    table.append(rows);
    charts.push(figure("stuck_jobs", "Stuck jobs (no change for " + Math.round((stuck.threshold_seconds || 0) / 60) + " min)",
      el("p", { class: "big", "data-role": "stuck-count" }, stuck.count), (stuck.jobs || []).length ? table : null));

    const stored = stats.stored_bytes_by_artifact_type || {};
    const storedMax = Math.max(1, ...Object.values(stored).map(Number));
    charts.push(figure("stored_bytes", "Stored bytes",
      rates(Object.entries(stored).map(([type, bytes]) => [type, Number(bytes) / storedMax, (Number(bytes) / 1048576).toFixed(1) + " MB"]))));

    $("charts").replaceChildren(...charts);
    $("stats-generated").textContent = "Generated " + when(stats.generated_at)
      + (stats.duplicate_callbacks !== undefined ? " · duplicate callbacks: " + stats.duplicate_callbacks : "");
  }

  async function loadStats() {
    if (!storedKey()) return;
    const reply = await api("GET", "/videos/stats");
    if (reply.status === 200 && reply.body.scope === "admin") {
      drawStats(reply.body);
      notice("");
    } else if (reply.status === 200) {
      // Anyone else gets the frontend's figures, not these charts.
      $("charts").replaceChildren();
      notice("Only admins can see the stats.", true);
    } else {
      $("charts").replaceChildren();
      notice(reply.status === 403 ? "Only admins can see the stats." : errorText(reply), true);
    }
  }

  // ---- wiring ---------------------------------------------------------------
  function show(view) {
    const stats = view === "stats";
    $("queue-view").hidden = stats;
    $("stats-view").hidden = !stats;
    $("tab-queue").setAttribute("aria-pressed", String(!stats));
    $("tab-stats").setAttribute("aria-pressed", String(stats));
    notice("");
    if (stats) loadStats(); else loadQueue(false);
  }

  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    $("api-key").value = "";
    if (!key) return;
    if (await useKey(key)) show($("stats-view").hidden ? "queue" : "stats");
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    showSignedOut();
    notice("The key is forgotten.");
  });
  $("tab-queue").addEventListener("click", () => show("queue"));
  $("tab-stats").addEventListener("click", () => show("stats"));
  $("refresh").addEventListener("click", () => loadQueue(false));
  $("more").addEventListener("click", () => loadQueue(true));
  $("stats-refresh").addEventListener("click", loadStats);

  // Exposed for the browser test, which checks the charts against a sample.
  window.videojobsReview = { drawStats };

  if (storedKey()) {
    useKey(storedKey()).then((ok) => { if (ok) show("queue"); });
  } else {
    notice("Enter a reviewer's API key to start.");
  }
})();
