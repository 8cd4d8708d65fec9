//! fal's queue (<https://docs.fal.ai/model-endpoints/queue>), followed as published:
//!
//! - **submit**: `POST https://queue.fal.run/{model_id}?fal_webhook={url}` with
//!   the model's input as the body and `Authorization: Key <FAL_KEY>`; the
//!   answer has `request_id` (the id of the queue API) and `gateway_request_id`.
//! - **status**: `GET …/{app}/requests/{request_id}/status`, where `{app}` is
//!   the model id without its endpoint path (`fal-ai/kling-video`, not
//!   `fal-ai/kling-video/v1.6/standard/text-to-video`): `IN_QUEUE` with
//!   `queue_position` (our progress detail), `IN_PROGRESS`, `COMPLETED` (with
//!   `error` and `error_type` when the request failed).
//! - **result**: `GET …/{app}/requests/{request_id}`: the model's output
//!   (`{"video": {"url", "content_type", "file_size", …}}`), or the model's
//!   error status and `detail` when it failed (`422` for input it refused).
//! - **cancel**: `PUT …/{app}/requests/{request_id}/cancel`: `202`
//!   `CANCELLATION_REQUESTED`, `400` `ALREADY_COMPLETED`, `404` `NOT_FOUND`.
//! - **webhooks** (<https://docs.fal.ai/model-endpoints/webhooks>): one `POST`
//!   when the request is done, `{request_id, gateway_request_id, status: "OK" |
//!   "ERROR", payload, error}` (`payload` null with `payload_error` when the
//!   output was not JSON), retried for two hours. Signed with ED25519: the
//!   message is `X-Fal-Webhook-Request-Id`, `X-Fal-Webhook-User-Id`,
//!   `X-Fal-Webhook-Timestamp` and the hex SHA-256 of the raw body, joined by
//!   newlines; `X-Fal-Webhook-Signature` is the hex signature; the timestamp
//!   must be within five minutes; the public keys are the JWKS at
//!   `https://rest.alpha.fal.ai/.well-known/jwks.json` (cached, see `jwks`).
//!   The header names no key, so "an unknown key" is a signature no cached
//!   key verifies.
//! - **errors**: `401`/`403` a bad key, `422` input the model refused
//!   (`detail` a list; `type: "content_policy_violation"` for content), `429`
//!   and `5xx` transient.
//!
//! fal sends no progress callbacks (only the completion): the queue position
//! and `IN_PROGRESS` are seen when the job is polled. fal has no idempotency
//! key either (see `replicate` for what that means).

use crate::jwks::{KeyError, KeySet};
use crate::{kling_prompt, kling_seconds, network_error, non_empty, retry_after, status_error, HttpClient};
use async_trait::async_trait;
use ed25519_dalek::Signature;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use videojobs_core::model::job::JobParams;
use videojobs_core::model::provider::*;
use videojobs_core::model::request::ProviderName;
use videojobs_core::model::settings::ConfigError;
use videojobs_core::ports::Provider;

pub const DEFAULT_QUEUE_URL: &str = "https://queue.fal.run";
pub const DEFAULT_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";
pub const DEFAULT_TEXT_MODEL: &str = "fal-ai/kling-video/v1.6/standard/text-to-video";
pub const DEFAULT_IMAGE_MODEL: &str = "fal-ai/kling-video/v1.6/standard/image-to-video";
/// How far a callback's timestamp may be from now, either way (the Standard Webhooks tolerance).
pub const TOLERANCE_SECONDS: i64 = videojobs_core::model::signing::TOLERANCE_SECONDS;

/// fal's settings: `FAL_KEY` (only where jobs are submitted) or `FAL_JWKS_URL`
/// (where callbacks are verified) enables it; `FAL_TEXT_MODEL`,
/// `FAL_IMAGE_MODEL` and `FAL_QUEUE_URL` are optional. Where callbacks are
/// verified (`FAL_JWKS_URL`), `FAL_USER_ID` is required: without it, every fal
/// customer's signed callbacks would be accepted, so the configuration is
/// refused (the webhook does not start).
#[derive(Debug, Clone)]
pub struct Config {
    pub queue_url: String,
    pub key: Option<String>,
    pub jwks_url: String,
    pub text_model: String,
    pub image_model: String,
    /// `FAL_USER_ID`: our fal account. fal signs every customer's callbacks
    /// with the same keys, so a callback signed for another account is
    /// refused; without it (a configuration that only submits), every
    /// callback is refused.
    pub user_id: Option<String>,
}

impl Config {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let key = non_empty(get, "FAL_KEY");
        let jwks_url = non_empty(get, "FAL_JWKS_URL");
        if key.is_none() && jwks_url.is_none() {
            return Ok(None);
        }
        let model = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let model = non_empty(get, name).unwrap_or_else(|| default.to_owned());
            app_of(&model).map(|_| model).ok_or(ConfigError { name, problem: "is not a fal model id (owner/app[/path])".into() })
        };
        let user_id = non_empty(get, "FAL_USER_ID");
        if jwks_url.is_some() && user_id.is_none() {
            return Err(ConfigError {
                name: "FAL_USER_ID",
                problem: "is not set, but FAL_JWKS_URL is: fal signs every customer's callbacks with the same keys, so without \
                          our account's user id any fal customer's callbacks would be accepted (the template's FalUserId)"
                    .into(),
            });
        }
        Ok(Some(Self {
            queue_url: non_empty(get, "FAL_QUEUE_URL").unwrap_or_else(|| DEFAULT_QUEUE_URL.to_owned()).trim_end_matches('/').to_owned(),
            key,
            jwks_url: jwks_url.unwrap_or_else(|| DEFAULT_JWKS_URL.to_owned()),
            text_model: model("FAL_TEXT_MODEL", DEFAULT_TEXT_MODEL)?,
            image_model: model("FAL_IMAGE_MODEL", DEFAULT_IMAGE_MODEL)?,
            user_id,
        }))
    }
}

/// The app of a model id (`owner/app`), which the status, result and cancel URLs name.
fn app_of(model: &str) -> Option<String> {
    let mut parts = model.split('/');
    let (owner, app) = (parts.next()?, parts.next()?);
    let fine = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    (fine(owner) && fine(app) && parts.all(fine)).then(|| format!("{owner}/{app}"))
}

pub struct FalProvider {
    name: ProviderName,
    config: Config,
    http: HttpClient,
    keys: KeySet,
}

impl FalProvider {
    pub fn new(config: Config, http: HttpClient) -> Self {
        let keys = KeySet::new(config.jwks_url.clone(), http.clone());
        Self { name: "fal".parse().expect("a valid provider name"), config, http, keys }
    }

    fn call(&self, method: reqwest::Method, url: String) -> Result<reqwest::RequestBuilder, ProviderError> {
        let key = self
            .config
            .key
            .as_deref()
            .ok_or_else(|| ProviderError::Refused { code: "unauthorized".into(), message: "no fal key is configured here".into() })?;
        Ok(self.http.get().request(method, url).header("authorization", format!("Key {key}")))
    }

    /// The apps a request may belong to (the request id alone does not say
    /// which model it was sent to): the text model's, then the image model's.
    fn apps(&self) -> Vec<String> {
        let mut apps: Vec<String> = [&self.config.text_model, &self.config.image_model].into_iter().filter_map(|m| app_of(m)).collect();
        apps.dedup();
        apps
    }

    fn request_url(&self, app: &str, request_id: &str, tail: &str) -> String {
        format!("{}/{app}/requests/{request_id}{tail}", self.config.queue_url)
    }

    /// The outcome of a completed request, from its result.
    async fn result(&self, app: &str, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        let response = self.call(reqwest::Method::GET, self.request_url(app, request_id, ""))?.send().await.map_err(network_error)?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            let output: Value = response.json().await.map_err(network_error)?;
            return succeeded(&output)
                .ok_or_else(|| ProviderError::Transient { message: "a result without a video URL".into(), retry_after: None });
        }
        match failure(response).await {
            // The model refused the input or failed: that is the request's outcome.
            ProviderError::Refused { code, message } => Ok(ProviderStatus::Failed { code, message }),
            ProviderError::NotFound(message) if status == 404 => Err(ProviderError::NotFound(message)),
            other => Err(other),
        }
    }
}

/// The model's input from the job's parameters: the one place that knows
/// Kling's input names on fal. Kling makes `"5"` or `"10"` seconds (rounded
/// up) at 16:9, 9:16 or 1:1; the image model takes `image_url` and a prompt.
/// Frame rate and zoom speed are the local provider's.
pub fn input(request: &SubmitRequest) -> Value {
    // fal takes the length as a string.
    let duration = |seconds: u32| kling_seconds(seconds).to_string();
    match &request.params {
        JobParams::TextToVideo { duration_seconds, aspect_ratio, .. } => json!({
            "prompt": kling_prompt(request),
            "duration": duration(*duration_seconds),
            "aspect_ratio": aspect_ratio,
        }),
        JobParams::ImageToVideo { length_seconds, .. } => json!({
            "prompt": kling_prompt(request),
            "image_url": request.image_url,
            "duration": duration(*length_seconds),
        }),
    }
}

fn succeeded(output: &Value) -> Option<ProviderStatus> {
    let video_url = output.pointer("/video/url")?.as_str()?.to_owned();
    Some(ProviderStatus::Succeeded(ProviderOutput { video_url, thumbnail_url: None }))
}

/// `detail` is a string, or a list of `{loc, msg, type}`.
fn detail_text(detail: &Value) -> String {
    match detail {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.get("msg").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| item.to_string()))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn refusal_code(status: u16, detail: &Value) -> &'static str {
    let content = detail
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item.get("type").and_then(Value::as_str) == Some("content_policy_violation")));
    match status {
        _ if content => "content_policy",
        401 | 403 => "unauthorized",
        404 => "model_not_found",
        422 => "invalid_input",
        _ => "refused",
    }
}

async fn failure(response: reqwest::Response) -> ProviderError {
    let status = response.status().as_u16();
    let wait = retry_after(response.headers());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let detail = body.get("detail").cloned().unwrap_or(Value::Null);
    let message = match detail_text(&detail) {
        text if text.is_empty() => format!("HTTP {status}"),
        text => text,
    };
    status_error(status, wait, refusal_code(status, &detail).into(), message)
}

#[derive(Deserialize)]
struct Submitted {
    request_id: String,
}

#[derive(Deserialize)]
struct QueueStatus {
    status: String,
    #[serde(default)]
    queue_position: Option<u32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct WebhookBody {
    request_id: String,
    status: String,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

/// The message fal signs: request id, user id, timestamp and the hex SHA-256
/// of the body, one per line.
pub fn signed_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    format!("{request_id}\n{user_id}\n{timestamp}\n{}", hex::encode(Sha256::digest(body))).into_bytes()
}

#[async_trait]
impl Provider for FalProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    /// fal calls back once, when the request is done: its queue position is
    /// learnt by polling (`refresh`).
    fn sends_progress_callbacks(&self) -> bool {
        false
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError> {
        let model = match request.params {
            JobParams::TextToVideo { .. } => &self.config.text_model,
            JobParams::ImageToVideo { .. } => &self.config.image_model,
        };
        let mut url = url::Url::parse(&format!("{}/{model}", self.config.queue_url)).map_err(|e| ProviderError::Refused {
            code: "model_not_found".into(),
            message: format!("'{model}' does not make a URL: {e}"),
        })?;
        url.query_pairs_mut().append_pair("fal_webhook", &request.callback_url);
        let response = self.call(reqwest::Method::POST, url.into())?.json(&input(request)).send().await.map_err(network_error)?;
        if !response.status().is_success() {
            return Err(match failure(response).await {
                // On submit a 404 is the model, which the deployment names.
                ProviderError::NotFound(message) => ProviderError::Refused { code: "model_not_found".into(), message },
                other => other,
            });
        }
        let submitted: Submitted = response.json().await.map_err(network_error)?;
        Ok(submitted.request_id)
    }

    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        let mut last = ProviderError::NotFound(request_id.to_owned());
        for app in self.apps() {
            let call = self.call(reqwest::Method::GET, self.request_url(&app, request_id, "/status"))?;
            let response = call.send().await.map_err(network_error)?;
            if !response.status().is_success() {
                last = failure(response).await;
                if matches!(last, ProviderError::NotFound(_)) {
                    continue;
                }
                return Err(last);
            }
            let status: QueueStatus = response.json().await.map_err(network_error)?;
            return match status.status.as_str() {
                "IN_QUEUE" => Ok(ProviderStatus::Queued { position: status.queue_position }),
                "IN_PROGRESS" => Ok(ProviderStatus::Processing { percent: None }),
                "COMPLETED" => match status.error {
                    Some(message) => {
                        let code = match status.error_type.as_deref() {
                            Some("content_policy_violation") => "content_policy",
                            _ => "generation_failed",
                        };
                        Ok(ProviderStatus::Failed { code: code.into(), message })
                    }
                    None => self.result(&app, request_id).await,
                },
                other => Err(ProviderError::Transient { message: format!("unknown queue status {other}"), retry_after: None }),
            };
        }
        Err(last)
    }

    async fn cancel(&self, request_id: &str) -> Result<(), ProviderError> {
        for app in self.apps() {
            let response =
                self.call(reqwest::Method::PUT, self.request_url(&app, request_id, "/cancel"))?.send().await.map_err(network_error)?;
            match response.status().as_u16() {
                // 400 is ALREADY_COMPLETED: nothing left to stop.
                200..=299 | 400 => return Ok(()),
                404 => continue,
                _ => return Err(failure(response).await),
            }
        }
        Err(ProviderError::NotFound(request_id.to_owned()))
    }

    async fn verify_callback(&self, callback: &Callback<'_>) -> Result<ProviderEvent, CallbackError> {
        let header = |name: &'static str| {
            callback
                .headers
                .get(name)
                .map(String::as_str)
                .ok_or_else(|| CallbackError::BadSignature(format!("a webhook header is missing: {name}")))
        };
        let request_id = header("x-fal-webhook-request-id")?;
        let user_id = header("x-fal-webhook-user-id")?;
        // Another fal customer's callback is validly signed too: the user id is
        // pinned, and with none configured no callback is ours.
        let Some(ours) = self.config.user_id.as_deref() else {
            return Err(CallbackError::BadSignature("no FAL_USER_ID is configured here: fal callbacks are refused".into()));
        };
        if !videojobs_core::model::signing::constant_time_eq(ours.as_bytes(), user_id.trim().as_bytes()) {
            return Err(CallbackError::BadSignature("the callback is for another fal account".into()));
        }
        let timestamp = header("x-fal-webhook-timestamp")?;
        let signature = header("x-fal-webhook-signature")?;
        // Bounded before any cryptography: the body's size and a sane timestamp.
        if callback.body.len() > videojobs_core::model::signing::MAX_BODY_BYTES {
            return Err(CallbackError::BadSignature(videojobs_core::model::signing::SignatureError::BodyTooLarge.to_string()));
        }
        videojobs_core::model::signing::check_timestamp(timestamp, callback.now).map_err(|e| CallbackError::BadSignature(e.to_string()))?;
        let signature = hex::decode(signature.trim())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(|| CallbackError::BadSignature("the signature is not 64 hex-encoded bytes".into()))?;
        let message = signed_message(request_id, user_id, timestamp.trim(), callback.body);
        self.keys.verify(&message, &signature, callback.now).await.map_err(|e| match e {
            KeyError::NoMatch => CallbackError::BadSignature(e.to_string()),
            // Refused rather than trusted: fal retries the delivery.
            KeyError::Unavailable(_) => CallbackError::BadSignature(e.to_string()),
        })?;
        let body: WebhookBody = serde_json::from_slice(callback.body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        if body.request_id != request_id {
            return Err(CallbackError::Malformed("the body's request id differs from the signed one".into()));
        }
        let status = match body.status.as_str() {
            "OK" => {
                body.payload.as_ref().and_then(succeeded).ok_or_else(|| CallbackError::Malformed("a result without a video URL".into()))?
            }
            "ERROR" => {
                let detail = body.payload.as_ref().and_then(|p| p.get("detail")).cloned().unwrap_or(Value::Null);
                let code = match refusal_code(0, &detail) {
                    "content_policy" => "content_policy",
                    _ if !detail.is_null() => "invalid_input",
                    _ => "generation_failed",
                };
                let message = match detail_text(&detail) {
                    text if text.is_empty() => body.error.clone().unwrap_or_else(|| "the request failed".into()),
                    text => text,
                };
                ProviderStatus::Failed { code: code.into(), message }
            }
            other => return Err(CallbackError::Malformed(format!("unknown webhook status {other}"))),
        };
        // One completion per request; fal's retries of it carry the same id and status.
        Ok(ProviderEvent { event_id: format!("{}:{}", body.request_id, body.status), request_id: body.request_id, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{ReplayServer, Reply};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ed25519_dalek::{Signer, SigningKey};
    use std::collections::HashMap;
    use std::time::Duration;
    use videojobs_core::model::request::{AspectRatio, ImageSource, Resolution};

    const REQUEST: &str = "024ca5b1-45d3-4afd-883e-ad3abe2a1c4d";
    const JWKS_PATH: &str = "/.well-known/jwks.json";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn jwks(keys: &[&SigningKey]) -> Value {
        json!({"keys": keys.iter().map(|k| json!({
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(k.verifying_key().to_bytes()),
        })).collect::<Vec<_>>()})
    }

    fn config(base: &str) -> Config {
        let map = HashMap::from([
            ("FAL_KEY", "key-id:key-secret".to_owned()),
            ("FAL_QUEUE_URL", base.to_owned()),
            ("FAL_JWKS_URL", format!("{base}{JWKS_PATH}")),
            ("FAL_USER_ID", "5b4d1e6c-user".to_owned()),
            ("FAL_IMAGE_MODEL", "acme/animator".to_owned()),
        ]);
        Config::from_lookup(&|name: &str| map.get(name).cloned()).unwrap().unwrap()
    }

    async fn server() -> (ReplayServer, FalProvider) {
        let server = ReplayServer::start().await;
        let provider = FalProvider::new(config(&server.base_url), crate::http_client_on_first_use());
        (server, provider)
    }

    fn text_request() -> SubmitRequest {
        SubmitRequest {
            idempotency_key: "job_1".into(),
            params: JobParams::TextToVideo { duration_seconds: 4, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Hd },
            prompt: Some("A lighthouse in a storm".into()),
            image_url: None,
            callback_url: "https://hooks.example/webhooks/fal?x=1".into(),
            faults: None,
            seed: None,
        }
    }

    #[tokio::test]
    async fn a_text_job_is_queued_on_the_model_with_the_webhook_and_its_key() {
        let (server, provider) = server().await;
        let path = "/fal-ai/kling-video/v1.6/standard/text-to-video";
        server.on(
            "POST",
            path,
            vec![Reply::json(
                200,
                json!({"request_id": REQUEST, "gateway_request_id": REQUEST,
            "response_url": "u", "status_url": "s", "cancel_url": "c"}),
            )],
        );

        let id = provider.submit(&text_request()).await.unwrap();

        assert_eq!(id, REQUEST);
        let sent = &server.requests_to("POST", path)[0];
        assert_eq!(sent.target, format!("{path}?fal_webhook=https%3A%2F%2Fhooks.example%2Fwebhooks%2Ffal%3Fx%3D1"));
        assert_eq!(sent.headers["authorization"], "Key key-id:key-secret");
        assert_eq!(sent.json(), json!({"prompt": "A lighthouse in a storm", "duration": "5", "aspect_ratio": "16:9"}));
    }

    #[tokio::test]
    async fn an_image_job_goes_to_the_image_model_with_its_image_url() {
        let (server, provider) = server().await;
        server.on("POST", "/acme/animator", vec![Reply::json(200, json!({"request_id": "r2", "gateway_request_id": "r2"}))]);
        let request = SubmitRequest {
            params: JobParams::ImageToVideo {
                image: ImageSource::Url("https://img.example/a.png".into()),
                length_seconds: 7,
                frame_rate: 24,
                zoom_speed: 0.1,
            },
            image_url: Some("https://img.example/a.png".into()),
            ..text_request()
        };

        assert_eq!(provider.submit(&request).await.unwrap(), "r2");

        let body = server.requests_to("POST", "/acme/animator")[0].json();
        assert_eq!((body["image_url"].as_str(), body["duration"].as_str()), (Some("https://img.example/a.png"), Some("10")));
    }

    #[tokio::test]
    async fn submit_errors_are_transient_or_refused_as_documented() {
        let (server, provider) = server().await;
        let path = "/fal-ai/kling-video/v1.6/standard/text-to-video";
        server.on(
            "POST",
            path,
            vec![
                Reply::json(429, json!({"detail": "Too many requests"})).header("retry-after", "7"),
                Reply::json(502, json!({"detail": "Bad gateway"})),
                Reply::json(401, json!({"detail": "Invalid key"})),
                Reply::json(422, json!({"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]})),
                Reply::json(
                    422,
                    json!({"detail": [{"loc": ["body", "prompt"], "msg": "The prompt was flagged", "type": "content_policy_violation"}]}),
                ),
                Reply::json(404, json!({"detail": "Application not found"})),
            ],
        );

        let mut outcomes = Vec::new();
        for _ in 0..6 {
            outcomes.push(provider.submit(&text_request()).await.unwrap_err());
        }

        assert_eq!(
            outcomes[0],
            ProviderError::Transient { message: "HTTP 429: Too many requests".into(), retry_after: Some(Duration::from_secs(7)) }
        );
        assert!(matches!(outcomes[1], ProviderError::Transient { .. }));
        let refused = |code: &str, message: &str| ProviderError::Refused { code: code.into(), message: message.into() };
        assert_eq!(outcomes[2], refused("unauthorized", "Invalid key"));
        assert_eq!(outcomes[3], refused("invalid_input", "field required"));
        assert_eq!(outcomes[4], refused("content_policy", "The prompt was flagged"));
        assert_eq!(outcomes[5], refused("model_not_found", "Application not found"));
    }

    #[tokio::test]
    async fn polling_reports_the_queue_position_then_progress_then_the_result_from_the_app_urls() {
        let (server, provider) = server().await;
        let status = format!("/fal-ai/kling-video/requests/{REQUEST}/status");
        server.on(
            "GET",
            &status,
            vec![
                Reply::json(202, json!({"status": "IN_QUEUE", "queue_position": 3, "response_url": "u"})),
                Reply::json(202, json!({"status": "IN_PROGRESS", "logs": [], "response_url": "u"})),
                Reply::json(200, json!({"status": "COMPLETED", "logs": [], "response_url": "u"})),
            ],
        );
        server.on("GET", &format!("/fal-ai/kling-video/requests/{REQUEST}"), vec![Reply::json(200, json!({"video": {
            "url": "https://v3.fal.media/files/rabbit/out.mp4", "content_type": "video/mp4", "file_name": "out.mp4", "file_size": 1824075}}))]);

        let queued = provider.poll(REQUEST).await.unwrap();
        let running = provider.poll(REQUEST).await.unwrap();
        let done = provider.poll(REQUEST).await.unwrap();

        assert_eq!(queued, ProviderStatus::Queued { position: Some(3) });
        assert_eq!(running, ProviderStatus::Processing { percent: None });
        assert_eq!(
            done,
            ProviderStatus::Succeeded(ProviderOutput {
                video_url: "https://v3.fal.media/files/rabbit/out.mp4".into(),
                thumbnail_url: None
            })
        );
        assert!(server.requests().iter().all(|r| r.headers["authorization"] == "Key key-id:key-secret"));
    }

    #[tokio::test]
    async fn a_failed_request_is_read_from_its_status_or_its_result() {
        let (server, provider) = server().await;
        server.on(
            "GET",
            "/fal-ai/kling-video/requests/r1/status",
            vec![Reply::json(
                200,
                json!({"status": "COMPLETED",
            "error": "Content could not be processed", "error_type": "content_policy_violation"}),
            )],
        );
        server.on("GET", "/fal-ai/kling-video/requests/r2/status", vec![Reply::json(200, json!({"status": "COMPLETED"}))]);
        server.on(
            "GET",
            "/fal-ai/kling-video/requests/r2",
            vec![Reply::json(
                422,
                json!({"detail": [{"loc": ["body", "duration"], "msg": "unexpected value; permitted: '5', '10'", "type": "value_error"}]}),
            )],
        );

        let policy = provider.poll("r1").await.unwrap();
        let invalid = provider.poll("r2").await.unwrap();

        assert_eq!(policy, ProviderStatus::Failed { code: "content_policy".into(), message: "Content could not be processed".into() });
        assert_eq!(
            invalid,
            ProviderStatus::Failed { code: "invalid_input".into(), message: "unexpected value; permitted: '5', '10'".into() }
        );
    }

    #[tokio::test]
    async fn a_request_of_the_image_app_is_found_there_and_an_unknown_one_is_not_found() {
        let (server, provider) = server().await;
        server.on("GET", "/acme/animator/requests/r3/status", vec![Reply::json(200, json!({"status": "IN_QUEUE", "queue_position": 0}))]);
        server.on("PUT", "/fal-ai/kling-video/requests/r4/cancel", vec![Reply::json(202, json!({"status": "CANCELLATION_REQUESTED"}))]);
        server.on("PUT", "/fal-ai/kling-video/requests/r5/cancel", vec![Reply::json(400, json!({"status": "ALREADY_COMPLETED"}))]);

        assert_eq!(provider.poll("r3").await.unwrap(), ProviderStatus::Queued { position: Some(0) });
        assert!(matches!(provider.poll("gone").await, Err(ProviderError::NotFound(_))));
        provider.cancel("r4").await.unwrap();
        provider.cancel("r5").await.unwrap();
        assert!(matches!(provider.cancel("gone").await, Err(ProviderError::NotFound(_))));

        assert_eq!(server.requests_to("GET", "/fal-ai/kling-video/requests/r3/status").len(), 1, "the text app is asked first");
    }

    /// A callback as fal sends it, signed by `key` at `at`.
    fn callback(key: &SigningKey, request_id: &str, at: i64, body: &str) -> HashMap<String, String> {
        let user = "5b4d1e6c-user";
        let signature = key.sign(&signed_message(request_id, user, &at.to_string(), body.as_bytes()));
        HashMap::from([
            ("x-fal-webhook-request-id".to_owned(), request_id.to_owned()),
            ("x-fal-webhook-user-id".to_owned(), user.to_owned()),
            ("x-fal-webhook-timestamp".to_owned(), at.to_string()),
            ("x-fal-webhook-signature".to_owned(), hex::encode(signature.to_bytes())),
        ])
    }

    fn ok_body(request_id: &str) -> String {
        json!({"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
               "payload": {"video": {"url": "https://v3.fal.media/files/out.mp4", "content_type": "video/mp4"}}})
        .to_string()
    }

    async fn verify(
        provider: &FalProvider,
        headers: &HashMap<String, String>,
        body: &str,
        now: i64,
    ) -> Result<ProviderEvent, CallbackError> {
        provider.verify_callback(&Callback { headers, body: body.as_bytes(), now }).await
    }

    #[tokio::test]
    async fn a_signed_completion_verifies_against_the_published_keys_fetched_once() {
        let (server, provider) = server().await;
        let signer = key(7);
        server.on("GET", JWKS_PATH, vec![Reply::json(200, jwks(&[&key(1), &signer]))]);
        let body = ok_body(REQUEST);
        let error_body = json!({"request_id": "r9", "gateway_request_id": "r9", "status": "ERROR", "error": "Invalid status code: 422",
            "payload": {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]}})
        .to_string();

        let event = verify(&provider, &callback(&signer, REQUEST, 1_000, &body), &body, 1_010).await.unwrap();
        let failed = verify(&provider, &callback(&signer, "r9", 1_000, &error_body), &error_body, 1_020).await.unwrap();

        assert_eq!(event.event_id, format!("{REQUEST}:OK"));
        assert_eq!(event.request_id, REQUEST);
        assert_eq!(
            event.status,
            ProviderStatus::Succeeded(ProviderOutput { video_url: "https://v3.fal.media/files/out.mp4".into(), thumbnail_url: None })
        );
        assert_eq!(failed.status, ProviderStatus::Failed { code: "invalid_input".into(), message: "field required".into() });
        assert_eq!(server.requests_to("GET", JWKS_PATH).len(), 1, "the key set is cached");
    }

    #[tokio::test]
    async fn forged_stale_re_signed_or_tampered_callbacks_are_refused() {
        let (server, provider) = server().await;
        let signer = key(7);
        server.on("GET", JWKS_PATH, vec![Reply::json(200, jwks(&[&signer]))]);
        let body = ok_body(REQUEST);
        let good = callback(&signer, REQUEST, 1_000, &body);

        let forged = verify(&provider, &callback(&key(9), REQUEST, 1_000, &body), &body, 1_000).await;
        let stale = verify(&provider, &good, &body, 1_000 + 301).await;
        let early = verify(&provider, &good, &body, 1_000 - 301).await;
        let tampered = verify(&provider, &good, &body.replace("out.mp4", "evil.mp4"), 1_000).await;
        let mut other_request = good.clone();
        other_request.insert("x-fal-webhook-request-id".into(), "another".into());
        let moved = verify(&provider, &other_request, &body, 1_000).await;
        // Signed by the real key for one request, delivered with the body of another.
        let swapped = verify(&provider, &callback(&signer, REQUEST, 1_000, &ok_body("another")), &ok_body("another"), 1_000).await;
        let mut unsigned = good.clone();
        unsigned.remove("x-fal-webhook-signature");
        let missing = verify(&provider, &unsigned, &body, 1_000).await;

        for outcome in [&forged, &stale, &early, &tampered, &moved, &missing] {
            assert!(matches!(outcome, Err(CallbackError::BadSignature(_))), "{outcome:?}");
        }
        assert!(matches!(swapped, Err(CallbackError::Malformed(_))), "{swapped:?}");
        assert!(verify(&provider, &good, &body, 1_299).await.is_ok());
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_again_but_forgeries_cannot_make_us_fetch_more_than_once_a_minute() {
        let (server, provider) = server().await;
        let (old, new) = (key(1), key(2));
        server.on("GET", JWKS_PATH, vec![Reply::json(200, jwks(&[&old]))]);
        let body = ok_body(REQUEST);
        verify(&provider, &callback(&old, REQUEST, 1_000, &body), &body, 1_000).await.unwrap();
        // fal rotates: the set now has the new key only.
        server.on("GET", JWKS_PATH, vec![Reply::json(200, jwks(&[&new]))]);

        // Within the minute a signature no cached key verifies is refused without a fetch…
        let too_soon = verify(&provider, &callback(&new, REQUEST, 1_030, &body), &body, 1_030).await;
        for _ in 0..5 {
            let _ = verify(&provider, &callback(&key(9), REQUEST, 1_040, &body), &body, 1_040).await;
        }
        let fetches_before = server.requests_to("GET", JWKS_PATH).len();
        // …after it, the unknown key makes us fetch the set again, once, and it verifies.
        let rotated = verify(&provider, &callback(&new, REQUEST, 1_061, &body), &body, 1_061).await;
        let again = verify(&provider, &callback(&new, REQUEST, 1_062, &body), &body, 1_062).await;

        assert!(matches!(too_soon, Err(CallbackError::BadSignature(_))), "{too_soon:?}");
        assert_eq!(fetches_before, 1);
        assert!(rotated.is_ok(), "{rotated:?}");
        assert!(again.is_ok());
        assert_eq!(server.requests_to("GET", JWKS_PATH).len(), 2);
    }

    #[tokio::test]
    async fn a_callback_validly_signed_for_another_fal_account_is_refused_when_ours_is_pinned() {
        let server = ReplayServer::start().await;
        let signer = key(7);
        server.on("GET", JWKS_PATH, vec![Reply::json(200, jwks(&[&signer]))]);
        let pinned = |user: &str| Config { user_id: Some(user.to_owned()), ..config(&server.base_url) };
        let body = ok_body(REQUEST);
        let signed = callback(&signer, REQUEST, 1_000, &body);

        let theirs = FalProvider::new(pinned("our-account"), crate::http_client_on_first_use());
        let ours = FalProvider::new(pinned("5b4d1e6c-user"), crate::http_client_on_first_use());

        let unpinned = FalProvider::new(Config { user_id: None, ..config(&server.base_url) }, crate::http_client_on_first_use());

        let refused = verify(&theirs, &signed, &body, 1_000).await;
        assert!(matches!(&refused, Err(CallbackError::BadSignature(m)) if m.contains("another fal account")), "{refused:?}");
        assert!(verify(&ours, &signed, &body, 1_000).await.is_ok());
        // A configuration with no account pinned (one that only submits) accepts none.
        let refused = verify(&unpinned, &signed, &body, 1_000).await;
        assert!(matches!(&refused, Err(CallbackError::BadSignature(m)) if m.contains("FAL_USER_ID")), "{refused:?}");
    }

    #[tokio::test]
    async fn with_no_keys_yet_forged_callbacks_still_fetch_the_set_at_most_once_a_minute() {
        let (server, provider) = server().await;
        // fal's endpoint answers, but with no usable key (or fails): the cache stays empty.
        server.on("GET", JWKS_PATH, vec![Reply::json(200, json!({"keys": []}))]);
        let body = ok_body(REQUEST);
        for second in 0..20 {
            let forged = verify(&provider, &callback(&key(9), REQUEST, 1_000 + second, &body), &body, 1_000 + second).await;
            assert!(matches!(forged, Err(CallbackError::BadSignature(_))), "{forged:?}");
        }
        assert_eq!(server.requests_to("GET", JWKS_PATH).len(), 1, "one fetch in the minute");
        let _ = verify(&provider, &callback(&key(9), REQUEST, 1_061, &body), &body, 1_061).await;
        assert_eq!(server.requests_to("GET", JWKS_PATH).len(), 2, "the next after a minute");
    }

    #[test]
    fn configuration_needs_the_key_or_the_jwks_url_and_sound_model_ids() {
        let lookup = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::from_lookup(&|name: &str| map.get(name).cloned())
        };
        assert!(lookup(&[]).unwrap().is_none());
        let webhook_only = lookup(&[("FAL_JWKS_URL", DEFAULT_JWKS_URL), ("FAL_USER_ID", " u-1 ")]).unwrap().unwrap();
        assert_eq!(webhook_only.key, None);
        assert_eq!(webhook_only.queue_url, DEFAULT_QUEUE_URL);
        assert_eq!(webhook_only.user_id.as_deref(), Some("u-1"));
        // Verifying callbacks without our account pinned would accept any fal customer's: refused.
        for unpinned in [&[("FAL_JWKS_URL", DEFAULT_JWKS_URL)][..], &[("FAL_JWKS_URL", DEFAULT_JWKS_URL), ("FAL_USER_ID", " ")]] {
            let err = lookup(unpinned).unwrap_err();
            assert_eq!(err.name, "FAL_USER_ID");
            assert!(err.to_string().contains("any fal customer's callbacks"), "{err}");
        }
        // The worker only submits: its key alone is enough.
        let worker = lookup(&[("FAL_KEY", "k")]).unwrap().unwrap();
        assert_eq!(worker.user_id, None);
        assert_eq!(worker.jwks_url, DEFAULT_JWKS_URL);
        assert_eq!((worker.text_model.as_str(), worker.image_model.as_str()), (DEFAULT_TEXT_MODEL, DEFAULT_IMAGE_MODEL));
        assert_eq!(lookup(&[("FAL_KEY", "k"), ("FAL_TEXT_MODEL", "nope")]).unwrap_err().name, "FAL_TEXT_MODEL");
        assert_eq!(app_of("fal-ai/kling-video/v1.6/standard/text-to-video").as_deref(), Some("fal-ai/kling-video"));
        assert_eq!(app_of("fal-ai//x"), None);
    }
}
