//! Failover's one write: the job's provider changes, with its event, in one
//! transaction, only while no provider has accepted the job.

use super::*;
use videojobs_core::model::request::ProviderName;
use videojobs_core::ports::ProviderSwitch;

#[async_trait]
impl ProviderSwitch for DynamoStore {
    async fn switch_provider(&self, id: &JobId, from: &ProviderName, to: &ProviderName, event: &JobEvent) -> Result<bool, StoreError> {
        let job = Update::builder()
            .table_name(&self.jobs_table)
            .set_key(Some(key(job_pk(id), "JOB")))
            .update_expression("SET #provider = :to, updated_at = :now")
            .condition_expression("#status = :submitted AND #provider = :from AND attribute_not_exists(provider_request_id)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#provider", "provider")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":submitted", s(JobStatus::Submitted.as_str()))
            .expression_attribute_values(":now", s(timestamp::format(event.at)))
            .build()
            .map_err(|e| StoreError::Internal(format!("building a provider switch: {e}")))?;
        let items = vec![TransactWriteItem::builder().update(job).build(), put(&self.jobs_table, event_item(event)?, None)?];
        for attempt in 0..CONFLICT_RETRIES {
            match self.transact(items.clone()).await {
                Ok(()) => return Ok(true),
                Err(TransactFailure::Store(err)) => return Err(err),
                Err(TransactFailure::Cancelled(reasons)) if reason_is(&reasons, 0, "ConditionalCheckFailed") => return Ok(false),
                Err(TransactFailure::Cancelled(reasons)) if any_conflict(&reasons) => backoff(attempt).await,
                Err(TransactFailure::Cancelled(reasons)) => {
                    return Err(StoreError::Internal(format!("provider switch cancelled: {reasons:?}")))
                }
            }
        }
        Err(StoreError::Unavailable("provider switch kept conflicting with other writes".into()))
    }
}
