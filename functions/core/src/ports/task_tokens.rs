//! The Step Functions tasks a job's execution waits on: the submission's
//! (answered when the video is stored or the job fails) and the review's.

use crate::model::error::StoreError;
use crate::model::ids::JobId;
use async_trait::async_trait;

/// Whether a token saved for a job replaces one already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSave {
    /// The token of a later step (a `poll`) takes the place of the one before.
    Replace,
    /// A token already stored stays (a late copy of the first `submit`
    /// message must not replace the token of a later `poll`).
    KeepExisting,
}

/// Where the token of the task that waits for the submission is kept: an
/// item of its own, so that the job item stays under 1 KB.
#[async_trait]
pub trait SubmissionTokens: Send + Sync {
    /// Keeps the token the job's execution waits on, as `save` says.
    async fn save_task_token(&self, id: &JobId, token: &str, save: TokenSave) -> Result<(), StoreError>;
    /// The token kept for the job, if any.
    async fn task_token(&self, id: &JobId) -> Result<Option<String>, StoreError>;
}

/// Answers the task a Step Functions execution is waiting on.
#[async_trait]
pub trait TaskTokens: Send + Sync {
    /// `Ok` also when the task was already answered or the execution ended.
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<(), StoreError>;
    /// Fails the task with an error name the state machine routes on; `Ok`
    /// also when the task was already answered or the execution ended.
    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<(), StoreError>;
}

/// The token of the task that waits for a job's review: the state machine's
/// `KeepForReview`, whose timeout is the retention window. The worker keeps
/// it (an `await_review` message); an approval answers it, which ends the
/// execution. An item of its own, apart from the submission's token
/// ([`SubmissionTokens`]): no worker step that answers the submission's
/// token (a late `poll`) can ever answer this one.
#[async_trait]
pub trait ReviewWaits: Send + Sync {
    /// Keeps the review task's token.
    async fn save_review_token(&self, id: &JobId, token: &str) -> Result<(), StoreError>;
    /// The review task's token, if the worker kept one.
    async fn review_token(&self, id: &JobId) -> Result<Option<String>, StoreError>;
}
