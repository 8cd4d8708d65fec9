//! The review page in a real browser: the whole pipeline (local API on a port,
//! local provider rendering with ffmpeg, the worker on the queue) makes two
//! videos, then headless Chromium (Debian's, driven by playwright-core in
//! `tests/browser/review.mjs`) approves one and rejects the other through
//! `GET /review`, and draws the admin's stats. Screenshots are kept in
//! `target/test-artifacts/`.

use crate::harness::{repo_root, TestApp};
use lambda_http::http::StatusCode;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Far more than a run takes (a few seconds); each step in the script has its own limit too.
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(240);
use videojobs_core::model::ids::Role;
use videojobs_core::JobStatus;

// Several threads: the API and the worker keep serving while the browser runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_approves_one_video_and_rejects_another_in_the_browser() {
    let pipeline = TestApp::builder().with_local_provider().build().await;
    let app = &pipeline;
    let first = app.new_job(2).await;
    let second = app.new_job(2).await;
    pipeline.wait_for(&first, 60, |s| s == JobStatus::Completed).await;
    let rejected_job = pipeline.wait_for(&second, 60, |s| s == JobStatus::Completed).await;
    let (reviewer, reviewer_key) = app.another_user(0, Role::Reviewer).await;
    let (_, admin_key) = app.another_user(0, Role::Admin).await;
    let artifacts = repo_root().join("target/test-artifacts");
    for name in ["review-queue.png", "review-page.png", "review-stats.png"] {
        let _ = std::fs::remove_file(artifacts.join(name));
    }

    let base_url = pipeline.base_url();
    let artifacts_dir = artifacts.to_string_lossy();
    let report =
        run_browser_script("review.mjs", &[base_url, &reviewer_key, &artifacts_dir, first.as_str(), second.as_str(), &admin_key]).await;
    let seen = &report["seen"];
    assert_eq!(seen["signed_in_as"], format!("Signed in as {reviewer} (reviewer)"));
    assert_eq!(seen["prompt"], "a test clip");
    assert!(seen["video_width"].as_u64().is_some_and(|w| w > 0), "the video played: {seen}");
    assert_eq!(seen["approved_badge"], "Ready to use");
    assert_eq!(seen["rejected_badge"], "Needs changes");
    assert_eq!(seen["reject_without_reason"], "Choose a reason to reject the video.");
    assert_eq!(seen["note_is_text"], true);
    assert_eq!(seen["queue_after"].as_u64(), seen["queue_before"].as_u64().map(|n| n - 2));
    assert_eq!(seen["status_bars"], 10);
    // The stack is the test's own: its counters hold exactly these two reviews.
    assert_eq!(seen["approved_bar"], 1, "{seen}");
    assert_eq!(seen["rejected_bar"], 1, "{seen}");
    assert_eq!(seen["stuck_count"], 0, "{seen}");
    for name in ["review-queue.png", "review-page.png", "review-stats.png"] {
        let size = std::fs::metadata(artifacts.join(name)).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{name} was kept as a test artifact ({size} bytes)");
    }

    // What the API says now: one approved, one rejected, each by the reviewer, once.
    for (id, status, reason) in [(&first, "approved", None), (&second, "rejected", Some("unreadable_text"))] {
        let reply = app.job_status(&id).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["status"], status);
        assert_eq!(reply.body["review"]["reviewer_id"], reviewer.as_str());
        let events = app.job_events(&id).await;
        let reviews: Vec<_> = events.body["events"].as_array().unwrap().iter().filter(|e| e["source"] == "reviewer").collect();
        assert_eq!(reviews.len(), 1, "{}", events.body);
        assert_eq!(reviews[0]["actor"], reviewer.as_str());
        assert_eq!(reviews[0]["error_code"].as_str(), reason);
    }
    // The worker deleted the rejected video from S3 (the wait ends as soon
    // as it did; its bound is for a starved machine).
    let video_key = rejected_job.output.expect("the video was stored").video_key;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60) + crate::harness::REDELIVERY_ALLOWANCE;
    while app.job(&second).await.output.is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(app.job(&second).await.output.is_none(), "the rejected video was discarded");
    let head = app.stack().clients.s3.head_object().bucket(&app.stack().resources.media_bucket).key(&video_key).send().await;
    assert!(head.is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_not_found())));
    assert_eq!(app.job_result(&first).await.status, StatusCode::OK);
}

/// `GET /docs` in a real browser: it loads `/openapi.json` from its own
/// origin and draws every operation, under its strict CSP, with no request
/// anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_draws_every_operation_in_the_browser() {
    let pipeline = TestApp::builder().with_local_provider().build().await;
    let artifacts = repo_root().join("target/test-artifacts");
    let report = run_browser_script("docs.mjs", &[pipeline.base_url(), &artifacts.to_string_lossy()]).await;
    let seen = &report["seen"];
    let spec = crate::contract::spec();
    let methods = ["get", "post", "put", "patch", "delete"];
    let operations: usize =
        spec["paths"].as_object().unwrap().values().map(|item| methods.iter().filter(|m| item.get(**m).is_some()).count()).sum::<usize>()
            + spec["webhooks"].as_object().unwrap().len();
    assert_eq!(seen["operations"].as_u64(), Some(operations as u64), "{seen}");
    assert_eq!(seen["schemas"].as_u64(), Some(spec["components"]["schemas"].as_object().unwrap().len() as u64));
    assert_eq!(seen["notice"], "", "{seen}");
    assert_eq!(seen["title"], "videojobs API 1.0.0");
    let generate = seen["generate_text"].as_str().unwrap();
    for text in ["Idempotency-Key", "prompt", "202", "insufficient_credits", "Idempotent-Replayed"] {
        assert!(generate.contains(text), "{text} in {generate}");
    }
    assert_eq!(seen["visible_after_filter"], 1, "{seen}");
    assert_eq!(seen["other_origins"], serde_json::json!([]), "{seen}");
}

/// Runs `tests/browser/{script}` under node with `args`, killed past
/// [`BROWSER_RUN_LIMIT`] rather than left to hold up the whole test run, and
/// answers the JSON report it prints last.
async fn run_browser_script(script: &str, args: &[&str]) -> serde_json::Value {
    let browser = Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/test installs the browser test's dependencies)");
    let out = tokio::time::timeout(BROWSER_RUN_LIMIT, browser.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the browser run did not end within {BROWSER_RUN_LIMIT:?}"))
        .expect("the browser run's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser run ({script}) failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("the script's JSON report")
}
