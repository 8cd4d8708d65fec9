//! Jobs made from other jobs: a retry makes the same request again after a
//! job that left no video to keep, a remix changes the fields it names; each
//! is a create (checked, charged, idempotent) that names its parent, and the
//! parent lists them.

use crate::harness::{all_at_once, TestApp};
use lambda_http::http::StatusCode;
use std::collections::HashSet;
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::JobParams;
use videojobs_core::model::request::Resolution;
use videojobs_core::JobStatus;

const ORIGINAL: &str =
    r#"{"prompt":"A paper boat on a rainy street","duration_seconds":3,"resolution":"1080p","seed":7,"metadata":{"order":"1042"}}"#;

/// A job made from `ORIGINAL`, canceled (credits back): one a retry may make again.
async fn canceled_original(app: &TestApp) -> JobId {
    let id = app.generate(ORIGINAL).await.job_id();
    assert_eq!(app.cancel_job(&id).await.status, StatusCode::OK);
    id
}

#[tokio::test]
async fn a_retry_makes_the_same_request_again_as_a_new_job_charged_as_any_and_named_after_its_parent() {
    // Arrange
    let app = TestApp::new(100).await;
    let parent_id = canceled_original(&app).await;

    // Act
    let reply = app.retry_job(&parent_id).await;

    // Assert: a new job, the same inputs, charged again (the parent's refund stands).
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let child_id = reply.job_id();
    assert_ne!(child_id, parent_id);
    let (parent, child) = (app.job(&parent_id).await, app.job(&child_id).await);
    assert_eq!(child.params, parent.params);
    assert!(matches!(child.params, JobParams::TextToVideo { duration_seconds: 3, resolution: Resolution::FullHd, .. }));
    assert_eq!((child.seed, &child.metadata), (Some(7), &parent.metadata));
    assert_eq!(app.stored_prompt(&child_id).await.as_deref(), Some("A paper boat on a rainy street"));
    assert_eq!(child.status, JobStatus::Queued);
    assert_eq!(app.credits().await, 100 - 6);
    let status = app.job_status(&child_id).await;
    assert_eq!(status.body["parent_job_id"], parent_id.as_str());
    assert_eq!(app.job_status(&parent_id).await.body["parent_job_id"], serde_json::Value::Null);
    let children = app.job_children(&parent_id).await;
    assert_eq!(children.status, StatusCode::OK);
    let listed: Vec<&str> = children.body["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [child_id.as_str()]);
}

#[tokio::test]
async fn only_a_job_that_left_no_video_to_keep_can_be_retried() {
    // Arrange: one job in flight, one completed (a video waiting for review).
    let app = TestApp::new(100).await;
    let in_flight = app.new_job(1).await;
    let completed = app.new_job(1).await;
    let mut job = app.job(&completed).await;
    job.status = JobStatus::Completed;
    app.put_job(&job).await;

    // Act
    let replies = [app.retry_job(&in_flight).await, app.retry_job(&completed).await];

    // Assert: 409, and nothing written or charged.
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
        assert_eq!(reply.error_code(), "wrong_state");
        assert!(reply.body["error"]["message"].as_str().unwrap().contains("remix"), "{}", reply.body);
    }
    assert_eq!(app.job_count().await, 2);
    assert_eq!(app.credits().await, 98);
}

#[tokio::test]
async fn twenty_concurrent_retries_with_one_key_make_one_child_and_one_debit() {
    // Arrange
    let app = TestApp::new(100).await;
    let parent_id = canceled_original(&app).await;
    let (app, parent) = (&app, &parent_id);

    // Act
    let replies = all_at_once(20, |_| async move { app.idempotent("retry-1").retry_job(parent).await }).await;

    // Assert
    let children: HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            r.body["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(children.len(), 1);
    assert_eq!(replies.iter().filter(|r| r.headers.contains_key("idempotent-replayed")).count(), 19);
    assert_eq!(app.job_count().await, 2);
    assert_eq!(app.credits().await, 94);
    assert_eq!(app.job_children(parent).await.body["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn one_idempotency_key_retrying_two_jobs_is_refused_as_a_different_request() {
    let app = TestApp::new(100).await;
    let first = canceled_original(&app).await;
    let second = canceled_original(&app).await;

    let a = app.idempotent("retry-2").retry_job(&first).await;
    let b = app.idempotent("retry-2").retry_job(&second).await;

    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(b.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b.error_code(), "idempotency_conflict");
}

#[tokio::test]
async fn a_remix_changes_only_the_fields_it_names_from_a_job_in_any_status() {
    // Arrange: a job still in flight.
    let app = TestApp::new(100).await;
    let parent_id = app.generate(ORIGINAL).await.job_id();

    // Act
    let reply = app.remix_job(&parent_id, r#"{"prompt":"The same boat, at night","seed":null,"resolution":"480p"}"#).await;

    // Assert
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let child = app.job(&reply.job_id()).await;
    assert!(matches!(child.params, JobParams::TextToVideo { duration_seconds: 3, resolution: Resolution::Sd, .. }), "{:?}", child.params);
    assert_eq!(child.seed, None, "null leaves the field out");
    assert_eq!(child.metadata, app.job(&parent_id).await.metadata);
    assert_eq!(child.parent_job_id.as_ref(), Some(&parent_id));
    assert_eq!(app.stored_prompt(&child.job_id).await.as_deref(), Some("The same boat, at night"));
    assert_eq!(app.credits().await, 100 - 6 - 3);
}

#[tokio::test]
async fn a_remix_with_a_bad_override_is_400_naming_it_and_writes_nothing() {
    // Arrange
    let app = TestApp::new(100).await;
    let parent_id = app.generate(ORIGINAL).await.job_id();
    let bad = [
        (r#"{"duration_seconds":99}"#, "duration_seconds"),
        (r#"{"image_url":"https://img.example/a.png"}"#, "image_url"),
        (r#"{"seed":-1}"#, "seed"),
        (r#"{"prompt":""}"#, "prompt"),
        (r#"[1,2]"#, "body"),
    ];

    // Act
    let replies = all_at_once(bad.len(), |i| app.remix_job(&parent_id, bad[i].0)).await;

    // Assert
    for (reply, (body, field)) in replies.iter().zip(bad) {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{body}: {}", reply.body);
    }
    assert_eq!(app.job_count().await, 1);
    assert_eq!(app.credits().await, 94);
}

#[tokio::test]
async fn another_users_job_is_404_to_retry_remix_and_list_and_a_reviewer_may_list_but_not_make() {
    // Arrange
    let app = TestApp::new(100).await;
    let parent_id = canceled_original(&app).await;
    let (_, stranger) = app.another_user(100, Role::User).await;
    let (_, reviewer) = app.another_user(100, Role::Reviewer).await;

    // Act
    let stranger_replies = [
        app.as_key(&stranger).retry_job(&parent_id).await,
        app.as_key(&stranger).remix_job(&parent_id, "{}").await,
        app.as_key(&stranger).job_children(&parent_id).await,
    ];
    let reviewer_retry = app.as_key(&reviewer).retry_job(&parent_id).await;
    let reviewer_list = app.as_key(&reviewer).job_children(&parent_id).await;

    // Assert
    for reply in &stranger_replies {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    }
    assert_eq!(reviewer_retry.status, StatusCode::FORBIDDEN);
    assert_eq!(reviewer_list.status, StatusCode::OK);
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test]
async fn a_retry_whose_prompt_is_gone_is_410_and_a_remix_with_a_new_prompt_still_makes_it() {
    // Arrange: the prompt deleted, as its TTL does at the end of the retention window.
    let app = TestApp::builder().credits(100).in_memory().build().await;
    let parent_id = canceled_original(&app).await;
    app.memory().forget_prompt(&parent_id);

    // Act
    let retry = app.retry_job(&parent_id).await;
    let remix_without = app.remix_job(&parent_id, "{}").await;
    let remix_with = app.remix_job(&parent_id, r#"{"prompt":"A new prompt"}"#).await;

    // Assert
    assert_eq!(retry.status, StatusCode::GONE);
    assert_eq!(retry.error_code(), "inputs_gone");
    assert_eq!(remix_without.status, StatusCode::BAD_REQUEST);
    assert_eq!(remix_without.body["error"]["field"], "prompt");
    assert_eq!(remix_with.status, StatusCode::ACCEPTED, "{}", remix_with.body);
    assert_eq!(app.job_count().await, 2);
}

#[tokio::test]
async fn a_job_made_twice_from_itself_lists_each_child_once_newest_first() {
    let app = TestApp::new(100).await;
    let parent_id = canceled_original(&app).await;

    let first = app.retry_job(&parent_id).await.job_id();
    let second = app.remix_job(&parent_id, r#"{"duration_seconds":1}"#).await.job_id();
    let grandchild = app.remix_job(&second, r#"{"duration_seconds":2}"#).await.job_id();

    let listed = app.job_children(&parent_id).await;
    let ids: Vec<&str> = listed.body["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(app.job(&grandchild).await.parent_job_id.as_ref(), Some(&second));
}
