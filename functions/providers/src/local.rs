//! The local provider (`infra/local-provider`): Replicate-style predictions,
//! Standard Webhooks callbacks.

use crate::{network_error, retry_after, status_error};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use videojobs_core::model::job::JobParams;
use videojobs_core::model::provider::*;
use videojobs_core::model::request::ProviderName;
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::ports::Provider;

pub struct LocalProvider {
    name: ProviderName,
    base_url: String,
    secrets: Vec<WebhookSecret>,
    http: crate::HttpClient,
    /// `LOCAL_PROVIDER_TOKEN`: sent as a bearer token on every API call.
    token: Option<String>,
}

impl LocalProvider {
    pub fn new(base_url: impl Into<String>, secrets: Vec<WebhookSecret>, http: crate::HttpClient) -> Self {
        Self {
            name: "local".parse().expect("a valid provider name"),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            secrets,
            http,
            token: None,
        }
    }

    /// The token the provider takes from us (its `LOCAL_PROVIDER_TOKEN`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn authorized(&self, call: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => call.bearer_auth(token),
            None => call,
        }
    }
}

#[derive(Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    progress: Option<u8>,
    #[serde(default)]
    output: Option<Output>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Output {
    video: String,
    #[serde(default)]
    thumbnail: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

fn normalise(p: Prediction) -> Result<ProviderStatus, String> {
    Ok(match p.status.as_str() {
        "starting" => ProviderStatus::Queued { position: None },
        "processing" => ProviderStatus::Processing { percent: p.progress },
        "succeeded" => {
            let output = p.output.ok_or("a succeeded prediction without output")?;
            ProviderStatus::Succeeded(ProviderOutput { video_url: output.video, thumbnail_url: output.thumbnail })
        }
        "failed" => {
            let error = p.error.unwrap_or(ErrorBody { code: None, message: None });
            ProviderStatus::Failed {
                code: error.code.unwrap_or_else(|| "failed".into()),
                message: error.message.unwrap_or_else(|| "the generation failed".into()),
            }
        }
        "canceled" => ProviderStatus::Canceled,
        other => return Err(format!("unknown status {other}")),
    })
}

/// The input the local provider understands, from the job's parameters.
fn input(request: &SubmitRequest) -> Value {
    let mut input = match &request.params {
        JobParams::TextToVideo { duration_seconds, aspect_ratio, resolution } => {
            let (width, height) = videojobs_core::model::request::frame_size(*aspect_ratio, *resolution);
            json!({"mode": "text", "prompt": request.prompt, "width": width, "height": height,
                   "duration_seconds": duration_seconds})
        }
        JobParams::ImageToVideo { length_seconds, frame_rate, zoom_speed, .. } => {
            json!({"mode": "image", "prompt": request.prompt, "image_url": request.image_url,
                   "duration_seconds": length_seconds, "frame_rate": frame_rate, "zoom_speed": zoom_speed})
        }
    };
    if let Some(seed) = request.seed {
        input["seed"] = json!(seed);
    }
    input
}

async fn failure(response: reqwest::Response) -> ProviderError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body: Option<ErrorEnvelope> = response.json().await.ok();
    let (code, message) = body.map(|b| (b.error.code.unwrap_or_default(), b.error.message.unwrap_or_default())).unwrap_or_default();
    status_error(status, retry_after, if code.is_empty() { "refused".into() } else { code }, message)
}

/// Sends a call; an error status becomes the provider error it stands for.
async fn send(call: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    let response = call.send().await.map_err(network_error)?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(failure(response).await)
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    /// The local provider keeps one request per `idempotency-key`.
    fn dedupes_submissions(&self) -> bool {
        true
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError> {
        let mut body = json!({"input": input(request), "webhook": request.callback_url});
        if let Some(faults) = &request.faults {
            body["faults"] = faults.clone();
        }
        let call = self
            .authorized(self.http.get().post(format!("{}/v1/predictions", self.base_url)))
            .header("idempotency-key", &request.idempotency_key)
            .json(&body);
        let prediction: Prediction = send(call).await?.json().await.map_err(network_error)?;
        Ok(prediction.id)
    }

    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        let call = self.authorized(self.http.get().get(format!("{}/v1/predictions/{request_id}", self.base_url)));
        let prediction: Prediction = send(call).await?.json().await.map_err(network_error)?;
        normalise(prediction).map_err(|message| ProviderError::Transient { message, retry_after: None })
    }

    async fn cancel(&self, request_id: &str) -> Result<(), ProviderError> {
        send(self.authorized(self.http.get().post(format!("{}/v1/predictions/{request_id}/cancel", self.base_url)))).await?;
        Ok(())
    }

    async fn verify_callback(&self, callback: &Callback<'_>) -> Result<ProviderEvent, CallbackError> {
        let event_id = crate::verify_standard_webhook(&self.secrets, callback)?;
        let prediction: Prediction = serde_json::from_slice(callback.body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let request_id = prediction.id.clone();
        let status = normalise(prediction).map_err(CallbackError::Malformed)?;
        Ok(ProviderEvent { event_id, request_id, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn provider(secret: &str) -> LocalProvider {
        LocalProvider::new("http://127.0.0.1:9", vec![WebhookSecret::parse(secret).unwrap()], crate::http_client())
    }

    fn signed(secret: &str, id: &str, at: i64, body: &str) -> HashMap<String, String> {
        let signature = WebhookSecret::parse(secret).unwrap().sign(id, at, body.as_bytes());
        HashMap::from([
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), at.to_string()),
            ("webhook-signature".to_owned(), signature),
        ])
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[tokio::test]
    async fn a_signed_completion_becomes_a_succeeded_event_with_its_output() {
        let body = r#"{"id":"lp_1","status":"succeeded","progress":100,"output":{"video":"http://x/v.mp4","thumbnail":"http://x/t.jpg"},"error":null}"#;
        let headers = signed(SECRET, "evt_1", 1_000, body);
        let event = provider(SECRET).verify_callback(&Callback { headers: &headers, body: body.as_bytes(), now: 1_010 }).await.unwrap();
        assert_eq!(event.event_id, "evt_1");
        assert_eq!(event.request_id, "lp_1");
        assert_eq!(
            event.status,
            ProviderStatus::Succeeded(ProviderOutput { video_url: "http://x/v.mp4".into(), thumbnail_url: Some("http://x/t.jpg".into()) })
        );
    }

    #[tokio::test]
    async fn progress_and_failure_callbacks_are_normalised() {
        let p = provider(SECRET);
        let body = r#"{"id":"lp_2","status":"processing","progress":60}"#;
        let headers = signed(SECRET, "evt_2", 5, body);
        let event = p.verify_callback(&Callback { headers: &headers, body: body.as_bytes(), now: 5 }).await.unwrap();
        assert_eq!(event.status, ProviderStatus::Processing { percent: Some(60) });
        let body = r#"{"id":"lp_2","status":"failed","error":{"code":"content_policy","message":"no"}}"#;
        let headers = signed(SECRET, "evt_3", 5, body);
        let event = p.verify_callback(&Callback { headers: &headers, body: body.as_bytes(), now: 5 }).await.unwrap();
        assert_eq!(event.status, ProviderStatus::Failed { code: "content_policy".into(), message: "no".into() });
    }

    #[tokio::test]
    async fn forged_stale_or_unknown_callbacks_are_refused() {
        let p = provider(SECRET);
        let body = r#"{"id":"lp_1","status":"succeeded","output":{"video":"v"}}"#;
        let forged = signed("whsec_b3RoZXItc2VjcmV0", "evt_1", 100, body);
        let stale = signed(SECRET, "evt_1", 100, body);
        let odd = r#"{"id":"lp_1","status":"exploded"}"#;
        let odd_headers = signed(SECRET, "evt_9", 100, odd);
        assert!(matches!(
            p.verify_callback(&Callback { headers: &forged, body: body.as_bytes(), now: 100 }).await,
            Err(CallbackError::BadSignature(_))
        ));
        assert!(matches!(
            p.verify_callback(&Callback { headers: &stale, body: body.as_bytes(), now: 100 + 301 }).await,
            Err(CallbackError::BadSignature(_))
        ));
        assert!(matches!(
            p.verify_callback(&Callback { headers: &odd_headers, body: odd.as_bytes(), now: 100 }).await,
            Err(CallbackError::Malformed(_))
        ));
    }

    #[test]
    fn statuses_map_to_transient_refused_or_not_found() {
        assert!(matches!(status_error(429, None, "x".into(), "m".into()), ProviderError::Transient { .. }));
        assert!(matches!(status_error(503, None, "x".into(), "m".into()), ProviderError::Transient { .. }));
        assert!(matches!(status_error(422, None, "x".into(), "m".into()), ProviderError::Refused { .. }));
        assert!(matches!(status_error(404, None, "x".into(), "m".into()), ProviderError::NotFound(_)));
    }
}
