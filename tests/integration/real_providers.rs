//! Each real adapter's contract through the whole pipeline: the job is
//! submitted to a local server replaying Replicate's or fal's documented
//! answers, the provider's signed callbacks go through the webhook function,
//! the worker asks the provider for the outcome and copies the video it
//! serves into S3. Only configuration differs from the local provider.

use crate::harness::{download, ffprobe, settings, TestApp};
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use videojobs_core::model::ids::JobId;
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::JobStatus;
use videojobs_providers::replay::{ReplayServer, Reply};

const WAIT: u64 = 60;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A one-second MP4, as a provider would serve it.
pub(crate) fn small_mp4() -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("provider-{}.mp4", ulid::Ulid::new()));
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=s=320x240:d=1:r=12"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let bytes = std::fs::read(&path).expect("the MP4");
    let _ = std::fs::remove_file(&path);
    bytes
}

async fn start(env: Vec<(&'static str, String)>) -> TestApp {
    let mut s = settings();
    s.enabled_providers = vec!["local".parse().unwrap(), "replicate".parse().unwrap(), "fal".parse().unwrap()];
    TestApp::builder().settings(s).provider_env(env).with_local_provider().build().await
}

async fn generate_on(p: &TestApp, provider: &str) -> JobId {
    let body = json!({"prompt": "A paper boat on a rainy street", "duration_seconds": 5, "aspect_ratio": "1:1", "provider": provider});
    p.new_job_with(&body).await
}

/// Posts a provider's callback to the pipeline's webhook over HTTP, as the provider does.
async fn deliver(p: &TestApp, provider: &str, headers: &[(String, String)], body: &str) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = p.http().anonymous().provider_callback(provider, &headers, body).await;
    (reply.status.as_u16(), reply.body)
}

fn standard_webhook(id: &str, body: &str) -> Vec<(String, String)> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = WebhookSecret::parse(SECRET).unwrap().sign(id, now, body.as_bytes());
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), now.to_string()),
        ("webhook-signature".into(), signature),
        ("content-type".into(), "application/json".into()),
    ]
}

fn prediction(id: &str, status: &str, output: Value) -> Value {
    json!({"id": id, "model": "kwaivgi/kling-v1.6-standard", "version": "hidden", "status": status, "input": {},
           "output": output, "error": null, "logs": "", "urls": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicate_job_completes_from_its_signed_callbacks_and_its_video_is_copied_at_once() {
    let replicate = ReplayServer::start().await;
    let video_url = format!("{}/xezq/output.mp4", replicate.base_url);
    replicate.on(
        "POST",
        "/v1/models/kwaivgi/kling-v1.6-standard/predictions",
        vec![Reply::json(201, prediction("rp_1", "starting", Value::Null))],
    );
    replicate.on("GET", "/v1/predictions/rp_1", vec![Reply::json(200, prediction("rp_1", "succeeded", json!(video_url)))]);
    replicate.on("GET", "/xezq/output.mp4", vec![Reply::bytes("video/mp4", small_mp4())]);
    let p = start(vec![
        ("REPLICATE_API_URL", replicate.base_url.clone()),
        ("REPLICATE_API_TOKEN", "r8_test".into()),
        ("REPLICATE_WEBHOOK_SECRET", SECRET.into()),
    ])
    .await;

    let id = generate_on(&p, "replicate").await;
    p.wait_for_provider_request(&id, WAIT).await;
    let processing = prediction("rp_1", "processing", Value::Null).to_string();
    let (progress, _) = deliver(&p, "replicate", &standard_webhook("msg_start", &processing), &processing).await;
    let forged_body = prediction("rp_1", "succeeded", json!("https://evil.example/v.mp4")).to_string();
    let mut forged = standard_webhook("msg_forged", &forged_body);
    forged[2].1 = WebhookSecret::parse(&WebhookSecret::generate_text()).unwrap().sign("msg_forged", 1, forged_body.as_bytes());
    let (refused, _) = deliver(&p, "replicate", &forged, &forged_body).await;
    let done = prediction("rp_1", "succeeded", json!(video_url)).to_string();
    let signed = standard_webhook("msg_done", &done);
    let (completed, _) = deliver(&p, "replicate", &signed, &done).await;
    let (_, again) = deliver(&p, "replicate", &signed, &done).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    assert_eq!((progress, refused, completed), (200, 401, 200));
    assert_eq!(again["duplicate"], true);
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!((job.provider.as_str(), job.provider_request_id.as_deref()), ("replicate", Some("rp_1")));
    let create = &replicate.requests_to("POST", "/v1/models/kwaivgi/kling-v1.6-standard/predictions")[0].json();
    assert_eq!(create["input"], json!({"prompt": "A paper boat on a rainy street", "duration": 5, "aspect_ratio": "1:1"}));
    assert_eq!(create["webhook"], format!("{}/webhooks/replicate", p.base_url()));
    assert_eq!(create["webhook_events_filter"], json!(["start", "completed"]));
    // Once, or twice when the local stack's SQS delivers the finalize message
    // twice (at least once, as on AWS): both copies go to the same fixed key.
    let copies = replicate.requests_to("GET", "/xezq/output.mp4").len();
    assert!((1..=2).contains(&copies), "copied {copies} times");
    let result = p.job_result(&id).await;
    let (duration, width, height) = ffprobe(&download(result.body["video"]["url"].as_str().unwrap()).await);
    assert!((duration - 1.0).abs() < 0.2, "{duration}");
    assert_eq!((width, height), (320, 240));
}

fn fal_callback(key: &SigningKey, request_id: &str, body: &str) -> Vec<(String, String)> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let message = videojobs_providers::fal::signed_message(request_id, "user-1", &now, body.as_bytes());
    vec![
        ("x-fal-webhook-request-id".into(), request_id.into()),
        ("x-fal-webhook-user-id".into(), "user-1".into()),
        ("x-fal-webhook-timestamp".into(), now),
        ("x-fal-webhook-signature".into(), hex::encode(key.sign(&message).to_bytes())),
        ("content-type".into(), "application/json".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fal_job_completes_from_its_ed25519_signed_callback_and_the_queue_result() {
    let fal = ReplayServer::start().await;
    let key = SigningKey::from_bytes(&[42; 32]);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
    let request = "764cabcf-b745-4b3e-ae38-1200304cf45b";
    let video_url = format!("{}/files/rabbit/out.mp4", fal.base_url);
    fal.on("GET", "/.well-known/jwks.json", vec![Reply::json(200, json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}))]);
    fal.on(
        "POST",
        "/fal-ai/kling-video/v1.6/standard/text-to-video",
        vec![
            Reply::json(429, json!({"detail": "Too many requests"})).header("retry-after", "1"),
            Reply::json(200, json!({"request_id": request, "gateway_request_id": request})),
        ],
    );
    fal.on(
        "GET",
        &format!("/fal-ai/kling-video/requests/{request}/status"),
        vec![Reply::json(200, json!({"status": "COMPLETED", "logs": null}))],
    );
    fal.on(
        "GET",
        &format!("/fal-ai/kling-video/requests/{request}"),
        vec![Reply::json(200, json!({"video": {"url": video_url, "content_type": "video/mp4"}}))],
    );
    fal.on("GET", "/files/rabbit/out.mp4", vec![Reply::bytes("video/mp4", small_mp4())]);
    let p = start(vec![
        ("FAL_QUEUE_URL", fal.base_url.clone()),
        ("FAL_KEY", "key-id:key-secret".into()),
        ("FAL_JWKS_URL", format!("{}/.well-known/jwks.json", fal.base_url)),
        ("FAL_USER_ID", "user-1".into()),
    ])
    .await;

    let id = generate_on(&p, "fal").await;
    p.wait_for_provider_request(&id, WAIT).await;
    let body = json!({"request_id": request, "gateway_request_id": request, "status": "OK",
                      "payload": {"video": {"url": video_url, "content_type": "video/mp4"}}})
    .to_string();
    let forger = SigningKey::from_bytes(&[7; 32]);
    let (refused, _) = deliver(&p, "fal", &fal_callback(&forger, request, &body), &body).await;
    let (completed, _) = deliver(&p, "fal", &fal_callback(&key, request, &body), &body).await;
    let job = p.wait_for(&id, WAIT, |s| !s.is_in_flight()).await;

    assert_eq!((refused, completed), (401, 200));
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    assert_eq!((job.provider.as_str(), job.provider_request_id.as_deref()), ("fal", Some(request)));
    let submits = fal.requests_to("POST", "/fal-ai/kling-video/v1.6/standard/text-to-video");
    assert_eq!(submits.len(), 2, "a 429, then accepted");
    assert!(submits[1].target.contains(&format!(
        "fal_webhook={}",
        url::form_urlencoded::byte_serialize(format!("{}/webhooks/fal", p.base_url()).as_bytes()).collect::<String>()
    )));
    assert_eq!(submits[1].json(), json!({"prompt": "A paper boat on a rainy street", "duration": "5", "aspect_ratio": "1:1"}));
    assert_eq!(fal.requests_to("GET", "/.well-known/jwks.json").len(), 1, "the keys are fetched once");
    let result = p.job_result(&id).await;
    let (duration, _, _) = ffprobe(&download(result.body["video"]["url"].as_str().unwrap()).await);
    assert!((duration - 1.0).abs() < 0.2, "{duration}");
}
