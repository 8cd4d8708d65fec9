//! What the rules need from the outside world, one narrow trait per
//! capability, in model types. `videojobs-aws` implements them on DynamoDB,
//! SQS, S3 and Step Functions, `videojobs-providers` the providers;
//! `videojobs-testkit` has in-memory ones for tests and the simulator.

#![warn(missing_docs)]

mod callbacks;
mod failover;
mod job_reads;
mod job_writes;
mod listings;
mod notifications;
mod progress;
mod provider;
mod ratelimit;
mod records;
mod review;
mod stats;
mod task_tokens;

pub use callbacks::{CallbackLedger, ProviderRequests, ReceiptClaim};
pub use failover::ProviderSwitch;
pub use job_reads::JobReads;
pub use job_writes::JobWrites;
pub use listings::JobListings;
pub use notifications::{DeliveryLog, EndpointHealth, HostResolver, NotificationLog, NotificationPoster, WebhookSecrets};
pub use progress::ProgressDetails;
pub use provider::{Provider, Providers};
pub use ratelimit::RateLimiter;
pub use records::{CreateOutcome, IdempotencyRecord, ListError, NewJob, Page, PageRequest};
pub use review::ReviewQueue;
pub use stats::StatsStore;
pub use task_tokens::{ReviewWaits, SubmissionTokens, TaskTokens, TokenSave};

// The values the ports speak most, at hand with the ports.
pub use crate::model::admin::KeyRecord;
pub use crate::model::change::{ChangeOutcome, JobUpdate, StatusChange, SubmitLease};
pub use crate::model::ids::Principal;

use crate::model::error::StoreError;
use crate::model::ids::{ApiKeyHash, JobId, KeyId, UploadId, UserId};
use crate::model::request::ImageType;
use async_trait::async_trait;
use time::OffsetDateTime;

/// A user's balance and how many of their jobs are in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Whose account.
    pub user_id: UserId,
    /// Credits left to spend.
    pub credits: i64,
    /// Jobs in flight now (capped per user).
    pub active_jobs: u32,
}

/// API keys, by the hash of the key.
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

/// Users' accounts: their credits and in-flight jobs.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The user's account; `None` when they have none.
    async fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError>;
    /// Opens an account with `credits` unless it exists; returns whether it was opened.
    async fn open_account(&self, user: &UserId, credits: i64) -> Result<bool, StoreError>;
    /// Adds `credits` to an account (opening it if needed); the account after.
    async fn grant_credits(&self, user: &UserId, credits: i64) -> Result<Account, StoreError>;
}

/// Puts work on the queue the worker consumes.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Puts the message on the queue, to be received at once.
    async fn enqueue(&self, message: &crate::model::work::WorkMessage) -> Result<(), StoreError>;
}

/// Puts a message on a queue to be received after a delay (at most 15
/// minutes on SQS; longer waits hop, see `WorkMessage::Notify`).
#[async_trait]
pub trait DelayedWorkQueue: Send + Sync {
    /// Puts the message on the queue, to be received after `delay`.
    async fn enqueue_after(&self, message: &crate::model::work::WorkMessage, delay: std::time::Duration) -> Result<(), StoreError>;
}

/// Where a message that can never be handled is kept, with the reason, for
/// an operator (and the dead-letter alarm) to see.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Keeps the message `body`, from `queue`, on that queue's dead-letter queue with `reason`.
    async fn dead_letter(&self, body: &str, reason: &str, queue: MessageQueue) -> Result<(), StoreError>;
}

/// The worker's two queues: the pipeline's, and client notifications'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageQueue {
    /// The pipeline's messages (`submit`, `poll`, `finalize`, …).
    Work,
    /// Client notifications (`notify`).
    Notifications,
}

/// A source image a user asked to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The upload's id, which `animate` names.
    pub upload_id: UploadId,
    /// Who asked for it: only they may animate it.
    pub user_id: UserId,
    /// The image type declared, checked against the bytes at `animate`.
    pub content_type: ImageType,
    /// The size declared, which the presigned PUT must match.
    pub size_bytes: u64,
    /// Where the bytes go in the media bucket.
    pub object_key: String,
    /// When it was asked for.
    pub created_at: OffsetDateTime,
}

impl Upload {
    /// The object key of a user's upload.
    pub fn object_key_for(user: &UserId, id: &UploadId) -> String {
        format!("uploads/{user}/{id}")
    }

    /// Where `animate` keeps the copy of an upload it checked, for `job`:
    /// no URL a client holds can write there (a presigned PUT names its key
    /// exactly, and upload ids start `upl_`), so the provider gets the bytes
    /// that were checked, whatever is PUT to the upload afterwards.
    pub fn checked_key_for(job: &JobId) -> String {
        format!("uploads/checked/{job}")
    }
}

/// The records of source images users asked to upload.
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Keeps the upload's record (its object comes later, by a presigned PUT).
    async fn save_upload(&self, upload: &Upload) -> Result<(), StoreError>;
    /// The upload's record; `None` when there is none (or it expired).
    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>, StoreError>;
}

/// A URL that allows one request for a short time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    /// The URL, signed.
    pub url: String,
    /// The one method it allows (`GET` or `PUT`).
    pub method: &'static str,
    /// Headers the request must carry exactly.
    pub headers: Vec<(String, String)>,
    /// When the signature stops working.
    pub expires_at: OffsetDateTime,
}

/// The media bucket as clients reach it: presigned URLs, and small reads.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// A URL that lets a client PUT exactly `size_bytes` to `key` for `ttl_seconds`.
    async fn presign_put(&self, key: &str, size_bytes: u64, ttl_seconds: u64) -> Result<PresignedUrl, StoreError>;
    /// A URL that lets a client GET `key` for `ttl_seconds`.
    async fn presign_get(&self, key: &str, ttl_seconds: u64) -> Result<PresignedUrl, StoreError>;
    /// The object's size, or `None` when there is no such object.
    async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// The object's first `max_bytes` bytes (fewer when it is shorter), or
    /// `None` when there is no such object.
    async fn read_prefix(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Copies the object at `from` to `to` in the bucket, as it is at this
    /// moment (an object that is not there is an error).
    async fn copy_object(&self, from: &str, to: &str) -> Result<(), StoreError>;
}

/// The input a job's execution starts with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowInput {
    /// The job; the execution is named after it.
    pub job_id: JobId,
    /// `text_to_video` or `image_to_video`.
    pub workflow_type: String,
    /// How long the execution waits for the video before giving up.
    pub deadline_seconds: u64,
    /// How long a video that was not approved is kept.
    pub retention_seconds: u64,
}

/// The jobs' Step Functions executions.
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
    /// Bytes copied.
    pub size_bytes: u64,
    /// Hex SHA-256 of the bytes, computed as they streamed through.
    pub sha256: String,
    /// Duration and frame size, when the object is an MP4 we could read.
    pub video: Option<crate::model::mp4::VideoInfo>,
}

/// Why an output could not be copied into the bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The source could not be read right now (network, 5xx): try again.
    #[error("source unavailable: {0}")]
    SourceUnavailable(String),
    /// The source is gone or not what it claims (404, short body, bad checksum).
    #[error("source unusable: {0}")]
    SourceUnusable(String),
    /// Writing to the bucket failed.
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
    /// Deletes the objects; a missing key is no error.
    async fn delete(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// Keeps a job's stored objects: takes their `unreviewed` tag off, so that
/// the bucket's safety net for stray copies (objects still tagged
/// unreviewed) never takes them. The one way to keep an output, for the
/// approval (status function) and the worker alike.
#[async_trait]
pub trait KeepOutputs: Send + Sync {
    /// Untags each key's object; a key with no object is skipped: there is nothing to keep.
    async fn keep(&self, keys: &[String]) -> Result<(), StoreError>;
}
