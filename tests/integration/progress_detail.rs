//! `progress_detail`: what the provider last said about a job it is still
//! working on. fal sends no progress callbacks, so a status read asks the
//! worker (at most once per job per window) to poll it; the local provider's
//! progress callbacks record it through the webhook. The fal API is a local
//! server replaying its documented answers.

use crate::harness::{all_at_once, delete_work, download, ffprobe, message_body, receive_work, settings, Page, TestApp};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use videojobs_core::model::ids::JobId;
use videojobs_core::model::job::{timestamp, EventSource, Job, JobParams};
use videojobs_core::model::lifecycle::transition;
use videojobs_core::model::progress::{ProgressDetail, Stage};
use videojobs_core::model::request::{AspectRatio, Resolution};
use videojobs_core::ports::ProgressDetails;
use videojobs_core::ports::{ChangeOutcome, JobUpdate, JobWrites, StatusChange};
use videojobs_core::JobStatus;
use videojobs_providers::replay::{ReplayServer, Reply};

const WAIT: u64 = 60;
const REQUEST: &str = "9a1e6f0c-5d3b-4a7e-8c2f-0b4d6e8a1c3e";
const STATUS_PATH: &str = "/fal-ai/kling-video/requests/9a1e6f0c-5d3b-4a7e-8c2f-0b4d6e8a1c3e/status";
const RESULT_PATH: &str = "/fal-ai/kling-video/requests/9a1e6f0c-5d3b-4a7e-8c2f-0b4d6e8a1c3e";

/// fal's queue, accepting one text-to-video request.
async fn fal_accepting() -> ReplayServer {
    let fal = ReplayServer::start().await;
    fal.on(
        "POST",
        "/fal-ai/kling-video/v1.6/standard/text-to-video",
        vec![Reply::json(200, json!({"request_id": REQUEST, "gateway_request_id": REQUEST}))],
    );
    fal
}

async fn pipeline_on(fal: &ReplayServer, refresh_seconds: u64) -> TestApp {
    let mut s = settings();
    s.enabled_providers = vec!["local".parse().unwrap(), "fal".parse().unwrap()];
    s.progress_refresh_seconds = refresh_seconds;
    TestApp::builder()
        .settings(s)
        .provider_env(vec![("FAL_QUEUE_URL", fal.base_url.clone()), ("FAL_KEY", "key-id:key-secret".into())])
        .with_local_provider()
        .build()
        .await
}

async fn generate_on_fal(p: &TestApp) -> JobId {
    let body = json!({"prompt": "A lighthouse at dusk", "duration_seconds": 5, "aspect_ratio": "1:1", "provider": "fal"});
    let reply = p.generate(&body).await;
    let id = reply.job_id();
    p.wait_for_provider_request(&id, WAIT).await;
    id
}

async fn status_of(app: &TestApp, id: &JobId) -> Value {
    let reply = app.job_status(&id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A job as the worker leaves it once a provider accepted it.
fn submitted_job(app: &TestApp, provider: &str, request_id: Option<&str>) -> Job {
    let params = JobParams::TextToVideo { duration_seconds: 5, aspect_ratio: AspectRatio::Square, resolution: Resolution::Hd };
    Job {
        status: JobStatus::Submitted,
        provider_request_id: request_id.map(str::to_owned),
        progress: 5,
        ..Job::accepted(JobId::generate(), app.user.clone(), params, provider.parse().unwrap(), 5, timestamp::now())
    }
}

/// Takes every message off the stack's work queue (no worker runs on it).
async fn drain_queue(app: &TestApp) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let messages = receive_work(app).await;
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.push(message_body(&message));
            delete_work(app, message.receipt_handle().unwrap_or_default()).await;
        }
    }
}

fn refreshes_of(messages: &[Value], id: &JobId) -> usize {
    messages.iter().filter(|m| m["kind"] == "refresh" && m["job_id"] == id.as_str()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_fal_job_shows_its_queue_position_as_it_moves_and_then_that_it_is_generating() {
    // fal's answers, each repeated until the client has seen it (the test
    // moves fal on one step at a time: a slow worker or a refresh that SQS
    // delivered twice cannot make a client miss a step).
    let queued_at = |position: u32| Reply::json(202, json!({"status": "IN_QUEUE", "queue_position": position, "response_url": "u"}));
    let steps = [
        (queued_at(3), (json!("queued"), json!(3), json!("Waiting in the provider's queue (position 3)"))),
        (queued_at(1), (json!("queued"), json!(1), json!("Waiting in the provider's queue (position 1)"))),
        (
            Reply::json(202, json!({"status": "IN_PROGRESS", "logs": [], "response_url": "u"})),
            (json!("processing"), Value::Null, json!("The provider is generating the video")),
        ),
    ];
    let fal = fal_accepting().await;
    fal.on("GET", STATUS_PATH, vec![steps[0].0.clone()]);
    let p = pipeline_on(&fal, 1).await;
    let id = generate_on_fal(&p).await;

    // Act: a client polls the status, as a progress bar would, while fal moves on.
    let first = status_of(&p, &id).await;
    let mut seen: Vec<Value> = Vec::new();
    let mut last = Value::Null;
    for (index, (reply, (stage, position, _))) in steps.iter().enumerate() {
        if index > 0 {
            fal.on("GET", STATUS_PATH, vec![reply.clone()]);
        }
        let deadline = Instant::now() + Duration::from_secs(WAIT) + crate::harness::REDELIVERY_ALLOWANCE;
        last = loop {
            let body = status_of(&p, &id).await;
            let detail = body["progress_detail"].clone();
            if !detail.is_null()
                && seen.last().map(|d| (&d["stage"], &d["queue_position"])) != Some((&detail["stage"], &detail["queue_position"]))
            {
                seen.push(detail.clone());
            }
            // The detail is written before the status (services::progress): a read
            // between the two sees `submitted` with the processing detail, so wait for both.
            let shown = (&detail["stage"], &detail["queue_position"]) == (stage, position);
            if shown && (stage != "processing" || body["status"] == "processing") {
                break body;
            }
            assert!(Instant::now() < deadline, "fal answered {stage} {position}, never shown; seen {seen:?}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
    }

    // Assert
    assert_eq!(first["progress_detail"], Value::Null, "nothing is known before the first refresh");
    let shown: Vec<(Value, Value, Value)> =
        seen.iter().map(|d| (d["stage"].clone(), d["queue_position"].clone(), d["message"].clone())).collect();
    // What fal answered, in order, each step shown: a refresh that SQS
    // delivered twice asks fal twice, and is answered the same.
    let answered: Vec<(Value, Value, Value)> = steps.iter().map(|(_, step)| step.clone()).collect();
    assert_eq!(shown, answered, "fal's steps, in order");
    assert!(shown.iter().any(|(stage, position, _)| stage == "queued" && position.is_u64()), "a queue position was shown: {shown:?}");
    assert_eq!(last["status"], "processing");
    assert!(last["progress"].as_u64().unwrap() >= 10, "{last}");
    assert!(timestamp::parse(last["progress_detail"]["observed_at"].as_str().unwrap()).is_some());
    let events = p.job_events(&id).await.body;
    let moved = events["events"].as_array().unwrap().iter().find(|e| e["status"] == "processing").expect("a processing event");
    assert_eq!((&moved["previous_status"], &moved["source"]), (&json!("submitted"), &json!("worker")));
    assert!(fal.requests_to("GET", STATUS_PATH).len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_status_reads_inside_one_window_enqueue_one_refresh() {
    // Arrange: a stack with no worker on its queue, and a window longer than the test.
    let mut s = settings();
    s.progress_refresh_seconds = 3_600;
    let app = TestApp::builder().settings(s).own_stack().build().await;
    let fal_job = submitted_job(&app, "fal", Some("req-1"));
    let local_job = submitted_job(&app, "local", Some("pred-1"));
    let unaccepted = submitted_job(&app, "fal", None);
    for job in [&fal_job, &local_job, &unaccepted] {
        app.put_job(job).await;
    }
    let id = fal_job.job_id.clone();

    // Act
    let reads = all_at_once(10, |_| app.job_status(&id)).await;
    let lists = all_at_once(4, |i| {
        let app = &app;
        async move {
            if i % 2 == 0 {
                app.list_active_jobs().await
            } else {
                app.list_jobs(Page::first()).await
            }
        }
    })
    .await;
    status_of(&app, &local_job.job_id).await;
    status_of(&app, &unaccepted.job_id).await;
    let messages = drain_queue(&app).await;

    // Assert
    assert!(reads.iter().chain(&lists).all(|r| r.status == StatusCode::OK));
    assert_eq!(refreshes_of(&messages, &id), 1, "{messages:?}");
    assert_eq!(refreshes_of(&messages, &local_job.job_id), 0, "the local provider calls back with its progress");
    assert_eq!(refreshes_of(&messages, &unaccepted.job_id), 0, "nothing to ask before the provider accepted it");
    let now = timestamp::now();
    assert!(!app.stack().store.claim_refresh(&id, now, 3_600).await.unwrap(), "the window is still taken");
    assert!(app.stack().store.claim_refresh(&id, now + Duration::from_secs(3_601), 3_600).await.unwrap(), "the next window opens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_finds_the_fal_request_completed_finishes_the_job_as_its_callback_would() {
    let fal = fal_accepting().await;
    let video_url = format!("{}/files/lighthouse/out.mp4", fal.base_url);
    fal.on("GET", STATUS_PATH, vec![Reply::json(200, json!({"status": "COMPLETED", "logs": null}))]);
    fal.on("GET", RESULT_PATH, vec![Reply::json(200, json!({"video": {"url": video_url, "content_type": "video/mp4"}}))]);
    fal.on("GET", "/files/lighthouse/out.mp4", vec![Reply::bytes("video/mp4", crate::real_providers::small_mp4())]);
    let p = pipeline_on(&fal, 10).await;
    let id = generate_on_fal(&p).await;

    // Act: no callback comes; a client reads the status.
    let read = status_of(&p, &id).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    // Assert
    assert_eq!(read["status"], "submitted");
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.progress, 100);
    let body = status_of(&p, &id).await;
    assert_eq!(body["progress_detail"], Value::Null);
    assert!(body["output"]["video_url"].is_string(), "{body}");
    let result = p.job_result(&id).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    let (duration, width, height) = ffprobe(&download(result.body["video"]["url"].as_str().unwrap()).await);
    assert!((duration - 1.0).abs() < 0.2, "{duration}");
    assert_eq!((width, height), (320, 240));
    // Copied by the refresh; a second copy only when SQS delivered the refresh
    // twice at once (at least once, locally too), to the same fixed key.
    let copies = fal.requests_to("GET", "/files/lighthouse/out.mp4").len();
    assert!((1..=2).contains(&copies), "copied {copies} times");
    let events = p.job_events(&id).await.body;
    let statuses: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["queued", "submitted", "processing", "completed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_providers_progress_callbacks_show_a_processing_detail_until_the_job_completes() {
    let p = TestApp::builder().with_local_provider().build().await;
    // The provider sends no callback of its own: the test hands over its
    // callbacks one step at a time, each twice (as a provider may deliver
    // it), so that no read can race the completion.
    let faults = json!({"drop_callbacks": true});
    let body = json!({"prompt": "A kite over a beach", "duration_seconds": 1, "resolution": "480p", "metadata": {"local_faults": faults}});
    let reply = p.generate(&body).await;
    let id = reply.job_id();
    let request_id = p.wait_for_provider_request(&id, WAIT).await;

    // Act: the provider's first progress callback, then a read.
    let progress = json!({"id": request_id, "status": "processing", "progress": 10, "output": null, "error": null});
    for _ in 0..2 {
        let delivered = p.signed_callback(&format!("evt_{request_id}_processing_10"), &progress).await;
        assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
    }
    let processing = status_of(&p, &id).await;
    // Then its completion, once the video is made, as the provider would send it.
    let deadline = Instant::now() + Duration::from_secs(WAIT);
    let succeeded = loop {
        let prediction: Value = reqwest::get(format!("{}/v1/predictions/{request_id}", p.provider_url()))
            .await
            .expect("the prediction")
            .json()
            .await
            .expect("JSON");
        if prediction["status"] == "succeeded" {
            break prediction;
        }
        let rendering = prediction["status"] == "starting" || prediction["status"] == "processing";
        assert!(Instant::now() < deadline && rendering, "{prediction}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for _ in 0..2 {
        let delivered = p.signed_callback(&format!("evt_{request_id}_succeeded_100"), &succeeded).await;
        assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
    }
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    // Assert
    assert_eq!(processing["status"], "processing", "{processing}");
    assert_eq!(processing["progress_detail"]["stage"], "processing", "{processing}");
    assert_eq!(processing["progress_detail"]["message"], "The provider is generating the video");
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.progress_detail, None, "the detail goes when the job leaves the provider");
    assert_eq!(status_of(&p, &id).await["progress_detail"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_detail_never_replaces_a_newer_one_and_leaving_the_provider_clears_it() {
    // Arrange
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let job = submitted_job(&app, "fal", Some("req-2"));
    app.put_job(&job).await;
    let id = job.job_id.clone();
    let t0 = timestamp::now();
    let at = |ms: i64| t0 + time::Duration::milliseconds(ms);
    let queued = |position: u32, ms: i64| ProgressDetail { stage: Stage::Queued, queue_position: Some(position), observed_at: at(ms) };
    let processing = |ms: i64| ProgressDetail { stage: Stage::Processing, queue_position: None, observed_at: at(ms) };

    // Act and Assert, step by step
    assert!(app.stack().store.record_detail(&id, &queued(3, 20)).await.unwrap());
    assert!(!app.stack().store.record_detail(&id, &queued(5, 10)).await.unwrap(), "an older answer arriving late");
    assert!(!app.stack().store.record_detail(&id, &queued(4, 20)).await.unwrap(), "the same instant");
    assert_eq!(app.job(&id).await.progress_detail, Some(queued(3, 20)));
    let to_processing = StatusChange::new(
        &job,
        transition(JobStatus::Submitted, JobStatus::Processing).unwrap(),
        EventSource::Webhook,
        "generating",
        None,
        JobUpdate::default(),
    );
    assert_eq!(app.stack().store.change_status(&to_processing).await.unwrap(), ChangeOutcome::Applied);
    assert!(app.stack().store.record_detail(&id, &processing(30)).await.unwrap());
    assert!(!app.stack().store.record_detail(&id, &queued(1, 40)).await.unwrap(), "queued never follows processing");
    assert!(app.stack().store.claim_refresh(&id, timestamp::now(), 10).await.unwrap());
    let body = status_of(&app, &id).await;
    assert_eq!(body["progress_detail"]["stage"], "processing");
    let mut processing_job = app.job(&id).await;
    assert_eq!(processing_job.progress_detail, Some(processing(30)));
    processing_job.status = JobStatus::Processing;
    let cancel = StatusChange::new(
        &processing_job,
        transition(JobStatus::Processing, JobStatus::Canceled).unwrap(),
        EventSource::Api,
        "canceled",
        None,
        JobUpdate::default(),
    );
    assert_eq!(app.stack().store.change_status(&cancel).await.unwrap(), ChangeOutcome::Applied);
    let item = app.job_item(&id).await;
    for gone in ["progress_detail", "progress_detail_at", "refresh_requested_at"] {
        assert!(!item.contains_key(gone), "{gone} outlived the flight");
    }
    assert!(!app.stack().store.record_detail(&id, &processing(50)).await.unwrap(), "nothing is recorded on an ended job");
    assert_eq!(status_of(&app, &id).await["progress_detail"], Value::Null);
}
