//! The worker's half of failover (the policy is `model::failover`):
//! after a provider refused a job or failed to accept it, move the job to the
//! deployment's fallback provider, recorded on the job with an event saying
//! why, so that submit can hand it there at once.
//!
//! Safe under redelivered messages: the transient failures are counted from
//! the job's `retrying` events (each written once, by a status change
//! conditioned on the status it leaves), and the switch itself is conditioned
//! on the job still being `submitted` to the first provider with no provider
//! request, so it happens once and never after a provider accepted the job.

use super::context::{Pipeline, WorkError};
use crate::model::job::{timestamp, EventSource, Job, JobEvent};
use crate::model::provider::ProviderError;
use crate::ports::Provider;
use crate::JobStatus;
use std::sync::Arc;

/// The fallback provider the job now belongs to, or `None` to keep it where it is.
pub(crate) async fn fail_over(pipeline: &Pipeline, job: &mut Job, error: &ProviderError) -> Result<Option<Arc<dyn Provider>>, WorkError> {
    let Some(policy) = &pipeline.settings.failover else { return Ok(None) };
    let earlier_failures = match error {
        ProviderError::Transient { .. } => {
            let events = pipeline.reads.events(&job.job_id).await?;
            events.iter().filter(|e| e.status == JobStatus::Retrying && e.previous_status == Some(JobStatus::Submitted)).count() as u32
        }
        _ => 0,
    };
    let Some(reason) = policy.reason(&job.provider, job.provider_request_id.is_some(), error, earlier_failures) else {
        return Ok(None);
    };
    let Some(fallback) = pipeline.providers.get(policy.fallback.as_str()).cloned() else {
        tracing::warn!(fallback = %policy.fallback, "the fallback provider is not configured here; no failover");
        return Ok(None);
    };
    let from = job.provider.clone();
    let event = JobEvent {
        job_id: job.job_id.clone(),
        at: timestamp::now(),
        source: EventSource::Worker,
        previous_status: Some(job.status),
        status: job.status,
        message: format!("Moved to the fallback provider '{}': {reason}", policy.fallback),
        error_code: None,
        actor: None,
        delivery: None,
    };
    if !pipeline.switches.switch_provider(&job.job_id, &from, &policy.fallback, &event).await? {
        // Another delivery of this message may have switched it already; anything else (a cancel) stops here.
        let now = super::steps::load(pipeline, &job.job_id).await?;
        let switched = now.status == JobStatus::Submitted && now.provider == policy.fallback && now.provider_request_id.is_none();
        *job = now;
        return Ok(switched.then_some(fallback));
    }
    tracing::info!(from = %from, to = %policy.fallback, reason, "failing over to the fallback provider");
    job.provider = policy.fallback.clone();
    Ok(Some(fallback))
}
