//! The delivery log and manual sends: every attempt at a notification is in
//! the job's log and, when it failed, in the caller's list across jobs; a
//! notification sent again by hand goes once however many requests ask at
//! once, and never restarts the retry schedule.

use crate::harness::{all_at_once, next_message, receive_from, work_message, Payload, Receiver, TestApp};
use crate::notifications::{cancel_and_deliver, short_retries, HOOK};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use videojobs_core::model::ids::{JobId, Role};
use videojobs_core::model::job::timestamp;

/// A user on a stack of their own (its queue read by the test), with
/// one-second retries and without injected AWS faults: these tests count
/// POSTs exactly, and a handling retried after a throttle posts again (at
/// least once, as the notifications suite proves under faults).
async fn quiet_with(settings: videojobs_core::model::settings::Settings) -> TestApp {
    TestApp::builder().settings(settings).own_stack().fault_profile("none").build().await
}

async fn quiet() -> TestApp {
    quiet_with(short_retries()).await
}

/// Hands the one `redeliver` message of `id` to the notify function.
async fn deliver_the_redelivery(app: &TestApp, id: &JobId) -> Value {
    let (message, _) = next_message(app, id, "redeliver").await;
    app.handle_work(work_message(message.clone())).await;
    message
}

/// Hands the `redeliver` message of each of `ids` to the notify function,
/// taking them as they come: one receive may bring several, and a message
/// received and left would stay hidden for the queue's visibility timeout.
async fn deliver_the_redeliveries(app: &TestApp, ids: &[&JobId]) {
    let mut left: std::collections::HashSet<String> = ids.iter().map(|id| id.to_string()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60) + crate::harness::REDELIVERY_ALLOWANCE;
    while !left.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no redeliver message for {left:?}");
        for message in receive_from(app, &app.stack().resources.notify_queue_url).await {
            let body = crate::harness::message_body(&message);
            if body["kind"] == "redeliver" && left.remove(body["job_id"].as_str().unwrap_or_default()) {
                app.handle_work(work_message(body)).await;
            }
        }
    }
}

/// Every message of `kind` about `id` still on the notification queue.
async fn queued(app: &TestApp, id: &JobId, kind: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..3 {
        for message in receive_from(app, &app.stack().resources.notify_queue_url).await {
            let body = crate::harness::message_body(&message);
            if body["job_id"] == id.as_str() && body["kind"] == kind {
                found.push(body);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_shows_each_attempt_with_its_endpoint_answer_and_trigger_and_failures_are_listed_across_jobs() {
    // Arrange: one job whose first attempt fails and second delivers; another whose endpoint always fails.
    let app = quiet().await;
    let flaky = Receiver::scripted(vec![500], 204).await;
    let broken = Receiver::answering(503).await;
    let first = app.new_job_with_webhook(&flaky.url(HOOK)).await;
    let second = app.new_job_with_webhook(&broken.url(HOOK)).await;
    cancel_and_deliver(&app, &first).await;
    let (retry, _) = next_message(&app, &first, "notify").await;
    app.handle_work(work_message(retry)).await;
    let between = timestamp::format(timestamp::now());
    cancel_and_deliver(&app, &second).await;
    let (_, stranger) = app.another_user(10, Role::User).await;

    // Act
    let log = app.job_deliveries(&first).await;
    let failures = app.failed_deliveries("").await;
    let since = app.failed_deliveries(&format!("since={between}")).await;
    let by_class = app.failed_deliveries("error_class=notify_http_500").await;
    let strangers_list = app.as_key(&stranger).failed_deliveries("").await;
    let strangers_log = app.as_key(&stranger).job_deliveries(&first).await;

    // Assert
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let attempts = log.body["deliveries"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{}", log.body);
    let endpoint = flaky.url("");
    assert!(attempts.iter().all(|a| a["endpoint"] == endpoint.trim_end_matches('/') && a["trigger"] == "scheduled"), "{attempts:?}");
    assert!(!log.body.to_string().contains("token=abc"), "no path or query in the log");
    assert_eq!((attempts[0]["outcome"].clone(), attempts[0]["http_status"].clone()), (json!("failed"), json!(500)));
    assert_eq!(attempts[0]["error_class"], "notify_http_500");
    assert_eq!((attempts[1]["outcome"].clone(), attempts[1]["attempt"].clone()), (json!("delivered"), json!(2)));
    assert!(attempts.iter().all(|a| a["duration_ms"].is_u64() && a["status"] == "canceled"));
    let ids = |reply: &crate::harness::Reply| -> Vec<String> {
        reply.body["deliveries"].as_array().unwrap().iter().map(|d| d["job_id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&failures), [second.to_string(), first.to_string()], "failed attempts only, newest first");
    assert_eq!(ids(&since), [second.to_string()]);
    assert_eq!(ids(&by_class), [first.to_string()]);
    assert!(ids(&strangers_list).is_empty(), "another user's failures are not listed");
    assert_eq!(strangers_log.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_redeliveries_send_once_outside_the_schedule_and_stop_it_when_delivered() {
    // Arrange: the first attempt failed; attempt 2 is queued by the schedule.
    let app = quiet().await;
    let hook = Receiver::scripted(vec![500], 204).await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    cancel_and_deliver(&app, &id).await;
    let (scheduled, _) = next_message(&app, &id, "notify").await;

    // Act: ten requests at once, then the notify function takes what they queued.
    let replies = all_at_once(10, |_| app.redeliver(&id, json!({"status": "canceled"}))).await;
    deliver_the_redelivery(&app, &id).await;
    let copies_left = queued(&app, &id, "redeliver").await;
    // The schedule's attempt 2 comes after the manual delivery.
    app.handle_work(work_message(scheduled)).await;

    // Assert
    assert!(replies.iter().all(|r| r.status == StatusCode::ACCEPTED), "{:?}", replies.iter().map(|r| &r.body).collect::<Vec<_>>());
    let sent: Vec<bool> = replies.iter().map(|r| r.body["redeliveries"][0]["queued"].as_bool().unwrap()).collect();
    assert_eq!(sent.iter().filter(|queued| **queued).count(), 1, "one of ten queued a send: {sent:?}");
    assert!(copies_left.is_empty(), "one message for ten requests: {copies_left:?}");
    assert_eq!(hook.received().len(), 2, "attempt 1, then the manual send; attempt 2 found it delivered");
    let log = app.job_deliveries(&id).await.body;
    let attempts = log["deliveries"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{log}");
    assert_eq!((attempts[1]["trigger"].clone(), attempts[1]["attempt"].clone()), (json!("manual"), Value::Null));
    assert_eq!(attempts[1]["outcome"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_manual_send_is_logged_and_queues_no_attempt_of_its_own() {
    // Arrange
    let app = quiet().await;
    let hook = Receiver::answering(500).await;
    let id = app.new_job_with_webhook(&hook.url(HOOK)).await;
    cancel_and_deliver(&app, &id).await;
    let (_scheduled, _) = next_message(&app, &id, "notify").await;

    // Act
    let reply = app.redeliver(&id, Payload::None).await;
    deliver_the_redelivery(&app, &id).await;

    // Assert
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["redeliveries"][0]["status"], "canceled", "the latest notified status by default");
    assert_eq!(hook.received().len(), 2);
    assert!(queued(&app, &id, "notify").await.is_empty(), "the manual failure scheduled nothing");
    let attempts = app.job_deliveries(&id).await.body["deliveries"].clone();
    assert_eq!(attempts[1]["trigger"], "manual");
    assert_eq!(attempts[1]["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_since_a_time_sends_each_undelivered_notification_once_even_when_asked_five_times_at_once() {
    // Arrange: two jobs whose notification failed, one delivered, and a stranger's failure.
    let app = quiet().await;
    let since = timestamp::format(timestamp::now());
    let failing = Receiver::answering(500).await;
    let fine = Receiver::answering(204).await;
    let lost: Vec<JobId> = vec![app.new_job_with_webhook(&failing.url(HOOK)).await, app.new_job_with_webhook(&failing.url(HOOK)).await];
    let delivered = app.new_job_with_webhook(&fine.url(HOOK)).await;
    for id in lost.iter().chain([&delivered]) {
        cancel_and_deliver(&app, id).await;
    }
    let (_, stranger) = app.another_user(10, Role::User).await;
    let strangers_job =
        app.as_key(&stranger).generate(json!({"prompt": "a kite", "duration_seconds": 1, "webhook_url": failing.url(HOOK)})).await.job_id();
    assert_eq!(app.as_key(&stranger).cancel_job(&strangers_job).await.status, StatusCode::OK);
    let (strangers_attempt, _) = next_message(&app, &strangers_job, "notify").await;
    app.handle_work(work_message(strangers_attempt)).await;

    // Act
    let replies = all_at_once(5, |_| app.recover_deliveries(json!({"since": since}))).await;
    deliver_the_redeliveries(&app, &lost.iter().collect::<Vec<_>>()).await;
    let bad = app.recover_deliveries(json!({})).await;

    // Assert
    assert!(replies.iter().all(|r| r.status == StatusCode::ACCEPTED), "{:?}", replies.iter().map(|r| &r.body).collect::<Vec<_>>());
    let mut queued_now: Vec<String> = replies
        .iter()
        .flat_map(|r| r.body["redeliveries"].as_array().unwrap().clone())
        .filter(|r| r["queued"] == true)
        .map(|r| r["job_id"].as_str().unwrap().to_owned())
        .collect();
    queued_now.sort();
    let mut expected: Vec<String> = lost.iter().map(|id| id.to_string()).collect();
    expected.sort();
    assert_eq!(queued_now, expected, "each undelivered notification of the caller, once across five requests");
    assert!(replies.iter().all(|r| r.body["more"] == false));
    assert_eq!(failing.received().len(), 2 + 1 + 2, "three first attempts (the stranger's too), then two manual sends");
    assert_eq!(fine.received().len(), 1, "a delivered notification is not sent again");
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["field"], "since");
}

#[tokio::test]
async fn a_redelivery_of_a_job_without_a_webhook_or_of_a_status_it_never_had_is_409_and_queues_nothing() {
    // Arrange
    let app = quiet().await;
    let plain = app.new_job(1).await;
    let hook = Receiver::answering(204).await;
    let hooked = app.new_job_with_webhook(&hook.url(HOOK)).await;
    let (_, stranger) = app.another_user(10, Role::User).await;

    // Act
    let no_webhook = app.redeliver(&plain, Payload::None).await;
    let in_flight = app.redeliver(&hooked, Payload::None).await;
    let never = app.redeliver(&hooked, json!({"status": "failed"})).await;
    let not_notified = app.redeliver(&hooked, json!({"status": "processing"})).await;
    let strangers = app.as_key(&stranger).redeliver(&hooked, Payload::None).await;

    // Assert
    for reply in [&no_webhook, &in_flight, &never] {
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    }
    assert_eq!(not_notified.status, StatusCode::BAD_REQUEST);
    assert_eq!(strangers.status, StatusCode::NOT_FOUND);
    assert!(queued(&app, &hooked, "redeliver").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_failing_is_paused_for_its_user_alone_holds_what_follows_and_one_of_five_resumes_sends_it() {
    // Arrange: three failed attempts in a row pause the endpoint.
    let mut settings = short_retries();
    settings.notify_pause_after_failures = 3;
    let app = quiet_with(settings).await;
    let hook = Receiver::scripted(vec![500, 500, 500], 204).await;
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(app.new_job_with_webhook(&hook.url(HOOK)).await);
    }
    cancel_and_deliver(&app, &jobs[0]).await;
    // Taken now: a later receive would hide it behind its visibility timeout.
    let (first_jobs_retry, _) = next_message(&app, &jobs[0], "notify").await;
    for id in &jobs[1..3] {
        cancel_and_deliver(&app, id).await;
    }

    // Act: while paused, a new notification and a scheduled retry are held; another user's goes.
    cancel_and_deliver(&app, &jobs[3]).await;
    app.handle_work(work_message(first_jobs_retry)).await;
    let (_, stranger) = app.another_user(10, Role::User).await;
    let strangers_job =
        app.as_key(&stranger).generate(json!({"prompt": "a kite", "duration_seconds": 1, "webhook_url": hook.url(HOOK)})).await.job_id();
    assert_eq!(app.as_key(&stranger).cancel_job(&strangers_job).await.status, StatusCode::OK);
    let (strangers_notification, _) = next_message(&app, &strangers_job, "notify").await;
    app.handle_work(work_message(strangers_notification)).await;
    let paused = app.account().await.body;
    let figures = app.stats().await.body;
    let endpoint = hook.url("");
    let resumes = all_at_once(5, |_| app.resume_endpoint(json!({"endpoint": endpoint}))).await;
    deliver_the_redeliveries(&app, &[&jobs[3], &jobs[0]]).await;

    // Assert
    assert_eq!(paused["paused_endpoints"][0]["endpoint"], endpoint.as_str(), "{paused}");
    assert_eq!(paused["paused_endpoints"][0]["consecutive_failures"], 3);
    assert_eq!(figures["your_paused_endpoints"], 1, "the stats show it too");
    // On the job whose failure reached the bound (a handling the harness
    // delivered twice may have counted one job's attempt twice).
    let mut pause_events = 0;
    for id in &jobs[..3] {
        let events = app.events_from(id, "notifier").await;
        pause_events +=
            events.iter().filter(|e| e["message"].as_str().unwrap_or("").contains("are paused after 3 failed attempts")).count();
    }
    assert_eq!(pause_events, 1, "one event says the endpoint was paused");
    let held = app.job_deliveries(&jobs[3]).await.body;
    assert_eq!(held["deliveries"][0]["error_class"], "notify_endpoint_paused", "{held}");
    assert!(resumes.iter().all(|r| r.status == StatusCode::OK), "{:?}", resumes.iter().map(|r| &r.body).collect::<Vec<_>>());
    let winners: Vec<&Value> = resumes.iter().map(|r| &r.body).filter(|b| b["resumed"] == true).collect();
    assert_eq!(winners.len(), 1, "one of five resumes: {winners:?}");
    let mut sent: Vec<String> =
        winners[0]["redeliveries"].as_array().unwrap().iter().map(|r| r["job_id"].as_str().unwrap().to_owned()).collect();
    sent.sort();
    let mut expected = vec![jobs[0].to_string(), jobs[3].to_string()];
    expected.sort();
    assert_eq!(sent, expected, "what was held, each once");
    assert_eq!(hook.received().len(), 3 + 1 + 2, "three failures, the other user's delivery, the two held ones after the resume");
    for id in [&jobs[3], &jobs[0]] {
        let log = app.job_deliveries(id).await.body;
        let last = log["deliveries"].as_array().unwrap().last().cloned().unwrap();
        assert_eq!((last["trigger"].clone(), last["outcome"].clone()), (json!("manual"), json!("delivered")), "{log}");
    }
    assert_eq!(app.account().await.body["paused_endpoints"], json!([]));
}
