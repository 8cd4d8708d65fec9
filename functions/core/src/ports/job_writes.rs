//! The writes of a job's life: its creation, its status changes and what it
//! records in between. The one port the notification decorator
//! (`services::notifying::NotifyingJobs`) wraps: a status change is the
//! only write a client is told of.

use super::records::{CreateOutcome, NewJob};
use crate::model::change::{ChangeOutcome, JobUpdate, StatusChange};
use crate::model::error::StoreError;
use crate::model::ids::JobId;
use crate::model::job::JobEvent;
use crate::model::lifecycle::JobStatus;
use async_trait::async_trait;

/// Writes to jobs, each carried by a condition (the invariants in
/// `videojobs_aws::dynamo`).
#[async_trait]
pub trait JobWrites: Send + Sync {
    /// Writes a new job with its first event, prompt, idempotency record and
    /// the account's debit, all or nothing (see [`CreateOutcome`]).
    async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError>;
    /// Moves a job from the status it is in to the next, with its event and
    /// any refund, conditioned on the status it leaves (see [`ChangeOutcome`]).
    async fn change_status(&self, change: &StatusChange) -> Result<ChangeOutcome, StoreError>;
    /// Sets fields on a job that is still in `status`, without changing it;
    /// `false` when it has moved on.
    async fn update_in_status(&self, id: &JobId, status: JobStatus, update: &JobUpdate) -> Result<bool, StoreError>;
    /// Raises the job's progress (never lowers it) while it is in flight.
    async fn raise_progress(&self, id: &JobId, percent: u8) -> Result<(), StoreError>;
    /// Keeps an event that changed nothing (a late or repeated callback).
    async fn record_event(&self, event: &JobEvent) -> Result<(), StoreError>;
}
