//! Everything provider-specific sits behind one trait. The queue, the table
//! and the review logic see only these types, never a provider's wire format.
//!
//! The shape follows what real providers publish: Replicate's predictions
//! (create with a webhook, `starting`/`processing`/`succeeded`/`failed`/
//! `canceled`, cancel, get; Standard Webhooks signatures) and fal's queue
//! (submit with a webhook, `IN_QUEUE` with a position, `IN_PROGRESS`,
//! `COMPLETED`, cancel, fetch the result; ED25519 signatures whose keys are
//! fetched, hence `verify_callback` is async).

use crate::model::job::JobParams;
use crate::model::progress::{ProgressDetail, Stage};
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// What a provider is asked to make.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    /// Sent as the provider's idempotency key where it has one: a submission
    /// repeated after a crash or a lost answer finds the same request.
    pub idempotency_key: String,
    pub params: JobParams,
    pub prompt: Option<String>,
    /// A URL the provider can fetch the source image from (image to video).
    pub image_url: Option<String>,
    /// Where the provider posts its callbacks.
    pub callback_url: String,
    /// Faults the local provider is asked to produce (ignored by real ones).
    pub faults: Option<serde_json::Value>,
}

/// Where the finished video is, for the worker to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOutput {
    pub video_url: String,
    pub thumbnail_url: Option<String>,
}

/// A provider's view of a request, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Accepted, waiting its turn (`position` when the provider says).
    Queued {
        position: Option<u32>,
    },
    /// Being generated; `percent` when the provider says.
    Processing {
        percent: Option<u8>,
    },
    Succeeded(ProviderOutput),
    /// The provider gave up; `message` is its own words.
    Failed {
        code: String,
        message: String,
    },
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Rate limits, 5xx, timeouts: asking again later may work.
    #[error("provider busy: {message}")]
    Transient { message: String, retry_after: Option<Duration> },
    /// The provider will not take this job as it is (bad input, content policy).
    #[error("provider refused: {message}")]
    Refused { code: String, message: String },
    /// No such request at the provider.
    #[error("provider has no request {0}")]
    NotFound(String),
}

/// A callback as it arrived: headers (lower-case names) and the raw body.
#[derive(Debug, Clone)]
pub struct Callback<'a> {
    pub headers: &'a HashMap<String, String>,
    pub body: &'a [u8],
    /// Now, in Unix seconds (a parameter so tests can move time).
    pub now: i64,
}

/// A verified callback, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// Unique per provider: a repeated delivery has the same id.
    pub event_id: String,
    pub request_id: String,
    pub status: ProviderStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("callback signature refused: {0}")]
    BadSignature(String),
    #[error("callback body not understood: {0}")]
    Malformed(String),
}

impl ProviderStatus {
    /// The progress detail a "still working" answer gives; `None` for an outcome.
    pub fn progress_detail(&self, observed_at: OffsetDateTime) -> Option<ProgressDetail> {
        match self {
            ProviderStatus::Queued { position } => Some(ProgressDetail { stage: Stage::Queued, queue_position: *position, observed_at }),
            ProviderStatus::Processing { .. } => Some(ProgressDetail { stage: Stage::Processing, queue_position: None, observed_at }),
            _ => None,
        }
    }
}

/// What the user is told when a provider gives up, by its code.
pub fn failure_advice(code: &str) -> &'static str {
    match code {
        "content_policy" | "nsfw" => "Change the prompt or image: the provider would not generate it.",
        "invalid_input" | "bad_request" => "Check the prompt and options, then try again.",
        "image_unreadable" => "Use a JPEG, PNG or WebP image that opens, then try again.",
        "prompt_too_long" => "Try again with a shorter prompt.",
        _ => "Try again; if it fails again, change the prompt or pick another provider.",
    }
}
