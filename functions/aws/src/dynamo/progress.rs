//! The job item's progress detail and refresh window: two conditional
//! updates on the job item, neither touching `updated_at` (a provider's word
//! on its queue is not a change of the job).

use super::*;
use videojobs_core::model::progress::ProgressDetail;
use videojobs_core::ports::ProgressDetails;

#[async_trait]
impl ProgressDetails for DynamoStore {
    async fn record_detail(&self, id: &JobId, detail: &ProgressDetail) -> Result<bool, StoreError> {
        let allowed = detail.allowed_statuses();
        let names: Vec<String> = (0..allowed.len()).map(|i| format!(":s{i}")).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(job_pk(id), "JOB")))
            .update_expression("SET progress_detail = :detail, progress_detail_at = :at")
            // Forward-only: the job still waits at this stage, and nothing newer is stored.
            .condition_expression(format!(
                "#status IN ({}) AND (attribute_not_exists(progress_detail_at) OR progress_detail_at < :at)",
                names.join(", ")
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":detail", AttributeValue::M(to_item(detail)?))
            .expression_attribute_values(":at", s(timestamp::format(detail.observed_at)));
        for (name, status) in names.iter().zip(allowed) {
            update = update.expression_attribute_values(name, s(status.as_str()));
        }
        match update.send().await {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }

    async fn claim_refresh(&self, id: &JobId, now: time::OffsetDateTime, window_seconds: u64) -> Result<bool, StoreError> {
        let cutoff = now - std::time::Duration::from_secs(window_seconds);
        let result = self
            .client
            .update_item()
            .table_name(&self.jobs_table)
            .set_key(Some(key(job_pk(id), "JOB")))
            .update_expression("SET refresh_requested_at = :now")
            .condition_expression(
                "#status IN (:submitted, :processing) AND (attribute_not_exists(refresh_requested_at) OR refresh_requested_at <= :cutoff)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", s(timestamp::format(now)))
            .expression_attribute_values(":cutoff", s(timestamp::format(cutoff)))
            .expression_attribute_values(":submitted", s(JobStatus::Submitted.as_str()))
            .expression_attribute_values(":processing", s(JobStatus::Processing.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Another read claimed this window, or the job left the provider.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(err) => Err(store_error("UpdateItem", err)),
        }
    }
}
