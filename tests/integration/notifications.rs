//! Client notifications: a job with a `webhook_url` tells a real HTTP endpoint
//! (served by the test on loopback) of its statuses, signed with the user's
//! secret, retried through the real queue, checked against SSRF.

use crate::harness::{
    all_at_once, message_body, next_message, queue_of, receive_from, settings, work_message, Receiver, TestApp, REDELIVERY_ALLOWANCE,
};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use videojobs_core::model::ids::JobId;
use videojobs_core::model::job::timestamp;
use videojobs_core::model::notification::{RetrySchedule, SLOT_WAITS_PER_ATTEMPT, USER_SLOTS};
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::ports::NotificationLog;
use videojobs_core::JobStatus;

/// Where the tests' receivers take notifications: the query must stay out of events.
pub(crate) const HOOK: &str = "/hooks/videojobs?token=abc";

/// Cancels the job, then hands the `notify` message the cancel queued to the worker.
pub(crate) async fn cancel_and_deliver(app: &TestApp, id: &JobId) -> Value {
    assert_eq!(app.cancel_job(&id).await.status, StatusCode::OK);
    let (message, _) = next_message(app, id, "notify").await;
    app.handle_work(work_message(message.clone())).await;
    message
}

pub(crate) fn short_retries() -> videojobs_core::model::settings::Settings {
    let mut settings = settings();
    settings.notify_retry_schedule = RetrySchedule::new(vec![1, 1, 1, 1, 1]);
    settings
}

/// A user on a stack of their own (its queue read by the test), with one-second retries.
pub(crate) async fn isolated() -> TestApp {
    isolated_with(short_retries()).await
}

pub(crate) async fn isolated_with(settings: videojobs_core::model::settings::Settings) -> TestApp {
    TestApp::builder().settings(settings).own_stack().build().await
}

/// Every distinct message (by SQS message id: a redelivery is the same one)
/// that reaches the notify queue of an isolated stack within `window`, taken off it.
async fn notify_messages_within(app: &TestApp, window: std::time::Duration) -> Vec<Value> {
    let queue_url = queue_of(app, "notify");
    let deadline = std::time::Instant::now() + window;
    let mut seen = std::collections::BTreeMap::new();
    while std::time::Instant::now() < deadline {
        for message in receive_from(app, queue_url).await {
            let handle = message.receipt_handle().unwrap_or_default();
            app.stack().clients.sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await.expect("delete");
            seen.insert(message.message_id().unwrap_or_default().to_owned(), message_body(&message));
        }
    }
    seen.into_values().collect()
}

/// Every distinct message (by SQS message id) on the notify queue of an
/// isolated stack, taken off it: read until one is `expected` (waiting up to
/// 60 s plus the redelivery allowance for it: a starved machine or a lost
/// receive delays it, and the wait ends as soon as it is there), for at
/// least `window` (so that a message queued beside it is seen too), and
/// until a read finds the queue empty. Panics if `expected` never comes.
async fn notify_messages_once(app: &TestApp, window: std::time::Duration, expected: impl Fn(&Value) -> bool) -> Vec<Value> {
    let queue_url = queue_of(app, "notify");
    let started = std::time::Instant::now();
    let bound = std::time::Duration::from_secs(60) + crate::harness::REDELIVERY_ALLOWANCE;
    let mut seen = std::collections::BTreeMap::new();
    loop {
        let messages = receive_from(app, queue_url).await;
        let drained = messages.is_empty();
        for message in messages {
            let handle = message.receipt_handle().unwrap_or_default();
            app.stack().clients.sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await.expect("delete");
            seen.insert(message.message_id().unwrap_or_default().to_owned(), message_body(&message));
        }
        let found = seen.values().any(&expected);
        if found && drained && started.elapsed() >= window {
            return seen.into_values().collect();
        }
        assert!(found || started.elapsed() < bound, "the expected message never came within {} s: {seen:?}", bound.as_secs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_three_times_then_succeeds_gets_one_signed_delivery_after_four_recorded_attempts() {
    let hook = Receiver::scripted(vec![500, 503, 429], 204).await;
    let p = TestApp::builder().settings(short_retries()).with_local_provider().build().await;

    let id = p.new_job_with_webhook(&hook.url(HOOK)).await;
    p.wait_for(&id, 60, |s| s == JobStatus::Completed).await;
    let events = p.wait_for_events_from(&id, "notifier", 4).await;

    let received = hook.received();
    assert_eq!(received.len(), 4, "three failures and one success; events {events:?}");
    assert_eq!(events.len(), 4, "{events:?}");
    let codes: Vec<&Value> = events.iter().map(|e| &e["error_code"]).collect();
    assert_eq!(codes, [&json!("notify_http_500"), &json!("notify_http_503"), &json!("notify_http_429"), &Value::Null]);
    assert!(events[3]["message"].as_str().unwrap().contains("attempt 4 of 6: Delivered (HTTP 204)"), "{}", events[3]);
    assert!(events.iter().all(|e| e["status"] == "completed"));
    assert!(!events[0]["message"].as_str().unwrap().contains("token=abc"), "the query stays out of events");
    let ids: Vec<&String> = received.iter().map(|r| &r.headers["webhook-id"]).collect();
    assert!(ids.iter().all(|i| **i == format!("msg_{id}_completed")), "one webhook-id for every attempt: {ids:?}");
    let delivered = &received[3];
    assert!(delivered.verifies_with(&p.signing_secret().await), "the body verifies with the user's secret");
    assert!(!delivered.verifies_with(&WebhookSecret::generate_text()));
    let body = delivered.json();
    assert_eq!(body["type"], "job.completed");
    assert_eq!(body["job_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["status_label"], "Ready for review");
    assert!(body["output"]["video_url"].as_str().is_some_and(|u| u.starts_with("http")), "{body}");
    assert_eq!(delivered.headers["content-type"], "application/json");

    // The same message again, as SQS may deliver it after a success: nothing is posted.
    p.handle_work(work_message(json!({"kind": "notify", "job_id": id, "status": "completed", "attempt": 1}))).await;
    p.handle_work(work_message(json!({"kind": "notify", "job_id": id, "status": "completed", "attempt": 4}))).await;
    assert_eq!(hook.received().len(), 4);
    // handle_work returned: anything those two deliveries recorded is there now.
    assert_eq!(p.events_from(&id, "notifier").await.len(), 4);
}

#[tokio::test]
async fn webhook_urls_at_loopback_private_or_metadata_addresses_are_refused_in_a_deployment() {
    let mut deployed = settings();
    deployed.limits.allow_http_webhooks = false;
    deployed.limits.loopback_webhook_ports = videojobs_core::model::notification::LoopbackPorts::NONE;
    let app = TestApp::builder().credits(100).settings(deployed).build().await;

    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://localhost:8443/hook",
        "https://[::1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://192.168.1.20/hook",
        "https://nothing.invalid/hook",
    ] {
        let body = json!({"prompt": "p", "duration_seconds": 2, "webhook_url": url});
        let reply = app.generate(&body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "webhook_url", "{url}");
    }

    assert_eq!(app.job_count().await, 0, "nothing written");
    assert_eq!(app.credits().await, 100, "nothing debited");
}

#[tokio::test]
async fn a_webhook_url_that_now_resolves_to_a_private_address_is_refused_at_delivery_and_retried() {
    let app = isolated().await;
    let id = app.new_job_with_webhook("http://localhost:9/hook").await;
    let mut job = app.job(&id).await;
    // As if the host had since moved to a private address.
    job.webhook_url = Some("https://10.0.0.1/hook".into());
    app.put_job(&job).await;

    let first = cancel_and_deliver(&app, &id).await;

    assert_eq!(first["attempt"], 1);
    let events = app.wait_for_events_from(&id, "notifier", 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error_code"], "notify_refused_address");
    assert!(events[0]["message"].as_str().unwrap().contains("private"), "{}", events[0]);
    let (second, _) = next_message(&app, &id, "notify").await;
    assert_eq!(second["attempt"], 2, "the refusal counts as a failed attempt");
}

#[tokio::test]
async fn an_endpoint_that_answers_a_redirect_is_not_followed() {
    let elsewhere = Receiver::answering(204).await;
    let hook = Receiver::redirecting_to(&elsewhere.url(HOOK)).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;

    cancel_and_deliver(&app, &id).await;

    assert_eq!(hook.received().len(), 1);
    assert_eq!(elsewhere.received().len(), 0, "the redirect was not followed");
    let events = app.wait_for_events_from(&id, "notifier", 1).await;
    assert_eq!(events[0]["error_code"], "notify_http_302");
    assert_eq!(events[0]["status"], "canceled");
}

#[tokio::test]
async fn after_a_rotation_deliveries_verify_with_the_new_secret_and_for_a_day_with_the_old_one() {
    let hook = Receiver::answering(200).await;
    let app = isolated().await;
    let old = app.signing_secret().await;

    let rotated = app.rotate_webhook_secret().await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    assert_eq!(app.signing_secret().await, new, "GET answers the new secret");
    let until = timestamp::parse(rotated.body["previous_secret_valid_until"].as_str().unwrap()).unwrap();
    assert!(until > timestamp::now() + time::Duration::hours(23));

    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    cancel_and_deliver(&app, &id).await;

    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].verifies_with(&new));
    assert!(received[0].verifies_with(&old), "the old secret still signs during the grace period");
    assert_eq!(received[0].headers["webhook-signature"].split(' ').count(), 2);
    assert_eq!(received[0].json()["type"], "job.canceled");
}

#[tokio::test]
async fn a_rotation_with_no_grace_stops_the_old_secret_at_once_and_a_grace_over_a_week_is_refused() {
    // Arrange
    let hook = Receiver::answering(200).await;
    let app = isolated().await;
    let old = app.signing_secret().await;

    // Act
    let too_long = app.rotate_webhook_secret_with(r#"{"grace_seconds":604801}"#).await;
    let unchanged = app.signing_secret().await;
    let rotated = app.rotate_webhook_secret_with(r#"{"grace_seconds":0}"#).await;
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    cancel_and_deliver(&app, &id).await;

    // Assert: the refused rotation changed nothing; after the other, only the new secret signs.
    assert_eq!((too_long.status, too_long.body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("grace_seconds")));
    assert_eq!(unchanged, old);
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].verifies_with(&new));
    assert!(!received[0].verifies_with(&old), "no grace: the old secret signs nothing");
    assert_eq!(received[0].headers["webhook-signature"].split(' ').count(), 1);
}

#[tokio::test]
async fn a_test_delivery_reaches_the_endpoint_signed_and_answers_what_it_said() {
    // Arrange: one endpoint that takes it, one that fails, one that is not there.
    let ok = Receiver::answering(204).await;
    let failing = Receiver::answering(500).await;
    let app = isolated().await;
    let secret = app.signing_secret().await;
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        drop(listener);
        url
    };

    // Act
    let delivered = app.test_webhook(json!({"url": ok.url(HOOK)}).to_string()).await;
    let answered_500 = app.test_webhook(json!({"url": failing.url(HOOK)}).to_string()).await;
    let unreachable = app.test_webhook(json!({"url": gone}).to_string()).await;

    // Assert: signed as a notification is, and each answer says what happened.
    assert_eq!(delivered.status, StatusCode::OK, "{}", delivered.body);
    assert_eq!((delivered.body["delivered"].as_bool(), delivered.body["status"].as_u64()), (Some(true), Some(204)));
    let received = ok.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].verifies_with(&secret));
    assert_eq!(received[0].json()["type"], "ping");
    assert_eq!(received[0].headers["webhook-id"], delivered.body["webhook_id"].as_str().unwrap());
    assert!(!delivered.body["endpoint"].as_str().unwrap().contains("/hook"), "no path: {}", delivered.body);
    assert_eq!((answered_500.body["delivered"].as_bool(), answered_500.body["status"].as_u64()), (Some(false), Some(500)));
    assert_eq!((unreachable.body["delivered"].as_bool(), unreachable.body["error"].as_str()), (Some(false), Some("unreachable")));
    assert!(unreachable.body["status"].is_null());
}

#[tokio::test]
async fn a_test_delivery_to_an_address_a_webhook_may_not_use_is_400_and_sends_nothing() {
    let app = TestApp::new(0).await;

    let replies = [
        app.test_webhook(r#"{"url":"http://169.254.169.254/latest/meta-data"}"#).await,
        app.test_webhook(r#"{"url":"https://10.0.0.1/hook"}"#).await,
        app.test_webhook(r#"{"url":"ftp://example.com/hook"}"#).await,
        app.test_webhook(r#"{}"#).await,
        app.anonymous().test_webhook(r#"{"url":"https://example.com/hook"}"#).await,
    ];

    for reply in &replies[..4] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], "url", "{}", reply.body);
    }
    assert_eq!(replies[4].status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_rotation_may_keep_the_old_secret_for_up_to_a_week() {
    let app = TestApp::new(0).await;
    app.signing_secret().await;

    let rotated = app.rotate_webhook_secret_with(r#"{"grace_seconds":604800}"#).await;

    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let until = timestamp::parse(rotated.body["previous_secret_valid_until"].as_str().unwrap()).unwrap();
    let week = timestamp::now() + time::Duration::days(7);
    assert!(until <= week && until > week - time::Duration::minutes(5), "{until}");
}

#[tokio::test]
async fn concurrent_first_requests_for_the_webhook_secret_all_get_the_same_secret() {
    let app = TestApp::new(0).await;

    let replies = all_at_once(12, |_| app.webhook_secret()).await;

    let secrets: Vec<&str> = replies.iter().map(|r| r.body["secret"].as_str().unwrap_or("")).collect();
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert!(secrets[0].starts_with("whsec_"));
    assert!(secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
    assert_eq!(app.signing_secret().await, secrets[0]);
}

#[tokio::test]
async fn each_user_has_their_own_secret_and_it_takes_a_key_to_read_it() {
    let app = TestApp::new(0).await;
    let (_, other_key) = app.another_user(0, videojobs_core::model::ids::Role::User).await;

    let mine = app.signing_secret().await;
    let theirs = app.as_key(&other_key).webhook_secret().await;
    let anonymous = app.anonymous().rotate_webhook_secret().await;

    assert_eq!(theirs.status, StatusCode::OK);
    assert_ne!(theirs.body["secret"], mine.as_str());
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.signing_secret().await, mine, "a refused rotation changes nothing");
}

#[tokio::test]
async fn after_the_last_attempt_fails_the_notifier_gives_up_and_says_so() {
    let hook = Receiver::answering(500).await;
    let mut two_attempts = settings();
    two_attempts.notify_retry_schedule = RetrySchedule::new(vec![1]);
    let app = isolated_with(two_attempts).await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;

    cancel_and_deliver(&app, &id).await;
    let (second, _) = next_message(&app, &id, "notify").await;
    assert_eq!(second["attempt"], 2);
    app.handle_work(work_message(second)).await;

    assert_eq!(hook.received().len(), 2);
    let events = app.wait_for_events_from(&id, "notifier", 3).await;
    let codes: Vec<&str> = events.iter().map(|e| e["error_code"].as_str().unwrap_or("")).collect();
    assert_eq!(codes, ["notify_http_500", "notify_http_500", "notify_gave_up"]);
    assert!(events[2]["message"].as_str().unwrap().contains("after 2 attempts"), "{}", events[2]);
}

#[tokio::test]
async fn a_notification_not_yet_due_waits_again_on_the_queue_and_posts_nothing() {
    let hook = Receiver::answering(204).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    // The notifier reads `timestamp::now` (`determinism::now`): pinned for
    // the handling (on this thread: a current-thread runtime), the message
    // is not yet due however long the machine stalls before it is handled.
    // Its `not_before` stays near, so that the hop's SQS delay is short
    // enough to read it back (an hour's `not_before` would hold it for SQS's
    // longest delay, 15 minutes).
    let pinned = time::OffsetDateTime::now_utc();
    let not_before = timestamp::format(pinned + time::Duration::seconds(2));

    {
        let seed = pinned.unix_timestamp_nanos() as u64;
        let _clock = videojobs_core::model::determinism::simulate(pinned, seed);
        let message = json!({"kind": "notify", "job_id": id, "status": "canceled", "attempt": 3, "not_before": not_before});
        app.handle_work(work_message(message)).await;
    }

    assert!(hook.received().is_empty());
    let (hop, _) = next_message(&app, &id, "notify").await;
    assert_eq!(hop["attempt"], 3, "the same attempt, later");
    assert_eq!(hop["not_before"], not_before.as_str());
}

#[tokio::test]
async fn a_rotation_before_any_secret_exists_just_makes_the_first_one() {
    let app = TestApp::new(0).await;

    let rotated = app.rotate_webhook_secret().await;

    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert!(rotated.body.get("previous_secret_valid_until").is_none(), "{}", rotated.body);
    assert_eq!(app.signing_secret().await, rotated.body["secret"].as_str().unwrap());
}

#[tokio::test]
async fn copies_of_one_notify_message_handled_at_once_post_once() {
    let hook = Receiver::slow(std::time::Duration::from_millis(300), 204).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    assert_eq!(app.cancel_job(&id).await.status, StatusCode::OK);
    let (message, _) = next_message(&app, &id, "notify").await;
    let message = work_message(message);

    let outcomes = all_at_once(6, |_| worker::handle(&app.app.notifier, message.clone())).await;

    assert_eq!(hook.received().len(), 1, "one POST for six copies");
    assert!(outcomes.iter().all(|o| o.is_ok()), "a copy that found the attempt in progress looks again later");
    let events = app.wait_for_events_from(&id, "notifier", 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error_code"], Value::Null);
    // Those copies looking again, and one more coming back later, find the delivery and post nothing.
    // (The queue may also hold a second message of the cancel: one is queued before each try of its write.)
    let looking_again = notify_messages_within(&app, std::time::Duration::from_secs(7)).await;
    for copy in looking_again {
        app.handle_work(work_message(copy)).await;
    }
    app.handle_work(message).await;
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn copies_of_a_failed_attempts_message_arriving_after_it_post_nothing_and_queue_no_second_retry() {
    // Arrange: an endpoint that always fails; attempt 1 is made and queues attempt 2.
    let hook = Receiver::answering(500).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    let first = cancel_and_deliver(&app, &id).await;
    let (second, _) = next_message(&app, &id, "notify").await;
    assert_eq!((first["attempt"].as_u64(), second["attempt"].as_u64()), (Some(1), Some(2)));

    // Act: SQS delivers attempt 1 again (three times, as it may), then attempt 2 twice.
    for _ in 0..3 {
        app.handle_work(work_message(first.clone())).await;
    }
    app.handle_work(work_message(second.clone())).await;
    app.handle_work(work_message(second)).await;

    // Assert: one POST per attempt, one event per attempt, one chain of retries.
    assert_eq!(hook.received().len(), 2, "attempts 1 and 2, each once");
    let events = app.events_from(&id, "notifier").await;
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("attempt 1 of 6") && messages[1].contains("attempt 2 of 6"), "{messages:?}");
    let queued = notify_messages_once(&app, std::time::Duration::from_secs(4), |m| m["attempt"] == 3).await;
    let attempts: Vec<Option<u64>> = queued.iter().map(|m| m["attempt"].as_u64()).collect();
    // (A send whose answer was lost can put attempt 3 on the queue twice: SQS's own duplicate, not a fork.)
    assert!(!attempts.is_empty() && attempts.iter().all(|a| *a == Some(3)), "attempt 3 and nothing else: {queued:?}");
}

#[tokio::test]
async fn a_notification_waits_for_a_busy_tenants_slot_a_bounded_number_of_times_then_counts_a_failed_attempt() {
    // Arrange: every delivery slot of the user is held by deliveries still in progress.
    let hook = Receiver::answering(204).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    for i in 0..USER_SLOTS {
        let held =
            app.stack().store.claim_user_slot(&app.user, USER_SLOTS, &format!("slow-{i}"), std::time::Duration::from_secs(600)).await;
        held.expect("claimed").expect("a free slot");
    }
    let first = cancel_and_deliver(&app, &id).await;
    let (waiting, _) = next_message(&app, &id, "notify").await;
    let mut last_wait = waiting.clone();
    last_wait["slot_waits"] = json!(SLOT_WAITS_PER_ATTEMPT - 1);

    // Act: the message waits again; then its last allowed wait comes back with the slots still busy.
    app.handle_work(work_message(waiting.clone())).await;
    let (waited_again, _) = next_message(&app, &id, "notify").await;
    app.handle_work(work_message(last_wait)).await;
    let (next_attempt, _) = next_message(&app, &id, "notify").await;

    // Assert: each wait is counted on the message; the last one is attempt 1, failed, and attempt 2 follows.
    assert_eq!((first["attempt"].as_u64(), first.get("slot_waits")), (Some(1), None));
    assert_eq!((waiting["attempt"].as_u64(), waiting["slot_waits"].as_u64()), (Some(1), Some(1)));
    assert_eq!((waited_again["attempt"].as_u64(), waited_again["slot_waits"].as_u64()), (Some(1), Some(2)));
    assert_eq!((next_attempt["attempt"].as_u64(), next_attempt.get("slot_waits")), (Some(2), None), "{next_attempt}");
    assert!(hook.received().is_empty(), "nothing was posted while the slots were busy");
    let events = app.events_from(&id, "notifier").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error_code"], "notify_slots_busy");
    assert!(events[0]["message"].as_str().unwrap().contains("attempt 1 of 6"), "{}", events[0]);
}

#[tokio::test]
async fn racing_cancels_of_one_job_start_one_chain_of_notifications() {
    // Arrange: a job whose receiver always fails, so that every attempt schedules the next.
    let hook = Receiver::answering(500).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;

    // Act: ten cancels at once (each queues its notification before trying
    // its write, and one write wins); then every queued message is handled,
    // each twice, as SQS may deliver it.
    let answers = all_at_once(10, |_| app.cancel_job(&id)).await;
    let queued = notify_messages_once(&app, std::time::Duration::from_secs(4), |m| m["attempt"] == 1).await;
    for message in queued.iter().chain(&queued) {
        app.handle_work(work_message(message.clone())).await;
    }
    let next = notify_messages_once(&app, std::time::Duration::from_secs(4), |m| m["attempt"] == 2).await;

    // Assert: one winner, one POST for attempt 1 however many messages, and only attempt 2 queued after it.
    assert_eq!(answers.iter().filter(|a| a.status == StatusCode::OK).count(), 1, "one cancel wins");
    assert!(!queued.is_empty() && queued.iter().all(|m| m["attempt"] == 1 && m["status"] == "canceled"), "{queued:?}");
    assert_eq!(hook.received().len(), 1, "one attempt 1 for {} messages", queued.len());
    let events = app.events_from(&id, "notifier").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let attempts: Vec<Option<u64>> = next.iter().map(|m| m["attempt"].as_u64()).collect();
    assert!(!attempts.is_empty() && attempts.iter().all(|a| *a == Some(2)), "one chain goes on: {next:?}");
}

// A status change queues its notification just before it is written (so
// that a writer dying in between cannot lose it); the notifier posts only
// once the job shows the status.

#[tokio::test]
async fn a_notification_that_arrives_before_its_change_waits_for_it_then_posts_once() {
    let hook = Receiver::answering(204).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    let queued_at = timestamp::format(timestamp::now());
    let early = json!({"kind": "notify", "job_id": id, "status": "canceled", "attempt": 1, "queued_at": queued_at});

    app.handle_work(work_message(early)).await;
    assert!(hook.received().is_empty(), "the job is still queued: nothing to tell");
    let (hop, _) = next_message(&app, &id, "notify").await;
    assert_eq!((hop["status"].as_str(), hop["queued_at"].as_str()), (Some("canceled"), Some(queued_at.as_str())), "{hop}");
    let own = cancel_and_deliver(&app, &id).await;
    app.handle_work(work_message(hop)).await;

    assert_eq!(own["status"], "canceled");
    let received = hook.received();
    assert_eq!(received.len(), 1, "one POST for the early message and the cancel's own");
    assert_eq!(received[0].headers["webhook-id"], format!("msg_{id}_canceled"));
}

#[tokio::test]
async fn a_notification_whose_change_never_came_within_the_writers_window_sends_nothing_and_stops() {
    let hook = Receiver::answering(204).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    let long_ago = timestamp::format(timestamp::now() - time::Duration::minutes(16));

    app.handle_work(work_message(json!({"kind": "notify", "job_id": id, "status": "canceled", "attempt": 1, "queued_at": long_ago}))).await;

    assert_eq!(messages_on_the_notify_queue(&app).await, 0, "the old message did not wait again");
    assert!(hook.received().is_empty(), "and posted nothing");
}

/// Every message on the notification queue, visible or delayed.
async fn messages_on_the_notify_queue(app: &TestApp) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName::{ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed};
    let attributes = app
        .stack()
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(queue_of(app, "notify"))
        .attribute_names(ApproximateNumberOfMessages)
        .attribute_names(ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    [ApproximateNumberOfMessages, ApproximateNumberOfMessagesDelayed]
        .iter()
        .map(|name| attributes.get(name).and_then(|n| n.parse::<u64>().ok()).expect("a count"))
        .sum()
}

#[tokio::test]
async fn a_notification_of_a_status_the_job_can_no_longer_have_sends_nothing() {
    let hook = Receiver::answering(204).await;
    let app = isolated().await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    cancel_and_deliver(&app, &id).await;
    let now = timestamp::format(timestamp::now());

    app.handle_work(work_message(json!({"kind": "notify", "job_id": id, "status": "completed", "attempt": 1, "queued_at": now}))).await;

    assert_eq!(messages_on_the_notify_queue(&app).await, 0, "it does not wait either");
    let received = hook.received();
    assert_eq!(received.len(), 1, "the cancel's notification only");
    assert_eq!(received[0].headers["webhook-id"], format!("msg_{id}_canceled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_notification_retried_after_its_job_expired_is_still_delivered_under_the_notifiers_role() {
    // Arrange: the first attempt fails; the job expires before the retry
    // (the notifier then reads the job's history: a Query its role must allow).
    let hook = Receiver::scripted(vec![500], 204).await;
    let p = TestApp::builder().with_local_provider().build().await;
    let id = p.new_job_with_webhook(&hook.url(HOOK)).await;
    p.wait_for(&id, 60, |s| s == JobStatus::Completed).await;
    assert_eq!(p.wait_for_events_from(&id, "notifier", 1).await.len(), 1, "the first attempt failed");
    let mut job = p.job(&id).await;
    job.status = JobStatus::Expired;
    p.put_job(&job).await;

    // Act: the retry, as the notification queue hands it to the notify function.
    p.handle_work(work_message(json!({"kind": "notify", "job_id": id, "status": "completed", "attempt": 2}))).await;

    // Assert
    // (The stack's own copy of the retry may hold the attempt while the test's
    // waits; at least two: SQS may hand the first attempt's message over twice.)
    let received = hook.received_at_least(2, std::time::Duration::from_secs(30) + REDELIVERY_ALLOWANCE).await;
    assert!(received.len() >= 2, "the retry was delivered: {}", received.len());
    assert!(received.iter().all(|r| r.json()["status"] == "completed"));
}
