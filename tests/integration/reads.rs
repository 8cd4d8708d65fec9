//! Reading jobs: status, result, events and the listings; someone else's job
//! is never shown.

use crate::harness::{Page, Payload, TestApp};
use lambda_http::http::{Method, StatusCode};
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::{timestamp, Artifact};
use videojobs_core::JobStatus;

#[tokio::test]
async fn status_shows_a_new_job_as_queued_with_its_cost() {
    let app = TestApp::new(100).await;
    let id = app.new_job(4).await;

    let reply = app.job_status(&id).await;

    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert_eq!(body["job_id"], id.as_str());
    assert_eq!(body["status"], "queued");
    assert_eq!(body["status_label"], "Waiting to start");
    assert_eq!(body["progress"], 0);
    assert_eq!(body["workflow_type"], "text_to_video");
    assert_eq!(body["cost"]["credits"], 4);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["completed_at"].is_null());
    assert!(body["error"].is_null());
    assert!(body["review"].is_null());
    assert!(body["output"].is_null());
}

#[tokio::test]
async fn an_unknown_or_malformed_job_id_is_404() {
    let app = TestApp::new(100).await;

    let unknown = app.job_status(JobId::generate()).await;
    let malformed = app.job_status("../../etc").await;
    let garbage = app.job_status("job_nope").await;

    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "job_not_found");
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_users_job_is_404_for_every_read_and_for_cancel() {
    let app = TestApp::new(100).await;
    let id = app.new_job(2).await;
    let (_, stranger) = app.another_user(100, Role::User).await;

    let stranger = app.as_key(&stranger);
    for (operation, reply) in [
        ("status", stranger.job_status(&id).await),
        ("result", stranger.job_result(&id).await),
        ("events", stranger.job_events(&id).await),
        ("cancel", stranger.cancel_job(&id).await),
    ] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{operation}");
        assert!(!reply.body.to_string().contains(id.as_str()), "{operation} leaked the job");
    }
    assert_eq!(app.job(&id).await.status, JobStatus::Queued);
}

#[tokio::test]
async fn reads_without_a_valid_key_are_401() {
    let app = TestApp::new(100).await;
    let id = app.new_job(1).await;

    let none = app.anonymous().job_status(&id).await;
    let bad = app.as_key("vj_0000000000000000000000000000000000000000").list_jobs(Page::first()).await;

    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers.get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_result_of_an_unfinished_job_is_409() {
    let app = TestApp::new(100).await;
    let id = app.new_job(1).await;

    let reply = app.job_result(&id).await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.error_code(), "wrong_state");
}

#[tokio::test]
async fn a_completed_job_has_a_presigned_result_and_an_output_in_its_status() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = app.new_job(3).await;
    let mut job = app.job(&id).await;
    job.status = JobStatus::Completed;
    job.output = Some(artifact(&id));
    job.output_expires_at = Some(timestamp::now() + time::Duration::hours(1));
    app.put_job(&job).await;

    let result = app.job_result(&id).await;
    let status = app.job_status(&id).await;

    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    let video = &result.body["video"];
    assert!(video["url"].as_str().unwrap().contains("X-Amz-Signature"));
    assert!(video["thumbnail_url"].as_str().unwrap().contains("X-Amz-Signature"));
    assert_eq!(video["mime_type"], "video/mp4");
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(1280), Some(720)));
    assert_eq!(video["size_bytes"], 123_456);
    assert_eq!(video["duration_seconds"], 3.0);
    assert!(video["expires_at"].is_string());
    assert_eq!(status.body["status_label"], "Ready for review");
    assert_eq!(status.body["progress"], 100);
    assert!(status.body["output"]["video_url"].is_string());
    assert_eq!(status.body["expires_at"], timestamp::format(job.output_expires_at.unwrap()), "when the unreviewed video goes");
    assert!(status.body["estimated_completion_at"].is_null());
    assert!(!status.headers.contains_key("retry-after"), "nothing to wait for");
}

#[tokio::test]
async fn an_in_flight_status_says_when_to_ask_again_and_when_the_video_should_be_ready() {
    // Arrange
    let app = TestApp::new(100).await;
    let id = app.new_job(4).await;

    // Act
    let reply = app.job_status(&id).await;

    // Assert: a queued job is polled slowly, and its estimate is ahead of it.
    let retry_after: u32 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((5..=30).contains(&retry_after), "{retry_after}");
    let created = timestamp::parse(reply.body["created_at"].as_str().unwrap()).unwrap();
    let estimate = timestamp::parse(reply.body["estimated_completion_at"].as_str().unwrap()).expect("an estimate");
    assert!(estimate > created && estimate > timestamp::now(), "{}", reply.body);
    assert!(reply.body["expires_at"].is_null());
    assert_eq!(reply.body["cost"], serde_json::json!({"credits": 4, "refunded": 0, "charged": 4}));
}

#[tokio::test]
async fn an_approved_video_has_no_expiry_and_a_canceled_job_shows_its_refund() {
    // Arrange
    let app = TestApp::new(100).await;
    let approved_id = app.new_job(2).await;
    let canceled_id = app.new_job(3).await;
    let mut approved = app.job(&approved_id).await;
    approved.status = JobStatus::Approved;
    approved.output = Some(artifact(&approved_id));
    approved.output_expires_at = Some(timestamp::now() + time::Duration::hours(1));
    app.put_job(&approved).await;

    // Act
    let canceled = app.cancel_job(&canceled_id).await;
    let approved = app.job_status(&approved_id).await;

    // Assert
    assert_eq!(approved.body["expires_at"], serde_json::Value::Null, "an approved video is kept");
    assert_eq!(approved.body["cost"], serde_json::json!({"credits": 2, "refunded": 0, "charged": 2}));
    assert_eq!(canceled.body["cost"], serde_json::json!({"credits": 3, "refunded": 3, "charged": 0}));
    assert!(!canceled.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn an_output_past_its_retention_window_is_410_unless_approved() {
    let app = TestApp::new(100).await;
    let expired_id = app.new_job(1).await;
    let approved_id = app.new_job(1).await;
    for (id, status) in [(&expired_id, JobStatus::Completed), (&approved_id, JobStatus::Approved)] {
        let mut job = app.job(id).await;
        job.status = status;
        job.output = Some(artifact(id));
        job.output_expires_at = Some(timestamp::now() - time::Duration::seconds(1));
        app.put_job(&job).await;
    }

    let expired = app.job_result(&expired_id).await;
    let approved = app.job_result(&approved_id).await;

    assert_eq!(expired.status, StatusCode::GONE);
    assert_eq!(expired.error_code(), "expired");
    assert_eq!(approved.status, StatusCode::OK);
}

fn artifact(id: &JobId) -> Artifact {
    Artifact {
        video_key: format!("outputs/{id}/video.mp4"),
        thumbnail_key: Some(format!("outputs/{id}/thumbnail.jpg")),
        thumbnail_size_bytes: Some(2_048),
        mime_type: "video/mp4".into(),
        size_bytes: 123_456,
        duration_seconds: 3.0,
        width: 1280,
        height: 720,
    }
}

#[tokio::test]
async fn the_list_is_newest_first_and_pages_with_an_opaque_cursor() {
    let app = TestApp::new(100).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.new_job(1).await);
    }
    for id in &created[..3] {
        app.cancel_job(&id).await;
    }

    let first = app.list_jobs(Page::of(2)).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = app.list_jobs(Page::of(2).after(&cursor)).await;
    let third_cursor = second.body["next_cursor"].as_str().unwrap().to_owned();
    let third = app.list_jobs(Page::of(2).after(&third_cursor)).await;

    let ids = |reply: &crate::harness::Reply| -> Vec<String> {
        reply.body["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect()
    };
    let mut seen = ids(&first);
    seen.extend(ids(&second));
    seen.extend(ids(&third));
    let newest_first: Vec<String> = created.iter().rev().map(|id| id.to_string()).collect();
    assert_eq!(seen, newest_first);
    assert!(third.body["next_cursor"].is_null());
}

#[tokio::test]
async fn the_list_filters_by_status_type_tag_parent_and_time_and_never_shows_another_users_tagged_jobs() {
    // Arrange: tagged and untagged jobs, one canceled and retried, and a stranger's job with the same tag.
    let app = TestApp::new(100).await;
    let promo = app.new_job_with(&serde_json::json!({"prompt": "a kite", "duration_seconds": 1, "tags": ["promo", "q4"]})).await;
    let plain = app.new_job(1).await;
    let canceled = app.new_job_with(&serde_json::json!({"prompt": "a boat", "duration_seconds": 1, "tags": ["q4"]})).await;
    app.cancel_job(&canceled).await;
    let child = app.retry_job(&canceled).await.job_id();
    let (_, stranger) = app.another_user(10, Role::User).await;
    let strangers = app.as_key(&stranger).generate(serde_json::json!({"prompt": "a kite", "duration_seconds": 1, "tags": ["promo"]})).await;
    assert_eq!(strangers.status, StatusCode::ACCEPTED);
    let canceled_at = app.job(&canceled).await.created_at;
    let listed = |filters: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let page = filters.iter().fold(Page::of(100), |page, (name, value)| page.filtered(name, value));
            let reply = app.list_jobs(page).await;
            assert_eq!(reply.status, StatusCode::OK, "{filters:?}: {}", reply.body);
            let ids: Vec<String> =
                reply.body["jobs"].as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_owned()).collect();
            ids
        }
    };
    let ids = |jobs: &[&JobId]| -> Vec<String> { jobs.iter().map(|id| id.to_string()).collect() };

    // Act / Assert: each filter, and filters together.
    assert_eq!(listed(vec![("tag", "promo".into())]).await, ids(&[&promo]), "the stranger's promo job is not listed");
    assert_eq!(listed(vec![("tag", "q4".into())]).await, ids(&[&child, &canceled, &promo]), "a retry keeps its parent's tags");
    assert_eq!(listed(vec![("status", "canceled".into())]).await, ids(&[&canceled]));
    assert_eq!(listed(vec![("status", "queued,canceled".into()), ("tag", "promo".into())]).await, ids(&[&promo]));
    assert_eq!(listed(vec![("parent_job_id", canceled.to_string())]).await, ids(&[&child]));
    assert_eq!(listed(vec![("workflow_type", "text_to_video".into())]).await.len(), 4);
    assert!(listed(vec![("workflow_type", "image_to_video".into())]).await.is_empty());
    // Jobs made in one millisecond share a creation time: the window is
    // checked against each job's own, newest first as the list orders them.
    let mut made = Vec::new();
    for id in [&promo, &plain, &canceled, &child] {
        made.push((app.job(id).await.created_at, id.to_string()));
    }
    made.sort_by(|a, b| b.cmp(a));
    let made_when = |keep: &dyn Fn(time::OffsetDateTime) -> bool| -> Vec<String> {
        made.iter().filter(|(at, _)| keep(*at)).map(|(_, id)| id.clone()).collect()
    };
    let since = timestamp::format(canceled_at);
    let from_then = listed(vec![("created_after", since.clone())]).await;
    assert_eq!(from_then, made_when(&|at| at >= canceled_at));
    assert!(from_then.contains(&child.to_string()) && from_then.contains(&canceled.to_string()));
    assert_eq!(listed(vec![("created_before", since)]).await, made_when(&|at| at < canceled_at));
    let status = app.job_status(&promo).await;
    assert_eq!(status.body["tags"], serde_json::json!(["promo", "q4"]), "the status echoes the tags");
    assert_eq!(app.job_status(&plain).await.body["tags"], serde_json::json!([]));
}

#[tokio::test]
async fn a_bad_filter_or_bad_tags_are_400_naming_the_field_and_write_nothing() {
    // Arrange
    let app = TestApp::new(100).await;
    app.new_job(1).await;
    let bad_filters = [
        ("status", "done"),
        ("workflow_type", "video"),
        ("tag", "Promo"),
        ("parent_job_id", "job_nope"),
        ("created_after", "yesterday"),
        ("created_before", "2026-12-01"),
    ];
    let bad_tags = [
        (serde_json::json!(["Promo"]), "tags[0]"),
        (serde_json::json!(["a", "b", "c", "d", "e", "f"]), "tags"),
        (serde_json::json!(["same", "same"]), "tags[1]"),
        (serde_json::json!("promo"), "tags"),
    ];

    // Act / Assert
    for (name, value) in bad_filters {
        let reply = app.list_jobs(Page::first().filtered(name, value)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}={value}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], name);
    }
    for (tags, field) in bad_tags {
        let reply = app.generate(serde_json::json!({"prompt": "a kite", "duration_seconds": 1, "tags": tags})).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{tags}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.body);
    }
    assert_eq!(app.list_jobs(Page::first()).await.body["jobs"].as_array().unwrap().len(), 1, "no job was written");
}

#[tokio::test]
async fn a_bad_cursor_or_limit_is_400_and_another_users_cursor_is_refused() {
    let app = TestApp::new(100).await;
    for _ in 0..2 {
        app.new_job(1).await;
    }
    let mine = app.list_jobs(Page::of(1)).await;
    let cursor = mine.body["next_cursor"].as_str().unwrap().to_owned();
    let (_, stranger) = app.another_user(10, Role::User).await;

    let forged = app.list_jobs(Page::first().after("bm90LWEtY3Vyc29y")).await;
    let zero = app.list_jobs(Page::of(0)).await;
    let huge = app.list_jobs(Page::of(1000)).await;
    let borrowed = app.as_key(&stranger).list_jobs(Page::first().after(&cursor)).await;

    for reply in [&forged, &zero, &huge, &borrowed] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    }
    assert_eq!(forged.body["error"]["field"], "cursor");
    assert_eq!(zero.body["error"]["field"], "limit");
}

#[tokio::test]
async fn a_crafted_cursor_naming_an_empty_or_oversized_key_is_400_as_it_would_be_on_dynamodb() {
    // Arrange: the user's own position, then the same with each key value
    // emptied or made longer than DynamoDB takes (1,024 bytes for a sort key).
    use base64::Engine;
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    for _ in 0..2 {
        app.new_job(1).await;
    }
    let page = app.list_jobs(Page::of(1)).await;
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let position: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&engine.decode(cursor).unwrap()).unwrap();
    let mut crafted = Vec::new();
    for field in ["pk", "sk", "created_key"] {
        for value in [String::new(), "x".repeat(1_025), format!("{}{}", position[field].as_str().unwrap(), "x".repeat(2_100))] {
            let mut changed = position.clone();
            changed.insert(field.to_owned(), value.into());
            crafted.push(engine.encode(serde_json::Value::Object(changed).to_string()));
        }
    }

    // Act
    let mut replies = Vec::new();
    for cursor in &crafted {
        replies.push(app.list_jobs(Page::first().after(cursor)).await);
    }

    // Assert: each refused as a bad cursor, none reaching DynamoDB as a 500.
    for reply in replies {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], "cursor");
    }
}

#[tokio::test]
async fn active_lists_only_in_flight_jobs_of_the_caller() {
    let app = TestApp::new(100).await;
    let running = app.new_job(1).await;
    let canceled = app.new_job(1).await;
    app.cancel_job(&canceled).await;
    let (_, stranger) = app.another_user(100, Role::User).await;
    app.as_key(&stranger).generate(r#"{"prompt":"theirs"}"#).await;

    let reply = app.list_active_jobs().await;

    let jobs = reply.body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{}", reply.body);
    assert_eq!(jobs[0]["job_id"], running.as_str());
}

#[tokio::test]
async fn events_tell_how_the_job_got_where_it_is() {
    let app = TestApp::new(100).await;
    let id = app.new_job(2).await;
    app.cancel_job(&id).await;

    let reply = app.job_events(&id).await;

    let events = reply.body["events"].as_array().unwrap();
    let statuses: Vec<&str> = events.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "canceled"]);
    assert_eq!(events[1]["previous_status"], "queued");
    assert_eq!(events[1]["source"], "api");
    assert_eq!(events[1]["actor"], app.user.as_str());
}

#[tokio::test]
async fn a_reviewer_may_read_any_job_but_not_cancel_it() {
    let app = TestApp::new(100).await;
    let id = app.new_job(1).await;
    let (_, reviewer) = app.another_user(0, Role::Reviewer).await;

    let status = app.as_key(&reviewer).job_status(&id).await;
    let cancel = app.as_key(&reviewer).cancel_job(&id).await;

    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(cancel.status, StatusCode::FORBIDDEN);
    assert_eq!(app.job(&id).await.status, JobStatus::Queued);
}

#[tokio::test]
async fn an_unknown_route_is_404() {
    let app = TestApp::new(100).await;

    let reply = app.request(Method::GET, "/videos/nothing-here", Payload::None).await;

    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "route_not_found");
}
