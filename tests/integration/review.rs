//! Reviews: a reviewer approves or rejects a completed video, exactly once;
//! an approved video outlives the retention window, a rejected one is deleted
//! from S3; the queue lists what waits for review, oldest first.

use crate::harness::{all_at_once, next_message, thumbnail_key, video_key, work_message, Page, Payload, TestApp};
use lambda_http::http::StatusCode;
use time::{Duration, OffsetDateTime};
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::{timestamp, Artifact};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::JobStatus;

/// A job of the user's as the worker leaves it: completed at `completed_at`,
/// its video and thumbnail in the bucket.
async fn completed_job(app: &TestApp, completed_at: OffsetDateTime) -> JobId {
    let id = app.new_job(2).await;
    let mut job = app.job(&id).await;
    app.put_object(&video_key(&id)).await;
    app.put_object(&thumbnail_key(&id)).await;
    job.status = JobStatus::Completed;
    job.progress = 100;
    job.updated_at = completed_at;
    job.completed_at = Some(completed_at);
    job.output_expires_at = Some(completed_at + Duration::days(1));
    job.output = Some(Artifact {
        video_key: video_key(&id),
        thumbnail_key: Some(thumbnail_key(&id)),
        mime_type: "video/mp4".into(),
        size_bytes: 14,
        thumbnail_size_bytes: Some(14),
        duration_seconds: 2.0,
        width: 1280,
        height: 720,
    });
    app.put_job(&job).await;
    id
}

/// Whether the job item carries the review queue's index attribute.
async fn in_review_index(app: &TestApp, id: &JobId) -> bool {
    app.job_item(id).await.contains_key("review_state")
}

#[tokio::test]
async fn a_reviewer_approves_a_completed_video_and_it_is_ready_to_use() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = completed_job(&app, timestamp::now()).await;
    let (reviewer, key) = app.another_user(0, Role::Reviewer).await;

    let reply = app.as_key(&key).review_job(&id, r#"{"decision":"approve"}"#).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "approved");
    assert_eq!(reply.body["status_label"], "Ready to use");
    assert_eq!(reply.body["review"]["decision"], "approve");
    assert_eq!(reply.body["review"]["reviewer_id"], reviewer.as_str());
    assert!(reply.body["error"].is_null());
    assert!(reply.body["output"]["video_url"].as_str().is_some_and(|u| !u.is_empty()));
    let events = app.events_from(&id, "reviewer").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["previous_status"], "completed");
    assert_eq!(events[0]["status"], "approved");
    assert_eq!(events[0]["actor"], reviewer.as_str());
    assert!(!in_review_index(&app, &id).await, "an approved job leaves the review queue");
    // The owner sees it too, and no credit moved.
    assert_eq!(app.job_status(&id).await.body["status"], "approved");
    assert_eq!(app.credits().await, 98);
}

#[tokio::test]
async fn a_reviewer_cannot_pass_a_video_they_asked_for_themselves() {
    // Arrange: a completed job that belongs to a reviewer.
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = completed_job(&app, timestamp::now()).await;
    let (reviewer, key) = app.another_user(0, Role::Reviewer).await;
    let mut job = app.job(&id).await;
    job.user_id = reviewer;
    app.put_job(&job).await;

    // Act
    let reply = app.as_key(&key).review_job(&id, r#"{"decision":"approve"}"#).await;

    // Assert: refused, and nothing about the job changed.
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "own_job_review");
    assert_eq!(app.job(&id).await.status, JobStatus::Completed);
    let events = app.as_key(&key).job_events(&id).await;
    assert!(events.body["events"].as_array().unwrap().iter().all(|e| e["source"] != "reviewer"), "{}", events.body);
    assert!(in_review_index(&app, &id).await, "it still waits for another reviewer");
}

#[tokio::test]
async fn an_approved_video_outlives_the_retention_window() {
    let app = TestApp::new(100).await;
    let id = completed_job(&app, timestamp::now()).await;
    let (_, key) = app.another_user(0, Role::Admin).await;
    assert_eq!(app.as_key(&key).review_job(&id, r#"{"decision":"approve","reason":"needs_disclosure"}"#).await.status, StatusCode::OK);
    let mut job = app.job(&id).await;
    job.output_expires_at = Some(timestamp::now() - Duration::minutes(1));
    app.put_job(&job).await;

    // The retention window's end, and a stray discard, reach the worker.
    app.handle_work(WorkMessage::Expire { job_id: id.clone() }).await;
    app.handle_work(WorkMessage::DiscardOutput { job_id: id.clone() }).await;

    let job = app.job(&id).await;
    assert_eq!(job.status, JobStatus::Approved);
    assert_eq!(job.review.as_ref().and_then(|r| r.reason.as_deref()), Some("needs_disclosure"));
    assert!(job.output.is_some());
    assert!(app.object_exists(&video_key(&id)).await);
    assert!(app.object_exists(&thumbnail_key(&id)).await);
    let result = app.job_result(&id).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    assert!(result.body["video"]["url"].as_str().is_some_and(|u| !u.is_empty()));
}

#[tokio::test]
async fn a_user_cannot_review_even_their_own_video() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = completed_job(&app, timestamp::now()).await;

    let own = app.review_job(&id, r#"{"decision":"approve"}"#).await;
    let (_, other) = app.another_user(0, Role::User).await;
    let stranger = app.as_key(&other).review_job(&id, r#"{"decision":"approve"}"#).await;

    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    assert_eq!(own.error_code(), "forbidden");
    assert_eq!(stranger.status, StatusCode::FORBIDDEN);
    assert_eq!(app.job(&id).await.status, JobStatus::Completed);
    assert!(app.events_from(&id, "reviewer").await.is_empty());
    assert!(in_review_index(&app, &id).await);
}

#[tokio::test]
async fn reviewing_twice_is_409_and_leaves_one_review_event() {
    let app = TestApp::new(100).await;
    let id = completed_job(&app, timestamp::now()).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;
    assert_eq!(app.as_key(&key).review_job(&id, r#"{"decision":"approve"}"#).await.status, StatusCode::OK);

    let again = app.as_key(&key).review_job(&id, r#"{"decision":"reject","reason":"off_brief"}"#).await;

    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.error_code(), "wrong_state");
    assert_eq!(app.job(&id).await.status, JobStatus::Approved);
    assert_eq!(app.events_from(&id, "reviewer").await.len(), 1);
}

#[tokio::test]
async fn ten_simultaneous_reviews_give_one_200_and_nine_409s() {
    let app = TestApp::new(100).await;
    let id = completed_job(&app, timestamp::now()).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;

    let replies = all_at_once(10, |i| {
        let body = if i % 2 == 0 { r#"{"decision":"approve"}"# } else { r#"{"decision":"reject","reason":"poor_quality"}"# };
        let (app, key, id) = (&app, &key, &id);
        async move { app.as_key(key).review_job(id, body).await }
    })
    .await;

    let won: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
    let refused = replies.iter().filter(|r| r.status == StatusCode::CONFLICT).count();
    assert_eq!(won.len(), 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(refused, 9);
    let job = app.job(&id).await;
    assert_eq!(job.status.as_str(), won[0].body["status"].as_str().unwrap());
    let events = app.events_from(&id, "reviewer").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], won[0].body["status"]);
}

#[tokio::test]
async fn only_a_completed_video_can_be_reviewed() {
    let app = TestApp::new(100).await;
    let queued = app.new_job(2).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;

    let reply = app.as_key(&key).review_job(&queued, r#"{"decision":"approve"}"#).await;
    let missing = app.as_key(&key).review_job(&JobId::generate(), r#"{"decision":"approve"}"#).await;
    let bad_id = app.as_key(&key).review_job("nope", r#"{"decision":"approve"}"#).await;

    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(app.job(&queued).await.status, JobStatus::Queued);
    assert!(app.events_from(&queued, "reviewer").await.is_empty());
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(bad_id.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_video_past_its_retention_window_cannot_be_approved() {
    let app = TestApp::new(100).await;
    let id = completed_job(&app, timestamp::now() - Duration::days(2)).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;

    let reply = app.as_key(&key).review_job(&id, r#"{"decision":"approve"}"#).await;

    assert_eq!(reply.status, StatusCode::GONE, "{}", reply.body);
    assert_eq!(app.job(&id).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn a_bad_review_body_is_400_naming_the_field_and_writes_nothing() {
    let app = TestApp::new(100).await;
    let id = completed_job(&app, timestamp::now()).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;

    let cases = [
        (r#"{"decision":"reject"}"#, "reason"),
        (r#"{"decision":"reject","reason":"ugly"}"#, "reason"),
        (r#"{"decision":"reject","reason":"other"}"#, "note"),
        (r#"{"decision":"maybe"}"#, "decision"),
        (r#"{"decision":"approve","stars":5}"#, "stars"),
        ("not json", "body"),
    ];
    for (body, field) in cases {
        let reply = app.as_key(&key).review_job(&id, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    let no_json = app.as_key(&key).with_header("content-type", "text/plain").review_job(&id, Payload::None).await;

    assert_eq!(no_json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.job(&id).await.status, JobStatus::Completed);
    assert!(app.events_from(&id, "reviewer").await.is_empty());
}

#[tokio::test]
async fn a_rejection_records_its_reason_and_the_worker_deletes_the_video() {
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let id = completed_job(&app, timestamp::now()).await;
    let (reviewer, key) = app.another_user(0, Role::Reviewer).await;

    let reply = app.as_key(&key).review_job(&id, r#"{"decision":"reject","reason":"unreadable_text","note":"The label is blurred"}"#).await;
    let (message, _) = next_message(&app, &id, "discard_output").await;
    let message = work_message(message);
    app.handle_work(message.clone()).await;
    // A repeated delivery finds nothing left to do.
    app.handle_work(message).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "rejected");
    assert_eq!(reply.body["status_label"], "Needs changes");
    assert_eq!(reply.body["error"]["code"], "unreadable_text");
    assert!(reply.body["error"]["next_step"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(reply.body["review"]["reason"], "unreadable_text");
    assert_eq!(reply.body["review"]["note"], "The label is blurred");
    assert!(reply.body["output"].is_null(), "a rejected video is no longer offered");
    let events = app.events_from(&id, "reviewer").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error_code"], "unreadable_text");
    assert_eq!(events[0]["actor"], reviewer.as_str());
    assert!(!app.object_exists(&video_key(&id)).await, "the video is gone from S3");
    assert!(!app.object_exists(&thumbnail_key(&id)).await, "the thumbnail is gone from S3");
    assert!(app.job(&id).await.output.is_none());
    let result = app.job_result(&id).await;
    assert_eq!(result.status, StatusCode::GONE);
    assert_eq!(result.error_code(), "video_rejected");
}

#[tokio::test]
async fn the_queue_lists_completed_videos_oldest_first_a_page_at_a_time() {
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let t0 = timestamp::now() - Duration::hours(1);
    let newest = completed_job(&app, t0 + Duration::seconds(2)).await;
    let oldest = completed_job(&app, t0).await;
    let middle = completed_job(&app, t0 + Duration::seconds(1)).await;
    let _still_queued = app.new_job(2).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;

    let first = app.as_key(&key).review_queue(Page::of(2)).await;
    let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
    let second = app.as_key(&key).review_queue(Page::of(2).after(&cursor)).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let ids = |reply: &crate::harness::Reply| -> Vec<String> {
        reply.body["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&first), vec![oldest.to_string(), middle.to_string()]);
    assert_eq!(ids(&second), vec![newest.to_string()]);
    let entry = &first.body["jobs"][0];
    assert_eq!(entry["status"], "completed");
    assert_eq!(entry["prompt"], "a test clip");
    assert_eq!(entry["user_id"], app.user.as_str());
    assert_eq!(entry["video"]["width"], 1280);
    assert!(entry["output"]["video_url"].as_str().is_some_and(|u| u.starts_with("http")));
}

#[tokio::test]
async fn a_reviewed_or_expired_video_leaves_the_queue() {
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let t0 = timestamp::now() - Duration::hours(1);
    let approved = completed_job(&app, t0).await;
    let expired = completed_job(&app, t0 + Duration::seconds(1)).await;
    let waiting = completed_job(&app, t0 + Duration::seconds(2)).await;
    let (_, key) = app.another_user(0, Role::Reviewer).await;

    assert_eq!(app.as_key(&key).review_job(&approved, r#"{"decision":"approve"}"#).await.status, StatusCode::OK);
    app.handle_work(WorkMessage::Expire { job_id: expired.clone() }).await;
    let queue = app.as_key(&key).review_queue(Page::first()).await;

    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    let listed: Vec<&str> = queue.body["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![waiting.as_str()]);
    assert_eq!(app.job(&expired).await.status, JobStatus::Expired);
    assert!(!in_review_index(&app, &approved).await);
    assert!(!in_review_index(&app, &expired).await);
    assert!(in_review_index(&app, &waiting).await);
}

#[tokio::test]
async fn only_reviewers_and_admins_read_the_queue_and_a_forged_cursor_is_400() {
    let app = TestApp::new(100).await;
    let (_, admin) = app.another_user(0, Role::Admin).await;

    let user = app.review_queue(Page::first()).await;
    let anonymous = app.anonymous().review_queue(Page::first()).await;
    let admin_reply = app.as_key(&admin).review_queue(Page::of(1)).await;
    let forged = app.as_key(&admin).review_queue(Page::first().after("eyJwayI6IlVTRVIjYSJ9")).await;
    let bad_limit = app.as_key(&admin).review_queue(Page::of(0)).await;

    assert_eq!(user.status, StatusCode::FORBIDDEN);
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(admin_reply.status, StatusCode::OK, "{}", admin_reply.body);
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(forged.body["error"]["field"], "cursor");
    assert_eq!(bad_limit.body["error"]["field"], "limit");
}
