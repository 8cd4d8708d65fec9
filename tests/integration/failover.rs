//! Provider choice and failover through the whole pipeline: real moto, the
//! real state machine and worker, a Replicate or fal adapter pointed at a
//! local server replaying their documented errors, and the local provider as
//! the fallback.

use crate::harness::{all_at_once, settings, work_message, TestApp};
use serde_json::{json, Value};
use videojobs_core::model::failover::Failover;
use videojobs_core::model::ids::JobId;
use videojobs_core::model::job::{timestamp, EventSource, JobEvent};
use videojobs_core::model::settings::Settings;
use videojobs_core::ports::ProviderSwitch;
use videojobs_core::JobStatus;
use videojobs_providers::replay::{ReplayServer, Reply};

const WAIT: u64 = 90;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(crate) const REPLICATE_CREATE: &str = "/v1/models/kwaivgi/kling-v1.6-standard/predictions";
const FAL_SUBMIT: &str = "/fal-ai/kling-video/v1.6/standard/text-to-video";

pub(crate) fn with_fallback(after_attempts: u32) -> Settings {
    let mut s = settings();
    s.enabled_providers = vec!["local".parse().unwrap(), "replicate".parse().unwrap(), "fal".parse().unwrap()];
    s.failover = Some(Failover { fallback: "local".parse().unwrap(), after_attempts });
    s
}

pub(crate) fn provider_env(server: &ReplayServer) -> Vec<(&'static str, String)> {
    vec![
        ("REPLICATE_API_URL", server.base_url.clone()),
        ("REPLICATE_API_TOKEN", "r8_test".into()),
        ("REPLICATE_WEBHOOK_SECRET", SECRET.into()),
        ("FAL_QUEUE_URL", server.base_url.clone()),
        ("FAL_KEY", "key-id:key-secret".into()),
        ("FAL_JWKS_URL", format!("{}/.well-known/jwks.json", server.base_url)),
        ("FAL_USER_ID", "user-1".into()),
    ]
}

async fn generate_on(p: &TestApp, provider: &str) -> JobId {
    let body = json!({"prompt": "A lighthouse in a storm", "duration_seconds": 1, "resolution": "480p", "provider": provider});
    p.new_job_with(&body).await
}

fn moves(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["message"].as_str().unwrap_or("").starts_with("Moved to the fallback provider")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_keeps_failing_to_accept_hands_the_job_to_the_fallback_which_completes_it() {
    let replicate = ReplayServer::start().await;
    replicate.on(
        "POST",
        REPLICATE_CREATE,
        vec![Reply::json(503, json!({"title": "Service Unavailable", "detail": "Try again later", "status": 503}))],
    );
    let p = TestApp::builder().settings(with_fallback(2)).provider_env(provider_env(&replicate)).with_local_provider().build().await;

    let id = generate_on(&p, "replicate").await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.provider.as_str(), "local", "the switch is recorded on the job");
    let sent = replicate.requests_to("POST", REPLICATE_CREATE);
    assert_eq!(sent.len(), 2, "two refusals at Replicate, then the fallback");
    assert_eq!(sent[0].headers["authorization"], "Bearer r8_test");
    assert_eq!(sent[0].json()["webhook"], format!("{}/webhooks/replicate", p.base_url()));
    let events = p.events(&id).await;
    let retries = events.iter().filter(|e| e["status"] == "retrying").count();
    assert_eq!(retries, 1, "{events:#?}");
    let moved = moves(&events);
    assert_eq!(moved.len(), 1, "{events:#?}");
    assert_eq!(moved[0]["message"], "Moved to the fallback provider 'local': 'replicate' failed to accept the job 2 times");
    assert_eq!(moved[0]["status"], "submitted");
    let stats = p.provider_stats().await;
    assert_eq!(stats["predictions"].as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(p.credits().await, 999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_the_account_moves_the_job_at_once() {
    let replicate = ReplayServer::start().await;
    replicate.on(
        "POST",
        REPLICATE_CREATE,
        vec![Reply::json(
            402,
            json!({"title": "Insufficient credit", "detail": "You have insufficient credit to run this model.", "status": 402}),
        )],
    );
    let p = TestApp::builder().settings(with_fallback(2)).provider_env(provider_env(&replicate)).with_local_provider().build().await;

    let id = generate_on(&p, "replicate").await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!(job.provider.as_str(), "local");
    assert_eq!(replicate.requests_to("POST", REPLICATE_CREATE).len(), 1);
    let events = p.events(&id).await;
    assert_eq!(events.iter().filter(|e| e["status"] == "retrying").count(), 0, "{events:#?}");
    assert_eq!(moves(&events)[0]["message"], "Moved to the fallback provider 'local': 'replicate' refused the job (insufficient_credit)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_policy_refusal_fails_the_job_without_trying_the_fallback() {
    let fal = ReplayServer::start().await;
    fal.on("POST", FAL_SUBMIT, vec![Reply::json(422, json!({"detail": [{"loc": ["body", "prompt"], "msg": "The prompt was flagged by the content checker", "type": "content_policy_violation"}]}))]);
    let p = TestApp::builder().settings(with_fallback(2)).provider_env(provider_env(&fal)).with_local_provider().build().await;

    let id = generate_on(&p, "fal").await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.provider.as_str(), "fal");
    assert_eq!(job.error.as_ref().unwrap().code, "content_policy");
    let sent = fal.requests_to("POST", FAL_SUBMIT);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].headers["authorization"], "Key key-id:key-secret");
    assert!(moves(&p.events(&id).await).is_empty());
    assert_eq!(p.provider_stats().await["predictions"].as_array().unwrap().len(), 0);
    assert_eq!(p.credits().await, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fallback_a_refused_job_fails_on_the_provider_it_asked_for() {
    let replicate = ReplayServer::start().await;
    replicate.on(
        "POST",
        REPLICATE_CREATE,
        vec![Reply::json(
            401,
            json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}),
        )],
    );
    let mut s = with_fallback(2);
    s.failover = None;
    let p = TestApp::builder().settings(s).provider_env(provider_env(&replicate)).with_local_provider().build().await;

    let id = generate_on(&p, "replicate").await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!((job.provider.as_str(), job.error.unwrap().code.as_str()), ("replicate", "unauthorized"));
    assert_eq!(p.credits().await, 1_000);
}

/// A job written as the worker leaves it in `submitted`, on `provider`.
async fn submitted_job(app: &TestApp, provider: &str, request_id: Option<&str>) -> JobId {
    let id = app.new_job(1).await;
    let mut job = app.job(&id).await;
    job.status = JobStatus::Submitted;
    job.provider = provider.parse().unwrap();
    job.provider_request_id = request_id.map(str::to_owned);
    app.put_job(&job).await;
    id
}

fn switch_event(id: &JobId) -> JobEvent {
    JobEvent {
        job_id: id.clone(),
        at: timestamp::now(),
        source: EventSource::Worker,
        previous_status: Some(JobStatus::Submitted),
        status: JobStatus::Submitted,
        message: "Moved to the fallback provider 'local': test".into(),
        error_code: None,
        actor: None,
        delivery: None,
    }
}

#[tokio::test]
async fn concurrent_switches_of_one_job_move_it_once_with_one_event() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = submitted_job(&app, "replicate", None).await;
    let (from, to) = ("replicate".parse().unwrap(), "local".parse().unwrap());

    let event = switch_event(&id);
    let outcomes = all_at_once(5, |_| app.stack().store.switch_provider(&id, &from, &to, &event)).await;

    let switched = outcomes.into_iter().map(|o| o.expect("the store answers")).filter(|s| *s).count();
    assert_eq!(switched, 1);
    assert_eq!(app.job(&id).await.provider.as_str(), "local");
    let events = app.events(&id).await;
    assert_eq!(moves(&events).len(), 1, "{events:#?}");
}

#[tokio::test]
async fn a_job_a_provider_accepted_is_never_switched() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let id = submitted_job(&app, "replicate", Some("p_accepted")).await;
    let (from, to) = ("replicate".parse().unwrap(), "local".parse().unwrap());

    let switched = app.stack().store.switch_provider(&id, &from, &to, &switch_event(&id)).await.unwrap();

    assert!(!switched);
    let job = app.job(&id).await;
    assert_eq!((job.provider.as_str(), job.provider_request_id.as_deref()), ("replicate", Some("p_accepted")));
    let events = app.events(&id).await;
    assert!(moves(&events).is_empty());
}

#[tokio::test]
async fn a_redelivered_submit_message_after_failover_neither_moves_nor_submits_the_job_again() {
    let server = ReplayServer::start().await;
    server.on(
        "POST",
        REPLICATE_CREATE,
        vec![Reply::json(
            401,
            json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}),
        )],
    );
    server.on("POST", FAL_SUBMIT, vec![Reply::json(200, json!({"request_id": "fal-req-1", "gateway_request_id": "fal-req-1"}))]);
    let mut s = with_fallback(2);
    s.failover = Some(Failover { fallback: "fal".parse().unwrap(), after_attempts: 2 });
    let app = TestApp::builder()
        .settings(s)
        .provider_env(provider_env(&server))
        .callback_base_url("https://hooks.test")
        .own_stack()
        .build()
        .await;
    let reply = app.generate(json!({"prompt": "p", "duration_seconds": 1, "provider": "replicate"})).await;
    let id = reply.job_id();
    let (submit, _) = crate::harness::next_message(&app, &id, "submit").await;
    let message = work_message(submit);

    app.handle_work(message.clone()).await;
    app.handle_work(message).await;

    let job = app.job(&id).await;
    assert_eq!(job.status, JobStatus::Submitted);
    assert_eq!((job.provider.as_str(), job.provider_request_id.as_deref()), ("fal", Some("fal-req-1")));
    assert_eq!(server.requests_to("POST", REPLICATE_CREATE).len(), 1);
    let submitted = server.requests_to("POST", FAL_SUBMIT);
    assert_eq!(submitted.len(), 1);
    assert!(submitted[0].target.contains("fal_webhook=https%3A%2F%2Fhooks.test%2Fwebhooks%2Ffal"), "{}", submitted[0].target);
    let events = app.events(&id).await;
    assert_eq!(moves(&events).len(), 1, "{events:#?}");
}
