//! A provider whose answers the test scripts: submissions answer from a
//! queue of outcomes (then accept with `req-1`, `req-2`, …), polls answer
//! the status the test set for the request, and a callback is a small JSON
//! body (`{"event_id", "request_id", "status"}`) with the header
//! `x-scripted-signature: valid`. Every call is recorded.

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use videojobs_core::model::provider::{
    Callback, CallbackError, ProviderError, ProviderEvent, ProviderOutput, ProviderStatus, SubmitRequest,
};
use videojobs_core::model::request::ProviderName;
use videojobs_core::ports::Provider;

/// A call the provider received.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderCall {
    Submit(SubmitRequest),
    Poll(String),
    Cancel(String),
}

#[derive(Default)]
struct Script {
    submits: VecDeque<Result<String, ProviderError>>,
    statuses: HashMap<String, Result<ProviderStatus, ProviderError>>,
    /// Request ids by idempotency key: a repeated submission finds its request.
    by_idempotency_key: HashMap<String, String>,
    calls: Vec<ProviderCall>,
    accepted: u64,
}

pub struct ScriptedProvider {
    name: ProviderName,
    progress_callbacks: bool,
    script: Mutex<Script>,
}

/// The header a scripted callback is "signed" with.
pub const SIGNATURE_HEADER: &str = "x-scripted-signature";

impl ScriptedProvider {
    pub fn new(name: ProviderName) -> Self {
        Self { name, progress_callbacks: true, script: Mutex::new(Script::default()) }
    }

    /// One that sends no progress callbacks (its jobs are refreshed by polling).
    pub fn without_progress_callbacks(mut self) -> Self {
        self.progress_callbacks = false;
        self
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next submission answers `outcome` (in the order given).
    pub fn answer_next_submit(&self, outcome: Result<String, ProviderError>) {
        self.script().submits.push_back(outcome);
    }

    /// What polls of `request_id` answer from now on.
    pub fn set_status(&self, request_id: &str, status: Result<ProviderStatus, ProviderError>) {
        self.script().statuses.insert(request_id.to_owned(), status);
    }

    pub fn calls(&self) -> Vec<ProviderCall> {
        self.script().calls.clone()
    }

    /// A callback body for `event_id` about `request_id`.
    pub fn callback_body(event_id: &str, request_id: &str, status: &ProviderStatus) -> Vec<u8> {
        let status = match status {
            ProviderStatus::Queued { position } => serde_json::json!({"state": "queued", "position": position}),
            ProviderStatus::Processing { percent } => serde_json::json!({"state": "processing", "percent": percent}),
            ProviderStatus::Succeeded(out) => {
                serde_json::json!({"state": "succeeded", "video_url": out.video_url, "thumbnail_url": out.thumbnail_url})
            }
            ProviderStatus::Failed { code, message } => serde_json::json!({"state": "failed", "code": code, "message": message}),
            ProviderStatus::Canceled => serde_json::json!({"state": "canceled"}),
        };
        serde_json::json!({"event_id": event_id, "request_id": request_id, "status": status}).to_string().into_bytes()
    }
}

fn status_from(value: &serde_json::Value) -> Option<ProviderStatus> {
    let text = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Some(match value.get("state")?.as_str()? {
        "queued" => ProviderStatus::Queued { position: value.get("position").and_then(|v| v.as_u64()).and_then(|v| u32::try_from(v).ok()) },
        "processing" => {
            ProviderStatus::Processing { percent: value.get("percent").and_then(|v| v.as_u64()).and_then(|v| u8::try_from(v).ok()) }
        }
        "succeeded" => ProviderStatus::Succeeded(ProviderOutput { video_url: text("video_url")?, thumbnail_url: text("thumbnail_url") }),
        "failed" => ProviderStatus::Failed { code: text("code")?, message: text("message").unwrap_or_default() },
        "canceled" => ProviderStatus::Canceled,
        _ => return None,
    })
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    /// A repeated idempotency key finds its request (see `by_idempotency_key`).
    fn dedupes_submissions(&self) -> bool {
        true
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError> {
        let mut script = self.script();
        script.calls.push(ProviderCall::Submit(request.clone()));
        if let Some(id) = script.by_idempotency_key.get(&request.idempotency_key) {
            return Ok(id.clone());
        }
        let outcome = match script.submits.pop_front() {
            Some(outcome) => outcome,
            None => {
                script.accepted += 1;
                Ok(format!("req-{}", script.accepted))
            }
        };
        if let Ok(id) = &outcome {
            script.by_idempotency_key.insert(request.idempotency_key.clone(), id.clone());
        }
        outcome
    }

    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        let mut script = self.script();
        script.calls.push(ProviderCall::Poll(request_id.to_owned()));
        script.statuses.get(request_id).cloned().unwrap_or(Err(ProviderError::NotFound(request_id.to_owned())))
    }

    async fn cancel(&self, request_id: &str) -> Result<(), ProviderError> {
        let mut script = self.script();
        script.calls.push(ProviderCall::Cancel(request_id.to_owned()));
        script.statuses.insert(request_id.to_owned(), Ok(ProviderStatus::Canceled));
        Ok(())
    }

    async fn verify_callback(&self, callback: &Callback<'_>) -> Result<ProviderEvent, CallbackError> {
        if callback.headers.get(SIGNATURE_HEADER).map(String::as_str) != Some("valid") {
            return Err(CallbackError::BadSignature("no valid scripted signature".into()));
        }
        let body: serde_json::Value = serde_json::from_slice(callback.body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let field = |name: &str| body.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(event_id), Some(request_id)) = (field("event_id"), field("request_id")) else {
            return Err(CallbackError::Malformed("event_id and request_id are required".into()));
        };
        let status = body.get("status").and_then(status_from).ok_or_else(|| CallbackError::Malformed("no status".into()))?;
        Ok(ProviderEvent { event_id, request_id, status })
    }

    fn sends_progress_callbacks(&self) -> bool {
        self.progress_callbacks
    }
}
