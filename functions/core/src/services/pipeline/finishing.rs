//! How a job ends: its result (finalize, refresh, poll after the deadline,
//! the copy of its output), the wait for its review, its expiry, giving up,
//! cancelling at the provider, and discarding or keeping its output.

use super::context::{task_errors, Pipeline, WorkError};
use super::steps::{fail_job, load, move_job, provider_for};
use crate::model::error::StoreError;
use crate::model::ids::JobId;
use crate::model::job::{timestamp, Artifact, EventSource, Failure, Job, JobError};
use crate::model::lifecycle::{transition, JobStatus};
use crate::model::provider::{failure_advice, ProviderError, ProviderOutput, ProviderStatus};
use crate::model::work::WorkMessage;
use crate::ports::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The provider says it finished (or gave up): fetch the outcome and finish the job.
pub(super) async fn finalize(pipeline: &Pipeline, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(pipeline, id).await?;
    if !matches!(job.status, JobStatus::Submitted | JobStatus::Processing) {
        tracing::info!(status = %job.status, "nothing to finalize");
        return keep_if_approved(pipeline, &job).await;
    }
    if job.provider_request_id.is_none() {
        // The webhook found the request's owner before the submission stored
        // the request id on the job (the owner is recorded first, and the
        // submission may have died in between): come back once it is stored.
        return Err(WorkError::NotYet("the provider's request id is not stored on the job yet".into()));
    }
    let (provider, request_id) = provider_request(pipeline, &job)?;
    match provider.poll(&request_id).await {
        Ok(status) => settle(pipeline, &mut job, status).await,
        Err(ProviderError::Transient { message, .. }) => Err(WorkError::ProviderUnavailable(message)),
        Err(err) => Err(WorkError::Unusable(err.to_string())),
    }
}

/// A client read a job whose provider sends no progress callbacks: ask the
/// provider where it is. Still working: its detail (and progress) is recorded.
/// Done: the job is finished by the same step a `finalize` takes. A provider
/// that cannot answer now is not asked again for this message: the next read
/// asks for another refresh, and the deadline's poll remains.
pub(super) async fn refresh(pipeline: &Pipeline, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(pipeline, id).await?;
    if !matches!(job.status, JobStatus::Submitted | JobStatus::Processing) || job.provider_request_id.is_none() {
        tracing::info!(status = %job.status, "nothing to refresh");
        return keep_if_approved(pipeline, &job).await;
    }
    let (provider, request_id) = provider_request(pipeline, &job)?;
    let observed_at = timestamp::now();
    match provider.poll(&request_id).await {
        Ok(status @ (ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. })) => {
            let source = EventSource::Worker;
            crate::services::progress::apply_working(
                pipeline.writes.as_ref(),
                pipeline.progress.as_ref(),
                &job,
                &status,
                source,
                observed_at,
            )
            .await?;
            tracing::info!(?status, "progress refreshed");
            Ok(())
        }
        Ok(outcome) => settle(pipeline, &mut job, outcome).await,
        Err(err) => {
            tracing::warn!(error = %err, "the provider did not answer a refresh; dropped");
            Ok(())
        }
    }
}

fn provider_request(pipeline: &Pipeline, job: &Job) -> Result<(Arc<dyn Provider>, String), WorkError> {
    let provider = provider_for(pipeline, job).cloned().ok_or_else(|| WorkError::Unusable(format!("no provider {}", job.provider)))?;
    let request_id = job.provider_request_id.clone().ok_or_else(|| WorkError::Unusable("the job has no provider request".into()))?;
    Ok((provider, request_id))
}

/// Applies what the provider says about a job we are waiting for.
async fn settle(pipeline: &Pipeline, job: &mut Job, status: ProviderStatus) -> Result<(), WorkError> {
    match status {
        ProviderStatus::Succeeded(output) => complete(pipeline, job, output).await,
        ProviderStatus::Failed { code, message } => {
            tracing::info!(code, message = %crate::model::redact::provider_words(&message), "the provider failed the job");
            let error =
                JobError { message: "The video could not be generated.".into(), next_step: Some(failure_advice(&code).into()), code };
            fail_job(pipeline, job, error, task_errors::JOB_ENDED).await
        }
        ProviderStatus::Canceled => fail_job(pipeline, job, Failure::CanceledByProvider.error(), task_errors::JOB_ENDED).await,
        ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. } => {
            tracing::info!("the provider is still working");
            Ok(())
        }
    }
}

/// Copies the output into our bucket, records it, completes the job and
/// answers the waiting task.
async fn complete(pipeline: &Pipeline, job: &mut Job, output: ProviderOutput) -> Result<(), WorkError> {
    let video_key = format!("outputs/{}/video.mp4", job.job_id);
    let copied = match pipeline.outputs.copy_from_url(&output.video_url, &video_key, "video/mp4").await {
        Ok(copied) => copied,
        Err(CopyError::SourceUnavailable(message)) => return Err(WorkError::ProviderUnavailable(message)),
        Err(CopyError::Store(err)) => return Err(err.into()),
        Err(CopyError::SourceUnusable(message)) => {
            tracing::warn!(message, "the provider's output is unusable");
            return fail_job(pipeline, job, unusable_output(), task_errors::JOB_ENDED).await;
        }
    };
    let Some(video) = copied.video else {
        let _ = pipeline.outputs.delete(std::slice::from_ref(&video_key)).await;
        return fail_job(pipeline, job, unusable_output(), task_errors::JOB_ENDED).await;
    };
    let thumbnail = match &output.thumbnail_url {
        Some(url) => {
            let key = format!("outputs/{}/thumbnail.jpg", job.job_id);
            match pipeline.outputs.copy_from_url(url, &key, "image/jpeg").await {
                Ok(copied) => Some((key, copied.size_bytes)),
                Err(err) => {
                    tracing::warn!(error = %err, "thumbnail not copied; the video is kept without one");
                    None
                }
            }
        }
        None => None,
    };
    tracing::info!(size_bytes = copied.size_bytes, sha256 = copied.sha256, "output stored");
    let now = timestamp::now();
    let artifact = Artifact {
        video_key,
        thumbnail_key: thumbnail.as_ref().map(|(key, _)| key.clone()),
        thumbnail_size_bytes: thumbnail.map(|(_, size)| size),
        mime_type: "video/mp4".into(),
        size_bytes: copied.size_bytes,
        duration_seconds: (video.duration_seconds * 1000.0).round() / 1000.0,
        width: video.width,
        height: video.height,
    };
    if job.status == JobStatus::Submitted {
        move_job(pipeline, job, EventSource::Worker, JobStatus::Processing, "The provider finished generating", None, JobUpdate::default())
            .await?;
    }
    let keys = artifact.object_keys();
    let update = JobUpdate {
        progress: Some(100),
        output: Some(artifact),
        output_expires_at: Some(now + Duration::from_secs(pipeline.settings.retention_seconds)),
        completed_at: Some(now),
        ..JobUpdate::default()
    };
    let done = move_job(pipeline, job, EventSource::Worker, JobStatus::Completed, "The video is stored and ready for review", None, update)
        .await?;
    if !done && job.status == JobStatus::Approved {
        // A duplicate of this step, beaten by one that completed the job and
        // then by an approval: this copy replaced the approved objects (same
        // keys, same bytes) tagged unreviewed. They are the approved video:
        // marked kept again, never deleted.
        pipeline.kept.keep(&keys).await?;
        return Ok(());
    }
    if !done && job.status != JobStatus::Completed {
        // The keys are fixed: when another copy of this step completed the
        // job first (then it was reviewed or expired), this copy replaced
        // the job's own video, which must stay (and stay kept once approved).
        let current = load(pipeline, &job.job_id).await?;
        match &current.output {
            None => {
                // Canceled (or ended) while the output was copied: nothing
                // points at the copy, so it goes now rather than stay in S3.
                tracing::info!(status = %job.status, "job moved on while its output was copied; deleting the copy");
                pipeline.outputs.delete(&keys).await?;
            }
            Some(_) if current.status == JobStatus::Approved => {
                tracing::info!("the job was completed and approved meanwhile; its video, copied again, is kept");
                pipeline.kept.keep(&keys).await?;
            }
            Some(_) => {
                tracing::info!(status = %current.status, "the job was completed meanwhile; its video is left to its review or expiry")
            }
        }
        return Ok(());
    }
    // Read now: a poll may have replaced the token since the job was read.
    if let Some(token) = pipeline.tokens.task_token(&job.job_id).await? {
        pipeline.tasks.succeed(&token, &json!({"job_id": job.job_id, "status": "completed"})).await?;
    }
    Ok(())
}

fn unusable_output() -> JobError {
    Failure::OutputUnusable.error()
}

/// How many times the worker asks a provider after the deadline before the
/// job is given up, and the waits between: about 35 s in all, inside the
/// state machine's 300 s on `AskProvider`.
pub const POLL_ROUNDS: u32 = 4;
const POLL_WAITS: [u64; 3] = [5, 10, 20];

/// No callback came before the deadline: ask the provider directly. Still
/// working: ask again (a later round, through the queue) until the rounds
/// are out, then answer the task `StillRunning` so that the job is given up.
/// The rounds are the worker's, not a `Retry` of the state machine, for the
/// same reason as the submission's (see `submission.rs`).
pub(super) async fn poll(pipeline: &Pipeline, id: &JobId, token: Option<&str>, round: u32) -> Result<(), WorkError> {
    if let Some(token) = token {
        // The poll's token replaces the submission's, whose wait timed out.
        pipeline.tokens.save_task_token(id, token, TokenSave::Replace).await?;
    }
    let Some(token) = pipeline.tokens.task_token(id).await? else {
        return Err(WorkError::Unusable("no task token to answer".into()));
    };
    let mut job = load(pipeline, id).await?;
    match job.status {
        JobStatus::Completed | JobStatus::Approved | JobStatus::Rejected => {
            keep_if_approved(pipeline, &job).await?;
            pipeline.tasks.succeed(&token, &json!({"job_id": id, "status": job.status})).await?;
            return Ok(());
        }
        status if status.is_terminal() => {
            pipeline.tasks.fail(&token, task_errors::JOB_ENDED, status.as_str()).await?;
            return Ok(());
        }
        _ => {}
    }
    let detail = if job.provider_request_id.is_none() {
        "never accepted by the provider".to_owned()
    } else {
        let (provider, request_id) = provider_request(pipeline, &job)?;
        match provider.poll(&request_id).await {
            Ok(ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. }) => "the provider is still working".to_owned(),
            Ok(status) => return settle(pipeline, &mut job, status).await,
            Err(ProviderError::Transient { message, .. }) => message,
            Err(err) => {
                tracing::warn!(error = %err, "the provider does not know the job");
                return fail_job(pipeline, &mut job, Failure::LostAtProvider.error(), task_errors::JOB_ENDED).await;
            }
        }
    };
    match POLL_WAITS.get(round.saturating_sub(1) as usize).filter(|_| round < POLL_ROUNDS) {
        Some(wait) => {
            let next = WorkMessage::Poll { job_id: id.clone(), task_token: None, round: Some(round + 1) };
            pipeline.queue.enqueue_after(&next, Duration::from_secs(*wait)).await?;
            tracing::info!(round, detail, wait_seconds = wait, "still running after the deadline; asking again later");
        }
        None => {
            tracing::info!(round, detail, "still running after the last round; the job is given up");
            pipeline.tasks.fail(&token, task_errors::STILL_RUNNING, &detail).await?;
        }
    }
    Ok(())
}

/// The retention window starts (`KeepForReview`): keep its task's token for
/// the approval to answer, then read the job. Saved first and read after,
/// both strongly consistent, as the approval commits first and reads the
/// token after: an approval that found no token is seen here, and answered.
pub(super) async fn await_review(pipeline: &Pipeline, id: &JobId, token: &str) -> Result<(), WorkError> {
    pipeline.review_waits.save_review_token(id, token).await?;
    let job = load(pipeline, id).await?;
    if job.status == JobStatus::Approved {
        pipeline.tasks.succeed(token, &json!({"job_id": id, "status": job.status})).await?;
        tracing::info!("approved before its review wait was stored; answered");
    }
    Ok(())
}

/// The retention window is over: an output nobody approved is deleted. The
/// status moves first (conditioned on `completed`), the objects go after: an
/// approval that wins the race keeps its video, and one that loses finds the
/// job expired. A redelivered message finishes a deletion that was cut short.
pub(super) async fn expire(pipeline: &Pipeline, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(pipeline, id).await?;
    if job.status == JobStatus::Completed {
        let message = "Not reviewed within the retention window; the video was deleted";
        let error = Failure::RetentionExpired.error();
        if !move_job(pipeline, &mut job, EventSource::Worker, JobStatus::Expired, message, Some(error), JobUpdate::default()).await? {
            tracing::info!(status = %job.status, "the job moved on before it expired");
        }
    }
    match job.status {
        JobStatus::Expired | JobStatus::Rejected if job.output.is_some() => {
            delete_output(pipeline, &job).await?;
            tracing::info!(status = %job.status, "expired output deleted");
        }
        // The approval marked it kept before it committed, and its answer to
        // the review wait ended the execution; reaching here, that answer was
        // lost. Marking it again is harmless (and covers approvals made
        // before the approval kept its video itself).
        JobStatus::Approved => keep_output(pipeline, id).await?,
        other => tracing::info!(status = %other, "nothing to expire"),
    }
    Ok(())
}

/// Deletes a job's stored objects, then forgets them (conditioned on the
/// status it has, so an approval cannot lose its video to this).
async fn delete_output(pipeline: &Pipeline, job: &Job) -> Result<(), WorkError> {
    let Some(artifact) = &job.output else { return Ok(()) };
    pipeline.outputs.delete(&artifact.object_keys()).await?;
    let update = JobUpdate { remove_output: true, ..JobUpdate::default() };
    pipeline.writes.update_in_status(&job.job_id, job.status, &update).await?;
    Ok(())
}

/// A reviewer rejected the video: delete its objects and forget them. Only a
/// rejected job's output is touched, so a stray message cannot delete an
/// approved video; a repeated one finds nothing left to do.
pub(super) async fn discard_output(pipeline: &Pipeline, id: &JobId) -> Result<(), WorkError> {
    let job = load(pipeline, id).await?;
    if job.status != JobStatus::Rejected || job.output.is_none() {
        tracing::info!(status = %job.status, "no rejected output to discard");
        return Ok(());
    }
    delete_output(pipeline, &job).await?;
    tracing::info!("rejected output deleted");
    Ok(())
}

/// A reviewer approved the video: its objects are marked kept, so that the
/// bucket's safety net for stray copies never takes them. Only an approved
/// job's objects are marked; a repeated message marks them again, harmlessly.
/// A copy of this step (a `finalize`, a `refresh` or a `poll`) that died, or lost its
/// answer, right after it copied the output to its fixed key replaced the
/// objects of a job completed and approved meanwhile, tagged unreviewed; its
/// message comes back and finds the job approved. Nothing else would mark
/// them kept again (the approval ended the execution: no `expire` comes), and
/// the bucket's safety net would take the approved video. Found by the
/// simulator (seed 1495069 of a million-seed run on core's code).
async fn keep_if_approved(pipeline: &Pipeline, job: &Job) -> Result<(), WorkError> {
    if let Some(artifact) = job.output.as_ref().filter(|_| job.status == JobStatus::Approved) {
        pipeline.kept.keep(&artifact.object_keys()).await?;
    }
    Ok(())
}

pub(super) async fn keep_output(pipeline: &Pipeline, id: &JobId) -> Result<(), WorkError> {
    let job = load(pipeline, id).await?;
    let Some(artifact) = job.output.as_ref().filter(|_| job.status == JobStatus::Approved) else {
        tracing::info!(status = %job.status, "no approved output to keep");
        return Ok(());
    };
    let keys = artifact.object_keys();
    pipeline.kept.keep(&keys).await?;
    tracing::info!(objects = keys.len(), "approved output marked kept");
    Ok(())
}

/// Ends a job the state machine gave up on, unless it already ended.
///
/// The worker fails a job itself before it answers its task with
/// `ProviderBusy`, `ProviderRefused` or `JobEnded`, so for those the job is
/// normally ended already and nothing happens. A job still in flight here ran
/// out of time: a request the provider accepted is canceled there first (an
/// unreachable provider makes the message come back, so nobody keeps paying
/// for a video nobody will collect), then the job expires, conditioned on the
/// status it was read in, so a job that moved on meanwhile is left alone.
pub async fn give_up(pipeline: &Pipeline, id: &JobId, cause: Option<&str>) -> Result<(), WorkError> {
    let (to, failure) = match cause {
        Some(task_errors::PROVIDER_BUSY) => (JobStatus::Failed, Failure::ProviderBusy),
        Some(task_errors::PROVIDER_REFUSED | task_errors::JOB_ENDED) => (JobStatus::Failed, Failure::GenerationFailed),
        _ => (JobStatus::Expired, Failure::DeadlineExceeded),
    };
    let error = failure.error();
    for _ in 0..5 {
        let mut job = load(pipeline, id).await?;
        if transition(job.status, to).is_err() {
            tracing::info!(status = %job.status, "job already past giving up; nothing to do");
            return Ok(());
        }
        if let (Some(request_id), Some(provider)) = (job.provider_request_id.clone(), provider_for(pipeline, &job).cloned()) {
            match provider.cancel(&request_id).await {
                Ok(()) | Err(ProviderError::NotFound(_) | ProviderError::Refused { .. }) => {}
                Err(ProviderError::Transient { message, .. }) => return Err(WorkError::ProviderUnavailable(message)),
            }
        }
        if move_job(pipeline, &mut job, EventSource::StateMachine, to, &error.message, Some(error.clone()), JobUpdate::default()).await? {
            return Ok(());
        }
    }
    Err(StoreError::Unavailable("the job kept changing".into()).into())
}

pub(super) async fn cancel_at_provider(pipeline: &Pipeline, id: &JobId) -> Result<(), WorkError> {
    let job = load(pipeline, id).await?;
    let (Some(request_id), Some(provider)) = (&job.provider_request_id, provider_for(pipeline, &job)) else {
        return Ok(());
    };
    match provider.cancel(request_id).await {
        Ok(()) | Err(ProviderError::NotFound(_) | ProviderError::Refused { .. }) => Ok(()),
        Err(ProviderError::Transient { message, .. }) => Err(WorkError::ProviderUnavailable(message)),
    }
}
