use crate::model::error::StoreError;
use crate::model::lifecycle::JobStatus;
use crate::model::stats::{Counters, StuckPage};
use async_trait::async_trait;
use time::OffsetDateTime;

/// Where the counters and the stuck-jobs index are read.
#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Every operational counter, summed over its shards.
    async fn counters(&self) -> Result<Counters, StoreError>;
    /// Jobs in `status` (one of [`WATCHED_STATUSES`]) not updated since
    /// `before`: all counted, the oldest `limit` listed.
    async fn stuck_jobs(&self, status: JobStatus, before: OffsetDateTime, limit: u32) -> Result<StuckPage, StoreError>;
    /// A provider delivered a callback we had already applied.
    async fn count_duplicate_callback(&self, provider: &str) -> Result<(), StoreError>;
}
