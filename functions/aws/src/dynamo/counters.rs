//! The operational counters and the stuck-jobs index in DynamoDB: their
//! items and attributes, written in the same transaction as each job's
//! change (`super::stats` reads them).
//!
//! | item            | pk            | sk         | notes |
//! |-----------------|---------------|------------|-------|
//! | counter shard   | `STATS#{0..7}`| `COUNTERS` | one number attribute per counter (`jobs.queued`, `ttc.ms_sum`, …) |
//!
//! Every creation and status change adds its counts (see
//! `videojobs_core::model::stats::change_deltas`) to ONE shard, chosen at random, in
//! the same transaction as the change: the counts are exactly as consistent as
//! the jobs. Eight shards because concurrent transactions touching the same
//! item cancel each other (`TransactionConflict`, retried with backoff) and one
//! item takes about 1,000 writes a second: eight spread both limits while a
//! read stays one `BatchGetItem` of eight items, summed.
//!
//! The job item carries `watch_status` (the status) only while `queued`,
//! `submitted` or `processing`, so index `stuck_watch` (`watch_status`,
//! `watch_since`) holds exactly those jobs, the longest without news first:
//! stuck jobs are one query away. `watch_since` moves only with what the
//! figures call an update (a change of status, a rise in progress); the
//! job's other writes (the provider's request id, a lease, the provider's
//! last word) leave it, and so cost the index nothing: a changed sort key is
//! two index writes, a delete and a put.

use crate::emf::{MetricLine, Unit};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use std::collections::HashMap;
use videojobs_core::model::stats::Deltas;
use videojobs_core::ports::{NewJob, StatusChange};
use videojobs_core::{JobStatus, StoreError};

pub const INDEX_STUCK_WATCH: &str = "stuck_watch";
pub const WATCH_ATTRIBUTE: &str = "watch_status";
/// The sort key of `stuck_watch`: when the job last changed status or progress.
pub const WATCH_SINCE: &str = "watch_since";
pub const COUNTER_SHARDS: u32 = 8;

type Item = HashMap<String, AttributeValue>;

pub(crate) fn shard_key(shard: u32) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(format!("STATS#{shard}"))), ("sk".to_owned(), AttributeValue::S("COUNTERS".into()))])
}

fn random_shard() -> u32 {
    (ulid::Ulid::new().random() % u128::from(COUNTER_SHARDS)) as u32
}

/// Whether a job in `status` belongs in the stuck-jobs index.
pub fn is_watched(status: JobStatus) -> bool {
    videojobs_core::model::stats::WATCHED_STATUSES.contains(&status)
}

/// The update adding `deltas` to one counter shard, for a transaction;
/// `None` when there is nothing to add.
pub fn counter_update(table: &str, deltas: &Deltas) -> Result<Option<TransactWriteItem>, StoreError> {
    if deltas.is_empty() {
        return Ok(None);
    }
    let mut clauses = Vec::new();
    let mut builder = Update::builder().table_name(table).set_key(Some(shard_key(random_shard())));
    for (i, (name, amount)) in deltas.iter().enumerate() {
        clauses.push(format!("#c{i} :c{i}"));
        builder = builder
            .expression_attribute_names(format!("#c{i}"), name)
            .expression_attribute_values(format!(":c{i}"), AttributeValue::N(amount.to_string()));
    }
    let update = builder
        .update_expression(format!("ADD {}", clauses.join(", ")))
        .build()
        .map_err(|e| StoreError::Internal(format!("building a counter update: {e}")))?;
    Ok(Some(TransactWriteItem::builder().update(update).build()))
}

/// The counter update a job's creation adds to its transaction.
pub fn creation_item(table: &str, new: &NewJob) -> Result<Option<TransactWriteItem>, StoreError> {
    counter_update(table, &videojobs_core::model::stats::creation_deltas(&new.job))
}

/// The counter update a status change adds to its transaction.
pub fn change_item(table: &str, change: &StatusChange) -> Result<Option<TransactWriteItem>, StoreError> {
    counter_update(table, &videojobs_core::model::stats::change_deltas(change))
}

/// Metrics for a job that was just created (the write committed).
pub fn emit_created(new: &NewJob) {
    MetricLine::new()
        .dimension("Provider", new.job.provider.as_str())
        .dimension("WorkflowType", new.job.workflow_type().as_str())
        .metric("JobCreated", 1.0, Unit::Count)
        .property("job_id", new.job.job_id.as_str())
        .emit();
}

/// Metrics for a status change that was just applied.
pub fn emit_changed(change: &StatusChange) {
    let line = || {
        MetricLine::new()
            .dimension("Provider", change.facts.provider.as_str())
            .dimension("WorkflowType", change.facts.workflow_type.as_str())
            .property("job_id", change.job_id.as_str())
    };
    match change.transition.to {
        JobStatus::Completed => {
            let completed_at = change.update.completed_at.unwrap_or(change.at);
            let seconds = (completed_at - change.facts.created_at).as_seconds_f64().max(0.0);
            line().metric("JobCompleted", 1.0, Unit::Count).metric("TimeToComplete", seconds, Unit::Seconds).emit();
        }
        JobStatus::Failed => line().metric("JobFailed", 1.0, Unit::Count).emit(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_update_adds_every_delta_to_one_shard() {
        let mut deltas = Deltas::default();
        deltas.add("jobs.queued", -1);
        deltas.add("jobs.failed", 1);
        deltas.add("unchanged", 0);
        let item = counter_update("t", &deltas).unwrap().unwrap();
        let update = item.update.unwrap();
        assert_eq!(update.update_expression, "ADD #c0 :c0, #c1 :c1");
        let names = update.expression_attribute_names.unwrap();
        let values = update.expression_attribute_values.unwrap();
        assert_eq!(names["#c0"], "jobs.failed");
        assert_eq!(values[":c0"], AttributeValue::N("1".into()));
        assert_eq!(names["#c1"], "jobs.queued");
        assert_eq!(values[":c1"], AttributeValue::N("-1".into()));
        let pk = update.key["pk"].as_s().unwrap();
        let shard: u32 = pk.strip_prefix("STATS#").unwrap().parse().unwrap();
        assert!(shard < COUNTER_SHARDS);
        assert!(counter_update("t", &Deltas::default()).unwrap().is_none());
    }

    #[test]
    fn queued_submitted_and_processing_jobs_are_watched() {
        let watched: Vec<JobStatus> = JobStatus::ALL.into_iter().filter(|s| is_watched(*s)).collect();
        assert_eq!(watched, [JobStatus::Queued, JobStatus::Submitted, JobStatus::Processing]);
    }
}
