//! `worker`: consumes the work queue, one span per message, and reports the
//! messages it could not handle so that only those come back (partial batch
//! failure). It is the only code that talks to providers' APIs and the only
//! code that moves bytes into S3.
//!
//! Every step is safe when a message arrives twice or the function dies half
//! way: status changes are conditioned on the status they leave, the provider
//! gets the job id as its idempotency key (a resubmission finds the same
//! request), outputs go to fixed keys, and a task token answered twice is
//! ignored by Step Functions.

pub mod notify;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use videojobs_core::ids::JobId;
use videojobs_core::job::{timestamp, Artifact, EventSource, Job, JobError};
use videojobs_core::lifecycle::{transition, JobStatus};
use videojobs_core::ports::*;
use videojobs_core::provider::{failure_advice, Provider, ProviderError, ProviderOutput, ProviderStatus, Providers, SubmitRequest};
use videojobs_core::request::ImageSource;
use videojobs_core::work::WorkMessage;
use videojobs_core::StoreError;

mod failover;

/// Error names the worker fails tasks with; the state machine matches on them.
pub mod task_errors {
    /// A transient provider error: the state machine retries with backoff.
    pub const PROVIDER_BUSY: &str = "ProviderBusy";
    /// The provider refused the job; the worker already failed it.
    pub const PROVIDER_REFUSED: &str = "ProviderRefused";
    /// The job failed or ended; the worker already recorded why.
    pub const JOB_ENDED: &str = "JobEnded";
    /// Asked after the deadline, the provider is still working.
    pub const STILL_RUNNING: &str = "StillRunning";
}

/// What the worker needs, built once per Lambda instance.
#[derive(Clone)]
pub struct Worker {
    pub jobs: Arc<dyn JobStore>,
    pub uploads: Arc<dyn UploadStore>,
    pub media: Arc<dyn MediaStore>,
    pub outputs: Arc<dyn OutputStore>,
    pub tasks: Arc<dyn TaskTokens>,
    pub providers: Providers,
    /// Where a job goes when its provider refuses it or keeps failing to accept it.
    pub failover: Option<videojobs_core::failover::Failover>,
    pub switches: Arc<dyn videojobs_core::failover::ProviderSwitch>,
    /// Where providers call back: `{callback_base_url}/webhooks/{provider}`.
    pub callback_base_url: String,
    pub retention_seconds: u64,
    pub presign_ttl_seconds: u64,
    /// Client notifications (`notify` messages).
    pub notifier: notify::Notifier,
    /// The stuck-jobs index, for the scheduled `check_stuck`.
    pub stats: Arc<dyn videojobs_core::stats::StatsStore>,
    pub stuck_after_seconds: u64,
    /// Where a `refresh` records what the provider said.
    pub progress: Arc<dyn videojobs_core::progress::ProgressDetails>,
}

impl Worker {
    /// The worker wired to AWS and the configured providers.
    pub fn on_aws(
        clients: &videojobs_aws::AwsClients,
        resources: &videojobs_aws::Resources,
        settings: &videojobs_core::settings::Settings,
        providers: Providers,
        http: videojobs_providers::HttpClient,
        callback_base_url: String,
    ) -> Self {
        let store = Arc::new(videojobs_aws::DynamoStore::new(
            clients.dynamodb.clone(),
            &resources.jobs_table,
            &resources.prompts_table,
        ));
        let queue = Arc::new(videojobs_aws::SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url));
        Worker {
            switches: store.clone(),
            progress: store.clone(),
            jobs: videojobs_aws::notifying(store.clone(), queue.clone()),
            notifier: notify::Notifier::on_aws(store.clone(), queue, settings),
            uploads: store.clone(),
            stats: store,
            stuck_after_seconds: settings.stuck_after_seconds,
            media: Arc::new(videojobs_aws::S3Media::new(clients.s3.clone(), &resources.media_bucket)),
            outputs: Arc::new(videojobs_aws::S3Outputs::new(clients.s3.clone(), &resources.media_bucket, http)),
            tasks: Arc::new(videojobs_aws::StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn)),
            providers,
            failover: settings.failover.clone(),
            callback_base_url,
            retention_seconds: settings.retention_seconds,
            presign_ttl_seconds: settings.presign_ttl_seconds,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The message can never be handled: retrying will not help.
    #[error("unusable message: {0}")]
    Unusable(String),
    /// Storage or a service failed: the message comes back and is tried again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider could not be reached or was busy for a step that must happen.
    #[error("provider unavailable: {0}")]
    ProviderUnavailable(String),
}

impl WorkError {
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkError::Unusable(_) => false,
            WorkError::Store(err) => err.is_retryable(),
            WorkError::ProviderUnavailable(_) => true,
        }
    }
}

pub async fn handler(worker: &Worker, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for message in event.payload.records {
        let id = message.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id, kind = tracing::field::Empty, job_id = tracing::field::Empty);
        let outcome = handle_message(worker, &message).instrument(span.clone()).await;
        let _entered = span.enter();
        match outcome {
            Ok(()) => tracing::info!("message handled"),
            // An unusable message is dropped (logged) rather than retried forever.
            Err(err) if !err.is_retryable() => tracing::error!(error = %err, "message dropped"),
            Err(err) => {
                tracing::warn!(error = %err, "message failed; it will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    Ok(response)
}

async fn handle_message(worker: &Worker, message: &SqsMessage) -> Result<(), WorkError> {
    let body = message.body.as_deref().ok_or_else(|| WorkError::Unusable("no body".into()))?;
    // A schedule's message has no job: it is told apart before the job messages.
    if let Ok(videojobs_core::stats::ScheduledMessage::CheckStuck) = serde_json::from_str(body) {
        tracing::Span::current().record("kind", "check_stuck");
        return check_stuck(worker).await.map(|_| ());
    }
    let parsed: WorkMessage = serde_json::from_str(body).map_err(|e| WorkError::Unusable(e.to_string()))?;
    let span = tracing::Span::current();
    span.record("job_id", parsed.job_id().as_str());
    span.record("kind", body_kind(&parsed));
    handle(worker, parsed).await
}

fn body_kind(message: &WorkMessage) -> &'static str {
    match message {
        WorkMessage::Submit { .. } => "submit",
        WorkMessage::Finalize { .. } => "finalize",
        WorkMessage::Poll { .. } => "poll",
        WorkMessage::Expire { .. } => "expire",
        WorkMessage::GiveUp { .. } => "give_up",
        WorkMessage::CancelAtProvider { .. } => "cancel_at_provider",
        WorkMessage::DiscardOutput { .. } => "discard_output",
        WorkMessage::Notify { .. } => "notify",
        WorkMessage::Refresh { .. } => "refresh",
    }
}

/// Handles one message (the tests call this directly too).
pub async fn handle(worker: &Worker, message: WorkMessage) -> Result<(), WorkError> {
    match message {
        WorkMessage::Submit { job_id, task_token } => submit(worker, &job_id, &task_token).await,
        WorkMessage::Finalize { job_id } => finalize(worker, &job_id).await,
        WorkMessage::Poll { job_id, task_token } => poll(worker, &job_id, &task_token).await,
        WorkMessage::Expire { job_id } => expire(worker, &job_id).await,
        WorkMessage::GiveUp { job_id, error } => give_up(worker, &job_id, error.as_deref()).await,
        WorkMessage::CancelAtProvider { job_id } => cancel_at_provider(worker, &job_id).await,
        WorkMessage::DiscardOutput { job_id } => discard_output(worker, &job_id).await,
        WorkMessage::Refresh { job_id } => refresh(worker, &job_id).await,
        WorkMessage::Notify { job_id, status, attempt, not_before } => {
            notify::notify(worker, &job_id, status, attempt, not_before).await
        }
    }
}

async fn load(worker: &Worker, id: &JobId) -> Result<Job, WorkError> {
    worker.jobs.job(id).await?.ok_or_else(|| WorkError::Unusable(format!("no job {id}")))
}

/// Moves `job` to `to` with `update`; `Ok(false)` when the lifecycle refuses
/// or another writer moved the job first (then `job` holds where it is).
async fn move_job(
    worker: &Worker,
    job: &mut Job,
    source: EventSource,
    to: JobStatus,
    message: &str,
    error: Option<JobError>,
    update: JobUpdate,
) -> Result<bool, WorkError> {
    let Ok(t) = transition(job.status, to) else { return Ok(false) };
    let change = StatusChange::new(job, t, source, message, error, update);
    match worker.jobs.change_status(&change).await? {
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

fn provider_for<'w>(worker: &'w Worker, job: &Job) -> Option<&'w Arc<dyn Provider>> {
    worker.providers.get(job.provider.as_str())
}

/// Fails an in-flight job for good (credits back once) and tells the waiting task.
async fn fail_job(worker: &Worker, job: &mut Job, error: JobError, task_error: &str) -> Result<(), WorkError> {
    let message = error.message.clone();
    let code = error.code.clone();
    // Another writer may move the job between our read and write: try from where it is.
    for _ in 0..3 {
        if move_job(worker, job, EventSource::Worker, JobStatus::Failed, &message, Some(error.clone()), JobUpdate::default()).await? {
            break;
        }
        if transition(job.status, JobStatus::Failed).is_err() {
            break;
        }
    }
    if let Some(token) = worker.jobs.task_token(&job.job_id).await? {
        worker.tasks.fail(&token, task_error, &code).await?;
    }
    Ok(())
}

async fn submit(worker: &Worker, id: &JobId, token: &str) -> Result<(), WorkError> {
    let mut job = load(worker, id).await?;
    match job.status {
        JobStatus::Queued | JobStatus::Retrying => {
            let from = job.status;
            let message = if from == JobStatus::Retrying { "Submitting to the provider again" } else { "Submitted to the provider" };
            if !move_job(worker, &mut job, EventSource::Worker, JobStatus::Submitted, message, None, JobUpdate::default()).await? {
                return Err(StoreError::Unavailable(format!("the job moved from {from} to {}", job.status)).into());
            }
        }
        // Submitted without a request id: an earlier attempt died between the
        // provider's answer and our write; the idempotency key finds its request.
        JobStatus::Submitted if job.provider_request_id.is_none() => {}
        // A redelivered message for a submission already made: its token is
        // stored, and a later one (from a poll) must not be replaced by it.
        JobStatus::Submitted | JobStatus::Processing => return Ok(()),
        ended => {
            tracing::info!(status = %ended, "job no longer needs submitting");
            return Ok(());
        }
    }
    // Kept before the provider is asked: whatever happens next can answer the wait.
    worker.jobs.save_task_token(id, token).await?;
    let Some(mut provider) = provider_for(worker, &job).cloned() else {
        let error = JobError {
            code: "provider_unavailable".into(),
            message: format!("The provider '{}' is not available.", job.provider),
            next_step: Some("Try again with another provider.".into()),
        };
        return fail_job(worker, &mut job, error, task_errors::PROVIDER_REFUSED).await;
    };
    let mut outcome = provider.submit(&submit_request(worker, &job).await?).await;
    if let Err(error) = &outcome {
        if let Some(fallback) = failover::fail_over(worker, &mut job, error).await? {
            provider = fallback;
            outcome = provider.submit(&submit_request(worker, &job).await?).await;
        }
    }
    match outcome {
        Ok(request_id) => {
            let update = JobUpdate {
                provider_request: Some((job.provider.to_string(), request_id.clone())),
                ..JobUpdate::default()
            };
            if !worker.jobs.update_in_status(id, JobStatus::Submitted, &update).await? {
                // Canceled (or ended) while we were submitting: stop the provider too.
                tracing::info!(request_id, "job moved on during submission; canceling at the provider");
                let _ = provider.cancel(&request_id).await;
            }
            tracing::info!(request_id, "submitted");
            Ok(())
        }
        Err(ProviderError::Transient { message, .. }) => {
            tracing::warn!(error = %message, "provider busy; the state machine retries");
            let note = "The provider is busy; retrying";
            move_job(worker, &mut job, EventSource::Worker, JobStatus::Retrying, note, None, JobUpdate::default()).await?;
            worker.tasks.fail(token, task_errors::PROVIDER_BUSY, &message).await?;
            Ok(())
        }
        Err(ProviderError::Refused { code, message }) => {
            tracing::info!(code, message, "provider refused the job");
            let error = JobError {
                message: "The provider would not generate this video.".into(),
                next_step: Some(failure_advice(&code).into()),
                code,
            };
            fail_job(worker, &mut job, error, task_errors::PROVIDER_REFUSED).await
        }
        Err(ProviderError::NotFound(message)) => Err(WorkError::ProviderUnavailable(message)),
    }
}

async fn submit_request(worker: &Worker, job: &Job) -> Result<SubmitRequest, WorkError> {
    let prompt = worker.jobs.prompt(&job.job_id).await?;
    let image_url = match &job.params {
        videojobs_core::job::JobParams::ImageToVideo { image: ImageSource::Url(url), .. } => Some(url.clone()),
        videojobs_core::job::JobParams::ImageToVideo { image: ImageSource::Upload(upload_id), .. } => {
            let upload = worker
                .uploads
                .upload(upload_id)
                .await?
                .ok_or_else(|| WorkError::Unusable(format!("upload {upload_id} is gone")))?;
            // Long enough for a queued provider to fetch it.
            let ttl = worker.presign_ttl_seconds.max(3_600);
            Some(worker.media.presign_get(&upload.object_key, ttl).await?.url)
        }
        _ => None,
    };
    let faults = if job.provider.as_str() == "local" {
        job.metadata.as_ref().and_then(|m| m.get("local_faults")).cloned()
    } else {
        None
    };
    Ok(SubmitRequest {
        idempotency_key: job.job_id.to_string(),
        params: job.params.clone(),
        prompt,
        image_url,
        callback_url: format!("{}/webhooks/{}", worker.callback_base_url.trim_end_matches('/'), job.provider),
        faults,
    })
}

/// The provider says it finished (or gave up): fetch the outcome and finish the job.
async fn finalize(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(worker, id).await?;
    if !matches!(job.status, JobStatus::Submitted | JobStatus::Processing) {
        tracing::info!(status = %job.status, "nothing to finalize");
        return Ok(());
    }
    let (provider, request_id) = provider_request(worker, &job)?;
    match provider.poll(&request_id).await {
        Ok(status) => settle(worker, &mut job, status).await,
        Err(ProviderError::Transient { message, .. }) => Err(WorkError::ProviderUnavailable(message)),
        Err(err) => Err(WorkError::Unusable(err.to_string())),
    }
}

/// A client read a job whose provider sends no progress callbacks: ask the
/// provider where it is. Still working: its detail (and progress) is recorded.
/// Done: the job is finished by the same step a `finalize` takes. A provider
/// that cannot answer now is not asked again for this message: the next read
/// asks for another refresh, and the deadline's poll remains.
async fn refresh(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(worker, id).await?;
    if !matches!(job.status, JobStatus::Submitted | JobStatus::Processing) || job.provider_request_id.is_none() {
        tracing::info!(status = %job.status, "nothing to refresh");
        return Ok(());
    }
    let (provider, request_id) = provider_request(worker, &job)?;
    let observed_at = timestamp::now();
    match provider.poll(&request_id).await {
        Ok(status @ (ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. })) => {
            let source = EventSource::Worker;
            videojobs_core::progress::apply_working(worker.jobs.as_ref(), worker.progress.as_ref(), &job, &status, source, observed_at).await?;
            tracing::info!(?status, "progress refreshed");
            Ok(())
        }
        Ok(outcome) => settle(worker, &mut job, outcome).await,
        Err(err) => {
            tracing::warn!(error = %err, "the provider did not answer a refresh; dropped");
            Ok(())
        }
    }
}

fn provider_request(worker: &Worker, job: &Job) -> Result<(Arc<dyn Provider>, String), WorkError> {
    let provider = provider_for(worker, job).cloned().ok_or_else(|| WorkError::Unusable(format!("no provider {}", job.provider)))?;
    let request_id = job.provider_request_id.clone().ok_or_else(|| WorkError::Unusable("the job has no provider request".into()))?;
    Ok((provider, request_id))
}

/// Applies what the provider says about a job we are waiting for.
async fn settle(worker: &Worker, job: &mut Job, status: ProviderStatus) -> Result<(), WorkError> {
    match status {
        ProviderStatus::Succeeded(output) => complete(worker, job, output).await,
        ProviderStatus::Failed { code, message } => {
            tracing::info!(code, message, "the provider failed the job");
            let error = JobError {
                message: "The video could not be generated.".into(),
                next_step: Some(failure_advice(&code).into()),
                code,
            };
            fail_job(worker, job, error, task_errors::JOB_ENDED).await
        }
        ProviderStatus::Canceled => {
            let error = JobError {
                code: "canceled_by_provider".into(),
                message: "The provider canceled the job.".into(),
                next_step: Some("Try again.".into()),
            };
            fail_job(worker, job, error, task_errors::JOB_ENDED).await
        }
        ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. } => {
            tracing::info!("the provider is still working");
            Ok(())
        }
    }
}

/// Copies the output into our bucket, records it, completes the job and
/// answers the waiting task.
async fn complete(worker: &Worker, job: &mut Job, output: ProviderOutput) -> Result<(), WorkError> {
    let video_key = format!("outputs/{}/video.mp4", job.job_id);
    let copied = match worker.outputs.copy_from_url(&output.video_url, &video_key, "video/mp4").await {
        Ok(copied) => copied,
        Err(CopyError::SourceUnavailable(message)) => return Err(WorkError::ProviderUnavailable(message)),
        Err(CopyError::Store(err)) => return Err(err.into()),
        Err(CopyError::SourceUnusable(message)) => {
            tracing::warn!(message, "the provider's output is unusable");
            return fail_job(worker, job, unusable_output(), task_errors::JOB_ENDED).await;
        }
    };
    let Some(video) = copied.video else {
        let _ = worker.outputs.delete(std::slice::from_ref(&video_key)).await;
        return fail_job(worker, job, unusable_output(), task_errors::JOB_ENDED).await;
    };
    let thumbnail = match &output.thumbnail_url {
        Some(url) => {
            let key = format!("outputs/{}/thumbnail.jpg", job.job_id);
            match worker.outputs.copy_from_url(url, &key, "image/jpeg").await {
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
        move_job(worker, job, EventSource::Worker, JobStatus::Processing, "The provider finished generating", None, JobUpdate::default()).await?;
    }
    let update = JobUpdate {
        progress: Some(100),
        output: Some(artifact),
        output_expires_at: Some(now + Duration::from_secs(worker.retention_seconds)),
        completed_at: Some(now),
        ..JobUpdate::default()
    };
    let done = move_job(worker, job, EventSource::Worker, JobStatus::Completed, "The video is stored and ready for review", None, update).await?;
    if !done && job.status != JobStatus::Completed {
        tracing::info!(status = %job.status, "job moved on while its output was copied");
        return Ok(());
    }
    // Read now: a poll may have replaced the token since the job was read.
    if let Some(token) = worker.jobs.task_token(&job.job_id).await? {
        worker.tasks.succeed(&token, &json!({"job_id": job.job_id, "status": "completed"})).await?;
    }
    Ok(())
}

fn unusable_output() -> JobError {
    JobError {
        code: "output_unusable".into(),
        message: "The provider returned a file that is not a playable video.".into(),
        next_step: Some("Try again.".into()),
    }
}

/// No callback came before the deadline: ask the provider directly.
async fn poll(worker: &Worker, id: &JobId, token: &str) -> Result<(), WorkError> {
    let mut job = load(worker, id).await?;
    match job.status {
        JobStatus::Completed | JobStatus::Approved | JobStatus::Rejected => {
            worker.tasks.succeed(token, &json!({"job_id": id, "status": job.status})).await?;
            return Ok(());
        }
        status if status.is_terminal() => {
            worker.tasks.fail(token, task_errors::JOB_ENDED, status.as_str()).await?;
            return Ok(());
        }
        _ => {}
    }
    worker.jobs.save_task_token(id, token).await?;
    if job.provider_request_id.is_none() {
        worker.tasks.fail(token, task_errors::STILL_RUNNING, "never accepted by the provider").await?;
        return Ok(());
    }
    let (provider, request_id) = provider_request(worker, &job)?;
    match provider.poll(&request_id).await {
        Ok(ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. }) => {
            worker.tasks.fail(token, task_errors::STILL_RUNNING, "the provider is still working").await?;
            Ok(())
        }
        Ok(status) => settle(worker, &mut job, status).await,
        Err(ProviderError::Transient { message, .. }) => {
            worker.tasks.fail(token, task_errors::STILL_RUNNING, &message).await?;
            Ok(())
        }
        Err(err) => {
            let error = JobError {
                code: "lost_at_provider".into(),
                message: "The provider lost the job.".into(),
                next_step: Some("Try again.".into()),
            };
            tracing::warn!(error = %err, "the provider does not know the job");
            fail_job(worker, &mut job, error, task_errors::JOB_ENDED).await
        }
    }
}

/// The retention window is over: an output nobody approved is deleted.
async fn expire(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(worker, id).await?;
    let keys: Vec<String> = job
        .output
        .iter()
        .flat_map(|a| std::iter::once(a.video_key.clone()).chain(a.thumbnail_key.clone()))
        .collect();
    match job.status {
        JobStatus::Completed => {
            worker.outputs.delete(&keys).await?;
            let update = JobUpdate { remove_output: true, ..JobUpdate::default() };
            let message = "Not reviewed within the retention window; the video was deleted";
            let error = JobError {
                code: "retention_expired".into(),
                message: "The video was not reviewed in time and was deleted.".into(),
                next_step: Some("Generate it again.".into()),
            };
            move_job(worker, &mut job, EventSource::Worker, JobStatus::Expired, message, Some(error), update).await?;
        }
        JobStatus::Rejected if !keys.is_empty() => {
            worker.outputs.delete(&keys).await?;
            let update = JobUpdate { remove_output: true, ..JobUpdate::default() };
            worker.jobs.update_in_status(id, JobStatus::Rejected, &update).await?;
        }
        other => tracing::info!(status = %other, "nothing to expire"),
    }
    Ok(())
}

/// A reviewer rejected the video: delete its objects and forget them. Only a
/// rejected job's output is touched, so a stray message cannot delete an
/// approved video; a repeated one finds nothing left to do.
async fn discard_output(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let job = load(worker, id).await?;
    let Some(artifact) = job.output.as_ref().filter(|_| job.status == JobStatus::Rejected) else {
        tracing::info!(status = %job.status, "no rejected output to discard");
        return Ok(());
    };
    let keys: Vec<String> = std::iter::once(artifact.video_key.clone()).chain(artifact.thumbnail_key.clone()).collect();
    worker.outputs.delete(&keys).await?;
    let update = JobUpdate { remove_output: true, ..JobUpdate::default() };
    worker.jobs.update_in_status(id, JobStatus::Rejected, &update).await?;
    tracing::info!(objects = keys.len(), "rejected output deleted");
    Ok(())
}

/// Ends a job the state machine gave up on, unless it already ended.
pub async fn give_up(worker: &Worker, id: &JobId, cause: Option<&str>) -> Result<(), WorkError> {
    let (to, error) = match cause {
        Some("States.Timeout" | task_errors::STILL_RUNNING) => (
            JobStatus::Expired,
            JobError {
                code: "deadline_exceeded".into(),
                message: "The video was not ready in time.".into(),
                next_step: Some("Try again; a shorter video is usually faster.".into()),
            },
        ),
        Some(task_errors::PROVIDER_BUSY) => (
            JobStatus::Failed,
            JobError {
                code: "provider_busy".into(),
                message: "The provider was too busy to take the job.".into(),
                next_step: Some("Try again in a few minutes.".into()),
            },
        ),
        _ => (
            JobStatus::Failed,
            JobError {
                code: "generation_failed".into(),
                message: "The video could not be generated.".into(),
                next_step: Some("Try again, or change the prompt.".into()),
            },
        ),
    };
    for _ in 0..5 {
        let mut job = load(worker, id).await?;
        if transition(job.status, to).is_err() {
            tracing::info!(status = %job.status, "job already past giving up; nothing to do");
            return Ok(());
        }
        let request = job.provider_request_id.clone();
        if move_job(worker, &mut job, EventSource::StateMachine, to, &error.message, Some(error.clone()), JobUpdate::default()).await? {
            if let (Some(request_id), Some(provider)) = (request, provider_for(worker, &job)) {
                // Nothing will collect the video now: stop paying for it.
                let _ = provider.cancel(&request_id).await;
            }
            return Ok(());
        }
    }
    Err(StoreError::Unavailable("the job kept changing".into()).into())
}

/// Counts the jobs stuck in `submitted` or `processing` (from the index) and
/// reports them as the `StuckJobs` metric the stuck-jobs alarm watches;
/// returns how many there are.
pub async fn check_stuck(worker: &Worker) -> Result<u64, WorkError> {
    let now = timestamp::now();
    let stuck = videojobs_core::stats::stuck_jobs(worker.stats.as_ref(), worker.stuck_after_seconds, now).await?;
    videojobs_aws::stats::emit_stuck(stuck.count);
    for job in &stuck.oldest {
        tracing::warn!(job_id = %job.job_id, status = %job.status, provider = job.provider, updated_at = %timestamp::format(job.updated_at), "job looks stuck");
    }
    tracing::info!(count = stuck.count, threshold_seconds = worker.stuck_after_seconds, "stuck jobs checked");
    Ok(stuck.count)
}

async fn cancel_at_provider(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let job = load(worker, id).await?;
    let (Some(request_id), Some(provider)) = (&job.provider_request_id, provider_for(worker, &job)) else {
        return Ok(());
    };
    match provider.cancel(request_id).await {
        Ok(()) | Err(ProviderError::NotFound(_) | ProviderError::Refused { .. }) => Ok(()),
        Err(ProviderError::Transient { message, .. }) => Err(WorkError::ProviderUnavailable(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_messages_are_not_retried_and_outages_are() {
        assert!(!WorkError::Unusable("x".into()).is_retryable());
        assert!(WorkError::Store(StoreError::Unavailable("x".into())).is_retryable());
        assert!(!WorkError::Store(StoreError::Internal("x".into())).is_retryable());
        assert!(WorkError::ProviderUnavailable("x".into()).is_retryable());
    }
}
