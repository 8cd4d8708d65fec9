//! Client notifications: a job with a `webhook_url` tells a real HTTP endpoint
//! (served by the test on loopback) of its statuses, signed with the user's
//! secret, retried through the real queue, checked against SSRF.

use crate::helpers::{all_at_once, next_message, settings, Pipeline, TestApp};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use videojobs_core::model::ids::JobId;
use videojobs_core::model::job::timestamp;
use videojobs_core::model::notify::RetrySchedule;
use videojobs_core::model::signing::{verify, SignedHeaders, WebhookSecret};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::JobStatus;

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub(crate) fn verifies_with(&self, secret: &str) -> bool {
        let headers = SignedHeaders {
            id: self.headers.get("webhook-id").map(String::as_str),
            timestamp: self.headers.get("webhook-timestamp").map(String::as_str),
            signature: self.headers.get("webhook-signature").map(String::as_str),
        };
        let secrets = [WebhookSecret::parse(secret).expect("a whsec_ secret")];
        verify(&secrets, headers, &self.body, time::OffsetDateTime::now_utc().unix_timestamp()).is_ok()
    }
}

/// A client's webhook endpoint: answers the scripted statuses in turn, then
/// `then`, and keeps every request.
pub(crate) struct Endpoint {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    pub(crate) async fn start(script: Vec<u16>, then: u16, extra_headers: &'static str) -> Self {
        Self::answering_after(std::time::Duration::ZERO, script, then, extra_headers).await
    }

    /// Takes `delay` over each answer, as a slow client endpoint does.
    async fn answering_after(delay: std::time::Duration, script: Vec<u16>, then: u16, extra_headers: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}/hooks/videojobs?token=abc", listener.local_addr().expect("an address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let script = Arc::new(script);
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else { return };
                    let status = {
                        let mut log = log.lock().unwrap();
                        log.push(request);
                        script.get(log.len() - 1).copied().unwrap_or(then)
                    };
                    tokio::time::sleep(delay).await;
                    let head = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n{extra_headers}\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { url, received, task }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let (_, headers, body) = crate::helpers::read_http_request(stream).await?;
    Some(Received { headers, body })
}

/// The job's events from the notifier, once there are `count` of them (or after 30 s).
pub(crate) async fn notifier_events(app: &TestApp, id: &JobId, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reply = app.get(&format!("/videos/jobs/{id}/events")).await;
        let events: Vec<Value> =
            reply.body["events"].as_array().cloned().unwrap_or_default().into_iter().filter(|e| e["source"] == "notifier").collect();
        if events.len() >= count || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub(crate) async fn generate_with_webhook(app: &TestApp, url: &str) -> JobId {
    let body = json!({"prompt": "A kite over the dunes", "duration_seconds": 2, "resolution": "480p", "webhook_url": url});
    app.generate_with(&body).await
}

pub(crate) async fn secret_of(app: &TestApp) -> String {
    let reply = app.get("/videos/webhook-secret").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["secret"].as_str().expect("a secret").to_owned()
}

/// Cancels the job, then hands the `notify` message the cancel queued to the worker.
async fn cancel_and_deliver(app: &TestApp, id: &JobId) -> Value {
    assert_eq!(app.delete(&format!("/videos/jobs/{id}")).await.status, StatusCode::OK);
    let (message, _) = next_message(app, id, "notify").await;
    deliver(app, message.clone()).await;
    message
}

async fn deliver(app: &TestApp, message: Value) {
    let message: WorkMessage = serde_json::from_value(message).expect("a work message");
    worker::handle(&app.app.worker, message).await.expect("the worker handles it");
}

fn short_retries() -> videojobs_core::model::settings::Settings {
    let mut settings = settings();
    settings.notify_retry_schedule = RetrySchedule::new(vec![1, 1, 1, 1, 1]);
    settings
}

/// A user on a stack of their own (its queue read by the test), with one-second retries.
async fn isolated() -> TestApp {
    isolated_with(short_retries()).await
}

async fn isolated_with(settings: videojobs_core::model::settings::Settings) -> TestApp {
    let resources = crate::helpers::fresh_resources();
    let providers = videojobs_core::ports::Providers::default();
    TestApp::on(resources, 100, settings, providers, "http://127.0.0.1:9".into()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_three_times_then_succeeds_gets_one_signed_delivery_after_four_recorded_attempts() {
    let hook = Endpoint::start(vec![500, 503, 429], 204, "").await;
    let p = Pipeline::start(short_retries()).await;

    let id = generate_with_webhook(&p.app, &hook.url).await;
    p.wait_for(&id, 60, |s| s == JobStatus::Completed).await;
    let events = notifier_events(&p.app, &id, 4).await;

    let received = hook.received();
    assert_eq!(received.len(), 4, "three failures and one success");
    assert_eq!(events.len(), 4, "{events:?}");
    let codes: Vec<&Value> = events.iter().map(|e| &e["error_code"]).collect();
    assert_eq!(codes, [&json!("notify_http_500"), &json!("notify_http_503"), &json!("notify_http_429"), &Value::Null]);
    assert!(events[3]["message"].as_str().unwrap().contains("attempt 4 of 6: Delivered (HTTP 204)"), "{}", events[3]);
    assert!(events.iter().all(|e| e["status"] == "completed"));
    assert!(!events[0]["message"].as_str().unwrap().contains("token=abc"), "the query stays out of events");
    let ids: Vec<&String> = received.iter().map(|r| &r.headers["webhook-id"]).collect();
    assert!(ids.iter().all(|i| **i == format!("msg_{id}_completed")), "one webhook-id for every attempt: {ids:?}");
    let delivered = &received[3];
    assert!(delivered.verifies_with(&secret_of(&p.app).await), "the body verifies with the user's secret");
    assert!(!delivered.verifies_with(&WebhookSecret::generate_text()));
    let body = delivered.json();
    assert_eq!(body["type"], "job.completed");
    assert_eq!(body["job_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["status_label"], "Ready for review");
    assert!(body["output"]["video_url"].as_str().is_some_and(|u| u.starts_with("http")), "{body}");
    assert_eq!(delivered.headers["content-type"], "application/json");

    // The same message again, as SQS may deliver it after a success: nothing is posted.
    deliver(&p.app, json!({"kind": "notify", "job_id": id, "status": "completed", "attempt": 1})).await;
    deliver(&p.app, json!({"kind": "notify", "job_id": id, "status": "completed", "attempt": 4})).await;
    assert_eq!(hook.received().len(), 4);
    assert_eq!(notifier_events(&p.app, &id, 5).await.len(), 4);
}

#[tokio::test]
async fn webhook_urls_at_loopback_private_or_metadata_addresses_are_refused_in_a_deployment() {
    let mut deployed = settings();
    deployed.limits.allow_http_webhooks = false;
    deployed.limits.allow_loopback_webhooks = false;
    let app = TestApp::with_settings(100, deployed).await;

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
        let reply = app.post("/videos/generate", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "webhook_url", "{url}");
    }

    assert_eq!(app.job_count().await, 0, "nothing written");
    assert_eq!(app.credits().await, 100, "nothing debited");
}

#[tokio::test]
async fn a_webhook_url_that_now_resolves_to_a_private_address_is_refused_at_delivery_and_retried() {
    let app = isolated().await;
    let id = generate_with_webhook(&app, "http://localhost:9/hook").await;
    let mut job = app.job(&id).await;
    // As if the host had since moved to a private address.
    job.webhook_url = Some("https://10.0.0.1/hook".into());
    app.put_job(&job).await;

    let first = cancel_and_deliver(&app, &id).await;

    assert_eq!(first["attempt"], 1);
    let events = notifier_events(&app, &id, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error_code"], "notify_refused_address");
    assert!(events[0]["message"].as_str().unwrap().contains("private"), "{}", events[0]);
    let (second, _) = next_message(&app, &id, "notify").await;
    assert_eq!(second["attempt"], 2, "the refusal counts as a failed attempt");
}

#[tokio::test]
async fn an_endpoint_that_answers_a_redirect_is_not_followed() {
    let elsewhere = Endpoint::start(vec![], 204, "").await;
    let location: &'static str = Box::leak(format!("location: {}\r\n", elsewhere.url).into_boxed_str());
    let hook = Endpoint::start(vec![], 302, location).await;
    let app = isolated().await;
    let id = generate_with_webhook(&app, &hook.url).await;

    cancel_and_deliver(&app, &id).await;

    assert_eq!(hook.received().len(), 1);
    assert_eq!(elsewhere.received().len(), 0, "the redirect was not followed");
    let events = notifier_events(&app, &id, 1).await;
    assert_eq!(events[0]["error_code"], "notify_http_302");
    assert_eq!(events[0]["status"], "canceled");
}

#[tokio::test]
async fn after_a_rotation_deliveries_verify_with_the_new_secret_and_for_a_day_with_the_old_one() {
    let hook = Endpoint::start(vec![], 200, "").await;
    let app = isolated().await;
    let old = secret_of(&app).await;

    let rotated = app.post("/videos/webhook-secret/rotate", "").await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    assert_eq!(secret_of(&app).await, new, "GET answers the new secret");
    let until = timestamp::parse(rotated.body["previous_secret_valid_until"].as_str().unwrap()).unwrap();
    assert!(until > timestamp::now() + time::Duration::hours(23));

    let id = generate_with_webhook(&app, &hook.url).await;
    cancel_and_deliver(&app, &id).await;

    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].verifies_with(&new));
    assert!(received[0].verifies_with(&old), "the old secret still signs during the grace period");
    assert_eq!(received[0].headers["webhook-signature"].split(' ').count(), 2);
    assert_eq!(received[0].json()["type"], "job.canceled");
}

#[tokio::test]
async fn concurrent_first_requests_for_the_webhook_secret_all_get_the_same_secret() {
    let app = TestApp::new(0).await;

    let replies = all_at_once(12, |_| app.get("/videos/webhook-secret")).await;

    let secrets: Vec<&str> = replies.iter().map(|r| r.body["secret"].as_str().unwrap_or("")).collect();
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert!(secrets[0].starts_with("whsec_"));
    assert!(secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
    assert_eq!(secret_of(&app).await, secrets[0]);
}

#[tokio::test]
async fn each_user_has_their_own_secret_and_it_takes_a_key_to_read_it() {
    let app = TestApp::new(0).await;
    let (_, other_key) = app.another_user(0, videojobs_core::model::ids::Role::User).await;

    let mine = secret_of(&app).await;
    let theirs = app.call(lambda_http::http::Method::GET, "/videos/webhook-secret", Some(&other_key), None).await;
    let anonymous = app.call(lambda_http::http::Method::POST, "/videos/webhook-secret/rotate", None, None).await;

    assert_eq!(theirs.status, StatusCode::OK);
    assert_ne!(theirs.body["secret"], mine.as_str());
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(secret_of(&app).await, mine, "a refused rotation changes nothing");
}

#[tokio::test]
async fn after_the_last_attempt_fails_the_notifier_gives_up_and_says_so() {
    let hook = Endpoint::start(vec![], 500, "").await;
    let mut two_attempts = settings();
    two_attempts.notify_retry_schedule = RetrySchedule::new(vec![1]);
    let app = isolated_with(two_attempts).await;
    let id = generate_with_webhook(&app, &hook.url).await;

    cancel_and_deliver(&app, &id).await;
    let (second, _) = next_message(&app, &id, "notify").await;
    assert_eq!(second["attempt"], 2);
    deliver(&app, second).await;

    assert_eq!(hook.received().len(), 2);
    let events = notifier_events(&app, &id, 3).await;
    let codes: Vec<&str> = events.iter().map(|e| e["error_code"].as_str().unwrap_or("")).collect();
    assert_eq!(codes, ["notify_http_500", "notify_http_500", "notify_gave_up"]);
    assert!(events[2]["message"].as_str().unwrap().contains("after 2 attempts"), "{}", events[2]);
}

#[tokio::test]
async fn a_notification_not_yet_due_waits_again_on_the_queue_and_posts_nothing() {
    let hook = Endpoint::start(vec![], 204, "").await;
    let app = isolated().await;
    let id = generate_with_webhook(&app, &hook.url).await;
    let not_before = timestamp::format(timestamp::now() + time::Duration::seconds(2));

    deliver(&app, json!({"kind": "notify", "job_id": id, "status": "canceled", "attempt": 3, "not_before": not_before})).await;

    assert!(hook.received().is_empty());
    let (hop, _) = next_message(&app, &id, "notify").await;
    assert_eq!(hop["attempt"], 3, "the same attempt, later");
    assert_eq!(hop["not_before"], not_before.as_str());
}

#[tokio::test]
async fn a_rotation_before_any_secret_exists_just_makes_the_first_one() {
    let app = TestApp::new(0).await;

    let rotated = app.post("/videos/webhook-secret/rotate", "").await;

    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert!(rotated.body.get("previous_secret_valid_until").is_none(), "{}", rotated.body);
    assert_eq!(secret_of(&app).await, rotated.body["secret"].as_str().unwrap());
}

#[tokio::test]
async fn copies_of_one_notify_message_handled_at_once_post_once() {
    let hook = Endpoint::answering_after(std::time::Duration::from_millis(300), vec![], 204, "").await;
    let app = isolated().await;
    let id = generate_with_webhook(&app, &hook.url).await;
    assert_eq!(app.delete(&format!("/videos/jobs/{id}")).await.status, StatusCode::OK);
    let (message, _) = next_message(&app, &id, "notify").await;
    let message: WorkMessage = serde_json::from_value(message).unwrap();

    let outcomes = all_at_once(6, |_| worker::handle(&app.app.worker, message.clone())).await;

    assert_eq!(hook.received().len(), 1, "one POST for six copies");
    assert!(outcomes.iter().any(|o| o.is_ok()));
    assert!(outcomes.iter().filter_map(|o| o.as_ref().err()).all(|e| e.is_retryable()), "a copy that lost comes back later");
    let events = notifier_events(&app, &id, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["error_code"], Value::Null);
    // A copy coming back later finds the delivery and posts nothing.
    worker::handle(&app.app.worker, message).await.expect("handled");
    assert_eq!(hook.received().len(), 1);
}
