//! Creating jobs and uploads: what is written, and that bad requests write nothing.

use crate::harness::{put_presigned, Page, Payload, TestApp};
use lambda_http::http::StatusCode;
use videojobs_core::JobStatus;

#[tokio::test]
async fn generate_answers_202_with_the_job_and_writes_job_event_prompt_and_debit() {
    let app = TestApp::new(100).await;

    let reply = app.generate(r#"{"prompt":"A lighthouse at dawn","duration_seconds":6,"resolution":"1080p"}"#).await;

    let id = reply.job_id();
    assert_eq!(reply.body["status"], "queued");
    assert_eq!(reply.body["status_label"], "Waiting to start");
    assert_eq!(reply.body["estimated_time_seconds"], 66);
    assert_eq!(reply.body["links"]["status"], format!("/videos/jobs/{id}/status"));
    assert_eq!(reply.body["links"]["result"], format!("/videos/jobs/{id}/result"));
    let job = app.job(&id).await;
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.cost_credits, 12);
    assert_eq!(app.credits().await, 88);
    assert_eq!(app.active_jobs().await, 1);
    assert_eq!(app.stored_prompt(&id).await.as_deref(), Some("A lighthouse at dawn"));
    assert_eq!(
        job.prompt_hash.as_deref(),
        Some(videojobs_core::model::request::prompt_hash(&app.services.settings.prompt_hash_key, "A lighthouse at dawn").as_str())
    );
    let events = app.job_events(&id).await;
    assert_eq!(events.body["events"].as_array().unwrap().len(), 1);
    assert_eq!(events.body["events"][0]["status"], "queued");
}

#[tokio::test]
async fn the_job_record_never_holds_the_raw_prompt() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = app.new_job(2).await;

    let item = app.job_item(&id).await;

    let text = format!("{item:?}");
    assert!(!text.contains("a test clip"), "{text}");
    assert!(item.contains_key("prompt_hash"));
}

#[tokio::test]
async fn generate_starts_an_execution_named_by_the_job_id() {
    let app = TestApp::new(100).await;

    let id = app.new_job(3).await;

    let status = app.execution_status(&id).await;
    assert!(matches!(status.as_deref(), Some("RUNNING")), "{status:?}");
}

#[tokio::test]
async fn animate_from_an_image_url_is_accepted_and_costs_its_length() {
    let app = TestApp::new(100).await;

    let reply = app.animate(r#"{"image_url":"https://example.com/cat.png","length":7,"frame_rate":30,"zoom_speed":0.2}"#).await;

    let id = reply.job_id();
    let status = app.job_status(&id).await;
    assert_eq!(status.body["workflow_type"], "image_to_video");
    assert_eq!(app.credits().await, 93);
    assert_eq!(app.stored_prompt(&id).await, None);
}

#[tokio::test]
async fn an_upload_gives_a_presigned_put_that_animate_accepts_once_the_image_is_in() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let image = &crate::harness::png(32, 32);

    let upload = app.create_upload(&format!(r#"{{"content_type":"image/png","size_bytes":{}}}"#, image.len())).await;
    assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
    let upload_id = upload.body["upload_id"].as_str().unwrap().to_owned();
    let animate_body = format!(r#"{{"upload_id":"{upload_id}"}}"#);
    let before = app.animate(&animate_body).await;
    assert_eq!(put_presigned(&upload.body, image).await, 200, "the presigned PUT was refused");
    let after = app.animate(&animate_body).await;

    assert_eq!(before.status, StatusCode::BAD_REQUEST, "{}", before.body);
    assert_eq!(before.body["error"]["field"], "upload_id");
    assert_eq!(after.status, StatusCode::ACCEPTED, "{}", after.body);
    assert_eq!(upload.body["method"], "PUT");
    assert!(upload.body["expires_at"].is_string());
}

#[tokio::test]
async fn another_users_upload_cannot_be_animated() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let upload = app.create_upload(r#"{"content_type":"image/jpeg","size_bytes":4}"#).await;
    assert_eq!(put_presigned(&upload.body, b"\xff\xd8\xff\xe0").await, 200, "the presigned PUT was refused");
    let (_, other_key) = app.another_user(100, videojobs_core::model::ids::Role::User).await;

    let body = format!(r#"{{"upload_id":"{}"}}"#, upload.body["upload_id"].as_str().unwrap());
    let reply = app.as_key(&other_key).animate(&body).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "upload_id");
}

#[tokio::test]
async fn uploads_refuse_other_types_and_files_over_the_cap() {
    let app = TestApp::new(100).await;

    let gif = app.create_upload(r#"{"content_type":"image/gif","size_bytes":10}"#).await;
    let huge = app.create_upload(r#"{"content_type":"image/png","size_bytes":104857600}"#).await;

    assert_eq!(gif.status, StatusCode::BAD_REQUEST);
    assert_eq!(gif.body["error"]["field"], "content_type");
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(huge.error_code(), "upload_too_large");
}

#[tokio::test]
async fn without_enough_credits_the_answer_is_402_and_nothing_is_written() {
    let app = TestApp::new(3).await;

    let reply = app.generate(r#"{"prompt":"too long for my balance","duration_seconds":4}"#).await;

    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
    assert_eq!(reply.error_code(), "insufficient_credits");
    assert_eq!(app.credits().await, 3);
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.active_jobs().await, 0);
}

#[tokio::test]
async fn over_the_active_job_cap_the_answer_is_429_and_nothing_is_written() {
    let mut settings = crate::harness::settings();
    settings.max_active_jobs = 2;
    let app = TestApp::builder().credits(100).settings(settings).build().await;
    app.new_job(1).await;
    app.new_job(1).await;

    let reply = app.generate(r#"{"prompt":"one too many","duration_seconds":1}"#).await;

    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
    assert_eq!(reply.error_code(), "too_many_active_jobs");
    assert_eq!(app.credits().await, 98);
    assert_eq!(app.job_count().await, 2);
}

#[tokio::test]
async fn a_canceled_job_frees_its_slot_under_the_cap() {
    let mut settings = crate::harness::settings();
    settings.max_active_jobs = 1;
    let app = TestApp::builder().credits(100).settings(settings).build().await;
    let first = app.new_job(1).await;
    app.cancel_job(&first).await;

    let reply = app.generate(r#"{"prompt":"room again","duration_seconds":1}"#).await;

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
}

#[tokio::test]
async fn bad_requests_get_their_status_and_write_nothing() {
    let app = TestApp::new(100).await;
    let big_prompt = "x".repeat(70 * 1024);
    let big_body = format!(r#"{{"prompt":"{big_prompt}"}}"#);
    // (key, body, extra headers, status, error code)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: Vec<Case> = vec![
        (None, Some(r#"{"prompt":"p"}"#), &[], 401, "unauthenticated"),
        (Some("vj_000000000000000000000000000000000000000a"), Some(r#"{"prompt":"p"}"#), &[], 401, "unauthenticated"),
        (Some("not-a-key"), Some(r#"{"prompt":"p"}"#), &[], 401, "unauthenticated"),
        (Some(&app.key), Some(r#"{"prompt":"p""#), &[], 400, "invalid_request"),
        (Some(&app.key), Some(r#"{"prompt":"p","style":"noir"}"#), &[], 400, "invalid_request"),
        (Some(&app.key), Some(r#"{"prompt":"p","duration_seconds":"long"}"#), &[], 400, "invalid_request"),
        (Some(&app.key), Some(r#"{"prompt":"p","duration_seconds":99}"#), &[], 400, "invalid_request"),
        (Some(&app.key), Some(r#"{"prompt":"p","provider":"nonesuch"}"#), &[], 400, "invalid_request"),
        (Some(&app.key), Some(&big_body), &[], 413, "body_too_large"),
        (Some(&app.key), Some(r#"{"prompt":"p"}"#), &[("idempotency-key", "has spaces in it")], 400, "invalid_request"),
    ];

    for (key, body, headers, status, code) in cases {
        let caller = match key {
            Some(key) => app.as_key(key),
            None => app.anonymous(),
        };
        let reply = caller.with_headers(headers).generate(body.map_or(Payload::None, Payload::from)).await;
        assert_eq!(reply.status.as_u16(), status, "{key:?} {:?}: {}", body.map(|b| &b[..b.len().min(60)]), reply.body);
        assert_eq!(reply.error_code(), code);
        assert!(reply.body["error"]["message"].is_string());
    }
    assert_eq!(app.credits().await, 100);
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let app = TestApp::new(100).await;

    let reply = app.generate(Payload::typed("text/plain", r#"{"prompt":"p"}"#)).await;

    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_refused_field_is_named_in_the_error() {
    let app = TestApp::new(100).await;

    let reply = app.generate(r#"{"prompt":"p","aspect_ratio":"2:1"}"#).await;

    assert_eq!(reply.body["error"]["field"], "aspect_ratio");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("aspect_ratio"));
    assert!(reply.body["error"]["next_step"].is_string());
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_replay_the_first_answer() {
    let app = TestApp::new(100).await;
    let body = r#"{"prompt":"once only","duration_seconds":2}"#;
    let headers = [("idempotency-key", "order-42")];

    let first = app.with_headers(&headers).generate(body).await;
    let again = app.with_headers(&headers).generate(r#"{ "duration_seconds": 2, "prompt": "once only" }"#).await;

    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(app.job_count().await, 1);
    assert_eq!(app.credits().await, 98);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_body_is_refused_with_422() {
    let app = TestApp::new(100).await;
    let headers = [("idempotency-key", "order-43")];
    app.with_headers(&headers).generate(r#"{"prompt":"first"}"#).await;

    let reply = app.with_headers(&headers).generate(r#"{"prompt":"second"}"#).await;
    let other_route = app.with_headers(&headers).animate(r#"{"image_url":"https://e.com/a.png"}"#).await;

    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_code(), "idempotency_conflict");
    assert_eq!(other_route.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.job_count().await, 1);
    assert_eq!(app.credits().await, 95);
}

#[tokio::test]
async fn idempotency_keys_belong_to_one_user() {
    let app = TestApp::new(100).await;
    let (other, other_key) = app.another_user(100, videojobs_core::model::ids::Role::User).await;
    let headers = [("idempotency-key", "shared-key")];
    let body = r#"{"prompt":"mine"}"#;

    let mine = app.with_headers(&headers).generate(body).await;
    let theirs = app.as_key(&other_key).with_headers(&headers).generate(body).await;

    assert_eq!(theirs.status, StatusCode::ACCEPTED);
    assert_ne!(mine.body["job_id"], theirs.body["job_id"]);
    assert_eq!(app.credits_of(&other).await, 95);
}

/// Found by Schemathesis: metadata with a `null` inside a nested object came
/// back from the table as an item the SDK could not read, and every listing
/// of the user's jobs answered 500 from then on. Metadata is the client's own
/// JSON: whatever its shape, it reads back as it was sent.
#[tokio::test]
async fn metadata_of_any_shape_reads_back_as_sent_and_the_listings_still_work() {
    let app = TestApp::new(100).await;
    let mut deep = serde_json::json!("bottom");
    for _ in 0..3 {
        deep = serde_json::json!({ "d": [null, deep] });
    }
    let metadata = serde_json::json!({
        "B\u{b1}\tr": {">\u{db}": "x", "~": "?", "NULL": null, "M": {"S": null, "": [null, {"N": null}]}},
        "": "an empty key",
        "deep": deep,
        "\u{1F6A3}": [1, -0.5, 1e100, true, null, {}],
    });
    let body = serde_json::json!({"prompt": "shapes", "duration_seconds": 1, "metadata": metadata});
    let id = app.new_job_with(&body).await;

    // Act
    let status = app.job_status(&id).await;
    let list = app.list_jobs(Page::first()).await;
    let active = app.list_active_jobs().await;

    // Assert
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["metadata"], metadata);
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["jobs"][0]["metadata"], metadata);
    assert_eq!(active.status, StatusCode::OK, "{}", active.body);
    assert_eq!(app.cancel_job(&id).await.status, StatusCode::OK, "a status change rewrites the item");
    assert_eq!(app.job_status(&id).await.body["metadata"], metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_reaches_the_provider_that_takes_one_and_is_echoed_in_the_status() {
    // Arrange
    let app = TestApp::builder().with_local_provider().build().await;
    let body = serde_json::json!({"prompt": "A kite over the dunes", "duration_seconds": 1, "resolution": "480p", "seed": 424242});

    // Act
    let id = app.new_job_with(&body).await;
    let job = app.wait_for(&id, 60, |s| !s.is_in_flight()).await;

    // Assert: kept with the job, shown in its status, and sent to the local provider.
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.seed, Some(424242));
    assert_eq!(app.job_status(&id).await.body["seed"], 424242);
    let request_id = job.provider_request_id.expect("a provider request");
    let stats = app.provider_stats().await;
    let prediction = stats["predictions"].as_array().unwrap().iter().find(|p| p["id"] == request_id.as_str()).cloned();
    assert_eq!(prediction.expect("the provider has the request")["seed"], 424242, "{stats}");
}

#[tokio::test]
async fn a_seed_that_is_not_a_32_bit_whole_number_is_400_and_writes_nothing() {
    let app = TestApp::new(100).await;

    let reply = app.generate(r#"{"prompt":"A lighthouse at dawn","seed":-3}"#).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "seed");
    assert_eq!(app.credits().await, 100, "nothing debited");
    assert_eq!(app.job_count().await, 0, "nothing written");
}

#[tokio::test]
async fn a_deadline_from_the_body_or_the_cancel_after_header_shortens_the_jobs_execution() {
    // Arrange
    let app = TestApp::builder().credits(100).in_memory().build().await;
    let caller = |value: &'static str| app.as_key(&app.key).with_header("cancel-after", value);

    // Act
    let from_body = app.generate(r#"{"prompt":"A kite","duration_seconds":1,"cancel_after_seconds":120}"#).await;
    let from_header = caller("1m30s").generate(r#"{"prompt":"A kite","duration_seconds":1}"#).await;
    let later_than_ours = caller("24h").generate(r#"{"prompt":"A kite","duration_seconds":1}"#).await;

    // Assert: kept and shown; the execution's deadline is the sooner of the client's and the deployment's.
    let ours = app.services.settings.generation_timeout_seconds;
    for (reply, seconds, deadline) in [(&from_body, 120, 120.min(ours)), (&from_header, 90, 90.min(ours)), (&later_than_ours, 86_400, ours)]
    {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let id = reply.job_id();
        assert_eq!(app.job_status(&id).await.body["cancel_after_seconds"], seconds);
        assert_eq!(app.memory().execution(&id).expect("started").input.deadline_seconds, deadline);
    }
}

#[tokio::test]
async fn a_bad_or_contradicting_cancel_after_is_400_and_writes_nothing() {
    // Arrange
    let app = TestApp::new(100).await;
    let caller = |value: &'static str| app.as_key(&app.key).with_header("cancel-after", value);

    // Act
    let replies = [
        caller("soon").generate(r#"{"prompt":"A kite"}"#).await,
        caller("2s").generate(r#"{"prompt":"A kite"}"#).await,
        caller("60").generate(r#"{"prompt":"A kite","cancel_after_seconds":61}"#).await,
        app.generate(r#"{"prompt":"A kite","cancel_after_seconds":3}"#).await,
    ];

    // Assert
    let fields: Vec<&str> = replies.iter().map(|r| r.body["error"]["field"].as_str().unwrap_or("")).collect();
    assert_eq!(fields, ["Cancel-After", "Cancel-After", "Cancel-After", "cancel_after_seconds"]);
    assert!(replies.iter().all(|r| r.status == StatusCode::BAD_REQUEST));
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn a_replay_with_another_cancel_after_is_a_different_request() {
    let app = TestApp::new(100).await;
    let body = r#"{"prompt":"A kite","duration_seconds":1}"#;

    let first = app.as_key(&app.key).idempotent("deadline-1").with_header("cancel-after", "60").generate(body).await;
    let same = app.as_key(&app.key).idempotent("deadline-1").with_header("cancel-after", "60").generate(body).await;
    let other = app.as_key(&app.key).idempotent("deadline-1").with_header("cancel-after", "61").generate(body).await;

    assert_eq!((first.status, same.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(same.job_id(), first.job_id());
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.job_count().await, 1);
}
