//! An approval ends the job's execution: the retention window is a task
//! (`KeepForReview`) whose token the worker keeps and an approval answers,
//! so an approved job costs two state transitions and only a video nobody
//! approved reaches `Expire`. The approval keeps the video's objects (takes
//! their `unreviewed` tag off) before it commits, since no `expire` comes for
//! it afterwards.

use crate::harness::api::Caller;
use crate::harness::{all_at_once, next_message, settings, TestApp};
use async_trait::async_trait;
use lambda_http::http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::{timestamp, Artifact};
use videojobs_core::model::settings::Settings;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{KeepOutputs, ReviewWaits, TaskTokens};
use videojobs_core::{JobStatus, StoreError};

const WAIT: u64 = 60;

fn one_second() -> serde_json::Value {
    json!({"prompt": "A heron in the reeds", "duration_seconds": 1, "resolution": "480p"})
}

fn with_retention(seconds: u64) -> Settings {
    let mut s = settings();
    s.retention_seconds = seconds;
    s
}

async fn retention_tags(app: &TestApp, key: &str) -> Vec<String> {
    let out =
        app.stack().clients.s3.get_object_tagging().bucket(&app.stack().resources.media_bucket).key(key).send().await.expect("tagging");
    out.tag_set().iter().filter(|t| t.key() == "videojobs-retention").map(|t| t.value().to_owned()).collect()
}

async fn object_exists(app: &TestApp, key: &str) -> bool {
    match app.stack().clients.s3.head_object().bucket(&app.stack().resources.media_bucket).key(key).send().await {
        Ok(_) => true,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => false,
        Err(err) => panic!("HeadObject {key}: {err:?}"),
    }
}

fn keys_of(id: &JobId) -> [String; 2] {
    [format!("outputs/{id}/video.mp4"), format!("outputs/{id}/thumbnail.jpg")]
}

async fn review_as(app: &local_api::App, key: &str, id: &JobId, body: &str) -> StatusCode {
    Caller::on_handlers(app, key).review_job(id, body).await.status
}

const APPROVE: &str = r#"{"decision":"approve"}"#;
const REJECT: &str = r#"{"decision":"reject","reason":"off_brief"}"#;

/// Waits until the worker has kept the review wait's token.
async fn review_wait_stored(app: &TestApp, id: &JobId) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.stack().store.review_token(id).await.expect("token read").is_none() {
        assert!(std::time::Instant::now() < deadline, "no review wait stored for {id} within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A job of a stack without a worker, brought to `KeepForReview` by hand:
/// its objects stored (tagged unreviewed, as the worker writes them), the job
/// completed, and the submission's token answered as the worker would. The
/// state machine's `await_review` message is left on the queue.
async fn waiting_for_review(app: &TestApp) -> JobId {
    let id = app.new_job(2).await;
    let (submit, _) = next_message(app, &id, "submit").await;
    for key in keys_of(&id) {
        app.stack()
            .clients
            .s3
            .put_object()
            .bucket(&app.stack().resources.media_bucket)
            .key(&key)
            .tagging("videojobs-retention=unreviewed")
            .body(aws_sdk_s3::primitives::ByteStream::from(b"stand-in bytes".to_vec()))
            .send()
            .await
            .expect("object stored");
    }
    let mut job = app.job(&id).await;
    let now = timestamp::now();
    job.status = JobStatus::Completed;
    job.progress = 100;
    job.updated_at = now;
    job.completed_at = Some(now);
    job.output_expires_at = Some(now + time::Duration::days(1));
    let [video_key, thumbnail_key] = keys_of(&id);
    job.output = Some(Artifact {
        video_key,
        thumbnail_key: Some(thumbnail_key),
        mime_type: "video/mp4".into(),
        size_bytes: 14,
        thumbnail_size_bytes: Some(14),
        duration_seconds: 2.0,
        width: 1280,
        height: 720,
    });
    app.put_job(&job).await;
    let token = submit["task_token"].as_str().expect("a token");
    app.stack()
        .clients
        .sfn
        .send_task_success()
        .task_token(token)
        .output(r#"{"status":"completed"}"#)
        .send()
        .await
        .expect("submit answered");
    id
}

/// Hands the state machine's `await_review` message for `id` to the worker.
async fn deliver_await_review(app: &TestApp, id: &JobId) {
    let (message, _) = next_message(app, id, "await_review").await;
    let message: WorkMessage = serde_json::from_value(message).expect("a work message");
    worker::handle(&app.app.worker, message).await.expect("await_review handled");
}

struct Refusing;

#[async_trait]
impl TaskTokens for Refusing {
    async fn succeed(&self, _: &str, _: &serde_json::Value) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("Step Functions refused".into()))
    }
    async fn fail(&self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("Step Functions refused".into()))
    }
}

#[async_trait]
impl KeepOutputs for Refusing {
    async fn keep(&self, _: &[String]) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("S3 refused".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_ends_the_execution_after_two_transitions_and_the_video_outlives_the_window() {
    // Arrange: a finished video whose review wait the worker holds.
    // A window far longer than the test, so that the approval always comes first.
    let p = TestApp::builder().settings(with_retention(600)).with_local_provider().build().await;
    let id = p.new_job_with(&one_second()).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    review_wait_stored(&p, &id).await;
    let (_, reviewer) = p.another_user(0, Role::Reviewer).await;

    // Act
    let status = review_as(&p.app, &reviewer, &id, APPROVE).await;

    // Assert: the execution ended at the approval, two states entered.
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
    assert_eq!(p.states_entered(&id).await, ["Submit", "KeepForReview"]);
    let keys = job.output.as_ref().expect("an output").object_keys();
    assert_eq!(keys.len(), 2, "a video and its thumbnail");
    for key in &keys {
        assert!(retention_tags(&p, key).await.is_empty(), "{key} kept: untagged");
    }
    // ...and once its window has passed (moved into the past rather than waited
    // for), the approved video is still there and still served.
    let mut approved = p.job(&id).await;
    assert_eq!(approved.status, JobStatus::Approved);
    approved.output_expires_at = Some(timestamp::now() - time::Duration::seconds(1));
    p.put_job(&approved).await;
    for key in &keys {
        assert!(object_exists(&p, key).await, "{key}");
    }
    assert_eq!(p.job_result(&id).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_nobody_approved_reaches_expire_after_three_transitions_and_is_deleted() {
    let p = TestApp::builder().settings(with_retention(3)).with_local_provider().build().await;
    let id = p.new_job_with(&one_second()).await;

    // A 3 s window can pass between two reads of a busy machine: wait for the
    // end, then check from the job's events that it went through `completed`.
    p.wait_for(&id, WAIT + 30, |s| !s.is_in_flight() && s != JobStatus::Completed).await;
    assert!(p.statuses_entered(&id).await.ends_with(&["completed".to_owned(), "expired".to_owned()]));
    // The status moves first and the objects go after: wait for the deletion too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.job(&id).await.output.is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert!(p.job(&id).await.output.is_none());
    for key in keys_of(&id) {
        assert!(!object_exists(&p, &key).await, "{key} was deleted");
    }
    assert_eq!(p.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
    assert_eq!(p.states_entered(&id).await, ["Submit", "KeepForReview", "Expire"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_video_is_deleted_at_once_and_its_execution_still_reaches_expire() {
    // Arrange: a short window, the wait stored, and no worker: each message is
    // handed over by the test, so the order below holds however slow the machine.
    let app = TestApp::builder().credits(100).settings(with_retention(3)).own_stack().build().await;
    let id = waiting_for_review(&app).await;
    deliver_await_review(&app, &id).await;
    let (_, reviewer) = app.another_user(0, Role::Reviewer).await;

    // Act: rejected, and the worker's discard_output handled.
    let status = review_as(&app.app, &reviewer, &id, REJECT).await;
    deliver_discard(&app, &id).await;

    // Assert: deleted by the rejection itself, long before anything expires it...
    assert_eq!(status, StatusCode::OK);
    for key in keys_of(&id) {
        assert!(!object_exists(&app, &key).await, "{key} was deleted");
    }
    // ...the rejection did not answer the wait, so the window's end still enters
    // Expire (an answered wait would have ended the execution after two states)...
    assert_eq!(app.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
    assert_eq!(app.states_entered(&id).await, ["Submit", "KeepForReview", "Expire"]);
    // ...and its expire, the guarantee should the discard have been lost, changes nothing.
    let (expire, _) = next_message(&app, &id, "expire").await;
    worker::handle(&app.app.worker, serde_json::from_value(expire).expect("a work message")).await.expect("expire handled");
    assert_eq!(app.job(&id).await.status, JobStatus::Rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_before_the_review_wait_is_stored_is_answered_by_the_worker_that_stores_it() {
    // Arrange: the execution waits for the review; its token is still on the queue.
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let id = waiting_for_review(&app).await;
    let (_, reviewer) = app.another_user(0, Role::Reviewer).await;

    // Act: approved first (no token to answer yet), the wait stored after.
    let status = review_as(&app.app, &reviewer, &id, APPROVE).await;
    let still = app.execution_status(&id).await;
    deliver_await_review(&app, &id).await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still.as_deref(), Some("RUNNING"));
    assert_eq!(app.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
    assert_eq!(app.states_entered(&id).await, ["Submit", "KeepForReview"]);
    for key in keys_of(&id) {
        assert!(retention_tags(&app, &key).await.is_empty(), "{key} kept: untagged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_whose_answer_is_lost_reaches_expire_which_keeps_the_video() {
    // Arrange: a short window; the wait stored; Step Functions refuses the answer.
    let app = TestApp::builder().credits(100).settings(with_retention(3)).own_stack().build().await;
    let id = waiting_for_review(&app).await;
    deliver_await_review(&app, &id).await;
    let (_, reviewer) = app.another_user(0, Role::Reviewer).await;
    let mut refusing = app.app.clone();
    refusing.status.tasks = Arc::new(Refusing);

    // Act: approved (the answer is lost), and as if its keep were lost too.
    let status = review_as(&refusing, &reviewer, &id, APPROVE).await;
    for key in keys_of(&id) {
        app.stack()
            .clients
            .s3
            .put_object_tagging()
            .bucket(&app.stack().resources.media_bucket)
            .key(&key)
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(aws_sdk_s3::types::Tag::builder().key("videojobs-retention").value("unreviewed").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("tagged back");
    }
    let (expire, _) = next_message(&app, &id, "expire").await;
    worker::handle(&app.app.worker, serde_json::from_value(expire).expect("a work message")).await.expect("expire handled");

    // Assert: the window's end found the job approved: its video kept, and untagged again.
    assert_eq!(status, StatusCode::OK);
    let job = app.job(&id).await;
    assert_eq!(job.status, JobStatus::Approved);
    assert!(job.output.is_some());
    for key in keys_of(&id) {
        assert!(object_exists(&app, &key).await, "{key}");
        assert!(retention_tags(&app, &key).await.is_empty(), "{key} kept: untagged");
    }
    assert_eq!(app.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
    assert_eq!(app.states_entered(&id).await, ["Submit", "KeepForReview", "Expire"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_cannot_mark_the_video_kept_is_refused_and_changes_nothing() {
    // Arrange
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let id = waiting_for_review(&app).await;
    deliver_await_review(&app, &id).await;
    let (_, reviewer) = app.another_user(0, Role::Reviewer).await;
    let mut refusing = app.app.clone();
    refusing.status.kept = Arc::new(Refusing);

    // Act
    let refused = review_as(&refusing, &reviewer, &id, APPROVE).await;
    let after_refusal = (app.job(&id).await.status, app.execution_status(&id).await);
    let again = review_as(&app.app, &reviewer, &id, APPROVE).await;

    // Assert: nothing committed until the objects were kept; the retry goes through.
    assert_eq!(refused, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(after_refusal, (JobStatus::Completed, Some("RUNNING".to_owned())));
    assert_eq!(again, StatusCode::OK);
    assert_eq!(app.job(&id).await.status, JobStatus::Approved);
    assert_eq!(app.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_rejections_and_the_expiry_racing_keep_one_outcome_and_never_delete_an_approved_video() {
    let app = TestApp::builder().credits(1_000).own_stack().build().await;
    let (_, reviewer) = app.another_user(0, Role::Reviewer).await;
    for round in 0..4 {
        // Arrange: a video whose review wait the worker holds.
        let id = waiting_for_review(&app).await;
        deliver_await_review(&app, &id).await;

        // Act: three approvals, three rejections and the window's end at once
        // (the expiry first in some rounds, last in others).
        let expire_at = if round % 2 == 0 { 0 } else { 6 };
        let answers = all_at_once(7, |i| {
            let (app, reviewer, id) = (&app, &reviewer, &id);
            async move {
                if i == expire_at {
                    worker::handle(&app.app.worker, WorkMessage::Expire { job_id: id.clone() }).await.expect("expire handled");
                    None
                } else {
                    Some(review_as(&app.app, reviewer, id, if i % 2 == 0 { APPROVE } else { REJECT }).await)
                }
            }
        })
        .await;
        let job = app.job(&id).await;
        if job.status == JobStatus::Rejected {
            deliver_discard(&app, &id).await;
        }

        // Assert: one decision, and S3 agrees with it.
        let accepted = answers.iter().flatten().filter(|s| **s == StatusCode::OK).count();
        let conflicts = answers.iter().flatten().filter(|s| **s == StatusCode::CONFLICT || **s == StatusCode::GONE).count();
        let events = app.job_events(&id).await;
        let decisions = events.body["events"].as_array().unwrap().iter().filter(|e| e["previous_status"] == "completed").count();
        assert_eq!(decisions, 1, "{}", events.body);
        assert_eq!(accepted + conflicts, 6);
        let objects: Vec<bool> = futures::future::join_all(keys_of(&id).map(|key| {
            let app = &app;
            async move { object_exists(app, &key).await }
        }))
        .await;
        match job.status {
            JobStatus::Approved => {
                assert_eq!(accepted, 1);
                assert_eq!(objects, [true, true], "an approved video is never deleted");
                for key in keys_of(&id) {
                    assert!(retention_tags(&app, &key).await.is_empty(), "{key} kept: untagged");
                }
                assert_eq!(app.settled_execution_status(&id).await.as_deref(), Some("SUCCEEDED"));
            }
            JobStatus::Rejected => {
                assert_eq!(accepted, 1);
                assert_eq!(objects, [false, false]);
            }
            JobStatus::Expired => {
                assert_eq!(accepted, 0);
                assert_eq!(objects, [false, false]);
            }
            other => panic!("unexpected status {other}"),
        }
    }
}

/// Hands a rejection's `discard_output` message to the worker.
async fn deliver_discard(app: &TestApp, id: &JobId) {
    let (message, _) = next_message(app, id, "discard_output").await;
    worker::handle(&app.app.worker, serde_json::from_value(message).expect("a work message")).await.expect("discard handled");
}
