//! The small steps every part of the pipeline takes: read a job, move it to
//! its next status with its event, fail it, build a provider request.

use super::context::{Pipeline, WorkError};
use crate::model::ids::JobId;
use crate::model::job::{EventSource, Job, JobError};
use crate::model::lifecycle::{transition, JobStatus};
use crate::model::provider::SubmitRequest;
use crate::model::request::ImageSource;
use crate::ports::*;
use std::sync::Arc;

pub(crate) async fn load(pipeline: &Pipeline, id: &JobId) -> Result<Job, WorkError> {
    pipeline.reads.job(id).await?.ok_or_else(|| WorkError::Unusable(format!("no job {id}")))
}

/// Moves `job` to `to` with `update`; `Ok(false)` when the lifecycle refuses
/// or another writer moved the job first (then `job` holds where it is).
pub(crate) async fn move_job(
    pipeline: &Pipeline,
    job: &mut Job,
    source: EventSource,
    to: JobStatus,
    message: &str,
    error: Option<JobError>,
    update: JobUpdate,
) -> Result<bool, WorkError> {
    let Ok(t) = transition(job.status, to) else { return Ok(false) };
    let change = StatusChange::new(job, t, source, message, error, update);
    match pipeline.writes.change_status(&change).await? {
        ChangeOutcome::Applied => {
            job.status = to;
            Ok(true)
        }
        ChangeOutcome::StatusWas(now) => {
            job.status = now;
            Ok(false)
        }
        ChangeOutcome::NotFound => Err(WorkError::Unusable(format!("no job {}", job.job_id))),
    }
}

pub(crate) fn provider_for<'w>(pipeline: &'w Pipeline, job: &Job) -> Option<&'w Arc<dyn Provider>> {
    pipeline.providers.get(job.provider.as_str())
}

/// Fails an in-flight job for good (credits back once) and tells the waiting task.
pub(crate) async fn fail_job(pipeline: &Pipeline, job: &mut Job, error: JobError, task_error: &str) -> Result<(), WorkError> {
    let message = error.message.clone();
    let code = error.code.clone();
    // Another writer may move the job between our read and write: try from where it is.
    for _ in 0..3 {
        if move_job(pipeline, job, EventSource::Worker, JobStatus::Failed, &message, Some(error.clone()), JobUpdate::default()).await? {
            break;
        }
        if transition(job.status, JobStatus::Failed).is_err() {
            break;
        }
    }
    if let Some(token) = pipeline.tokens.task_token(&job.job_id).await? {
        pipeline.tasks.fail(&token, task_error, &code).await?;
    }
    Ok(())
}

pub(crate) async fn submit_request(pipeline: &Pipeline, job: &Job) -> Result<SubmitRequest, WorkError> {
    let prompt = pipeline.reads.prompt(&job.job_id).await?;
    let image_url = match &job.params {
        crate::model::job::JobParams::ImageToVideo { image: ImageSource::Url(url), .. } => Some(url.clone()),
        crate::model::job::JobParams::ImageToVideo { image: ImageSource::Upload(upload_id), .. } => {
            // The copy `animate` checked, never the upload itself: its URL may have replaced the bytes since.
            let checked = crate::ports::Upload::checked_key_for(&job.job_id);
            if pipeline.media.object_size(&checked).await?.is_none() {
                return Err(WorkError::Unusable(format!("the checked copy of upload {upload_id} is gone")));
            }
            // Long enough for a queued provider to fetch it.
            let ttl = pipeline.settings.presign_ttl_seconds.max(3_600);
            Some(pipeline.media.presign_get(&checked, ttl).await?.url)
        }
        _ => None,
    };
    let faults = if job.provider.as_str() == "local" { job.metadata.as_ref().and_then(|m| m.get("local_faults")).cloned() } else { None };
    Ok(SubmitRequest {
        idempotency_key: job.job_id.to_string(),
        params: job.params.clone(),
        prompt,
        image_url,
        callback_url: format!("{}/webhooks/{}", pipeline.callback_base_url.trim_end_matches('/'), job.provider),
        faults,
        seed: job.seed,
    })
}
