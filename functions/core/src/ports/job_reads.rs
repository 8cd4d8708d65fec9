//! Reading one job and what belongs to it.

use super::records::IdempotencyRecord;
use crate::model::error::StoreError;
use crate::model::ids::{IdempotencyKey, JobId, UserId};
use crate::model::job::{Job, JobEvent};
use async_trait::async_trait;

/// One job, its history, its prompt, and the answer a create request got.
#[async_trait]
pub trait JobReads: Send + Sync {
    /// The job, read strongly consistent; `None` when there is no such job.
    async fn job(&self, id: &JobId) -> Result<Option<Job>, StoreError>;
    /// The job's events, oldest first.
    async fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError>;
    /// The raw prompt, for the functions allowed to read it.
    async fn prompt(&self, id: &JobId) -> Result<Option<String>, StoreError>;
    /// The answer kept under the user's `Idempotency-Key`, if any.
    async fn idempotency_record(&self, user: &UserId, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError>;
}
