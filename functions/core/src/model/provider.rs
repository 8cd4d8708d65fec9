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
    /// What to make.
    pub params: JobParams,
    /// The raw prompt; `None` for an image-to-video job without one.
    pub prompt: Option<String>,
    /// A URL the provider can fetch the source image from (image to video).
    pub image_url: Option<String>,
    /// Where the provider posts its callbacks.
    pub callback_url: String,
    /// Faults the local provider is asked to produce (ignored by real ones).
    pub faults: Option<serde_json::Value>,
    /// The client's seed, for providers that take one.
    pub seed: Option<u32>,
}

/// Where the finished video is, for the worker to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOutput {
    /// Where to fetch the video from, for the worker to copy into our bucket.
    pub video_url: String,
    /// Where to fetch the thumbnail from, when the provider makes one.
    pub thumbnail_url: Option<String>,
}

/// A provider's view of a request, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Accepted, waiting its turn (`position` when the provider says).
    Queued {
        /// Jobs ahead of this one (0: next).
        position: Option<u32>,
    },
    /// Being generated; `percent` when the provider says.
    Processing {
        /// Percentage done, 0 to 100.
        percent: Option<u8>,
    },
    /// The video is ready, at these URLs.
    Succeeded(ProviderOutput),
    /// The provider gave up; `message` is its own words.
    Failed {
        /// The provider's failure code, kept as the job's error code.
        code: String,
        /// The provider's own words; logged only as their length (`redact::provider_words`).
        message: String,
    },
    /// The provider reports the request canceled, whoever asked.
    Canceled,
}

/// Why a call to a provider did not give an answer about the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Rate limits, 5xx, timeouts: asking again later may work.
    #[error("provider busy: {}", crate::model::redact::provider_words(message))]
    Transient {
        /// What went wrong, for the logs.
        message: String,
        /// How long the provider asked us to wait (its `Retry-After`), when it said.
        retry_after: Option<Duration>,
    },
    /// The provider will not take this job as it is (bad input, content policy).
    #[error("provider refused ({code}): {}", crate::model::redact::provider_words(message))]
    Refused {
        /// The provider's reason, such as `content_policy`; decides failover and the advice shown.
        code: String,
        /// The provider's own words.
        message: String,
    },
    /// No such request at the provider.
    #[error("provider has no request {0}")]
    NotFound(String),
}

/// A callback as it arrived: headers (lower-case names) and the raw body.
#[derive(Debug, Clone)]
pub struct Callback<'a> {
    /// Every header, names in lower case.
    pub headers: &'a HashMap<String, String>,
    /// The raw body, as signed.
    pub body: &'a [u8],
    /// Now, in Unix seconds (a parameter so tests can move time).
    pub now: i64,
}

/// A verified callback, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// Unique per provider: a repeated delivery has the same id.
    pub event_id: String,
    /// The provider's id for the request, which names the job it is about.
    pub request_id: String,
    /// What the provider says of the request now.
    pub status: ProviderStatus,
}

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The signature is missing, stale or does not verify (401); holds the reason for the logs.
    #[error("callback signature refused: {0}")]
    BadSignature(String),
    /// The body does not parse as this provider's callback (400); holds the reason for the logs.
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

/// The provider codes that say the request itself must change: the same
/// request made again fails again. Any other code may be transient.
const CODES_OF_A_BAD_REQUEST: [&str; 6] = ["content_policy", "nsfw", "invalid_input", "bad_request", "image_unreadable", "prompt_too_long"];

/// Whether a job the provider failed with `code` may succeed if tried again as it is.
pub fn retryable(code: &str) -> bool {
    !CODES_OF_A_BAD_REQUEST.contains(&code)
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
