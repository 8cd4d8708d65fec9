//! A user's jobs, read from the indexes (which lag the table).

use super::records::{ListError, Page, PageRequest};
use crate::model::error::StoreError;
use crate::model::ids::{JobId, UserId};
use crate::model::job::Job;
use crate::model::lifecycle::JobStatus;
use crate::model::listing::JobFilter;
use async_trait::async_trait;

/// The listings of one user's jobs.
#[async_trait]
pub trait JobListings: Send + Sync {
    /// The user's jobs that pass `filter`, newest first. A page may hold
    /// fewer than `page.limit` jobs (even none) and still have a next cursor:
    /// a filter is applied to what a bounded read found, and each job is
    /// checked again as it is now (the indexes lag the table).
    async fn jobs_of(&self, user: &UserId, filter: &JobFilter, page: &PageRequest) -> Result<Page<Job>, ListError>;
    /// The statuses of the user's jobs, newest first, as the user's index
    /// holds them: it lags the table, and reading it costs far less than
    /// reading the jobs (the user's own figures need nothing else).
    async fn statuses_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<JobStatus>, ListError>;
    /// The user's in-flight jobs, newest first.
    async fn active_jobs_of(&self, user: &UserId) -> Result<Vec<Job>, StoreError>;
    /// The jobs made from `parent` by a retry or a remix, newest first, at most `limit`.
    async fn children_of(&self, parent: &JobId, limit: u32) -> Result<Vec<Job>, StoreError>;
}
