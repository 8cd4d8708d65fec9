//! Replicate (<https://replicate.com/docs/reference/http>), followed as published:
//!
//! - **create**: `POST /v1/models/{owner}/{name}/predictions` for a model named
//!   `owner/name` (its latest version), or `POST /v1/predictions` with
//!   `"version"` for `owner/name:version`; the body has `input`, `webhook` and
//!   `webhook_events_filter: ["start", "completed"]` (the start and the end are
//!   always sent, logs and outputs are not needed); `Authorization: Bearer <token>`.
//! - **states**: `starting` → queued, `processing` → processing, `succeeded`
//!   (with `output`, a URL or a list of URLs), `failed` (with `error`, a
//!   string), `canceled`.
//! - **get** `GET /v1/predictions/{id}`, **cancel** `POST /v1/predictions/{id}/cancel`.
//! - **errors** are problem details (`{"title", "detail", "status"}`): `401`
//!   unauthenticated, `402` insufficient credit, `404` no such model (on create)
//!   or prediction, `422` input validation failed, `429` throttled (with
//!   `retry-after` when sent; <https://replicate.com/docs/topics/predictions/rate-limits>),
//!   `5xx`.
//! - **webhooks** (<https://replicate.com/docs/topics/webhooks/verify-webhook>):
//!   the body is the prediction; signed the Standard Webhooks way
//!   (`webhook-id`, `webhook-timestamp`, `webhook-signature` over
//!   `{id}.{timestamp}.{body}`, several signatures per header) with the
//!   account's `whsec_` secret, which `GET /v1/webhooks/default/secret` returns
//!   as `{"key": "whsec_…"}`. The `webhook-id` is the same on a retried
//!   delivery: it is the event id our receipts are keyed by.
//!
//! Replicate deletes API outputs after about an hour: the completion callback
//! hands the copy to the worker at once (a `finalize` message), and the
//! deadline poll is the fallback. Replicate has no idempotency key: a worker
//! that dies between Replicate's answer and our write leaves one prediction
//! that nothing collects, and the job is submitted again.

use crate::{kling_prompt, kling_seconds, network_error, non_empty, retry_after, HttpClient};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use videojobs_core::model::job::JobParams;
use videojobs_core::model::provider::*;
use videojobs_core::model::request::ProviderName;
use videojobs_core::model::settings::ConfigError;
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::ports::Provider;

pub const DEFAULT_API_URL: &str = "https://api.replicate.com";
/// Kling 1.6 (standard) takes a prompt and, for image to video, a `start_image`.
pub const DEFAULT_MODEL: &str = "kwaivgi/kling-v1.6-standard";

/// Replicate's settings: `REPLICATE_WEBHOOK_SECRET` (`whsec_…`, several during a
/// rotation) enables it; `REPLICATE_API_TOKEN` (only where jobs are submitted),
/// `REPLICATE_TEXT_MODEL`, `REPLICATE_IMAGE_MODEL` and `REPLICATE_API_URL` are optional.
#[derive(Debug, Clone)]
pub struct Config {
    pub api_url: String,
    pub api_token: Option<String>,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub text_model: String,
    pub image_model: String,
}

impl Config {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(secrets) = non_empty(get, "REPLICATE_WEBHOOK_SECRET") else {
            if non_empty(get, "REPLICATE_API_TOKEN").is_some() {
                return Err(ConfigError { name: "REPLICATE_WEBHOOK_SECRET", problem: "is not set (REPLICATE_API_TOKEN is)".into() });
            }
            return Ok(None);
        };
        let webhook_secrets =
            WebhookSecret::parse_list(&secrets).map_err(|e| ConfigError { name: "REPLICATE_WEBHOOK_SECRET", problem: e.to_string() })?;
        let model = |name: &'static str| -> Result<String, ConfigError> {
            let model = non_empty(get, name).unwrap_or_else(|| DEFAULT_MODEL.to_owned());
            if ModelRef::parse(&model).is_none() {
                return Err(ConfigError { name, problem: "is not owner/name or owner/name:version".into() });
            }
            Ok(model)
        };
        Ok(Some(Self {
            api_url: non_empty(get, "REPLICATE_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned()).trim_end_matches('/').to_owned(),
            api_token: non_empty(get, "REPLICATE_API_TOKEN"),
            webhook_secrets,
            text_model: model("REPLICATE_TEXT_MODEL")?,
            image_model: model("REPLICATE_IMAGE_MODEL")?,
        }))
    }
}

/// `owner/name` or `owner/name:version`.
#[derive(Debug, PartialEq, Eq)]
struct ModelRef<'a> {
    owner: &'a str,
    name: &'a str,
    version: Option<&'a str>,
}

impl<'a> ModelRef<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (model, version) = match text.split_once(':') {
            Some((model, version)) if !version.is_empty() => (model, Some(version)),
            Some(_) => return None,
            None => (text, None),
        };
        let (owner, name) = model.split_once('/')?;
        let fine = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        (fine(owner) && fine(name) && version.is_none_or(fine)).then_some(Self { owner, name, version })
    }
}

pub struct ReplicateProvider {
    name: ProviderName,
    config: Config,
    http: HttpClient,
}

impl ReplicateProvider {
    pub fn new(config: Config, http: HttpClient) -> Self {
        Self { name: "replicate".parse().expect("a valid provider name"), config, http }
    }

    fn call(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder, ProviderError> {
        let token = self.config.api_token.as_deref().ok_or_else(|| ProviderError::Refused {
            code: "unauthorized".into(),
            message: "no Replicate API token is configured here".into(),
        })?;
        Ok(self.http.get().request(method, format!("{}{path}", self.config.api_url)).bearer_auth(token))
    }
}

/// The model's input from the job's parameters: the one place that knows
/// Kling's input names. Kling makes 5 or 10 seconds (the asked length is
/// rounded up to one of them) at 16:9, 9:16 or 1:1; it wants a prompt, so an
/// image job without one asks for a gentle camera move. Frame rate and zoom
/// speed are the local provider's; Replicate's models choose their own.
pub fn input(request: &SubmitRequest) -> Value {
    match &request.params {
        JobParams::TextToVideo { duration_seconds, aspect_ratio, .. } => json!({
            "prompt": kling_prompt(request),
            "duration": kling_seconds(*duration_seconds),
            "aspect_ratio": aspect_ratio,
        }),
        JobParams::ImageToVideo { length_seconds, .. } => json!({
            "prompt": kling_prompt(request),
            "start_image": request.image_url,
            "duration": kling_seconds(*length_seconds),
        }),
    }
}

#[derive(Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<Value>,
}

/// The video's URL: `output` is a URL, or a list whose first item is one.
fn video_url(output: Option<&Value>) -> Option<String> {
    match output? {
        Value::String(url) => Some(url.clone()),
        Value::Array(items) => items.iter().find_map(|item| item.as_str().map(str::to_owned)),
        _ => None,
    }
}

/// Replicate's error text is free-form; its documented code E005 (and its
/// safety checker's wording) mean the content was refused.
fn failure_code(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if message.contains("E005") || lower.contains("nsfw") || lower.contains("flagged as sensitive") {
        "content_policy"
    } else {
        "generation_failed"
    }
}

fn normalise(p: Prediction) -> Result<ProviderStatus, String> {
    Ok(match p.status.as_str() {
        "starting" => ProviderStatus::Queued { position: None },
        "processing" => ProviderStatus::Processing { percent: None },
        "succeeded" => {
            let video_url = video_url(p.output.as_ref()).ok_or("a succeeded prediction without a video URL")?;
            ProviderStatus::Succeeded(ProviderOutput { video_url, thumbnail_url: None })
        }
        "failed" => {
            let message = match p.error {
                Some(Value::String(text)) => text,
                Some(other) if !other.is_null() => other.to_string(),
                _ => "the prediction failed".into(),
            };
            ProviderStatus::Failed { code: failure_code(&message).into(), message }
        }
        "canceled" => ProviderStatus::Canceled,
        other => return Err(format!("unknown prediction status {other}")),
    })
}

/// What a call's error status means. `on_create` tells a missing model (the
/// deployment's configuration: refused) from a missing prediction.
async fn failure(response: reqwest::Response, on_create: bool) -> ProviderError {
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let problem: Problem = response.json().await.unwrap_or_default();
    let message = match (problem.title, problem.detail) {
        (_, Some(Value::String(detail))) => detail,
        (Some(title), _) => title,
        (None, Some(detail)) => detail.to_string(),
        (None, None) => format!("HTTP {status}"),
    };
    let refused = |code: &str| ProviderError::Refused { code: code.into(), message: message.clone() };
    match status {
        408 | 409 | 425 | 429 | 500..=599 => ProviderError::Transient { message: format!("HTTP {status}: {message}"), retry_after: wait },
        401 | 403 => refused("unauthorized"),
        402 => refused("insufficient_credit"),
        404 if on_create => refused("model_not_found"),
        404 => ProviderError::NotFound(message),
        422 => refused("invalid_input"),
        _ => refused("refused"),
    }
}

async fn send(call: reqwest::RequestBuilder, on_create: bool) -> Result<Prediction, ProviderError> {
    let response = call.send().await.map_err(network_error)?;
    if !response.status().is_success() {
        return Err(failure(response, on_create).await);
    }
    response.json().await.map_err(network_error)
}

#[async_trait]
impl Provider for ReplicateProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError> {
        let model = match request.params {
            JobParams::TextToVideo { .. } => &self.config.text_model,
            JobParams::ImageToVideo { .. } => &self.config.image_model,
        };
        let model = ModelRef::parse(model).ok_or_else(|| ProviderError::Refused {
            code: "model_not_found".into(),
            message: format!("'{model}' is not a Replicate model reference"),
        })?;
        let mut body = json!({
            "input": input(request),
            "webhook": request.callback_url,
            "webhook_events_filter": ["start", "completed"],
        });
        let path = match model.version {
            Some(version) => {
                body["version"] = json!(version);
                "/v1/predictions".to_owned()
            }
            None => format!("/v1/models/{}/{}/predictions", model.owner, model.name),
        };
        let prediction = send(self.call(reqwest::Method::POST, &path)?.json(&body), true).await?;
        Ok(prediction.id)
    }

    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        let prediction = send(self.call(reqwest::Method::GET, &format!("/v1/predictions/{request_id}"))?, false).await?;
        normalise(prediction).map_err(|message| ProviderError::Transient { message, retry_after: None })
    }

    async fn cancel(&self, request_id: &str) -> Result<(), ProviderError> {
        send(self.call(reqwest::Method::POST, &format!("/v1/predictions/{request_id}/cancel"))?, false).await?;
        Ok(())
    }

    async fn verify_callback(&self, callback: &Callback<'_>) -> Result<ProviderEvent, CallbackError> {
        let event_id = crate::verify_standard_webhook(&self.config.webhook_secrets, callback)?;
        let prediction: Prediction = serde_json::from_slice(callback.body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let request_id = prediction.id.clone();
        let status = normalise(prediction).map_err(CallbackError::Malformed)?;
        Ok(ProviderEvent { event_id, request_id, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{ReplayServer, Reply};
    use std::collections::HashMap;
    use std::time::Duration;
    use videojobs_core::model::request::{AspectRatio, ImageSource, Resolution};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn config(api_url: &str) -> Config {
        let map = HashMap::from([
            ("REPLICATE_API_URL", api_url.to_owned()),
            ("REPLICATE_API_TOKEN", "r8_test".to_owned()),
            ("REPLICATE_WEBHOOK_SECRET", SECRET.to_owned()),
            ("REPLICATE_IMAGE_MODEL", "acme/animate:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa".to_owned()),
        ]);
        Config::from_lookup(&|name: &str| map.get(name).cloned()).unwrap().unwrap()
    }

    fn text_request() -> SubmitRequest {
        SubmitRequest {
            idempotency_key: "job_1".into(),
            params: JobParams::TextToVideo { duration_seconds: 8, aspect_ratio: AspectRatio::Portrait, resolution: Resolution::Hd },
            prompt: Some("A paper boat".into()),
            image_url: None,
            callback_url: "https://hooks.example/webhooks/replicate".into(),
            faults: None,
            seed: None,
        }
    }

    fn image_request() -> SubmitRequest {
        SubmitRequest {
            params: JobParams::ImageToVideo {
                image: ImageSource::Url("https://img.example/a.png".into()),
                length_seconds: 3,
                frame_rate: 24,
                zoom_speed: 0.1,
            },
            prompt: None,
            image_url: Some("https://img.example/a.png".into()),
            ..text_request()
        }
    }

    fn prediction(id: &str, status: &str) -> Value {
        json!({"id": id, "model": "kwaivgi/kling-v1.6-standard", "version": "hidden", "status": status,
               "input": {}, "output": null, "error": null, "logs": "", "created_at": "2026-11-23T05:00:00.000Z",
               "urls": {"get": format!("https://api.replicate.com/v1/predictions/{id}"),
                        "cancel": format!("https://api.replicate.com/v1/predictions/{id}/cancel")}})
    }

    async fn server() -> (ReplayServer, ReplicateProvider) {
        let server = ReplayServer::start().await;
        let provider = ReplicateProvider::new(config(&server.base_url), crate::http_client_on_first_use());
        (server, provider)
    }

    #[tokio::test]
    async fn a_text_job_creates_a_prediction_of_the_model_with_the_webhook_and_events_filter() {
        let (server, provider) = server().await;
        server.on("POST", "/v1/models/kwaivgi/kling-v1.6-standard/predictions", vec![Reply::json(201, prediction("p1", "starting"))]);

        let id = provider.submit(&text_request()).await.unwrap();

        assert_eq!(id, "p1");
        let sent = server.requests_to("POST", "/v1/models/kwaivgi/kling-v1.6-standard/predictions");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].headers["authorization"], "Bearer r8_test");
        assert_eq!(sent[0].headers["content-type"], "application/json");
        assert_eq!(
            sent[0].json(),
            json!({"input": {"prompt": "A paper boat", "duration": 10, "aspect_ratio": "9:16"},
                   "webhook": "https://hooks.example/webhooks/replicate",
                   "webhook_events_filter": ["start", "completed"]})
        );
    }

    #[tokio::test]
    async fn a_model_pinned_to_a_version_is_created_through_predictions_with_its_version() {
        let (server, provider) = server().await;
        server.on("POST", "/v1/predictions", vec![Reply::json(201, prediction("p2", "starting"))]);

        assert_eq!(provider.submit(&image_request()).await.unwrap(), "p2");

        let body = server.requests_to("POST", "/v1/predictions")[0].json();
        assert_eq!(body["version"], "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa");
        assert_eq!(body["input"]["start_image"], "https://img.example/a.png");
        assert_eq!(body["input"]["duration"], 5);
        assert!(body["input"]["prompt"].as_str().is_some_and(|p| !p.is_empty()));
    }

    #[tokio::test]
    async fn throttling_and_outages_are_transient_and_carry_the_retry_after() {
        let (server, provider) = server().await;
        let path = "/v1/models/kwaivgi/kling-v1.6-standard/predictions";
        server.on(
            "POST",
            path,
            vec![
                Reply::json(429, json!({"detail": "Request was throttled. Your rate limit resets in ~30s."})).header("retry-after", "30"),
                Reply::json(503, json!({"title": "Service Unavailable", "status": 503})),
            ],
        );

        let throttled = provider.submit(&text_request()).await.unwrap_err();
        let outage = provider.submit(&text_request()).await.unwrap_err();

        assert_eq!(
            throttled,
            ProviderError::Transient {
                message: "HTTP 429: Request was throttled. Your rate limit resets in ~30s.".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
        assert!(matches!(outage, ProviderError::Transient { retry_after: None, .. }), "{outage:?}");
    }

    #[tokio::test]
    async fn refusals_name_what_was_refused() {
        let (server, provider) = server().await;
        let path = "/v1/models/kwaivgi/kling-v1.6-standard/predictions";
        let cases = [
            (
                401,
                json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401}),
                "unauthorized",
            ),
            (
                402,
                json!({"title": "Insufficient credit", "detail": "You have insufficient credit to run this model.", "status": 402}),
                "insufficient_credit",
            ),
            (404, json!({"title": "Not found", "detail": "The requested resource could not be found.", "status": 404}), "model_not_found"),
            (
                422,
                json!({"title": "Input validation failed", "detail": "- input.duration: duration must be one of the following: 5, 10", "status": 422,
                         "invalid_fields": [{"type": "enum", "field": "input.duration", "description": "duration must be one of the following: 5, 10"}]}),
                "invalid_input",
            ),
        ];
        for (status, body, expected) in cases {
            server.on("POST", path, vec![Reply::json(status, body.clone())]);
            match provider.submit(&text_request()).await {
                Err(ProviderError::Refused { code, message }) => {
                    assert_eq!(code, expected);
                    assert_eq!(message, body["detail"].as_str().unwrap());
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn without_a_token_nothing_is_sent_and_the_job_is_refused() {
        let server = ReplayServer::start().await;
        let mut config = config(&server.base_url);
        config.api_token = None;
        let provider = ReplicateProvider::new(config, crate::http_client_on_first_use());

        let err = provider.submit(&text_request()).await.unwrap_err();

        assert!(matches!(err, ProviderError::Refused { ref code, .. } if code == "unauthorized"), "{err:?}");
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn polling_maps_every_prediction_state() {
        let (server, provider) = server().await;
        let mut succeeded = prediction("p3", "succeeded");
        succeeded["output"] = json!("https://replicate.delivery/xezq/output.mp4");
        let mut listed = prediction("p3", "succeeded");
        listed["output"] = json!(["https://replicate.delivery/xezq/a.mp4", "https://replicate.delivery/xezq/b.mp4"]);
        let mut failed = prediction("p3", "failed");
        failed["error"] = json!("The input or output was flagged as sensitive. Please try again with different inputs. (E005)");
        let mut crashed = prediction("p3", "failed");
        crashed["error"] = json!("CUDA out of memory");
        server.on(
            "GET",
            "/v1/predictions/p3",
            vec![
                Reply::json(200, prediction("p3", "starting")),
                Reply::json(200, prediction("p3", "processing")),
                Reply::json(200, succeeded),
                Reply::json(200, listed),
                Reply::json(200, failed),
                Reply::json(200, crashed),
                Reply::json(200, prediction("p3", "canceled")),
            ],
        );

        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(provider.poll("p3").await.unwrap());
        }

        let output = |url: &str| ProviderStatus::Succeeded(ProviderOutput { video_url: url.into(), thumbnail_url: None });
        assert_eq!(seen[0], ProviderStatus::Queued { position: None });
        assert_eq!(seen[1], ProviderStatus::Processing { percent: None });
        assert_eq!(seen[2], output("https://replicate.delivery/xezq/output.mp4"));
        assert_eq!(seen[3], output("https://replicate.delivery/xezq/a.mp4"));
        assert!(matches!(&seen[4], ProviderStatus::Failed { code, .. } if code == "content_policy"), "{:?}", seen[4]);
        assert_eq!(seen[5], ProviderStatus::Failed { code: "generation_failed".into(), message: "CUDA out of memory".into() });
        assert_eq!(seen[6], ProviderStatus::Canceled);
        assert!(server.requests().iter().all(|r| r.headers["authorization"] == "Bearer r8_test"));
    }

    #[tokio::test]
    async fn an_unknown_prediction_is_not_found_and_cancel_posts_to_its_cancel_url() {
        let (server, provider) = server().await;
        server.on("POST", "/v1/predictions/p4/cancel", vec![Reply::json(200, prediction("p4", "canceled"))]);

        let missing = provider.poll("nope").await.unwrap_err();
        provider.cancel("p4").await.unwrap();

        assert!(matches!(missing, ProviderError::NotFound(_)), "{missing:?}");
        assert_eq!(server.requests_to("POST", "/v1/predictions/p4/cancel").len(), 1);
    }

    fn signed(secret: &str, id: &str, at: i64, body: &str) -> HashMap<String, String> {
        let signature = WebhookSecret::parse(secret).unwrap().sign(id, at, body.as_bytes());
        HashMap::from([
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), at.to_string()),
            ("webhook-signature".to_owned(), signature),
        ])
    }

    #[tokio::test]
    async fn a_signed_completion_callback_becomes_a_succeeded_event_keyed_by_its_webhook_id() {
        let provider = ReplicateProvider::new(config("http://127.0.0.1:9"), crate::http_client_on_first_use());
        let mut body = prediction("p5", "succeeded");
        body["output"] = json!("https://replicate.delivery/xezq/v.mp4");
        let body = body.to_string();
        let headers = signed(SECRET, "msg_2Lh9KRb0pzN4LePd3XiA4v12Axj", 1_700_000_000, &body);

        let event = provider.verify_callback(&Callback { headers: &headers, body: body.as_bytes(), now: 1_700_000_010 }).await.unwrap();

        assert_eq!(event.event_id, "msg_2Lh9KRb0pzN4LePd3XiA4v12Axj");
        assert_eq!(event.request_id, "p5");
        assert_eq!(
            event.status,
            ProviderStatus::Succeeded(ProviderOutput { video_url: "https://replicate.delivery/xezq/v.mp4".into(), thumbnail_url: None })
        );
    }

    #[tokio::test]
    async fn the_standard_webhooks_example_verifies_and_forged_stale_or_re_signed_callbacks_do_not() {
        // The Standard Webhooks specification's example message and signature,
        // next to a rotated-out signature in the same header.
        let provider = ReplicateProvider::new(config("http://127.0.0.1:9"), crate::http_client_on_first_use());
        let spec_headers = HashMap::from([
            ("webhook-id".to_owned(), "msg_p5jXN8AQM9LWM0D4loKWxJek".to_owned()),
            ("webhook-timestamp".to_owned(), "1614265330".to_owned()),
            (
                "webhook-signature".to_owned(),
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned(),
            ),
        ]);
        let spec_body = br#"{"test": 2432232314}"#;
        // The signature is good; the body is not a prediction.
        let spec = provider.verify_callback(&Callback { headers: &spec_headers, body: spec_body, now: 1_614_265_330 }).await;
        assert!(matches!(spec, Err(CallbackError::Malformed(_))), "{spec:?}");

        let body = prediction("p6", "processing").to_string();
        let good = signed(SECRET, "msg_1", 1_000, &body);
        let forged = signed("whsec_b3RoZXItc2VjcmV0LW9mLWEtZm9yZ2Vy", "msg_1", 1_000, &body);
        let tampered = body.replace("processing", "succeeded");
        let outcome = |headers: HashMap<String, String>, body: String, now: i64| {
            let provider = &provider;
            async move { provider.verify_callback(&Callback { headers: &headers, body: body.as_bytes(), now }).await }
        };
        assert!(outcome(good.clone(), body.clone(), 1_000).await.is_ok());
        assert!(matches!(outcome(forged, body.clone(), 1_000).await, Err(CallbackError::BadSignature(_))));
        assert!(matches!(outcome(good.clone(), body.clone(), 1_000 + 301).await, Err(CallbackError::BadSignature(_))));
        assert!(matches!(outcome(good.clone(), tampered, 1_000).await, Err(CallbackError::BadSignature(_))));
        let mut unsigned = good;
        unsigned.remove("webhook-signature");
        assert!(matches!(outcome(unsigned, body, 1_000).await, Err(CallbackError::BadSignature(_))));
    }

    #[test]
    fn configuration_needs_the_webhook_secret_and_sound_model_names() {
        let lookup = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::from_lookup(&|name: &str| map.get(name).cloned())
        };
        assert!(lookup(&[]).unwrap().is_none());
        assert_eq!(lookup(&[("REPLICATE_API_TOKEN", "r8_x")]).unwrap_err().name, "REPLICATE_WEBHOOK_SECRET");
        assert_eq!(lookup(&[("REPLICATE_WEBHOOK_SECRET", "whsec_!!")]).unwrap_err().name, "REPLICATE_WEBHOOK_SECRET");
        let bad_model = lookup(&[("REPLICATE_WEBHOOK_SECRET", SECRET), ("REPLICATE_TEXT_MODEL", "just-a-name")]);
        assert_eq!(bad_model.unwrap_err().name, "REPLICATE_TEXT_MODEL");
        let webhook_only = lookup(&[("REPLICATE_WEBHOOK_SECRET", SECRET)]).unwrap().unwrap();
        assert_eq!(webhook_only.api_token, None);
        assert_eq!(webhook_only.api_url, DEFAULT_API_URL);
        assert_eq!((webhook_only.text_model.as_str(), webhook_only.image_model.as_str()), (DEFAULT_MODEL, DEFAULT_MODEL));
        assert_eq!(ModelRef::parse("a/b:c"), Some(ModelRef { owner: "a", name: "b", version: Some("c") }));
        assert_eq!(ModelRef::parse("a/b:"), None);
        assert_eq!(ModelRef::parse("a/b/c"), None);
    }
}
