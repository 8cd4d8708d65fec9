//! `GET /videos/stats` against a known set of jobs on a stack of its own, the
//! admin endpoints, and counters that stay exact under concurrent changes.

use crate::harness::{all_at_once, TestApp};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::{timestamp, EventSource, Job, JobError, JobEvent, JobParams};
use videojobs_core::model::lifecycle::transition;
use videojobs_core::model::request::{AspectRatio, Resolution};
use videojobs_core::model::stats::{bucket_of, p95_of, percentile_of};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{ChangeOutcome, JobUpdate, JobWrites, NewJob, StatusChange};
use videojobs_core::JobStatus;

const WAIT: u64 = 90;

async fn animate(p: &TestApp) -> JobId {
    let upload_id = p.upload_png(&crate::harness::png(160, 120)).await;
    let body = json!({"upload_id": upload_id, "length": 1, "frame_rate": 8, "zoom_speed": 0.2});
    let reply = p.animate(&body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    reply.body["job_id"].as_str().unwrap().parse().unwrap()
}

/// A reviewer's decision as the review endpoint makes it (that endpoint is
/// built on another branch): a `StatusChange` from `completed`.
async fn review(p: &TestApp, id: &JobId, to: JobStatus, reason: Option<&str>, reviewer: &videojobs_core::model::ids::UserId) {
    let job = p.job(id).await;
    let error = reason.map(|code| JobError { code: code.into(), message: "Rejected in review.".into(), next_step: None });
    let change =
        StatusChange::new(&job, transition(job.status, to).unwrap(), EventSource::Reviewer, "Reviewed", error, JobUpdate::default())
            .by(reviewer);
    assert_eq!(p.stack().store.change_status(&change).await.unwrap(), ChangeOutcome::Applied);
}

fn new_job(app: &TestApp) -> NewJob {
    let now = timestamp::now();
    let params = JobParams::TextToVideo { duration_seconds: 1, aspect_ratio: AspectRatio::Square, resolution: Resolution::Sd };
    let job = Job::accepted(JobId::generate(), app.user.clone(), params, "local".parse().unwrap(), 1, now);
    NewJob {
        first_event: JobEvent {
            job_id: job.job_id.clone(),
            at: now,
            source: EventSource::Api,
            previous_status: None,
            status: JobStatus::Queued,
            message: "test job".into(),
            error_code: None,
            actor: None,
            delivery: None,
        },
        job,
        prompt: None,
        prompt_expires_at: None,
        idempotency: None,
        max_active_jobs: 100,
    }
}

/// A job written through the store (no execution), then moved to `submitted`
/// as of `seconds_ago`: what a job the provider never answered looks like.
async fn job_submitted_long_ago(app: &TestApp, seconds_ago: i64) -> Job {
    let new = new_job(app);
    assert_eq!(app.stack().store.create(&new).await.unwrap(), videojobs_core::ports::CreateOutcome::Created);
    let mut change = StatusChange::new(
        &new.job,
        transition(JobStatus::Queued, JobStatus::Submitted).unwrap(),
        EventSource::Worker,
        "Submitted",
        None,
        JobUpdate::default(),
    );
    change.at = timestamp::now() - time::Duration::seconds(seconds_ago);
    assert_eq!(app.stack().store.change_status(&change).await.unwrap(), ChangeOutcome::Applied);
    app.job(&new.job.job_id).await
}

fn seconds_to_complete(job: &Job) -> f64 {
    (job.completed_at.unwrap() - job.created_at).whole_milliseconds() as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_figures_match_a_known_set_of_jobs() {
    let p = TestApp::builder().with_local_provider().build().await;
    let (admin, admin_key) = p.another_user(0, Role::Admin).await;
    let clip = |faults: Value| json!({"prompt": "A kite over a beach", "duration_seconds": 1, "resolution": "480p", "metadata": {"local_faults": faults}});

    // Arrange: two text jobs completed and reviewed (one approved, one
    // rejected), one failed by the provider, one image job completed, one
    // canceled while the provider works, one stuck in submitted for two hours.
    let approved = p.new_job_with(&clip(json!({}))).await;
    let rejected = p.new_job_with(&clip(json!({}))).await;
    let failed = p.new_job_with(&clip(json!({"fail_with": "content_policy"}))).await;
    let image = animate(&p).await;
    let canceled = p.new_job_with(&clip(json!({"delay_ms": 60_000}))).await;
    // Canceled once the provider has it, before the wait for the others
    // (which on a loaded machine can outlast the provider's delay).
    p.wait_for_provider_request(&canceled, WAIT).await;
    assert_eq!(p.cancel_job(&canceled).await.status, StatusCode::OK);
    for id in [&approved, &rejected, &image] {
        assert_eq!(p.wait_for(id, WAIT, |s| !s.is_in_flight()).await.status, JobStatus::Completed);
    }
    assert_eq!(p.wait_for(&failed, WAIT, |s| !s.is_in_flight()).await.status, JobStatus::Failed);
    review(&p, &approved, JobStatus::Approved, None, &admin).await;
    review(&p, &rejected, JobStatus::Rejected, Some("unreadable_text"), &admin).await;
    let stuck = job_submitted_long_ago(&p, 7_200).await;
    // A late callback for a finished job, delivered three times: two duplicates.
    let request_id = p.job(&approved).await.provider_request_id.unwrap();
    let late = json!({"id": request_id, "status": "processing", "progress": 50});
    let answers = [
        p.signed_callback("evt_late_once", &late).await,
        p.signed_callback("evt_late_once", &late).await,
        p.signed_callback("evt_late_once", &late).await,
    ];
    let duplicates: Vec<&Value> = answers.iter().map(|a| &a.body["duplicate"]).collect();
    assert_eq!(duplicates, [&json!(false), &json!(true), &json!(true)]);

    // Act
    let stats = p.as_key(&admin_key).stats().await;

    // Assert: every figure, from the job records themselves.
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    let s = &stats.body;
    assert_eq!(
        s["jobs_by_status"],
        json!({"queued": 0, "submitted": 1, "retrying": 0, "processing": 0, "completed": 1,
               "approved": 1, "rejected": 1, "failed": 1, "canceled": 1, "expired": 0})
    );
    let completed: Vec<Job> = futures::future::join_all([&approved, &rejected, &image].map(|id| p.job(id))).await;
    let times: Vec<f64> = completed.iter().map(seconds_to_complete).collect();
    let average = ((times.iter().sum::<f64>() / 3.0) * 1000.0).round() / 1000.0;
    let mut buckets = BTreeMap::new();
    for t in &times {
        *buckets.entry(bucket_of(*t)).or_insert(0i64) += 1;
    }
    assert_eq!(
        s["time_to_complete_seconds"],
        json!({"count": 3, "average": average, "p50": percentile_of(&buckets, 50), "p95": p95_of(&buckets)})
    );
    let slowest = times.iter().cloned().fold(0.0, f64::max);
    let p95 = s["time_to_complete_seconds"]["p95"].as_f64().unwrap();
    // Sub-second times share one bucket, whose bound is a second.
    let ceiling = if slowest < 1.0 { 1.0 } else { slowest * 1.19 + 0.01 };
    assert!(p95 >= slowest && p95 <= ceiling, "p95 {p95} for a slowest of {slowest}");
    assert_eq!(s["failure_rate_by_provider"], json!([{"provider": "local", "finished": 4, "failed": 1, "rate": 0.25}]));
    assert_eq!(
        s["failure_rate_by_workflow_type"],
        json!([{"workflow_type": "text_to_video", "finished": 3, "failed": 1, "rate": 0.3333},
               {"workflow_type": "image_to_video", "finished": 1, "failed": 0, "rate": 0.0}])
    );
    assert_eq!(
        s["rejections"],
        json!({"reviewed": 2, "rejected": 1, "rate": 0.5, "by_reason": [{"reason": "unreadable_text", "count": 1, "rate": 0.5}]})
    );
    assert_eq!(s["duplicate_callbacks"], 2);
    assert_eq!(
        s["stuck_jobs"],
        json!({"threshold_seconds": 1800, "count": 1, "jobs": [{"job_id": stuck.job_id, "status": "submitted",
               "provider": "local", "updated_at": timestamp::format(stuck.updated_at)}]})
    );
    let video: u64 = completed.iter().map(|j| j.output.as_ref().unwrap().size_bytes).sum();
    let thumbnail: u64 = completed.iter().map(|j| j.output.as_ref().unwrap().thumbnail_size_bytes.unwrap_or(0)).sum();
    assert!(video > 0 && thumbnail > 0, "the local provider makes videos and thumbnails");
    assert_eq!(s["stored_bytes_by_artifact_type"], json!({"video": video, "thumbnail": thumbnail}));

    // Act again: the retention window ends for the unreviewed image job and
    // the rejected job, through the worker as the state machine would ask.
    for id in [&image, &rejected] {
        p.handle_work(WorkMessage::Expire { job_id: id.clone() }).await;
    }
    let after = p.as_key(&admin_key).stats().await.body;

    // Their bytes are gone from the figures; the image job counts as expired.
    let kept = completed[0].output.as_ref().unwrap();
    assert_eq!(
        after["stored_bytes_by_artifact_type"],
        json!({"video": kept.size_bytes, "thumbnail": kept.thumbnail_size_bytes.unwrap_or(0)})
    );
    assert_eq!(after["jobs_by_status"]["completed"], 0);
    assert_eq!(after["jobs_by_status"]["expired"], 1);
    assert_eq!(after["jobs_by_status"]["rejected"], 1);
}

#[tokio::test]
async fn concurrent_status_changes_leave_the_counters_consistent_with_the_jobs() {
    let app = TestApp::builder().credits(1_000).own_stack().build().await;
    let (_, admin_key) = app.another_user(0, Role::Admin).await;
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let new = new_job(&app);
        assert_eq!(app.stack().store.create(&new).await.unwrap(), videojobs_core::ports::CreateOutcome::Created);
        jobs.push(new.job);
    }

    // Act: for every job, four writers race to move it out of `queued`.
    let targets = [JobStatus::Submitted, JobStatus::Failed, JobStatus::Canceled, JobStatus::Expired];
    let outcomes = all_at_once(jobs.len() * targets.len(), |i| {
        let job = jobs[i / targets.len()].clone();
        let to = targets[i % targets.len()];
        let store = app.stack().store.clone();
        async move {
            let change = StatusChange::new(
                &job,
                transition(JobStatus::Queued, to).unwrap(),
                EventSource::Worker,
                "race",
                None,
                JobUpdate::default(),
            );
            store.change_status(&change).await.unwrap()
        }
    })
    .await;

    // Assert: one winner per job, and every counter agrees with the records.
    assert_eq!(outcomes.iter().filter(|o| **o == ChangeOutcome::Applied).count(), jobs.len());
    let mut expected: BTreeMap<&str, i64> = JobStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for job in &jobs {
        *expected.get_mut(app.job(&job.job_id).await.status.as_str()).unwrap() += 1;
    }
    let stats = app.as_key(&admin_key).stats().await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!(stats.body["jobs_by_status"], serde_json::to_value(&expected).unwrap());
    let failed = expected["failed"];
    assert_eq!(
        stats.body["failure_rate_by_workflow_type"][0],
        json!({"workflow_type": "text_to_video", "finished": failed, "failed": failed, "rate": if failed > 0 { 1.0 } else { 0.0 }})
    );
    assert_eq!(stats.body["stuck_jobs"]["count"], 0, "fresh submissions are not stuck");
}

#[tokio::test]
async fn only_admins_read_every_figure_or_use_the_admin_endpoints() {
    let app = TestApp::new(10).await;
    let (_, reviewer_key) = app.another_user(0, Role::Reviewer).await;

    for key in [app.key.as_str(), reviewer_key.as_str()] {
        // Anyone else gets what a frontend shows, and nothing operational.
        let stats = app.as_key(key).stats().await;
        assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
        assert_eq!(stats.body["scope"], "user");
        assert!(stats.body.get("duplicate_callbacks").is_none() && stats.body.get("stuck_jobs").is_none(), "{}", stats.body);
        let keys = app.as_key(key).create_key(r#"{"user_id":"x","role":"admin"}"#).await;
        let credits = app.as_key(key).grant_credits("not even json").await;
        for reply in [keys, credits] {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
            assert_eq!(reply.error_code(), "forbidden");
        }
    }
    assert_eq!(app.anonymous().stats().await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_user_sees_the_queue_the_typical_time_and_only_their_own_jobs() {
    let app = TestApp::new(100).await;
    let (_, other_key) = app.another_user(100, Role::User).await;
    let mine = app.new_job(2).await;
    app.new_job(2).await;
    let theirs = app.as_key(&other_key).generate(r#"{"prompt":"theirs","duration_seconds":1}"#).await;
    assert_eq!(theirs.status, StatusCode::ACCEPTED, "{}", theirs.body);
    assert_eq!(app.cancel_job(&mine).await.status, StatusCode::OK);

    // Act
    let stats = app.stats().await;

    // Assert
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    let own = &stats.body["your_jobs"];
    assert_eq!(own["counted"], 2, "{}", stats.body);
    assert_eq!(own["complete"], true);
    assert_eq!(own["by_status"]["canceled"], 1);
    assert_eq!(
        own["by_status"]["queued"].as_i64().unwrap()
            + own["by_status"]["submitted"].as_i64().unwrap()
            + own["by_status"]["failed"].as_i64().unwrap()
            + own["by_status"]["processing"].as_i64().unwrap()
            + own["by_status"]["retrying"].as_i64().unwrap(),
        1,
        "{}",
        stats.body
    );
    assert_eq!(own["max_active"], 5);
    // The queue counts every user's jobs (this stack is shared by other tests: at least ours).
    let queue = &stats.body["queue"];
    assert!(queue["waiting"].as_i64().unwrap() + queue["generating"].as_i64().unwrap() >= 2, "{}", stats.body);
    assert!(stats.body["time_to_complete_seconds"].get("p50").is_some());
}

#[tokio::test]
async fn an_admin_creates_a_key_shown_once_and_grants_credits() {
    // Without AWS's faults: this checks exact credits across admin writes,
    // and a key's grant and its record are two writes that a throttle
    // between them answers 503 (not yet one transaction).
    let app = TestApp::builder().credits(10).fault_profile("none").on_the_stack().build().await;
    let (_, admin_key) = app.another_user(0, Role::Admin).await;
    let user = format!("cli-{}", ulid::Ulid::new().to_string().to_lowercase());

    // Act
    let body = json!({"user_id": user, "role": "user", "label": "test", "credits": 40}).to_string();
    let created = app.as_key(&admin_key).create_key(&body).await;
    let grant = json!({"user_id": user, "credits": 25}).to_string();
    let granted = app.as_key(&admin_key).grant_credits(&grant).await;

    // Assert: the key works, is stored only as its hash, and the credits add up.
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["user_id"], user.as_str());
    assert_eq!(created.body["role"], "user");
    let key = created.body["api_key"].as_str().unwrap().to_owned();
    let account = app.as_key(&key).account().await;
    assert_eq!(account.status, StatusCode::OK);
    assert_eq!(account.body["user_id"], user.as_str());
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    assert_eq!(granted.body, json!({"user_id": user, "credits": 65, "active_jobs": 0}));
    let hash = key.parse::<videojobs_core::model::ids::ApiKey>().unwrap().hash();
    let stored = app
        .stack()
        .clients
        .dynamodb
        .get_item()
        .table_name(&app.stack().resources.jobs_table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("APIKEY#{}", hash.as_str())))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("APIKEY".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(stored.values().all(|v| v.as_s().map_or(true, |s| !s.contains(&key))), "the key itself is never stored");

    // A second key for the same user adds its credits to the account.
    let again = json!({"user_id": user, "role": "reviewer", "credits": 5}).to_string();
    let second = app.as_key(&admin_key).create_key(&again).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_ne!(second.body["api_key"], created.body["api_key"]);
    assert_eq!(app.credits_of(&user.parse().unwrap()).await, 70);
}

#[tokio::test]
async fn bad_admin_requests_are_refused_with_the_field_and_write_nothing() {
    let admin = TestApp::builder().role(Role::Admin).credits(0).on_the_stack().build().await;
    let nobody = format!("nobody-{}", ulid::Ulid::new().to_string().to_lowercase());

    let cases = [
        ("create a key", json!({"user_id": nobody, "role": "superuser"}), "role"),
        ("create a key", json!({"user_id": "bad id!", "role": "user"}), "user_id"),
        ("grant credits", json!({"user_id": nobody, "credits": 0}), "credits"),
        ("grant credits", json!({"user_id": nobody, "credits": 5}), "user_id"),
    ];
    for (operation, body, field) in cases {
        let reply = if operation == "create a key" { admin.create_key(&body).await } else { admin.grant_credits(&body).await };
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{operation} {body}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    assert!(admin.stack().store.account(&nobody.parse().unwrap()).await.unwrap().is_none(), "no account was opened");
}

use videojobs_core::ports::AccountStore;

#[tokio::test]
async fn the_scheduled_check_counts_the_stuck_jobs_from_the_index() {
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let stuck = job_submitted_long_ago(&app, 3_600).await;
    let _recent = job_submitted_long_ago(&app, 5).await;
    let mut message = aws_lambda_events::event::sqs::SqsMessage::default();
    message.message_id = Some("scheduled-1".into());
    message.body = Some(r#"{"kind":"check_stuck"}"#.into());
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = vec![message];

    // Act: the schedule's message, as the SQS event source hands it over.
    let response =
        worker::handler(&app.app.worker, lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())).await.unwrap();
    let count = worker::check_stuck(&app.app.worker).await.unwrap();

    // Assert: handled, and only the job idle past the threshold counts.
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(count, 1);
    let page = videojobs_core::services::stats::stuck_jobs(app.services.stats.as_ref(), 1_800, timestamp::now()).await.unwrap();
    assert_eq!(page.oldest.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), [stuck.job_id]);
    // Once the job moves on, it leaves the index.
    let job = app.job(&page.oldest[0].job_id).await;
    let change = StatusChange::new(
        &job,
        transition(job.status, JobStatus::Failed).unwrap(),
        EventSource::Worker,
        "gave up",
        None,
        JobUpdate::default(),
    );
    assert_eq!(app.stack().store.change_status(&change).await.unwrap(), ChangeOutcome::Applied);
    assert_eq!(worker::check_stuck(&app.app.worker).await.unwrap(), 0);
}
