//! End to end: real moto, the real state machine, the real local provider and
//! real ffmpeg, with the faults real providers and queues produce.

use crate::harness::{download, ffprobe, settings, TestApp};
use lambda_http::http::StatusCode;
use serde_json::json;
use videojobs_core::model::ids::JobId;
use videojobs_core::JobStatus;

const WAIT: u64 = 60;

fn finished(status: JobStatus) -> bool {
    !status.is_in_flight()
}

fn with_faults(seconds: u32, faults: serde_json::Value) -> serde_json::Value {
    json!({"prompt": "A lighthouse in a storm", "duration_seconds": seconds, "resolution": "480p",
           "metadata": {"local_faults": faults}})
}

/// The result's video, downloaded and probed.
async fn result_video(p: &TestApp, id: &JobId) -> (serde_json::Value, (f64, u32, u32)) {
    let result = p.job_result(&id).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    let bytes = download(result.body["video"]["url"].as_str().unwrap()).await;
    assert_eq!(bytes.len() as u64, result.body["video"]["size_bytes"].as_u64().unwrap());
    (result.body.clone(), ffprobe(&bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_to_video_ends_completed_with_a_playable_mp4_of_the_asked_length() {
    let p = TestApp::builder().with_local_provider().build().await;

    let id = p
        .new_job_with(
            &json!({"prompt": "A paper boat on a rainy street", "duration_seconds": 3, "aspect_ratio": "9:16", "resolution": "480p"}),
        )
        .await;
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed);
    let (result, (duration, width, height)) = result_video(&p, &id).await;
    assert!((duration - 3.0).abs() < 0.2, "{duration}");
    assert_eq!((width, height), (480, 854));
    assert_eq!(result["video"]["width"], 480);
    assert_eq!(result["video"]["height"], 854);
    assert!((result["video"]["duration_seconds"].as_f64().unwrap() - 3.0).abs() < 0.2);
    assert_eq!(result["video"]["mime_type"], "video/mp4");
    let thumbnail = download(result["video"]["thumbnail_url"].as_str().unwrap()).await;
    assert_eq!(&thumbnail[..2], b"\xff\xd8", "a JPEG thumbnail");
    let status = p.job_status(&id).await;
    assert_eq!(status.body["progress"], 100);
    assert_eq!(status.body["status_label"], "Ready for review");
    assert_eq!(p.active_jobs().await, 0);
    assert_eq!(p.credits().await, 997);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_to_video_from_an_upload_zooms_for_the_asked_length() {
    let p = TestApp::builder().with_local_provider().build().await;
    let upload_id = p.upload_png(&crate::harness::png(320, 240)).await;

    let body = json!({"upload_id": upload_id, "length": 2, "frame_rate": 12, "zoom_speed": 0.3});
    let reply = p.animate(&body).await;
    let id = reply.job_id();
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let (_, (duration, width, height)) = result_video(&p, &id).await;
    assert!((duration - 2.0).abs() < 0.2, "{duration}");
    assert_eq!((width, height), (1280, 720));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_five_times_in_shuffled_order_still_completes_once() {
    let p = TestApp::builder().with_local_provider().build().await;

    let id = p.new_job_with(&with_faults(1, json!({"duplicate_callbacks": 5, "shuffle_callbacks": true}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;
    // Let the last deliveries land before counting.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    assert_eq!(job.status, JobStatus::Completed);
    let events = p.job_events(&id).await;
    let events = events.body["events"].as_array().unwrap().clone();
    let completed = events.iter().filter(|e| e["status"] == "completed" && e["previous_status"] == "processing").count();
    assert_eq!(completed, 1, "{events:#?}");
    assert_eq!(p.credits().await, 999);
    assert_eq!(p.job(&id).await.status, JobStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_before_progress_leaves_the_job_completed_and_records_the_late_progress() {
    let p = TestApp::builder().with_local_provider().build().await;
    // The provider delivers its completion first and holds its progress back
    // for the longest the faults allow (far longer than this test): the late
    // progress is handed over by the test once the job is completed, so that
    // a slow finish cannot turn it into ordinary progress.
    let hold_back = videojobs_core::model::request::faults::MAX_LATE_CALLBACKS_MS;
    let id = p.new_job_with(&with_faults(1, json!({"completion_first": true, "late_callbacks_ms": hold_back}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let request_id = job.provider_request_id.clone().expect("the provider's request id");

    // A progress callback that arrives after the completion.
    let late = p.signed_callback("evt_late_processing_60", &json!({"id": request_id, "status": "processing", "progress": 60})).await;

    assert_eq!(late.status, StatusCode::OK, "{}", late.body);
    assert_eq!(p.job(&id).await.status, JobStatus::Completed);
    let ignored: Vec<serde_json::Value> =
        p.events(&id).await.into_iter().filter(|e| e["message"].as_str().unwrap_or("").starts_with("Late 'processing'")).collect();
    assert!(!ignored.is_empty(), "a late progress callback is kept as an event");
    assert!(ignored.iter().all(|e| e["status"] == "completed" && e["previous_status"] == "completed"), "{ignored:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_callback_is_recovered_by_asking_the_provider() {
    let mut s = settings();
    s.generation_timeout_seconds = 3;
    let p = TestApp::builder().settings(s).with_local_provider().build().await;

    let id = p.new_job_with(&with_faults(1, json!({"drop_callbacks": true}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let (_, (duration, _, _)) = result_video(&p, &id).await;
    assert!((duration - 1.0).abs() < 0.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_then_a_503_on_submit_are_retried_until_the_provider_accepts() {
    let p = TestApp::builder().with_local_provider().build().await;

    let id = p.new_job_with(&with_faults(1, json!({"submit_errors": [429, 503]}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let stats = p.provider_stats().await;
    assert_eq!(stats["submissions"][id.as_str()], 3);
    assert_eq!(stats["predictions"].as_array().unwrap().len(), 1);
    let events = p.job_events(&id).await;
    let retries = events.body["events"].as_array().unwrap().iter().filter(|e| e["status"] == "retrying").count();
    assert_eq!(retries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_refunds_once_and_says_what_to_do_next() {
    let p = TestApp::builder().with_local_provider().build().await;

    let id = p.new_job_with(&with_faults(2, json!({"fail_with": "content_policy"}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;
    // The state machine's own give-up arrives after the worker failed the job.
    let execution = p.settled_execution_status(&id).await;

    assert_ne!(execution.as_deref(), Some("RUNNING"), "the execution ended");
    assert_eq!(job.status, JobStatus::Failed);
    let status = p.job_status(&id).await;
    assert_eq!(status.body["error"]["code"], "content_policy");
    assert!(status.body["error"]["next_step"].as_str().unwrap().contains("prompt"));
    assert_eq!(status.body["error"]["retryable"], false, "the same prompt is refused again");
    assert_eq!(status.body["cost"], json!({"credits": 2, "refunded": 2, "charged": 0}));
    assert_eq!(p.credits().await, 1_000);
    assert_eq!(p.active_jobs().await, 0);
    let result = p.job_result(&id).await;
    assert_eq!(result.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_died_after_submitting_leaves_one_provider_request_and_the_job_completes() {
    let p = TestApp::builder().with_local_provider().build().await;
    let id = p.new_job_with(&with_faults(1, json!({"delay_ms": 0}))).await;
    // What a worker that died after the provider accepted the job (and before
    // our write) leaves behind: a provider request under the job's key.
    let orphan = reqwest::Client::new()
        .post(format!("{}/v1/predictions", p.provider_url()))
        .header("idempotency-key", id.as_str())
        .json(&json!({"input": {"mode": "text", "prompt": "x", "width": 640, "height": 360, "duration_seconds": 1},
                      "webhook": format!("{}/webhooks/local", p.base_url())}))
        .send()
        .await
        .unwrap();
    assert!(orphan.status().is_success());

    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let stats = p.provider_stats().await;
    assert_eq!(stats["predictions"].as_array().unwrap().len(), 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_mid_generation_cancels_at_the_provider_and_later_callbacks_change_nothing() {
    let p = TestApp::builder().with_local_provider().build().await;
    // The provider waits the longest the faults allow before it renders (far
    // longer than the cancel takes to reach it), so it cannot finish first.
    let delay = videojobs_core::model::request::faults::MAX_DELAY_MS;
    let id = p.new_job_with(&with_faults(2, json!({"delay_ms": delay}))).await;
    p.wait_for(&id, WAIT, |s| s == JobStatus::Submitted || s == JobStatus::Processing).await;
    // Wait for the provider's request id, so the cancel reaches it.
    let request_id = p.wait_for_provider_request(&id, 10).await;

    let reply = p.cancel_job(&id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The worker's cancel reaches the provider (it follows the state machine's abort).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30) + crate::harness::REDELIVERY_ALLOWANCE;
    while p.provider_stats().await["predictions"][0]["status"] != "canceled" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A completion that still arrives (a provider that finished anyway).
    let late = p
        .signed_callback("evt_late", &json!({"id": request_id, "status": "succeeded", "output": {"video": "http://127.0.0.1:9/v.mp4"}}))
        .await;

    assert_eq!(late.status, StatusCode::OK, "{}", late.body);
    assert_eq!(p.job(&id).await.status, JobStatus::Canceled);
    let stats = p.provider_stats().await;
    assert_eq!(stats["predictions"][0]["status"], "canceled", "{stats}");
    assert_eq!(p.credits().await, 1_000);
    let events = p.job_events(&id).await;
    let last = events.body["events"].as_array().unwrap().last().unwrap().clone();
    assert!(last["message"].as_str().unwrap().starts_with("Late 'succeeded'"), "{last}");
    assert_eq!(last["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_delivery_for_a_known_job_answers_duplicate_and_changes_nothing() {
    let p = TestApp::builder().with_local_provider().build().await;
    let id = p.new_job_with(&with_faults(1, json!({"drop_callbacks": true}))).await;
    let request_id = p.wait_for_provider_request(&id, 20).await;
    let body = json!({"id": request_id, "status": "processing", "progress": 40});

    let first = p.signed_callback("evt_progress_40", &body).await;
    let events_after_first = p.events(&id).await.len();
    let again = p.signed_callback("evt_progress_40", &body).await;
    let events_after_again = p.events(&id).await.len();

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["duplicate"], false);
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(events_after_first, events_after_again);
    let job = p.job(&id).await;
    assert_eq!(job.status, JobStatus::Processing);
    assert_eq!(job.progress, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retention_window_an_unreviewed_video_is_deleted_and_its_result_is_410() {
    let mut s = settings();
    s.retention_seconds = 3;
    let p = TestApp::builder().settings(s).with_local_provider().build().await;
    let id = p.new_job_with(&json!({"prompt": "gone soon", "duration_seconds": 1, "resolution": "480p"})).await;
    // A 3 s window can pass between two reads of a busy machine: wait for the
    // end, then check from the job's events that it went through `completed`.
    p.wait_for(&id, WAIT + 30, |s| finished(s) && s != JobStatus::Completed).await;
    assert!(p.statuses_entered(&id).await.ends_with(&["completed".to_owned(), "expired".to_owned()]));
    let video_key = format!("outputs/{id}/video.mp4");
    // The expiry deletes the video after it moves the job: wait for that too.
    p.wait_for_output_gone(&id, 30).await;

    let result = p.job_result(&id).await;
    assert_eq!(result.status, StatusCode::GONE);
    let head = p.stack().clients.s3.head_object().bucket(&p.stack().resources.media_bucket).key(&video_key).send().await;
    assert!(head.is_err(), "the video object was deleted");
    assert_eq!(p.credits().await, 999, "expiry after delivery refunds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_bad_signatures_dedupes_deliveries_and_accepts_unknown_requests() {
    let p = TestApp::builder().with_local_provider().build().await;
    let secret = videojobs_core::model::signing::WebhookSecret::parse(p.provider_secret()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = r#"{"id":"lp_unknown","status":"processing","progress":50}"#;
    let send = |signature: String, at: i64, id: &'static str| {
        let p = &p;
        async move {
            let at = at.to_string();
            let headers = [("webhook-id", id), ("webhook-timestamp", at.as_str()), ("webhook-signature", signature.as_str())];
            p.anonymous().provider_callback("local", &headers, body).await
        }
    };

    let forged = send("v1,AAAA".into(), now, "evt_a").await;
    let stale = send(secret.sign("evt_b", now - 600, body.as_bytes()), now - 600, "evt_b").await;
    let first = send(secret.sign("evt_c", now, body.as_bytes()), now, "evt_c").await;
    let again = send(secret.sign("evt_c", now, body.as_bytes()), now, "evt_c").await;
    let unknown_provider = p.anonymous().provider_callback("nobody", &[], body).await;

    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["matched"], false);
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(unknown_provider.status, StatusCode::NOT_FOUND);
}
