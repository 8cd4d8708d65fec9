//! End to end: real moto, the real state machine, the real local provider and
//! real ffmpeg, with the faults real providers and queues produce.

use crate::helpers::{download, ffprobe, settings, Pipeline};
use lambda_http::http::{Method, StatusCode};
use serde_json::json;
use videojobs_core::model::ids::JobId;
use videojobs_core::JobStatus;

const WAIT: u64 = 60;

fn finished(status: JobStatus) -> bool {
    !status.is_in_flight()
}

async fn generate(p: &Pipeline, body: serde_json::Value) -> JobId {
    p.app.generate_with(&body).await
}

fn with_faults(seconds: u32, faults: serde_json::Value) -> serde_json::Value {
    json!({"prompt": "A lighthouse in a storm", "duration_seconds": seconds, "resolution": "480p",
           "metadata": {"local_faults": faults}})
}

/// The result's video, downloaded and probed.
async fn result_video(p: &Pipeline, id: &JobId) -> (serde_json::Value, (f64, u32, u32)) {
    let result = p.app.get(&format!("/videos/jobs/{id}/result")).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    let bytes = download(result.body["video"]["url"].as_str().unwrap()).await;
    assert_eq!(bytes.len() as u64, result.body["video"]["size_bytes"].as_u64().unwrap());
    (result.body.clone(), ffprobe(&bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_to_video_ends_completed_with_a_playable_mp4_of_the_asked_length() {
    let p = Pipeline::start(settings()).await;

    let id = generate(
        &p,
        json!({"prompt": "A paper boat on a rainy street", "duration_seconds": 3, "aspect_ratio": "9:16", "resolution": "480p"}),
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
    let status = p.app.get(&format!("/videos/jobs/{id}/status")).await;
    assert_eq!(status.body["progress"], 100);
    assert_eq!(status.body["status_label"], "Ready for review");
    assert_eq!(p.app.active_jobs().await, 0);
    assert_eq!(p.app.credits().await, 997);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_to_video_from_an_upload_zooms_for_the_asked_length() {
    let p = Pipeline::start(settings()).await;
    let upload_id = p.app.upload_png(&crate::helpers::png(320, 240)).await;

    let body = json!({"upload_id": upload_id, "length": 2, "frame_rate": 12, "zoom_speed": 0.3});
    let reply = p.app.post("/videos/animate", &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id: JobId = reply.body["job_id"].as_str().unwrap().parse().unwrap();
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let (_, (duration, width, height)) = result_video(&p, &id).await;
    assert!((duration - 2.0).abs() < 0.2, "{duration}");
    assert_eq!((width, height), (1280, 720));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_five_times_in_shuffled_order_still_completes_once() {
    let p = Pipeline::start(settings()).await;

    let id = generate(&p, with_faults(1, json!({"duplicate_callbacks": 5, "shuffle_callbacks": true}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;
    // Let the last deliveries land before counting.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    assert_eq!(job.status, JobStatus::Completed);
    let events = p.app.get(&format!("/videos/jobs/{id}/events")).await;
    let events = events.body["events"].as_array().unwrap().clone();
    let completed = events.iter().filter(|e| e["status"] == "completed" && e["previous_status"] == "processing").count();
    assert_eq!(completed, 1, "{events:#?}");
    assert_eq!(p.app.credits().await, 999);
    assert_eq!(p.app.job(&id).await.status, JobStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_before_progress_leaves_the_job_completed_and_records_the_late_progress() {
    let p = Pipeline::start(settings()).await;

    let id = generate(&p, with_faults(1, json!({"completion_first": true, "late_callbacks_ms": 4000}))).await;
    p.wait_for(&id, WAIT, finished).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let ignored = loop {
        let events = p.app.get(&format!("/videos/jobs/{id}/events")).await;
        let ignored: Vec<serde_json::Value> = events.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["message"].as_str().unwrap_or("").starts_with("Late 'processing'"))
            .cloned()
            .collect();
        if !ignored.is_empty() || std::time::Instant::now() > deadline {
            break ignored;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };

    assert_eq!(p.app.job(&id).await.status, JobStatus::Completed);
    assert!(!ignored.is_empty(), "a late progress callback is kept as an event");
    assert!(ignored.iter().all(|e| e["status"] == "completed" && e["previous_status"] == "completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_callback_is_recovered_by_asking_the_provider() {
    let mut s = settings();
    s.generation_timeout_seconds = 3;
    let p = Pipeline::start(s).await;

    let id = generate(&p, with_faults(1, json!({"drop_callbacks": true}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let (_, (duration, _, _)) = result_video(&p, &id).await;
    assert!((duration - 1.0).abs() < 0.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_then_a_503_on_submit_are_retried_until_the_provider_accepts() {
    let p = Pipeline::start(settings()).await;

    let id = generate(&p, with_faults(1, json!({"submit_errors": [429, 503]}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let stats = p.provider_stats().await;
    assert_eq!(stats["submissions"][id.as_str()], 3);
    assert_eq!(stats["predictions"].as_array().unwrap().len(), 1);
    let events = p.app.get(&format!("/videos/jobs/{id}/events")).await;
    let retries = events.body["events"].as_array().unwrap().iter().filter(|e| e["status"] == "retrying").count();
    assert_eq!(retries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_refunds_once_and_says_what_to_do_next() {
    let p = Pipeline::start(settings()).await;

    let id = generate(&p, with_faults(2, json!({"fail_with": "content_policy"}))).await;
    let job = p.wait_for(&id, WAIT, finished).await;
    // The state machine's own give-up arrives after the worker failed the job.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    assert_eq!(job.status, JobStatus::Failed);
    let status = p.app.get(&format!("/videos/jobs/{id}/status")).await;
    assert_eq!(status.body["error"]["code"], "content_policy");
    assert!(status.body["error"]["next_step"].as_str().unwrap().contains("prompt"));
    assert_eq!(p.app.credits().await, 1_000);
    assert_eq!(p.app.active_jobs().await, 0);
    let result = p.app.get(&format!("/videos/jobs/{id}/result")).await;
    assert_eq!(result.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_died_after_submitting_leaves_one_provider_request_and_the_job_completes() {
    let p = Pipeline::start(settings()).await;
    let id = generate(&p, with_faults(1, json!({"delay_ms": 0}))).await;
    // What a worker that died after the provider accepted the job (and before
    // our write) leaves behind: a provider request under the job's key.
    let orphan = reqwest::Client::new()
        .post(format!("{}/v1/predictions", p.provider_url))
        .header("idempotency-key", id.as_str())
        .json(&json!({"input": {"mode": "text", "prompt": "x", "width": 640, "height": 360, "duration_seconds": 1},
                      "webhook": format!("{}/webhooks/local", p.callback_base_url)}))
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
    let p = Pipeline::start(settings()).await;
    let id = generate(&p, with_faults(2, json!({"delay_ms": 3000}))).await;
    p.wait_for(&id, WAIT, |s| s == JobStatus::Submitted || s == JobStatus::Processing).await;
    // Wait for the provider's request id, so the cancel reaches it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.app.job(&id).await.provider_request_id.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let reply = p.app.delete(&format!("/videos/jobs/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    // A completion that still arrives (a provider that finished anyway).
    let request_id = p.app.job(&id).await.provider_request_id.unwrap();
    let late = p
        .signed_callback("evt_late", &json!({"id": request_id, "status": "succeeded", "output": {"video": "http://127.0.0.1:9/v.mp4"}}))
        .await;

    assert_eq!(late.status, StatusCode::OK, "{}", late.body);
    assert_eq!(p.app.job(&id).await.status, JobStatus::Canceled);
    let stats = p.provider_stats().await;
    assert_eq!(stats["predictions"][0]["status"], "canceled", "{stats}");
    assert_eq!(p.app.credits().await, 1_000);
    let events = p.app.get(&format!("/videos/jobs/{id}/events")).await;
    let last = events.body["events"].as_array().unwrap().last().unwrap().clone();
    assert!(last["message"].as_str().unwrap().starts_with("Late 'succeeded'"), "{last}");
    assert_eq!(last["status"], "canceled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_delivery_for_a_known_job_answers_duplicate_and_changes_nothing() {
    let p = Pipeline::start(settings()).await;
    let id = generate(&p, with_faults(1, json!({"drop_callbacks": true}))).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.app.job(&id).await.provider_request_id.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let request_id = p.app.job(&id).await.provider_request_id.unwrap();
    let body = json!({"id": request_id, "status": "processing", "progress": 40});

    let first = p.signed_callback("evt_progress_40", &body).await;
    let events_after_first = p.app.get(&format!("/videos/jobs/{id}/events")).await.body["events"].as_array().unwrap().len();
    let again = p.signed_callback("evt_progress_40", &body).await;
    let events_after_again = p.app.get(&format!("/videos/jobs/{id}/events")).await.body["events"].as_array().unwrap().len();

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["duplicate"], false);
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(events_after_first, events_after_again);
    let job = p.app.job(&id).await;
    assert_eq!(job.status, JobStatus::Processing);
    assert_eq!(job.progress, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_retention_window_an_unreviewed_video_is_deleted_and_its_result_is_410() {
    let mut s = settings();
    s.retention_seconds = 3;
    let p = Pipeline::start(s).await;
    let id = generate(&p, json!({"prompt": "gone soon", "duration_seconds": 1, "resolution": "480p"})).await;
    let job = p.wait_for(&id, WAIT, finished).await;
    assert_eq!(job.status, JobStatus::Completed);
    let video_key = job.output.unwrap().video_key;

    p.wait_for(&id, 30, |s| s == JobStatus::Expired).await;
    // The status moves first and the objects go after: wait for the deletion too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.app.job(&id).await.output.is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert!(p.app.job(&id).await.output.is_none());
    let result = p.app.get(&format!("/videos/jobs/{id}/result")).await;
    assert_eq!(result.status, StatusCode::GONE);
    let head = p.app.clients.s3.head_object().bucket(&p.app.resources.media_bucket).key(&video_key).send().await;
    assert!(head.is_err(), "the video object was deleted");
    assert_eq!(p.app.credits().await, 999, "expiry after delivery refunds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_bad_signatures_dedupes_deliveries_and_accepts_unknown_requests() {
    let p = Pipeline::start(settings()).await;
    let secret = videojobs_core::model::signing::WebhookSecret::parse(&p.secret).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = r#"{"id":"lp_unknown","status":"processing","progress":50}"#;
    let send = |signature: String, at: i64, id: &'static str| {
        let request = lambda_http::http::Request::builder()
            .method(Method::POST)
            .uri("https://hooks.test/webhooks/local")
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", signature)
            .body(lambda_http::Body::Text(body.into()))
            .unwrap();
        p.app.send(request)
    };

    let forged = send("v1,AAAA".into(), now, "evt_a").await;
    let stale = send(secret.sign("evt_b", now - 600, body.as_bytes()), now - 600, "evt_b").await;
    let first = send(secret.sign("evt_c", now, body.as_bytes()), now, "evt_c").await;
    let again = send(secret.sign("evt_c", now, body.as_bytes()), now, "evt_c").await;
    let unknown_provider = p.app.call(Method::POST, "/webhooks/nobody", None, Some(body)).await;

    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["matched"], false);
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(unknown_provider.status, StatusCode::NOT_FOUND);
}
