//! The scheduled check for stuck jobs: counts them for the alarm, and starts
//! the execution of a job whose start was lost.

use super::context::{Pipeline, WorkError};
use crate::model::emf::{MetricLine, Unit};
use crate::model::job::timestamp;
use crate::model::lifecycle::JobStatus;

/// A job `queued` longer than this has lost its execution's start (create
/// died between its transaction and `StartExecution`): the check starts it.
pub const QUEUED_STUCK_AFTER_SECONDS: i64 = 10;

/// Starts the execution of every job that has been `queued` for over
/// [`QUEUED_STUCK_AFTER_SECONDS`] (starting it twice is harmless: the
/// execution's name is the job id), then counts the jobs stuck in flight
/// (from the index), those among them, and reports them as the `StuckJobs`
/// metric the stuck-jobs alarm watches; returns how many there are.
pub async fn check_stuck(pipeline: &Pipeline) -> Result<u64, WorkError> {
    let now = timestamp::now();
    let restarted = restart_unstarted(pipeline, now).await?;
    let stuck = crate::services::stats::stuck_jobs(pipeline.stats.as_ref(), pipeline.settings.stuck_after_seconds, now).await?;
    let count = stuck.count.max(restarted);
    // What the stuck-jobs alarm watches.
    MetricLine::new().metric("StuckJobs", count as f64, Unit::Count).emit();
    for job in &stuck.oldest {
        tracing::warn!(job_id = %job.job_id, status = %job.status, provider = job.provider, updated_at = %timestamp::format(job.updated_at), "job looks stuck");
    }
    tracing::info!(count, restarted, threshold_seconds = pipeline.settings.stuck_after_seconds, "stuck jobs checked");
    Ok(count)
}

async fn restart_unstarted(pipeline: &Pipeline, now: time::OffsetDateTime) -> Result<u64, WorkError> {
    let before = now - time::Duration::seconds(QUEUED_STUCK_AFTER_SECONDS);
    let page = pipeline.stats.stuck_jobs(JobStatus::Queued, before, crate::model::stats::STUCK_JOBS_LISTED).await?;
    let mut restarted = 0;
    for stuck in &page.oldest {
        let Some(job) = pipeline.reads.job(&stuck.job_id).await?.filter(|job| job.status == JobStatus::Queued) else { continue };
        pipeline.workflows.start(&crate::services::workflow_input(&job, &pipeline.settings)).await?;
        tracing::warn!(job_id = %job.job_id, created_at = %timestamp::format(job.created_at), "queued job had no running execution; started it");
        restarted += 1;
    }
    Ok(restarted)
}
