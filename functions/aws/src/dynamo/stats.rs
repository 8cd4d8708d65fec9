//! The counters and the stuck-jobs index, read (see `super::counters` for
//! what the items hold and how each change adds to them).

use super::counters::{counter_update, shard_key, COUNTER_SHARDS, INDEX_STUCK_WATCH, WATCH_ATTRIBUTE, WATCH_SINCE};
use super::*;
use crate::emf::{MetricLine, Unit};
use aws_sdk_dynamodb::types::Select;
use videojobs_core::model::stats::{counter, Counters, Deltas, StuckJob, StuckPage};
use videojobs_core::ports::StatsStore;

fn number(value: &AttributeValue) -> Option<i64> {
    value.as_n().ok()?.parse().ok()
}

impl DynamoStore {
    async fn counter_shards(&self) -> Result<Vec<Item>, StoreError> {
        self.batch_get((0..COUNTER_SHARDS).map(shard_key).collect()).await
    }

    async fn stuck_page(
        &self,
        status: JobStatus,
        before: &str,
        limit: Option<u32>,
        count_only: bool,
        start: Option<Item>,
    ) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, StoreError> {
        self.client()
            .query()
            .table_name(self.jobs_table())
            .index_name(INDEX_STUCK_WATCH)
            .key_condition_expression("#watch = :status AND #since < :before")
            .expression_attribute_names("#watch", WATCH_ATTRIBUTE)
            .expression_attribute_names("#since", WATCH_SINCE)
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().into()))
            .expression_attribute_values(":before", AttributeValue::S(before.into()))
            .scan_index_forward(true)
            .set_limit(limit.map(|l| l as i32))
            .set_select(count_only.then_some(Select::Count))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("Query", e))
    }
}

fn stuck_job(item: &Item, status: JobStatus) -> Result<StuckJob, StoreError> {
    let text = |name: &str| {
        item.get(name).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| StoreError::Internal(format!("stuck_watch item has no {name}")))
    };
    Ok(StuckJob {
        job_id: text("job_id")?.parse().map_err(|_| StoreError::Internal("stuck_watch item has a bad job id".into()))?,
        status,
        provider: text("provider")?,
        updated_at: timestamp::parse(&text(WATCH_SINCE)?)
            .ok_or_else(|| StoreError::Internal("stuck_watch item has a bad watch_since".into()))?,
    })
}

#[async_trait]
impl StatsStore for DynamoStore {
    async fn counters(&self) -> Result<Counters, StoreError> {
        let mut sums = Counters::new();
        for shard in self.counter_shards().await? {
            for (name, value) in &shard {
                if let Some(amount) = number(value) {
                    *sums.entry(name.clone()).or_insert(0) += amount;
                }
            }
        }
        Ok(sums)
    }

    async fn stuck_jobs(&self, status: JobStatus, before: time::OffsetDateTime, limit: u32) -> Result<StuckPage, StoreError> {
        let before = timestamp::format(before);
        let oldest = self.stuck_page(status, &before, Some(limit), false, None).await?;
        let oldest = oldest.items.unwrap_or_default().iter().map(|item| stuck_job(item, status)).collect::<Result<_, _>>()?;
        // The count pages through the index (keys only), never the table.
        let mut count = 0u64;
        let mut start = None;
        loop {
            let page = self.stuck_page(status, &before, None, true, start).await?;
            count += page.count.max(0) as u64;
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(StuckPage { count, oldest });
            }
        }
    }

    async fn count_duplicate_callback(&self, provider: &str) -> Result<(), StoreError> {
        let mut deltas = Deltas::default();
        deltas.add(counter::DUPLICATE_CALLBACKS, 1);
        let Some(item) = counter_update(self.jobs_table(), &deltas)? else { return Ok(()) };
        let update = item.update.ok_or_else(|| StoreError::Internal("counter update missing".into()))?;
        self.client()
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        MetricLine::new().dimension("Provider", provider).metric("DuplicateCallback", 1.0, Unit::Count).emit();
        Ok(())
    }
}
