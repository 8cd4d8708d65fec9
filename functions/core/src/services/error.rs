//! What can go wrong for a caller of the API, in the caller's terms.
//!
//! Each variant has a stable `code` and a message safe to show; the HTTP
//! status of each lives in one match in `videojobs-api`. Internal details
//! (an SDK error, a table name) are logged, never put in a message.

use crate::model::error::StoreError;
use crate::model::lifecycle::JobStatus;
use crate::model::request::InvalidRequest;

/// A refusal or failure of an API operation, as the caller is told of it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppError {
    /// A body or path value is refused; names the field (400).
    #[error("{0}")]
    InvalidRequest(#[from] InvalidRequest),
    /// The body is not declared as JSON (415).
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// The body is over the route's size cap (413).
    #[error("the request body is larger than {max_bytes} bytes")]
    BodyTooLarge {
        /// The cap, in bytes.
        max_bytes: usize,
    },
    /// The upload declares, or its object holds, more bytes than the deployment allows (413).
    #[error("{message}")]
    UploadTooLarge {
        /// What was too large, by how much; shown to the caller.
        message: String,
    },
    /// The uploaded bytes are not an image of the declared type (names `upload_id`).
    #[error("upload_id: the uploaded file {message}")]
    UnsupportedImage {
        /// What the bytes are instead; shown to the caller.
        message: String,
    },
    /// No key, an unknown one, or one that is revoked or expired (401, with `WWW-Authenticate: Bearer`).
    #[error("a valid API key is required")]
    Unauthenticated,
    /// The key's role may not do this, or the job is not the caller's to change (403); holds the reason shown.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A reviewer tried to approve or reject their own job (403).
    #[error("a video is approved or rejected by someone other than the person who asked for it")]
    OwnJobReview,
    /// The account cannot pay for the job, or there is no account (402); nothing is written.
    #[error("this job costs {needed} credits and the balance is {balance}")]
    InsufficientCredits {
        /// What the job costs, in credits.
        needed: u32,
        /// The account's credits now; 0 when there is no account.
        balance: i64,
    },
    /// No such job, or one the caller may not see (404), so that its existence is not disclosed.
    #[error("no such job")]
    JobNotFound,
    /// No API key with that public id (404).
    #[error("no such API key")]
    KeyNotFound,
    /// No route for the method and path (404); the only error with no next step.
    #[error("no such route")]
    RouteNotFound,
    /// The job's status does not allow the operation (409): cancelling a finished job, reviewing one that is not
    /// completed, asking for the result of one without a video.
    #[error("{message}")]
    WrongState {
        /// Where the job is now.
        status: JobStatus,
        /// Why its status refuses the operation, shown to the caller.
        message: String,
    },
    /// The job's video is past its retention window and deleted, or the job expired (410).
    #[error("the video of this job has expired")]
    Expired,
    /// The job's inputs are no longer kept (its prompt is deleted with its
    /// retention window), so it cannot be made again as it was (410).
    #[error("this job's prompt is no longer kept, so it cannot be made again as it was")]
    InputsGone,
    /// A reviewer rejected the video, which is being deleted (410).
    #[error("a reviewer rejected this video, and it was deleted")]
    Rejected,
    /// The `Idempotency-Key` was used before with a different request (422).
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    /// The user already has the most in-flight jobs allowed (429); nothing is written.
    #[error("there are already {limit} jobs in progress")]
    TooManyActiveJobs {
        /// The cap on in-flight jobs.
        limit: u32,
    },
    /// The key went over one of its rate limits (429, with `Retry-After` and the limit's headers).
    #[error("this key made more than {} {} requests in {} seconds", .0.limit, .0.policy.name(), .0.window_seconds)]
    RateLimited(crate::model::ratelimit::Limited),
    /// A store or AWS service is throttling or unreachable (503); trying again may work. Holds detail for the logs only.
    #[error("the service is busy")]
    Unavailable(String),
    /// Anything else: a bug or a record that does not parse (500). Holds detail for the logs only.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => AppError::Unavailable(detail),
            StoreError::Internal(detail) => AppError::Internal(detail),
        }
    }
}

impl AppError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidRequest(_) => "invalid_request",
            AppError::UnsupportedMediaType => "unsupported_media_type",
            AppError::BodyTooLarge { .. } => "body_too_large",
            AppError::UploadTooLarge { .. } => "upload_too_large",
            AppError::UnsupportedImage { .. } => "unsupported_image",
            AppError::Unauthenticated => "unauthenticated",
            AppError::Forbidden(_) => "forbidden",
            AppError::OwnJobReview => "own_job_review",
            AppError::InsufficientCredits { .. } => "insufficient_credits",
            AppError::JobNotFound => "job_not_found",
            AppError::KeyNotFound => "key_not_found",
            AppError::RouteNotFound => "route_not_found",
            AppError::WrongState { .. } => "wrong_state",
            AppError::Expired => "expired",
            AppError::InputsGone => "inputs_gone",
            AppError::Rejected => "video_rejected",
            AppError::IdempotencyConflict => "idempotency_conflict",
            AppError::TooManyActiveJobs { .. } => "too_many_active_jobs",
            AppError::RateLimited(_) => "rate_limited",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// The message shown to the caller: never an internal detail.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Unavailable(_) => "The service is busy right now.".to_owned(),
            AppError::Internal(_) => "Something went wrong on our side.".to_owned(),
            other => other.to_string(),
        }
    }

    /// What the caller can do about it.
    pub fn next_step(&self) -> Option<String> {
        let step = match self {
            AppError::InvalidRequest(_) => "Fix the named field and send the request again.",
            AppError::UnsupportedMediaType => "Send the body as JSON with Content-Type: application/json.",
            AppError::BodyTooLarge { .. } => "Send a smaller body.",
            AppError::UploadTooLarge { .. } => "Resize or compress the image and try again.",
            AppError::UnsupportedImage { .. } => {
                "Upload a PNG, JPEG or WebP image of the declared content_type, then animate its new upload_id."
            }
            AppError::Unauthenticated => "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            AppError::Forbidden(_) => "Use a key with the right role.",
            AppError::OwnJobReview => "Ask another reviewer to review it.",
            AppError::InsufficientCredits { .. } => "Add credits, or ask for a shorter or smaller video.",
            AppError::JobNotFound => "Check the job id.",
            AppError::KeyNotFound => "Check the key_id (GET /videos/admin/keys lists them).",
            AppError::RouteNotFound => return None,
            AppError::WrongState { .. } => "Check the job's status first.",
            AppError::Expired => "Generate the video again.",
            AppError::InputsGone => "Remix it with a new prompt, or create a new job.",
            AppError::Rejected => "Read the job's error for what to change, then generate the video again.",
            AppError::IdempotencyConflict => "Use a new Idempotency-Key for a different request.",
            AppError::TooManyActiveJobs { .. } => "Wait for a job to finish, or cancel one, then try again.",
            AppError::RateLimited(_) => "Wait the seconds the Retry-After header says, then try again.",
            AppError::Unavailable(_) => "Try again in a moment; with the same Idempotency-Key it is safe.",
            AppError::Internal(_) => "Try again later.",
        };
        Some(step.to_owned())
    }

    /// Detail for the logs, when there is more than the message.
    pub fn internal_detail(&self) -> Option<&str> {
        match self {
            AppError::Unavailable(detail) | AppError::Internal(detail) => Some(detail),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_public_message() {
        let err = AppError::Internal("table videojobs-prod-JobsTable is missing".into());
        assert!(!err.public_message().contains("videojobs"));
        assert_eq!(err.internal_detail(), Some("table videojobs-prod-JobsTable is missing"));
        let err: AppError = StoreError::Unavailable("ThrottlingException".into()).into();
        assert!(!err.public_message().contains("Throttling"));
        assert_eq!(err.code(), "unavailable");
    }

    #[test]
    fn a_refused_field_keeps_its_name_in_the_message() {
        let err: AppError = InvalidRequest::new("prompt", "must not be empty").into();
        assert_eq!(err.public_message(), "prompt: must not be empty");
        assert_eq!(err.code(), "invalid_request");
    }

    #[test]
    fn every_error_but_an_unknown_route_tells_what_to_do_next() {
        assert!(AppError::RouteNotFound.next_step().is_none());
        assert!(AppError::TooManyActiveJobs { limit: 5 }.next_step().is_some());
        assert!(AppError::InsufficientCredits { needed: 5, balance: 1 }.next_step().is_some());
    }

    #[test]
    fn only_unavailability_is_retryable_storage() {
        assert!(StoreError::Unavailable("x".into()).is_retryable());
        assert!(!StoreError::Internal("x".into()).is_retryable());
    }
}
