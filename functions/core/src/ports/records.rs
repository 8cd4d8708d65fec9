//! What the job ports speak beyond the model: a create's writes and its
//! answer, and the pages of a listing.

use crate::model::error::StoreError;
use crate::model::ids::{IdempotencyKey, JobId, UserId};
use crate::model::job::{Job, JobEvent};
use time::OffsetDateTime;

/// The answer a create request got, kept under its `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The user the key belongs to (keys are scoped to a user).
    pub user_id: UserId,
    /// The client's `Idempotency-Key`.
    pub key: IdempotencyKey,
    /// Identifies the request (route and canonical body).
    pub fingerprint: String,
    /// The job the first request made.
    pub job_id: JobId,
    /// The first answer's HTTP status, given again to a replay.
    pub response_status: u16,
    /// The first answer's body, given again to a replay.
    pub response_body: String,
    /// When the first request was answered.
    pub created_at: OffsetDateTime,
}

/// Everything a create request writes, together or not at all.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The job, `queued`.
    pub job: Job,
    /// The raw prompt, kept apart in the prompts table.
    pub prompt: Option<String>,
    /// When the raw prompt is deleted (its item's TTL): the end of the job's
    /// retention window, counted from the latest the video could be ready.
    pub prompt_expires_at: Option<OffsetDateTime>,
    /// The job's first event (`queued`).
    pub first_event: JobEvent,
    /// The answer to keep under the request's `Idempotency-Key`, if it has one.
    pub idempotency: Option<IdempotencyRecord>,
    /// The user's cap on in-flight jobs.
    pub max_active_jobs: u32,
}

/// What became of a create: written, or why not (nothing is written then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Written, the debit and the active-job slot with it.
    Created,
    /// The idempotency key is taken: the caller compares fingerprints.
    IdempotencyKeyTaken,
    /// The balance is below the job's cost.
    InsufficientCredits {
        /// The balance the debit found.
        balance: i64,
    },
    /// The user is at the cap on in-flight jobs.
    TooManyActiveJobs,
    /// The user has no account.
    NoAccount,
}

/// A page of a listing and the opaque cursor to the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// This page's items, in the listing's order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items at most.
    pub limit: u32,
    /// A cursor from the page before; `None` for the first.
    pub cursor: Option<String>,
}

/// Why a listing could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The cursor does not decode, or names another user's listing.
    #[error("the cursor is not one this API gave out")]
    BadCursor,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
