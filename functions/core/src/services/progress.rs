//! What the provider last said about a job it is still working on (its queue
//! position, or that it is generating), shown to users as `progress_detail`.
//!
//! It comes from two places: the progress callbacks of providers that send
//! them (the webhook), and, for providers that send none (fal), a `refresh`
//! the status function asks the worker for when a client reads an in-flight
//! job — at most once per job per `PROGRESS_REFRESH_SECONDS`. The worker stays
//! the only code that talks to a provider's API.
//!
//! Forward-only, like progress: a detail is recorded only while the job is in
//! the matching status (`queued` only while `submitted`; `processing` while
//! `submitted` or `processing`, so a late "queued" cannot follow "processing")
//! and only if it was observed after the one stored.

use crate::model::error::StoreError;
use crate::model::job::{timestamp, EventSource, Job};
use crate::model::lifecycle::{transition, JobStatus};
use crate::model::provider::ProviderStatus;
use crate::model::work::WorkMessage;
use crate::ports::{ChangeOutcome, JobUpdate, JobWrites, ProgressDetails, StatusChange, WorkQueue};
use time::OffsetDateTime;

/// Applies a provider's "still working" answer to a job we wait for: the
/// progress rises, `submitted → processing` when it says processing, and its
/// detail is recorded. `false` when the job no longer waits on the provider
/// (the caller decides whether that is worth an event).
pub async fn apply_working(
    jobs: &dyn JobWrites,
    details: &dyn ProgressDetails,
    job: &Job,
    status: &ProviderStatus,
    source: EventSource,
    observed_at: OffsetDateTime,
) -> Result<bool, StoreError> {
    let percent = match status {
        ProviderStatus::Processing { percent } => percent.unwrap_or(10),
        ProviderStatus::Queued { .. } => 5,
        _ => return Ok(false),
    };
    if !matches!(job.status, JobStatus::Submitted | JobStatus::Processing) {
        return Ok(false);
    }
    // The detail first: a read between the two writes then sees `submitted`
    // with the provider's word, never `processing` without it.
    if let Some(detail) = status.progress_detail(observed_at) {
        if !details.record_detail(&job.job_id, &detail).await? {
            tracing::info!(job_id = %job.job_id, stage = ?detail.stage, "stale progress detail not recorded");
        }
    }
    match job.status {
        JobStatus::Submitted if matches!(status, ProviderStatus::Processing { .. }) => {
            let Ok(t) = transition(JobStatus::Submitted, JobStatus::Processing) else { return Ok(false) };
            let update = JobUpdate { progress: Some(percent.min(99)), ..JobUpdate::default() };
            let change = StatusChange::new(job, t, source, "The provider is generating the video", None, update);
            if let ChangeOutcome::StatusWas(_) = jobs.change_status(&change).await? {
                jobs.raise_progress(&job.job_id, percent).await?;
            }
        }
        _ => jobs.raise_progress(&job.job_id, percent).await?,
    }
    Ok(true)
}

/// How a status read refreshes a job's detail.
#[derive(Clone)]
pub struct Refresher {
    /// Claims the per-job refresh window.
    pub details: std::sync::Arc<dyn ProgressDetails>,
    /// The worker's queue, for `refresh` messages.
    pub work: std::sync::Arc<dyn WorkQueue>,
    /// At most one refresh per job per this many seconds; 0 turns refreshing off.
    pub window_seconds: u64,
    /// Providers that send no progress callbacks, whose jobs are refreshed.
    pub providers: Vec<crate::model::request::ProviderName>,
}

impl Refresher {
    /// Whether a read of `job` should ask for a refresh (before the window is checked).
    pub fn wants(&self, job: &Job) -> bool {
        self.window_seconds > 0
            && matches!(job.status, JobStatus::Submitted | JobStatus::Processing)
            && job.provider_request_id.is_some()
            && self.providers.contains(&job.provider)
    }

    /// Asks the worker to poll the provider for `job`, once per window. A
    /// failure is logged, never the reader's problem: the next read asks again.
    pub async fn after_read(&self, job: &Job) {
        if !self.wants(job) {
            return;
        }
        match self.details.claim_refresh(&job.job_id, timestamp::now(), self.window_seconds).await {
            Ok(true) => match self.work.enqueue(&WorkMessage::Refresh { job_id: job.job_id.clone() }).await {
                Ok(()) => tracing::info!(job_id = %job.job_id, "progress refresh asked for"),
                Err(err) => tracing::warn!(job_id = %job.job_id, error = %err, "progress refresh not queued"),
            },
            Ok(false) => {}
            Err(err) => tracing::warn!(job_id = %job.job_id, error = %err, "progress refresh not claimed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::JobId;
    use crate::model::progress::tests::{at, processing, queued};
    use crate::model::progress::ProgressDetail;
    use async_trait::async_trait;

    fn job(provider: &str, status: JobStatus, detail: Option<ProgressDetail>) -> Job {
        use crate::model::request::{AspectRatio, Resolution};
        let params = crate::model::job::JobParams::TextToVideo {
            duration_seconds: 5,
            aspect_ratio: AspectRatio::Square,
            resolution: Resolution::Hd,
        };
        Job {
            status,
            provider_request_id: Some("req-1".into()),
            progress: 5,
            progress_detail: detail,
            ..Job::accepted(JobId::generate(), "user-1".parse().unwrap(), params, provider.parse().unwrap(), 5, at(0))
        }
    }

    struct Unused;

    #[async_trait]
    impl ProgressDetails for Unused {
        async fn record_detail(&self, _: &JobId, _: &ProgressDetail) -> Result<bool, StoreError> {
            unreachable!("not called by `wants`")
        }
        async fn claim_refresh(&self, _: &JobId, _: OffsetDateTime, _: u64) -> Result<bool, StoreError> {
            unreachable!("not called by `wants`")
        }
    }

    #[async_trait]
    impl WorkQueue for Unused {
        async fn enqueue(&self, _: &WorkMessage) -> Result<(), StoreError> {
            unreachable!("not called by `wants`")
        }
    }

    fn refresher(window_seconds: u64) -> Refresher {
        let unused = std::sync::Arc::new(Unused);
        Refresher { details: unused.clone(), work: unused, window_seconds, providers: vec!["fal".parse().unwrap()] }
    }

    #[test]
    fn only_reads_of_a_listed_providers_accepted_jobs_ask_for_a_refresh() {
        let r = refresher(10);
        assert!(r.wants(&job("fal", JobStatus::Submitted, None)));
        assert!(r.wants(&job("fal", JobStatus::Processing, None)));
        assert!(!r.wants(&job("local", JobStatus::Submitted, None)), "it calls back with its progress");
        for status in [JobStatus::Queued, JobStatus::Retrying, JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
            assert!(!r.wants(&job("fal", status, None)), "{status}");
        }
        let unaccepted = Job { provider_request_id: None, ..job("fal", JobStatus::Submitted, None) };
        assert!(!r.wants(&unaccepted), "no request to ask about yet");
        assert!(!refresher(0).wants(&job("fal", JobStatus::Submitted, None)), "0 turns refreshing off");
    }

    #[test]
    fn the_status_body_shows_the_detail_only_while_its_stage_matches_the_job() {
        let links = crate::model::views::OutputLinks::default();
        let waiting = crate::model::views::StatusBody::new(&job("fal", JobStatus::Submitted, Some(queued(Some(2), 1))), &links);
        let json = serde_json::to_value(&waiting).unwrap();
        assert_eq!(
            json["progress_detail"],
            serde_json::json!({
            "stage": "queued", "queue_position": 2,
            "message": "Waiting in the provider's queue (position 2)",
            "observed_at": "2027-01-15T08:00:01.000Z"})
        );
        let moved_on = crate::model::views::StatusBody::new(&job("fal", JobStatus::Processing, Some(queued(Some(2), 1))), &links);
        assert!(moved_on.progress_detail.is_none(), "a queue position is stale once the job is processing");
        let ended = crate::model::views::StatusBody::new(&job("fal", JobStatus::Failed, Some(processing(1))), &links);
        assert_eq!(serde_json::to_value(&ended).unwrap()["progress_detail"], serde_json::Value::Null);
    }
}
