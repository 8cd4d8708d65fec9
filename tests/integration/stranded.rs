//! Nothing stranded, nothing stale (issue: under load and hostile tenants):
//! each test makes one of the pipeline's races happen on purpose, in the
//! order that used to lose a job, a callback, a message or a video.

use crate::harness::{next_message, TestApp};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::{timestamp, Job, JobParams};
use videojobs_core::model::notification::AttemptClaim;
use videojobs_core::model::request::{AspectRatio, Resolution};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::NotificationLog;
use videojobs_core::ports::{CallbackLedger, CopiedObject, CopyError, OutputStore, ReceiptClaim};
use videojobs_core::services::callbacks::RECEIPT_LEASE;
use videojobs_core::{JobStatus, StoreError};

const WAIT: u64 = 60;

fn one_second(faults: serde_json::Value) -> serde_json::Value {
    json!({"prompt": "A kite over a beach", "duration_seconds": 1, "resolution": "480p", "metadata": {"local_faults": faults}})
}

async fn objects_of(app: &TestApp, id: &JobId) -> Vec<String> {
    let out = app
        .stack()
        .clients
        .s3
        .list_objects_v2()
        .bucket(&app.stack().resources.media_bucket)
        .prefix(format!("outputs/{id}/"))
        .send()
        .await
        .expect("listing");
    out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_that_arrive_before_the_request_id_is_stored_still_complete_the_job() {
    // Arrange: the provider renders and calls back before it answers the submission.
    let p = TestApp::builder().with_local_provider().build().await;

    // Act
    let id = p.new_job_with(&one_second(json!({"callbacks_before_answer": true}))).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    // Assert: completed long before the 15-minute deadline would have asked the provider.
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(p.provider_stats().await["submissions"][id.as_str()], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_message_of_an_attempt_that_is_no_longer_current_changes_nothing() {
    // Arrange: a job whose third attempt is current (retrying after it).
    let p = TestApp::builder().with_local_provider().build().await;
    let params = JobParams::TextToVideo { duration_seconds: 1, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Sd };
    let mut job = Job::accepted(JobId::generate(), p.user.clone(), params, "local".parse().unwrap(), 1, timestamp::now());
    job.status = JobStatus::Retrying;
    job.submit_attempt = 3;
    p.put_job(&job).await;
    let id = job.job_id.clone();
    p.stack()
        .clients
        .dynamodb
        .put_item()
        .table_name(&p.stack().resources.prompts_table)
        .item("job_id", AttributeValue::S(id.to_string()))
        .item("prompt", AttributeValue::S("A kite over a beach".into()))
        .send()
        .await
        .expect("prompt written");

    // Act: a late copy of attempt 2, and a duplicate of attempt 3.
    for attempt in [2, 3] {
        let stale = WorkMessage::Submit { job_id: id.clone(), task_token: None, attempt: Some(attempt) };
        p.handle_work(stale).await;
    }
    let untouched = p.job(&id).await;
    // ...then attempt 4, the one that is due.
    let due = WorkMessage::Submit { job_id: id.clone(), task_token: None, attempt: Some(4) };
    p.handle_work(due).await;
    let after = p.job(&id).await;

    // Assert
    assert_eq!((untouched.status, untouched.submit_attempt, untouched.provider_request_id.clone()), (JobStatus::Retrying, 3, None));
    assert_eq!(p.provider_stats().await["submissions"][id.as_str()], 1, "only attempt 4 reached the provider");
    // Accepted by attempt 4. The provider works on while the test reads, so
    // its callbacks may already have moved the job on, as far as completed
    // (never to failed); its history went through `submitted` (attempt 4's
    // acceptance) and never failed.
    assert!(
        matches!(after.status, JobStatus::Submitted | JobStatus::Processing | JobStatus::Completed),
        "{} {:?}",
        after.status,
        after.error
    );
    let entered = p.statuses_entered(&id).await;
    assert!(entered.iter().any(|s| s == "submitted") && !entered.iter().any(|s| s == "failed"), "{entered:?}");
    assert_eq!(after.submit_attempt, 4);
    assert!(after.provider_request_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_provider_is_retried_by_the_worker_until_it_takes_the_job() {
    // Arrange: 429, 503, 503, 429, then accepted: four of the five submissions refused.
    let p = TestApp::builder().with_local_provider().build().await;

    // Act
    let id = p.new_job_with(&one_second(json!({"submit_errors": [429, 503, 503, 429]}))).await;
    let job = p.wait_for(&id, 120, |s| !s.is_in_flight()).await;

    // Assert
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.submit_attempt, 5);
    assert_eq!(p.provider_stats().await["submissions"][id.as_str()], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_busy_past_every_retry_fails_the_job_once_with_a_refund() {
    let p = TestApp::builder().with_local_provider().build().await;

    let id = p.new_job_with(&one_second(json!({"submit_errors": [503, 503, 503, 503, 503, 503]}))).await;
    let job = p.wait_for(&id, 120, |s| !s.is_in_flight()).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_ref().map(|e| e.code.as_str()), Some("provider_busy"));
    assert_eq!(p.provider_stats().await["submissions"][id.as_str()], 5, "no sixth submission");
    assert_eq!(p.credits().await, 1_000, "refunded once");
    assert_eq!(p.settled_execution_status(&id).await.as_deref(), Some("FAILED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_whose_execution_never_started_is_started_by_the_stuck_check() {
    // Arrange: create died between its transaction and StartExecution.
    let app = TestApp::builder().credits(10).own_stack().build().await;
    let params = JobParams::TextToVideo { duration_seconds: 1, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Sd };
    let a_minute_ago = timestamp::now() - time::Duration::seconds(60);
    let job = Job::accepted(JobId::generate(), app.user.clone(), params, "local".parse().unwrap(), 1, a_minute_ago);
    app.put_job(&job).await;
    assert_eq!(app.execution_status(&job.job_id).await, None);

    // Act
    let stuck = worker::check_stuck(&app.app.worker).await.expect("checked");

    // Assert
    assert!(stuck >= 1, "counted as stuck meanwhile");
    assert_eq!(app.execution_status(&job.job_id).await.as_deref(), Some("RUNNING"));
    let (submit, _) = next_message(&app, &job.job_id, "submit").await;
    assert!(submit["task_token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_can_never_be_handled_go_to_the_dead_letter_queue_with_the_reason() {
    // Arrange
    let app = TestApp::builder().credits(10).own_stack().build().await;
    let records = ["not json at all", &json!({"kind": "expire", "job_id": JobId::generate()}).to_string()]
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
            record.message_id = Some(format!("m{i}"));
            record.body = Some((*body).to_owned());
            record
        })
        .collect();
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = records;

    // Act
    let response = worker::handler(&app.app.worker, lambda_runtime::LambdaEvent::new(event, Default::default())).await.expect("handled");

    // Assert: neither comes back, and both are in the dead-letter queue, each with why.
    assert!(response.batch_item_failures.is_empty());
    let dlq = app.stack().resources.work_dlq_url.clone().expect("the stack has a dead-letter queue");
    let out = app
        .stack()
        .clients
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let mut reasons: Vec<(String, String)> = out
        .messages()
        .iter()
        .map(|m| {
            let reason = m.message_attributes().and_then(|a| a.get("reason")).and_then(|v| v.string_value()).unwrap_or("").to_owned();
            (m.body().unwrap_or("").to_owned(), reason)
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|(body, reason)| body == "not json at all" && reason.starts_with("unusable message")), "{reasons:?}");
    assert!(reasons.iter().any(|(body, reason)| body.contains("expire") && reason.contains("no job")), "{reasons:?}");
}

/// An output store that lets another writer act at the worst moment.
struct Interleaved {
    inner: Arc<dyn OutputStore>,
    before_delete: Option<Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>>,
    after_copy: Option<Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>>,
}

#[async_trait]
impl OutputStore for Interleaved {
    async fn copy_from_url(&self, url: &str, key: &str, content_type: &str) -> Result<CopiedObject, CopyError> {
        let copied = self.inner.copy_from_url(url, key, content_type).await;
        if let Some(act) = &self.after_copy {
            act().await;
        }
        copied
    }
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        if let Some(act) = &self.before_delete {
            act().await;
        }
        self.inner.delete(keys).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_racing_the_retention_expiry_never_leaves_an_approved_job_without_its_video() {
    // Arrange: a completed job; the reviewer approves at the moment expiry deletes.
    let p = TestApp::builder().with_local_provider().build().await;
    let id = p.new_job_with(&one_second(json!({}))).await;
    assert_eq!(p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await.status, JobStatus::Completed);
    let (_, reviewer_key) = p.another_user(0, Role::Reviewer).await;
    let app = Arc::new(p.app.clone());
    let approve = {
        let (app, id, key) = (app.clone(), id.clone(), reviewer_key.clone());
        move || -> futures::future::BoxFuture<'static, ()> {
            let (app, id, key) = (app.clone(), id.clone(), key.clone());
            Box::pin(async move {
                let request = lambda_http::http::Request::builder()
                    .method(Method::POST)
                    .uri(format!("https://api.test/videos/jobs/{id}/review"))
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(lambda_http::Body::Text(r#"{"decision":"approve"}"#.into()))
                    .expect("request");
                let _ = local_api::dispatch(&app, request).await;
            })
        }
    };
    let mut worker = p.app.worker.clone();
    worker.outputs = Arc::new(Interleaved { inner: worker.outputs.clone(), before_delete: Some(Box::new(approve)), after_copy: None });

    // Act
    worker::handle(&worker, WorkMessage::Expire { job_id: id.clone() }).await.expect("expired");

    // Assert: whichever won, the job and S3 agree.
    let job = p.job(&id).await;
    let objects = objects_of(&p, &id).await;
    match job.status {
        JobStatus::Approved => assert!(job.output.is_some() && !objects.is_empty(), "approved without its video: {objects:?}"),
        JobStatus::Expired => assert!(job.output.is_none() && objects.is_empty(), "expired with objects left: {objects:?}"),
        other => panic!("unexpected status {other}"),
    }
    assert_eq!(job.status, JobStatus::Expired, "the expiry moved first, so the late approval is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_completion_leaves_no_video_in_s3() {
    // Arrange: no callbacks, so the test finalizes the job itself; the user
    // cancels just after the output is copied.
    let p = TestApp::builder().with_local_provider().build().await;
    let id = p.new_job_with(&one_second(json!({"drop_callbacks": true}))).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(WAIT);
    let request_id = loop {
        if let Some(request_id) = p.job(&id).await.provider_request_id {
            break request_id;
        }
        assert!(std::time::Instant::now() < deadline, "the provider never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    loop {
        let url = format!("{}/v1/predictions/{request_id}", p.provider_url());
        let prediction: serde_json::Value = reqwest::get(url).await.expect("poll").json().await.expect("json");
        if prediction["status"] == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the provider never finished");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let app = Arc::new(p.app.clone());
    let cancel = {
        let (app, id, key) = (app.clone(), id.clone(), p.key.clone());
        move || -> futures::future::BoxFuture<'static, ()> {
            let (app, id, key) = (app.clone(), id.clone(), key.clone());
            Box::pin(async move {
                let request = lambda_http::http::Request::builder()
                    .method(Method::DELETE)
                    .uri(format!("https://api.test/videos/jobs/{id}"))
                    .header("authorization", format!("Bearer {key}"))
                    .body(lambda_http::Body::Empty)
                    .expect("request");
                let _ = local_api::dispatch(&app, request).await;
            })
        }
    };
    let mut worker = p.app.worker.clone();
    worker.outputs = Arc::new(Interleaved { inner: worker.outputs.clone(), before_delete: None, after_copy: Some(Box::new(cancel)) });

    // Act
    worker::handle(&worker, WorkMessage::Finalize { job_id: id.clone() }).await.expect("finalized");

    // Assert
    let job = p.job(&id).await;
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(objects_of(&p, &id).await, Vec::<String>::new(), "the copied video was deleted");
    assert_eq!(p.credits().await, 1_000, "the cancel refunded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_whose_applier_died_is_applied_by_the_providers_retry() {
    // Arrange: a delivery claimed its receipt and died before marking it done.
    let app = TestApp::builder().credits(10).own_stack().build().await;
    let event_id = format!("evt_{}", ulid::Ulid::new());
    assert_eq!(app.stack().store.record_receipt("local", &event_id, "lp_x", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::New);

    // Act / Assert: while its lease runs, a retry is asked to come back later...
    assert_eq!(app.stack().store.record_receipt("local", &event_id, "lp_x", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::InProgress);
    // ...once it has run out, the retry takes the receipt over and applies it.
    app.stack()
        .clients
        .dynamodb
        .update_item()
        .table_name(&app.stack().resources.jobs_table)
        .key("pk", AttributeValue::S(format!("RECEIPT#local#{event_id}")))
        .key("sk", AttributeValue::S("RECEIPT".into()))
        .update_expression("SET lease_until = :past")
        .expression_attribute_values(":past", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("lease aged");
    assert_eq!(app.stack().store.record_receipt("local", &event_id, "lp_x", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::New);
    app.stack().store.complete_receipt("local", &event_id).await.unwrap();
    assert_eq!(app.stack().store.record_receipt("local", &event_id, "lp_x", RECEIPT_LEASE).await.unwrap(), ReceiptClaim::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_claim_is_released_only_by_the_attempt_that_holds_it() {
    // Arrange: attempt A's lease ran out and attempt B took the claim over.
    let app = TestApp::builder().credits(10).own_stack().build().await;
    let id = JobId::generate();
    let status = JobStatus::Completed;
    let minute = std::time::Duration::from_secs(60);
    assert_eq!(app.stack().store.claim_attempt(&id, status, 1, "a", std::time::Duration::ZERO).await.unwrap(), AttemptClaim::Taken);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(app.stack().store.claim_attempt(&id, status, 1, "b", minute).await.unwrap(), AttemptClaim::Taken);

    // Act: A finishes late and gives back what it thinks it holds.
    app.stack().store.finish_attempt(&id, status, 1, "a").await.unwrap();

    // Assert: B still holds it; B's own release frees it, and B's attempt is the one recorded made.
    assert_eq!(app.stack().store.claim_attempt(&id, status, 1, "c", minute).await.unwrap(), AttemptClaim::Held);
    app.stack().store.release_attempt(&id, status, "b").await.unwrap();
    assert_eq!(app.stack().store.claim_attempt(&id, status, 1, "c", minute).await.unwrap(), AttemptClaim::Taken);
    app.stack().store.finish_attempt(&id, status, 1, "c").await.unwrap();
    assert_eq!(app.stack().store.claim_attempt(&id, status, 1, "d", minute).await.unwrap(), AttemptClaim::AlreadyMade);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_has_at_most_four_deliveries_in_flight() {
    let app = TestApp::builder().credits(10).own_stack().build().await;
    let (other, _) = app.another_user(0, Role::User).await;
    let lease = std::time::Duration::from_secs(60);

    let mut held = Vec::new();
    for i in 0..4 {
        held.push(app.stack().store.claim_user_slot(&app.user, 4, &format!("h{i}"), lease).await.unwrap().expect("a free slot"));
    }
    let fifth = app.stack().store.claim_user_slot(&app.user, 4, "h5", lease).await.unwrap();
    let others = app.stack().store.claim_user_slot(&other, 4, "h6", lease).await.unwrap();
    app.stack().store.release_user_slot(&app.user, held[0], "nobody").await.unwrap();
    let after_a_stranger_released = app.stack().store.claim_user_slot(&app.user, 4, "h7", lease).await.unwrap();

    held.sort();
    assert_eq!(held, [0, 1, 2, 3]);
    assert_eq!(fifth, None, "a fifth waits");
    assert!(others.is_some(), "another tenant is not held back");
    assert_eq!(after_a_stranger_released, None, "only the holder frees a slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_dynamodb_cannot_store_is_a_400_and_writes_nothing() {
    let app = TestApp::new(10).await;
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));

    for metadata in [format!(r#"{{"deep":{deep}}}"#), r#"{"n":1e300}"#.to_owned()] {
        let body = format!(r#"{{"prompt":"p","metadata":{metadata}}}"#);
        let reply = app.generate(&body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.error_code(), "invalid_request", "{}", reply.body);
    }
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.credits().await, 10);
}

async fn retention_tags(app: &TestApp, key: &str) -> Vec<String> {
    let out =
        app.stack().clients.s3.get_object_tagging().bucket(&app.stack().resources.media_bucket).key(key).send().await.expect("tagging");
    out.tag_set().iter().filter(|t| t.key() == "videojobs-retention").map(|t| t.value().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_tagged_unreviewed_for_the_safety_net_until_approved() {
    // Arrange: a completed video.
    let p = TestApp::builder().with_local_provider().build().await;
    let id = p.new_job_with(&one_second(json!({}))).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;
    let video_key = job.output.expect("an output").video_key;
    assert_eq!(retention_tags(&p, &video_key).await, ["unreviewed"]);
    let (_, reviewer_key) = p.another_user(0, Role::Reviewer).await;

    // Act: approved; the worker (polling the queue) marks it. The wait ends
    // as soon as the tag is gone; its bound is for a starved machine.
    let reply = p.as_key(&reviewer_key).review_job(&id, r#"{"decision":"approve"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60) + crate::harness::REDELIVERY_ALLOWANCE;
    while !retention_tags(&p, &video_key).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Assert
    assert!(retention_tags(&p, &video_key).await.is_empty(), "kept: untagged");
}
