//! Rate limit windows: one item per key, policy and minute, whose `hits` are
//! added to only while under the limit (a conditional update), and which
//! DynamoDB deletes by TTL after the window.

use super::*;
use videojobs_core::ports::RateLimiter;

#[async_trait]
impl RateLimiter for DynamoStore {
    async fn take(&self, bucket: &str, window_start: i64, window_seconds: u64, limit: u32) -> Result<bool, StoreError> {
        let expires = window_start + i64::try_from(window_seconds).unwrap_or(60) * 2;
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(format!("RATE#{bucket}#{window_start}"), "RATE")))
            .update_expression("ADD hits :one SET ttl_epoch = if_not_exists(ttl_epoch, :expires)")
            .condition_expression("attribute_not_exists(hits) OR hits < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":expires", n(expires))
            .send()
            .await;
        crate::errors::conditional_write("UpdateItem", result)
    }
}
