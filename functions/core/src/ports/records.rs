//! What the job ports speak beyond the model: a create's writes and its
//! answer, and the pages of a listing.

use crate::model::error::StoreError;
use crate::model::ids::{IdempotencyKey, JobId, UserId};
use crate::model::job::{Job, JobEvent};
use time::OffsetDateTime;

/// The answer a create request got, kept under its `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub user_id: UserId,
    pub key: IdempotencyKey,
    /// Identifies the request (route and canonical body).
    pub fingerprint: String,
    pub job_id: JobId,
    pub response_status: u16,
    pub response_body: String,
    pub created_at: OffsetDateTime,
}

/// Everything a create request writes, together or not at all.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job: Job,
    pub prompt: Option<String>,
    /// When the raw prompt is deleted (its item's TTL): the end of the job's
    /// retention window, counted from the latest the video could be ready.
    pub prompt_expires_at: Option<OffsetDateTime>,
    pub first_event: JobEvent,
    pub idempotency: Option<IdempotencyRecord>,
    /// The user's cap on in-flight jobs.
    pub max_active_jobs: u32,
}

/// What became of a create: written, or why not (nothing is written then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key is taken: the caller compares fingerprints.
    IdempotencyKeyTaken,
    InsufficientCredits {
        balance: i64,
    },
    TooManyActiveJobs,
    NoAccount,
}

/// A page of a listing and the opaque cursor to the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

/// Why a listing could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("the cursor is not one this API gave out")]
    BadCursor,
    #[error(transparent)]
    Store(#[from] StoreError),
}
