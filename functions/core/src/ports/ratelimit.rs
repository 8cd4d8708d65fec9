use crate::model::error::StoreError;
use async_trait::async_trait;

/// Counts hits in a window.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one hit on `bucket` in the window starting at `window_start`
    /// (Unix seconds), unless `limit` hits are counted already: `false` then.
    async fn take(&self, bucket: &str, window_start: i64, window_seconds: u64, limit: u32) -> Result<bool, StoreError>;
}
