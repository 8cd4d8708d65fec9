use crate::model::error::StoreError;
use crate::model::ids::JobId;
use crate::model::progress::ProgressDetail;
use async_trait::async_trait;
use time::OffsetDateTime;

/// The job item's progress detail and its refresh window.
#[async_trait]
pub trait ProgressDetails: Send + Sync {
    /// Records `detail` if [`ProgressDetail::may_replace`] allows it (a
    /// conditional write); `false` when it was stale.
    async fn record_detail(&self, id: &JobId, detail: &ProgressDetail) -> Result<bool, StoreError>;
    /// Claims the job's refresh window: `true` for one caller per
    /// `window_seconds`, and only while the job is `submitted` or `processing`.
    async fn claim_refresh(&self, id: &JobId, now: OffsetDateTime, window_seconds: u64) -> Result<bool, StoreError>;
}
