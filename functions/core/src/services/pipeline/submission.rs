//! Handing a job to its provider, one fenced attempt at a time.
//!
//! The state machine sends one `submit` message per execution (with its task
//! token, no attempt number: attempt 1) and waits for the token until the
//! generation deadline. Transient refusals (429, 5xx, timeouts) are retried
//! here, through the work queue, with exponential backoff and full jitter:
//! `submit` messages with `attempt: n` and no token. The state machine has no
//! `Retry` on its `Submit` task, so nothing depends on how Step Functions
//! treats a retried `waitForTaskToken` task (on AWS a retry gets a new token;
//! moto's interpreter reuses the old one and reads its failure at once).
//!
//! Every attempt is fenced by the job's `submit_attempt`:
//!
//! | message for attempt `n` finds the job | does |
//! |---|---|
//! | `queued`, attempt 0, and `n = 1` | claims: `queued → submitted`, attempt 1 |
//! | `retrying`, attempt `n − 1` | claims: `retrying → submitted`, attempt `n` |
//! | `submitted`, attempt `n`, no request id | resumes (an earlier copy died mid-way; the provider's idempotency key finds its request) |
//! | `processing`, attempt `n`, no request id | resumes too (a progress callback moved the job before its request id was stored) |
//! | `retrying`, attempt `n` | re-queues attempt `n + 1` (an earlier copy died after recording the retry) |
//! | anything else | nothing: the message is stale |
//!
//! and every write the attempt makes afterwards (the request id, `retrying`,
//! `failed`) is conditioned on `submit_attempt = n`. A request the provider
//! accepted for an attempt whose write is refused is canceled there at once.
//!
//! Only one copy of a message works an attempt at a time: the copy that
//! claims it takes the attempt's lease ([`SUBMIT_LEASE`]) with the claim,
//! and a copy that would resume it takes the lease over only once it has run
//! out. The lease outlasts the worker's timeout (60 s), so its holder is dead
//! by then; it is shorter than the work queue's visibility timeout (90 s), so
//! the message of a holder that died finds it run out when it comes back.
//! Without it, a duplicate delivered while the first copy was still at work
//! resumed the attempt too: both asked the provider, and after the first
//! recorded a retry the second's request was one for a stale attempt.

use super::context::{task_errors, Pipeline, WorkError};
use super::steps::{fail_job, load, provider_for, submit_request};
use crate::model::change::SubmitLease;
use crate::model::ids::JobId;
use crate::model::job::{timestamp, EventSource, Failure, Job, JobError};
use crate::model::lifecycle::JobStatus;
use crate::model::provider::{failure_advice, ProviderError};
use crate::model::work::WorkMessage;
use crate::ports::{JobUpdate, TokenSave};
use std::time::Duration;

/// Submissions per job: the first and up to four retries.
pub const MAX_SUBMISSIONS: u32 = 5;
/// How long the copy working a submission attempt holds it (see above).
pub const SUBMIT_LEASE: Duration = Duration::from_secs(75);
/// The backoff before retry `n` is drawn from `[1 s, min(BASE · 2^(n−1), CAP)]`.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The wait before the attempt after attempt `n` (full jitter, at least 1 s:
/// SQS delays are whole seconds). `unit` in `[0, 1)` is the random draw.
pub fn backoff(n: u32, unit: f64) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(BACKOFF_CAP);
    let drawn = ceiling.as_secs_f64() * unit.clamp(0.0, 1.0);
    Duration::from_secs((drawn.round() as u64).max(1))
}

/// What a `submit` message for attempt `n` may do, from where the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Make attempt `n` current with this status change.
    Take {
        /// The status the job leaves: `queued` for attempt 1, `retrying` after.
        from: JobStatus,
    },
    /// Attempt `n` is current and unanswered: go on with it.
    Resume,
    /// Attempt `n` recorded a retry but may not have queued it.
    Requeue,
    /// Another attempt is current, or the job is past submitting.
    Stale,
}

/// What a `submit` message for attempt `n` may do with `job` as it is now.
pub fn claim_for(job: &Job, n: u32) -> Claim {
    match job.status {
        JobStatus::Queued if job.submit_attempt == 0 && n == 1 => Claim::Take { from: JobStatus::Queued },
        JobStatus::Retrying if n >= 2 && job.submit_attempt == n - 1 => Claim::Take { from: JobStatus::Retrying },
        // Processing: a progress callback found the owner record (written
        // first) and moved the job before the request id was stored on it.
        JobStatus::Submitted | JobStatus::Processing if job.submit_attempt == n && job.provider_request_id.is_none() => Claim::Resume,
        JobStatus::Retrying if job.submit_attempt == n => Claim::Requeue,
        _ => Claim::Stale,
    }
}

/// Handles one `submit` message: claims, resumes or re-queues attempt `attempt` (1 when `None`), or does nothing
/// when it is stale.
pub async fn submit(pipeline: &Pipeline, id: &JobId, token: Option<&str>, attempt: Option<u32>) -> Result<(), WorkError> {
    let n = attempt.unwrap_or(1).max(1);
    if let Some(token) = token {
        // Kept first, and never over a stored one: whatever happens next can
        // answer the wait, and a late copy cannot replace a poll's token.
        pipeline.tokens.save_task_token(id, token, TokenSave::KeepExisting).await?;
    }
    let mut job = load(pipeline, id).await?;
    match claim_for(&job, n) {
        Claim::Take { from } => {
            let message = if from == JobStatus::Retrying { "Submitting to the provider again" } else { "Submitted to the provider" };
            let update = JobUpdate {
                submit_attempt: Some(n),
                only_in_attempt: Some(n - 1),
                submit_lease: Some(lease(None)),
                ..JobUpdate::default()
            };
            if !fenced_move(pipeline, &mut job, JobStatus::Submitted, message, None, update).await? {
                tracing::info!(attempt = n, status = %job.status, "another copy took this attempt");
                if claim_for(&job, n) == Claim::Resume {
                    // That copy may die before it stores the request id, and
                    // this copy's success would delete the message it needs
                    // to be resumed: come back and find out.
                    return Err(WorkError::NotYet("another copy of this attempt has not finished".into()));
                }
                return Ok(());
            }
            job.submit_attempt = n;
        }
        Claim::Resume => {
            let update = JobUpdate { only_in_attempt: Some(n), submit_lease: Some(lease(Some(timestamp::now()))), ..JobUpdate::default() };
            if !pipeline.writes.update_in_status(id, job.status, &update).await? {
                // Its holder is still at work (or the job moved on): come back
                // and look again once the lease has run out.
                return Err(WorkError::NotYet("another copy holds this submission attempt".into()));
            }
            tracing::info!(attempt = n, "resuming an attempt whose holder did not finish");
        }
        Claim::Requeue => return queue_retry(pipeline, id, n).await,
        Claim::Stale => {
            tracing::info!(attempt = n, current = job.submit_attempt, status = %job.status, "stale submit message; nothing to do");
            return Ok(());
        }
    }
    attempt_at_provider(pipeline, &mut job, n).await
}

async fn attempt_at_provider(pipeline: &Pipeline, job: &mut Job, n: u32) -> Result<(), WorkError> {
    let Some(mut provider) = provider_for(pipeline, job).cloned() else {
        return fail_job(pipeline, job, Failure::ProviderUnavailable.error(), task_errors::PROVIDER_REFUSED).await;
    };
    let mut outcome = provider.submit(&submit_request(pipeline, job).await?).await;
    if let Err(error) = &outcome {
        if let Some(fallback) = super::failover::fail_over(pipeline, job, error).await? {
            provider = fallback;
            outcome = provider.submit(&submit_request(pipeline, job).await?).await;
        }
    }
    match outcome {
        Ok(request_id) => {
            // The owner first: a callback that comes now finds its job.
            pipeline.requests.record_owner(job.provider.as_str(), &request_id, &job.job_id).await?;
            let update = JobUpdate {
                provider_request: Some((job.provider.to_string(), request_id.clone())),
                only_in_attempt: Some(n),
                ..JobUpdate::default()
            };
            // A progress callback may have moved the job to processing since the
            // owner was recorded: the request id is stored there all the same.
            let stored = pipeline.writes.update_in_status(&job.job_id, JobStatus::Submitted, &update).await?
                || pipeline.writes.update_in_status(&job.job_id, JobStatus::Processing, &update).await?;
            if !stored {
                // Canceled, or no longer this attempt's: stop the provider too,
                // unless the job will use this very request (see `uses_request`).
                let now = load(pipeline, &job.job_id).await?;
                if uses_request(&now, job, provider.as_ref(), &request_id) {
                    tracing::info!(request_id, attempt = n, "a newer attempt of this job shares the request; left running");
                    return Ok(());
                }
                tracing::info!(request_id, attempt = n, "job moved on during submission; canceling at the provider");
                if let Err(err) = provider.cancel(&request_id).await {
                    tracing::warn!(error = %err, request_id, "the provider did not take the cancel");
                }
                return Ok(());
            }
            tracing::info!(request_id, attempt = n, "submitted");
            job.provider_request_id = Some(request_id.clone());
            if pipeline.requests.had_early_callback(job.provider.as_str(), &request_id).await? {
                // A callback came before the request id was stored: ask the
                // provider now rather than wait for the deadline.
                tracing::info!(request_id, "a callback came early; asking the provider");
                super::finishing::refresh(pipeline, &job.job_id).await?;
            }
            Ok(())
        }
        Err(ProviderError::Transient { message, .. }) if n < MAX_SUBMISSIONS => {
            tracing::warn!(error = %crate::model::redact::provider_words(&message), attempt = n, "provider busy; retrying after a backoff");
            let update = JobUpdate { only_in_attempt: Some(n), ..JobUpdate::default() };
            if fenced_move(pipeline, job, JobStatus::Retrying, "The provider is busy; retrying", None, update).await? {
                queue_retry(pipeline, &job.job_id, n).await?;
            }
            Ok(())
        }
        Err(ProviderError::Transient { message, .. }) => {
            tracing::warn!(error = %crate::model::redact::provider_words(&message), attempt = n, "provider still busy; out of retries");
            fail_attempt(pipeline, job, n, Failure::ProviderBusy.error(), task_errors::PROVIDER_BUSY).await
        }
        Err(ProviderError::Refused { code, message }) => {
            tracing::info!(code, message = %crate::model::redact::provider_words(&message), "provider refused the job");
            let error = JobError {
                message: "The provider would not generate this video.".into(),
                next_step: Some(failure_advice(&code).into()),
                code,
            };
            fail_attempt(pipeline, job, n, error, task_errors::PROVIDER_REFUSED).await
        }
        Err(ProviderError::NotFound(message)) => Err(WorkError::ProviderUnavailable(message)),
    }
}

/// Whether `now` (the job as it is) will use `request_id`, which an attempt
/// that lost its write got from `provider`. A provider that dedupes by the
/// job id answers every attempt with one request: while the job is in flight
/// on that provider with no other request id, a newer attempt has, or will
/// get, this one, and canceling it would stop the job's own video.
pub fn uses_request(now: &Job, attempt_saw: &Job, provider: &dyn crate::ports::Provider, request_id: &str) -> bool {
    provider.dedupes_submissions()
        && now.status.is_in_flight()
        && now.provider == attempt_saw.provider
        && now.provider_request_id.as_deref().is_none_or(|stored| stored == request_id)
}

/// The lease of an attempt, from now; taken over only if run out by `if_run_out_at`.
fn lease(if_run_out_at: Option<time::OffsetDateTime>) -> SubmitLease {
    SubmitLease { until: timestamp::now() + SUBMIT_LEASE, if_run_out_at }
}

/// Queues attempt `n + 1` after its backoff.
async fn queue_retry(pipeline: &Pipeline, id: &JobId, n: u32) -> Result<(), WorkError> {
    let wait = backoff(n, crate::model::determinism::random_unit());
    let next = WorkMessage::Submit { job_id: id.clone(), task_token: None, attempt: Some(n + 1) };
    pipeline.queue.enqueue_after(&next, wait).await?;
    tracing::info!(next_attempt = n + 1, wait_seconds = wait.as_secs(), "retry queued");
    Ok(())
}

/// Fails the job for good, only while attempt `n` is current, and answers the
/// task (the state machine's `GiveUp` then finds the job ended).
async fn fail_attempt(pipeline: &Pipeline, job: &mut Job, n: u32, error: JobError, task_error: &str) -> Result<(), WorkError> {
    let update = JobUpdate { only_in_attempt: Some(n), ..JobUpdate::default() };
    let message = error.message.clone();
    let code = error.code.clone();
    if !fenced_move(pipeline, job, JobStatus::Failed, &message, Some(error), update).await? {
        tracing::info!(status = %job.status, attempt = n, "job moved on; not failed by this attempt");
        return Ok(());
    }
    if let Some(token) = pipeline.tokens.task_token(&job.job_id).await? {
        pipeline.tasks.fail(&token, task_error, &code).await?;
    }
    Ok(())
}

/// A status change under the update's attempt fence; `false` (with `job`
/// re-read: its attempt may have moved too) when the job was not where this
/// attempt left it.
async fn fenced_move(
    pipeline: &Pipeline,
    job: &mut Job,
    to: JobStatus,
    message: &str,
    error: Option<JobError>,
    update: JobUpdate,
) -> Result<bool, WorkError> {
    if super::steps::move_job(pipeline, job, EventSource::Worker, to, message, error, update).await? {
        return Ok(true);
    }
    *job = load(pipeline, &job.job_id).await?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::JobId;
    use crate::model::job::JobParams;
    use crate::model::request::{AspectRatio, Resolution};

    fn job(status: JobStatus, attempt: u32, request: Option<&str>) -> Job {
        let params = JobParams::TextToVideo { duration_seconds: 1, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Sd };
        let mut job = Job::accepted(
            JobId::generate(),
            "u".parse().unwrap(),
            params,
            "local".parse().unwrap(),
            1,
            crate::model::job::timestamp::now(),
        );
        job.status = status;
        job.submit_attempt = attempt;
        job.provider_request_id = request.map(str::to_owned);
        job
    }

    /// A provider as far as the cancel rule asks: whether it dedupes submissions.
    struct Dedupes(bool, crate::model::request::ProviderName);

    #[async_trait::async_trait]
    impl crate::ports::Provider for Dedupes {
        fn name(&self) -> &crate::model::request::ProviderName {
            &self.1
        }
        async fn submit(&self, _: &crate::model::provider::SubmitRequest) -> Result<String, ProviderError> {
            unreachable!("the rule only asks")
        }
        async fn poll(&self, _: &str) -> Result<crate::model::provider::ProviderStatus, ProviderError> {
            unreachable!("the rule only asks")
        }
        async fn cancel(&self, _: &str) -> Result<(), ProviderError> {
            unreachable!("the rule only asks")
        }
        async fn verify_callback(
            &self,
            _: &crate::model::provider::Callback<'_>,
        ) -> Result<crate::model::provider::ProviderEvent, crate::model::provider::CallbackError> {
            unreachable!("the rule only asks")
        }
        fn dedupes_submissions(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn a_request_a_newer_attempt_shares_is_left_running_and_any_other_is_canceled() {
        let (dedupes, each_new) = (Dedupes(true, "local".parse().unwrap()), Dedupes(false, "local".parse().unwrap()));
        let saw = job(JobStatus::Submitted, 1, None);
        // A newer attempt is under way (retrying, or submitted without an id yet), or stored this same id: shared.
        assert!(uses_request(&job(JobStatus::Retrying, 2, None), &saw, &dedupes, "r1"));
        assert!(uses_request(&job(JobStatus::Submitted, 2, None), &saw, &dedupes, "r1"));
        assert!(uses_request(&job(JobStatus::Processing, 2, Some("r1")), &saw, &dedupes, "r1"));
        // Ended, holding another request, or on another provider: this request is an orphan.
        assert!(!uses_request(&job(JobStatus::Canceled, 2, None), &saw, &dedupes, "r1"));
        assert!(!uses_request(&job(JobStatus::Submitted, 2, Some("r2")), &saw, &dedupes, "r1"));
        let mut moved = job(JobStatus::Submitted, 2, None);
        moved.provider = "fal".parse().unwrap();
        assert!(!uses_request(&moved, &saw, &dedupes, "r1"));
        // A provider that makes a new request per submission never shares one.
        assert!(!uses_request(&job(JobStatus::Retrying, 2, None), &saw, &each_new, "r1"));
    }

    #[test]
    fn the_first_attempt_takes_a_queued_job_and_only_the_first() {
        assert_eq!(claim_for(&job(JobStatus::Queued, 0, None), 1), Claim::Take { from: JobStatus::Queued });
        assert_eq!(claim_for(&job(JobStatus::Queued, 0, None), 2), Claim::Stale);
    }

    #[test]
    fn a_retry_takes_the_job_only_from_the_attempt_before_it() {
        assert_eq!(claim_for(&job(JobStatus::Retrying, 2, None), 3), Claim::Take { from: JobStatus::Retrying });
        assert_eq!(claim_for(&job(JobStatus::Retrying, 3, None), 3), Claim::Requeue);
        assert_eq!(claim_for(&job(JobStatus::Retrying, 3, None), 2), Claim::Stale);
        assert_eq!(claim_for(&job(JobStatus::Retrying, 1, None), 3), Claim::Stale);
    }

    #[test]
    fn a_current_unanswered_attempt_resumes_and_an_answered_one_is_stale() {
        assert_eq!(claim_for(&job(JobStatus::Submitted, 2, None), 2), Claim::Resume);
        assert_eq!(claim_for(&job(JobStatus::Submitted, 2, Some("r")), 2), Claim::Stale);
        assert_eq!(claim_for(&job(JobStatus::Submitted, 3, None), 2), Claim::Stale);
    }

    #[test]
    fn no_message_acts_on_a_job_past_submitting() {
        for status in [JobStatus::Completed, JobStatus::Canceled, JobStatus::Failed, JobStatus::Expired] {
            for n in 1..=MAX_SUBMISSIONS {
                assert_eq!(claim_for(&job(status, n, None), n), Claim::Stale, "{status} {n}");
            }
        }
        assert_eq!(claim_for(&job(JobStatus::Processing, 2, Some("r")), 2), Claim::Stale);
        assert_eq!(claim_for(&job(JobStatus::Processing, 3, None), 2), Claim::Stale);
    }

    #[test]
    fn an_attempt_whose_job_an_early_progress_callback_moved_on_resumes_to_store_its_request_id() {
        // Found by the simulator (seed 78 of `simulate`): the owner record is
        // written before the job's request id, a progress callback in between
        // moved the job to processing, and the attempt canceled a running request.
        assert_eq!(claim_for(&job(JobStatus::Processing, 2, None), 2), Claim::Resume);
    }

    #[test]
    fn backoff_grows_to_its_cap_and_never_drops_below_a_second() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(1, 0.999), Duration::from_secs(2));
        assert_eq!(backoff(3, 0.999), Duration::from_secs(8));
        assert_eq!(backoff(10, 0.999), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX, 1.0), BACKOFF_CAP);
        for n in 1..8 {
            assert!(backoff(n, 0.5) <= backoff(n + 1, 0.5));
        }
    }
}
