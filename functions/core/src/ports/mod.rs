//! What the rules need from the outside world, one narrow trait per
//! capability, in model types. `videojobs-aws` implements them on DynamoDB,
//! SQS, S3 and Step Functions, `videojobs-providers` the providers;
//! `videojobs-testkit` has in-memory ones for tests and the simulator.

mod failover;
mod notify;
mod progress;
mod provider;
mod ratelimit;
mod review;
mod stats;

pub use failover::ProviderSwitch;
pub use notify::{HostResolver, NotificationLog, NotificationPoster, WebhookSecrets};
pub use progress::ProgressDetails;
pub use provider::{Provider, Providers};
pub use ratelimit::RateLimiter;
pub use review::ReviewQueue;
pub use stats::StatsStore;

// The values the ports speak most, at hand with the ports.
pub use crate::model::admin::KeyRecord;
pub use crate::model::change::{ChangeOutcome, JobUpdate, StatusChange, SubmitLease};
pub use crate::model::ids::Principal;

use crate::model::error::StoreError;
use crate::model::ids::{ApiKeyHash, IdempotencyKey, JobId, KeyId, UploadId, UserId};
use crate::model::job::{Job, JobEvent};
use crate::model::lifecycle::JobStatus;
use crate::model::request::ImageType;
use async_trait::async_trait;
use time::OffsetDateTime;

/// A user's balance and how many of their jobs are in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: UserId,
    pub credits: i64,
    pub active_jobs: u32,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// The key a presented key's hash names, whatever its state.
    async fn key_for(&self, key: &ApiKeyHash) -> Result<Option<KeyRecord>, StoreError>;
    /// Stores a key's hash and record; the key itself is never stored.
    async fn save_key_record(&self, key: &ApiKeyHash, record: &KeyRecord) -> Result<(), StoreError>;
    /// Every key, oldest first.
    async fn list_keys(&self, page: &PageRequest) -> Result<Page<KeyRecord>, ListError>;
    /// Revokes a key at `at` (a revoked key stays revoked); `None` when there is no such key.
    async fn revoke_key(&self, id: &KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError>;
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError>;
    /// Opens an account with `credits` unless it exists; returns whether it was opened.
    async fn open_account(&self, user: &UserId, credits: i64) -> Result<bool, StoreError>;
    async fn grant_credits(&self, user: &UserId, credits: i64) -> Result<Account, StoreError>;
}

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

#[async_trait]
pub trait JobStore: Send + Sync {
    async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError>;
    async fn job(&self, id: &JobId) -> Result<Option<Job>, StoreError>;
    /// The job's events, oldest first.
    async fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError>;
    /// The user's jobs, newest first.
    async fn jobs_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<Job>, ListError>;
    /// The statuses of the user's jobs, newest first, as the user's index
    /// holds them: it lags the table, and reading it costs far less than
    /// reading the jobs (the user's own figures need nothing else).
    async fn statuses_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<JobStatus>, ListError>;
    /// The user's in-flight jobs, newest first.
    async fn active_jobs_of(&self, user: &UserId) -> Result<Vec<Job>, StoreError>;
    async fn change_status(&self, change: &StatusChange) -> Result<ChangeOutcome, StoreError>;
    async fn idempotency_record(&self, user: &UserId, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Sets fields on a job that is still in `status`, without changing it;
    /// `false` when it has moved on.
    async fn update_in_status(&self, id: &JobId, status: JobStatus, update: &JobUpdate) -> Result<bool, StoreError>;
    /// Raises the job's progress (never lowers it) while it is in flight.
    async fn raise_progress(&self, id: &JobId, percent: u8) -> Result<(), StoreError>;
    /// Keeps an event that changed nothing (a late or repeated callback).
    async fn record_event(&self, event: &JobEvent) -> Result<(), StoreError>;
    /// Claims a provider callback for applying (see [`ReceiptClaim`]): the
    /// receipt is pending, with a lease, until [`JobStore::complete_receipt`].
    async fn record_receipt(&self, provider: &str, event_id: &str, request_id: &str) -> Result<ReceiptClaim, StoreError>;
    /// Marks a claimed callback applied: from now on it is a duplicate.
    async fn complete_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError>;
    /// Forgets a pending receipt whose event could not be applied, so a retry applies it.
    async fn forget_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError>;
    /// The job a provider request belongs to (a strongly consistent read of
    /// the owner record, see [`ProviderRequests`]).
    async fn job_for_provider_request(&self, provider: &str, request_id: &str) -> Result<Option<JobId>, StoreError>;
    /// Keeps the Step Functions task token the job's execution waits on (it is
    /// answered when the video is stored or the job fails). An item of its own,
    /// so that the job item stays under 1 KB. `replace: false` keeps a token
    /// already stored (a late copy of the first `submit` message must not
    /// replace the token of a later `poll`).
    async fn save_task_token(&self, id: &JobId, token: &str, replace: bool) -> Result<(), StoreError>;
    async fn task_token(&self, id: &JobId) -> Result<Option<String>, StoreError>;
    /// The raw prompt, for the functions allowed to read it.
    async fn prompt(&self, id: &JobId) -> Result<Option<String>, StoreError>;
}

/// What a callback's receipt says. The receipt is put before the event is
/// applied and marked done after: a function that dies in between leaves a
/// pending receipt whose lease runs out, so the provider's retry applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptClaim {
    /// First delivery (or the lease of a dead one ran out): apply it.
    New,
    /// Applied before: answer `200` and change nothing.
    Done,
    /// Another delivery of it is being applied right now: ask for a retry.
    InProgress,
}

/// Ties a provider's request ids to our jobs so that no callback is lost,
/// whichever comes first: the worker records the owner (before the job
/// records its request id), then looks for an early callback; the webhook,
/// finding no owner, notes the early callback, then looks for the owner
/// again. Both are strongly consistent reads, so at least one side sees the
/// other, and applying an event twice is harmless.
#[async_trait]
pub trait ProviderRequests: Send + Sync {
    /// Records that `request_id` at `provider` belongs to `job`.
    async fn record_owner(&self, provider: &str, request_id: &str, job: &JobId) -> Result<(), StoreError>;
    /// Notes a verified callback for a request no job owns yet.
    async fn note_early_callback(&self, provider: &str, request_id: &str) -> Result<(), StoreError>;
    /// Whether a callback for the request came before its owner was recorded.
    async fn had_early_callback(&self, provider: &str, request_id: &str) -> Result<bool, StoreError>;
}

/// Puts work on the queue the worker consumes.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, message: &crate::model::work::WorkMessage) -> Result<(), StoreError>;
}

/// Puts a message on a queue to be received after a delay (at most 15
/// minutes on SQS; longer waits hop, see `WorkMessage::Notify`).
#[async_trait]
pub trait DelayedWorkQueue: Send + Sync {
    async fn enqueue_after(&self, message: &crate::model::work::WorkMessage, delay: std::time::Duration) -> Result<(), StoreError>;
}

/// Where a message that can never be handled is kept, with the reason, for
/// an operator (and the dead-letter alarm) to see.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// `notification`: the message came from the notification queue.
    async fn dead_letter(&self, body: &str, reason: &str, notification: bool) -> Result<(), StoreError>;
}

/// Answers the task a Step Functions execution is waiting on.
#[async_trait]
pub trait TaskTokens: Send + Sync {
    /// `Ok` also when the task was already answered or the execution ended.
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<(), StoreError>;
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), StoreError>;
}

/// The token of the task that waits for a job's review: the state machine's
/// `KeepForReview`, whose timeout is the retention window. The worker keeps
/// it (an `await_review` message); an approval answers it, which ends the
/// execution. An item of its own, apart from the submission's token
/// ([`JobStore::save_task_token`]): no worker step that answers the
/// submission's token (a late `poll`) can ever answer this one.
#[async_trait]
pub trait ReviewWaits: Send + Sync {
    async fn save_review_token(&self, id: &JobId, token: &str) -> Result<(), StoreError>;
    async fn review_token(&self, id: &JobId) -> Result<Option<String>, StoreError>;
}

/// Keeps a job's stored objects: takes their `unreviewed` tag off, so that
/// the bucket's safety net for stray copies (objects still tagged
/// unreviewed) never takes them. A key with no object is skipped: there is
/// nothing to keep.
#[async_trait]
pub trait KeepOutputs: Send + Sync {
    async fn keep(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// A source image a user asked to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub upload_id: UploadId,
    pub user_id: UserId,
    pub content_type: ImageType,
    pub size_bytes: u64,
    pub object_key: String,
    pub created_at: OffsetDateTime,
}

impl Upload {
    pub fn object_key_for(user: &UserId, id: &UploadId) -> String {
        format!("uploads/{user}/{id}")
    }
}

#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn save_upload(&self, upload: &Upload) -> Result<(), StoreError>;
    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>, StoreError>;
}

/// A URL that allows one request for a short time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    pub url: String,
    pub method: &'static str,
    /// Headers the request must carry exactly.
    pub headers: Vec<(String, String)>,
    pub expires_at: OffsetDateTime,
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn presign_put(&self, key: &str, size_bytes: u64, ttl_seconds: u64) -> Result<PresignedUrl, StoreError>;
    async fn presign_get(&self, key: &str, ttl_seconds: u64) -> Result<PresignedUrl, StoreError>;
    /// The object's size, or `None` when there is no such object.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// The object's first `max_bytes` bytes (fewer when it is shorter), or
    /// `None` when there is no such object.
    async fn read_prefix(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The input a job's execution starts with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowInput {
    pub job_id: JobId,
    pub workflow_type: String,
    /// How long the execution waits for the video before giving up.
    pub deadline_seconds: u64,
    /// How long a video that was not approved is kept.
    pub retention_seconds: u64,
}

#[async_trait]
pub trait Workflows: Send + Sync {
    /// Starts the job's execution, named by its id. Starting it again is not an error.
    async fn start(&self, input: &WorkflowInput) -> Result<(), StoreError>;
    /// Stops the job's execution; one that already ended is not an error.
    async fn stop(&self, job: &JobId, cause: &str) -> Result<(), StoreError>;
}

/// An object copied into our bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct CopiedObject {
    pub size_bytes: u64,
    /// Hex SHA-256 of the bytes, computed as they streamed through.
    pub sha256: String,
    /// Duration and frame size, when the object is an MP4 we could read.
    pub video: Option<crate::model::mp4::VideoInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The source could not be read right now (network, 5xx): try again.
    #[error("source unavailable: {0}")]
    SourceUnavailable(String),
    /// The source is gone or not what it claims (404, short body, bad checksum).
    #[error("source unusable: {0}")]
    SourceUnusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where outputs are kept: the only code that moves video bytes into S3.
#[async_trait]
pub trait OutputStore: Send + Sync {
    /// Streams `url` into `key` (multipart, never whole in memory).
    /// The copy is marked unreviewed: a lifecycle rule deletes unreviewed
    /// objects some days after the retention window, as a safety net for a
    /// copy that no job points to.
    async fn copy_from_url(&self, url: &str, key: &str, content_type: &str) -> Result<CopiedObject, CopyError>;
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Keeps approved objects: their `unreviewed` tag is taken off, so the
    /// safety net leaves them alone.
    async fn keep(&self, keys: &[String]) -> Result<(), StoreError>;
}
