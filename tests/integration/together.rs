//! The merged features working together, each test on a pipeline of its own
//! (so counts are exact): the CLI against the real review endpoint, client
//! notifications of reviews, the stats after reviews, cancels, provider
//! failures and a failover, and a rejection's bytes leaving the stats.

use crate::failover::{provider_env, with_fallback, REPLICATE_CREATE};
use crate::helpers::{all_at_once, settings, Pipeline, Reply};
use crate::notify::{generate_with_webhook, notifier_events, secret_of, Endpoint, Received};
use lambda_http::http::{Method, StatusCode};
use serde_json::{json, Value};
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::JobStatus;
use videojobs_providers::replay::{self, ReplayServer};

const WAIT: u64 = 90;

fn clip(faults: Value) -> Value {
    json!({"prompt": "A kite over a beach", "duration_seconds": 1, "resolution": "480p", "metadata": {"local_faults": faults}})
}

/// A job the local provider renders, once it is `completed`.
async fn completed(p: &Pipeline) -> JobId {
    let id = p.app.generate_with(&clip(json!({}))).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    id
}

async fn review(p: &Pipeline, key: &str, id: &JobId, body: Value) -> Reply {
    p.app.call(Method::POST, &format!("/videos/jobs/{id}/review"), Some(key), Some(&body.to_string())).await
}

async fn reviewer_events(p: &Pipeline, id: &JobId) -> Vec<Value> {
    let events = p.app.get(&format!("/videos/jobs/{id}/events")).await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    events.body["events"].as_array().expect("events").iter().filter(|e| e["source"] == "reviewer").cloned().collect()
}

async fn stats(p: &Pipeline, admin_key: &str) -> Value {
    let reply = p.app.call(Method::GET, "/videos/stats", Some(admin_key), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// Waits for the worker's `discard_output` (sent by the rejection) to forget the output.
async fn wait_for_discard(p: &Pipeline, id: &JobId) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while p.app.job(id).await.output.is_some() {
        assert!(std::time::Instant::now() < deadline, "the rejected output of {id} was not discarded within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn object_exists(p: &Pipeline, key: &str) -> bool {
    let s3 = &p.app.clients.s3;
    match s3.head_object().bucket(&p.app.resources.media_bucket).key(key).send().await {
        Ok(_) => true,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => false,
        Err(err) => panic!("HeadObject {key}: {err:?}"),
    }
}

/// The deliveries about one job, in the order they came.
fn deliveries_of(received: &[Received], id: &JobId) -> Vec<Received> {
    received.iter().filter(|r| r.json()["job_id"] == id.as_str()).cloned().collect()
}

fn types(deliveries: &[Received]) -> Vec<String> {
    deliveries.iter().map(|d| d.json()["type"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_approves_and_rejects_through_the_review_endpoint_and_says_why_when_it_cannot() {
    let p = Pipeline::start(settings()).await;
    let (reviewer, key) = p.app.another_user(0, Role::Reviewer).await;
    let approved = completed(&p).await;
    let rejected = completed(&p).await;

    let approve = p.videojobs(&key, &["review", "approve", approved.as_str()]).await;
    let reject = p.videojobs(&key, &["review", "reject", rejected.as_str(), "--reason", "other", "--note", "logo is cut off"]).await;
    let again = p.videojobs(&key, &["review", "reject", approved.as_str(), "--reason", "off_brief"]).await;
    let by_owner = p.videojobs(&p.app.key, &["review", "approve", rejected.as_str()]).await;

    assert_eq!(approve.code, 0, "{}", approve.err);
    assert_eq!(approve.out, format!("{approved} approved.\n"));
    assert_eq!(reject.code, 0, "{}", reject.err);
    assert_eq!(reject.out, format!("{rejected} rejected.\n"));
    let job = p.app.job(&approved).await;
    assert_eq!(job.status, JobStatus::Approved);
    assert_eq!(job.review.as_ref().map(|r| (r.decision.as_str(), &r.reviewer_id)), Some(("approve", &reviewer)));
    let job = p.app.job(&rejected).await;
    assert_eq!(job.status, JobStatus::Rejected);
    assert_eq!(job.error.as_ref().map(|e| e.code.as_str()), Some("other"));
    let review = job.review.expect("the review is recorded");
    assert_eq!((review.reason.as_deref(), review.note.as_deref()), (Some("other"), Some("logo is cut off")));
    for id in [&approved, &rejected] {
        let events = reviewer_events(&p, id).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["actor"], reviewer.as_str());
    }
    // A second review (409) and a user's key (403): one clear sentence each, exit code 1.
    assert_eq!((again.code, again.out.as_str()), (1, ""));
    assert_eq!(again.err, "error: An approved job cannot be reviewed; only a completed one can. Check the job's status first.\n");
    assert_eq!((by_owner.code, by_owner.out.as_str()), (1, ""));
    assert_eq!(by_owner.err, "error: Only a reviewer or an admin can review videos. Use a key with the right role.\n");
    assert_eq!(p.app.job(&approved).await.status, JobStatus::Approved);
    assert_eq!(p.app.job(&rejected).await.status, JobStatus::Rejected);
    assert_eq!(reviewer_events(&p, &approved).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hears_once_of_the_completion_and_once_of_the_review_each_signed_with_its_secret() {
    let hook = Endpoint::start(vec![], 204, "").await;
    let p = Pipeline::start(settings()).await;
    let secret = secret_of(&p.app).await;
    let (_, key) = p.app.another_user(0, Role::Reviewer).await;
    let approved = generate_with_webhook(&p.app, &hook.url).await;
    let rejected = generate_with_webhook(&p.app, &hook.url).await;
    for id in [&approved, &rejected] {
        assert_eq!(p.wait_for(id, WAIT, |s| !s.is_in_flight()).await.status, JobStatus::Completed);
        assert_eq!(notifier_events(&p.app, id, 1).await.len(), 1, "the completion is delivered before the review");
    }

    let approval = review(&p, &key, &approved, json!({"decision": "approve"})).await;
    let rejection =
        review(&p, &key, &rejected, json!({"decision": "reject", "reason": "unreadable_text", "note": "The label is blurred"})).await;

    assert_eq!(approval.status, StatusCode::OK, "{}", approval.body);
    assert_eq!(rejection.status, StatusCode::OK, "{}", rejection.body);
    for id in [&approved, &rejected] {
        let events = notifier_events(&p.app, id, 2).await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events.iter().all(|e| e["error_code"].is_null()), "each delivered at the first attempt: {events:?}");
    }
    let received = hook.received();
    assert_eq!(received.len(), 4, "one delivery per job and status");
    assert!(received.iter().all(|r| r.verifies_with(&secret)), "every delivery verifies with the user's secret");
    let to_approved = deliveries_of(&received, &approved);
    assert_eq!(types(&to_approved), ["job.completed", "job.approved"]);
    assert_eq!(to_approved[1].headers["webhook-id"], format!("msg_{approved}_approved"));
    assert_eq!(to_approved[1].json()["status"], "approved");
    assert_eq!(to_approved[1].json()["review"]["decision"], "approve");
    let to_rejected = deliveries_of(&received, &rejected);
    assert_eq!(types(&to_rejected), ["job.completed", "job.rejected"]);
    let body = to_rejected[1].json();
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["error"]["code"], "unreadable_text");
    assert_eq!((&body["review"]["reason"], &body["review"]["note"]), (&json!("unreadable_text"), &json!("The label is blurred")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_count_jobs_reviewed_through_the_endpoint_canceled_through_delete_and_failed_by_the_provider() {
    let p = Pipeline::start(settings()).await;
    let (_, admin_key) = p.app.another_user(0, Role::Admin).await;
    let (_, reviewer_key) = p.app.another_user(0, Role::Reviewer).await;
    let approved = completed(&p).await;
    let rejected = completed(&p).await;
    let failed = p.app.generate_with(&clip(json!({"fail_with": "content_policy"}))).await;
    let canceled = p.app.generate_with(&clip(json!({"delay_ms": 60_000}))).await;
    assert_eq!(p.wait_for(&failed, WAIT, |s| !s.is_in_flight()).await.status, JobStatus::Failed);

    assert_eq!(p.app.delete(&format!("/videos/jobs/{canceled}")).await.status, StatusCode::OK);
    assert_eq!(review(&p, &reviewer_key, &approved, json!({"decision": "approve"})).await.status, StatusCode::OK);
    let reject = json!({"decision": "reject", "reason": "poor_quality"});
    assert_eq!(review(&p, &reviewer_key, &rejected, reject).await.status, StatusCode::OK);
    wait_for_discard(&p, &rejected).await;
    let s = stats(&p, &admin_key).await;

    assert_eq!(
        s["jobs_by_status"],
        json!({"queued": 0, "submitted": 0, "retrying": 0, "processing": 0, "completed": 0,
               "approved": 1, "rejected": 1, "failed": 1, "canceled": 1, "expired": 0})
    );
    assert_eq!(s["time_to_complete_seconds"]["count"], 2);
    assert_eq!(s["failure_rate_by_provider"], json!([{"provider": "local", "finished": 3, "failed": 1, "rate": 0.3333}]));
    assert_eq!(
        s["failure_rate_by_workflow_type"],
        json!([{"workflow_type": "text_to_video", "finished": 3, "failed": 1, "rate": 0.3333},
               {"workflow_type": "image_to_video", "finished": 0, "failed": 0, "rate": 0.0}])
    );
    assert_eq!(
        s["rejections"],
        json!({"reviewed": 2, "rejected": 1, "rate": 0.5, "by_reason": [{"reason": "poor_quality", "count": 1, "rate": 0.5}]})
    );
    assert_eq!(s["duplicate_callbacks"], 0);
    assert_eq!(s["stuck_jobs"]["count"], 0);
    let kept = p.app.job(&approved).await.output.expect("an approved video is kept");
    assert_eq!(s["stored_bytes_by_artifact_type"], json!({"video": kept.size_bytes, "thumbnail": kept.thumbnail_size_bytes.unwrap_or(0)}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_over_counts_under_the_provider_it_completed_on_and_its_notification_says_so() {
    let replicate = ReplayServer::start().await;
    let refusal = json!({"title": "Insufficient credit", "detail": "You have insufficient credit to run this model.", "status": 402});
    replicate.on("POST", REPLICATE_CREATE, vec![replay::Reply::json(402, refusal)]);
    let hook = Endpoint::start(vec![], 204, "").await;
    let p = Pipeline::start_with(with_fallback(2), provider_env(&replicate)).await;
    let (_, admin_key) = p.app.another_user(0, Role::Admin).await;
    let secret = secret_of(&p.app).await;
    let body = json!({"prompt": "A lighthouse in a storm", "duration_seconds": 1, "resolution": "480p", "provider": "replicate", "webhook_url": hook.url});

    let id = p.app.generate_with(&body).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;
    let events = notifier_events(&p.app, &id, 1).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.provider.as_str(), "local");
    assert_eq!(replicate.requests_to("POST", REPLICATE_CREATE).len(), 1);
    assert_eq!(events.len(), 1, "{events:?}");
    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].verifies_with(&secret));
    let notification = received[0].json();
    assert_eq!((&notification["type"], &notification["provider"]), (&json!("job.completed"), &json!("local")));
    let s = stats(&p, &admin_key).await;
    assert_eq!(s["failure_rate_by_provider"], json!([{"provider": "local", "finished": 1, "failed": 0, "rate": 0.0}]));
    assert_eq!(s["jobs_by_status"]["completed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_video_is_deleted_and_the_stored_bytes_go_down_by_exactly_its_size() {
    let p = Pipeline::start(settings()).await;
    let (_, admin_key) = p.app.another_user(0, Role::Admin).await;
    let (_, reviewer_key) = p.app.another_user(0, Role::Reviewer).await;
    let kept = completed(&p).await;
    let rejected = completed(&p).await;
    let output = p.app.job(&rejected).await.output.expect("a completed job has its video");
    let before = stats(&p, &admin_key).await["stored_bytes_by_artifact_type"].clone();

    let reject = json!({"decision": "reject", "reason": "off_brief"});
    assert_eq!(review(&p, &reviewer_key, &rejected, reject).await.status, StatusCode::OK);
    wait_for_discard(&p, &rejected).await;
    let after = stats(&p, &admin_key).await["stored_bytes_by_artifact_type"].clone();

    let thumbnail = output.thumbnail_size_bytes.expect("the local provider makes a thumbnail");
    assert!(output.size_bytes > 0 && thumbnail > 0);
    let video_drop = before["video"].as_u64().expect("video bytes") - after["video"].as_u64().expect("video bytes");
    let thumbnail_drop = before["thumbnail"].as_u64().expect("thumbnail bytes") - after["thumbnail"].as_u64().expect("thumbnail bytes");
    assert_eq!((video_drop, thumbnail_drop), (output.size_bytes, thumbnail));
    let remaining = p.app.job(&kept).await.output.expect("the other video stays");
    assert_eq!(after, json!({"video": remaining.size_bytes, "thumbnail": remaining.thumbnail_size_bytes.unwrap_or(0)}));
    assert!(!object_exists(&p, &output.video_key).await, "the video is gone from S3");
    assert!(!object_exists(&p, output.thumbnail_key.as_deref().expect("a thumbnail key")).await, "the thumbnail is gone from S3");
    assert!(object_exists(&p, &remaining.video_key).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_simultaneous_reviews_of_a_job_with_a_webhook_send_one_review_notification_and_count_once() {
    let hook = Endpoint::start(vec![], 204, "").await;
    let p = Pipeline::start(settings()).await;
    let (_, admin_key) = p.app.another_user(0, Role::Admin).await;
    let (_, key) = p.app.another_user(0, Role::Reviewer).await;
    let id = generate_with_webhook(&p.app, &hook.url).await;
    assert_eq!(p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await.status, JobStatus::Completed);
    assert_eq!(notifier_events(&p.app, &id, 1).await.len(), 1);

    let replies = all_at_once(10, |i| {
        let body = if i % 2 == 0 { json!({"decision": "approve"}) } else { json!({"decision": "reject", "reason": "off_brief"}) };
        let (p, key, id) = (&p, &key, &id);
        async move { review(p, key, id, body).await }
    })
    .await;

    let won: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(won.len(), 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(replies.iter().filter(|r| r.status == StatusCode::CONFLICT).count(), 9);
    let decided = won[0].body["status"].as_str().expect("a status").to_owned();
    assert_eq!(notifier_events(&p.app, &id, 2).await.len(), 2);
    let received = hook.received();
    assert_eq!(types(&received), ["job.completed".to_owned(), format!("job.{decided}")]);
    assert_eq!(reviewer_events(&p, &id).await.len(), 1);
    let s = stats(&p, &admin_key).await;
    assert_eq!(s["rejections"]["reviewed"], 1);
    assert_eq!(s["rejections"]["rejected"], if decided == "rejected" { 1 } else { 0 });
    assert_eq!(s["jobs_by_status"][decided.as_str()], 1);
    assert_eq!(s["jobs_by_status"]["completed"], 0);
}
