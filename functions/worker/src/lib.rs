//! `worker`: consumes a queue, one span per message, and reports the messages
//! it could not handle so that only those come back (partial batch failure).
//! The same binary consumes the pipeline's work queue and, as its own
//! function, the client-notification queue. It is the only code that talks
//! to providers' APIs and the only code that moves bytes into S3.
//!
//! The messages of a batch are handled concurrently, each within a time
//! budget ([`budget_for`]) well inside the function's timeout: a slow message
//! comes back alone, never with its batch. A message that can never be
//! handled (unparseable, no such job, a 4xx from AWS) goes to the queue's
//! dead-letter queue with the reason, where the alarm sees it.
//!
//! Every step is safe when a message arrives twice or the function dies half
//! way: status changes are conditioned on the status they leave, submission
//! attempts are fenced (`submission.rs`), the provider gets the job id as its
//! idempotency key (a resubmission finds the same request), outputs go to
//! fixed keys, and a task token answered twice is ignored by Step Functions.

pub mod notify;
pub mod submission;

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
    /// Where the token of the task that waits for the review is kept.
    pub review_waits: Arc<dyn ReviewWaits>,
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
    /// The pipeline's own queue, for the worker's delayed retries.
    pub queue: Arc<dyn DelayedWorkQueue>,
    /// Ties provider request ids to jobs (see `ProviderRequests`).
    pub requests: Arc<dyn ProviderRequests>,
    /// Where messages that can never be handled go, with the reason.
    pub dead_letters: Arc<dyn DeadLetters>,
    /// Starts the execution of a job whose start was lost (see `check_stuck`).
    pub workflows: Arc<dyn Workflows>,
    pub settings: videojobs_core::settings::Settings,
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
        let store = Arc::new(videojobs_aws::DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table));
        let queue = Arc::new(videojobs_aws::SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url));
        let notifications = Arc::new(videojobs_aws::SqsWorkQueue::new(clients.sqs.clone(), &resources.notify_queue_url));
        Worker {
            switches: store.clone(),
            progress: store.clone(),
            requests: store.clone(),
            review_waits: store.clone(),
            queue,
            dead_letters: Arc::new(videojobs_aws::sqs::SqsDeadLetters::new(clients.sqs.clone(), resources)),
            workflows: Arc::new(videojobs_aws::StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn)),
            settings: settings.clone(),
            jobs: videojobs_aws::notifying(store.clone(), notifications.clone()),
            notifier: notify::Notifier::on_aws(store.clone(), notifications, settings),
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
    /// The message ran past its time budget: it comes back later.
    #[error("the message took longer than its budget of {0:?}")]
    OutOfTime(Duration),
}

impl WorkError {
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkError::Unusable(_) => false,
            WorkError::Store(err) => err.is_retryable(),
            WorkError::ProviderUnavailable(_) | WorkError::OutOfTime(_) => true,
        }
    }
}

/// How long one message may take, well inside the functions' timeouts (60 s
/// for the pipeline's worker, 30 s for the notifier): a client endpoint gets
/// 20 s (its connect and request timeouts are 5 s and 10 s); a pipeline step
/// (a provider call, an output copy) 45 s.
pub fn budget_for(message: Option<&WorkMessage>) -> Duration {
    match message {
        Some(WorkMessage::Notify { .. }) => Duration::from_secs(20),
        _ => Duration::from_secs(45),
    }
}

pub async fn handler(worker: &Worker, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let outcomes = futures_util::future::join_all(event.payload.records.iter().map(|message| handle_record(worker, message))).await;
    let mut response = SqsBatchResponse::default();
    for failed in outcomes.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = failed;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// Handles one record in its own span and time budget; the message id when it
/// must come back.
async fn handle_record(worker: &Worker, message: &SqsMessage) -> Option<String> {
    let id = message.message_id.clone().unwrap_or_default();
    let span = tracing::info_span!("message", message_id = %id, kind = tracing::field::Empty, job_id = tracing::field::Empty);
    // Parsed once: the kind sets the budget and the dead-letter queue too.
    let parsed = message.body.as_deref().map(serde_json::from_str::<WorkMessage>);
    let budget = budget_for(parsed.as_ref().and_then(|p| p.as_ref().ok()));
    let notification = matches!(parsed, Some(Ok(WorkMessage::Notify { .. })));
    let outcome = match tokio::time::timeout(budget, handle_message(worker, message, parsed).instrument(span.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Err(WorkError::OutOfTime(budget)),
    };
    let _entered = span.enter();
    match outcome {
        Ok(()) => {
            tracing::info!("message handled");
            None
        }
        Err(err) if !err.is_retryable() => {
            let body = message.body.as_deref().unwrap_or("");
            match worker.dead_letters.dead_letter(body, &err.to_string(), notification).await {
                Ok(()) => {
                    tracing::error!(error = %err, metric = "MessagesDeadLettered", "message can never be handled; sent to the dead-letter queue");
                    None
                }
                Err(dlq) => {
                    tracing::error!(error = %err, dlq_error = %dlq, "message can never be handled and the dead-letter queue refused it; it comes back");
                    Some(id)
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "message failed; it will be retried");
            Some(id)
        }
    }
}

async fn handle_message(
    worker: &Worker,
    message: &SqsMessage,
    parsed: Option<Result<WorkMessage, serde_json::Error>>,
) -> Result<(), WorkError> {
    let body = message.body.as_deref().ok_or_else(|| WorkError::Unusable("no body".into()))?;
    // A schedule's message has no job: it is told apart before the job messages.
    if let Ok(videojobs_core::stats::ScheduledMessage::CheckStuck) = serde_json::from_str(body) {
        tracing::Span::current().record("kind", "check_stuck");
        return check_stuck(worker).await.map(|_| ());
    }
    let parsed = parsed.ok_or_else(|| WorkError::Unusable("no body".into()))?.map_err(|e| WorkError::Unusable(e.to_string()))?;
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
        WorkMessage::AwaitReview { .. } => "await_review",
        WorkMessage::Expire { .. } => "expire",
        WorkMessage::GiveUp { .. } => "give_up",
        WorkMessage::CancelAtProvider { .. } => "cancel_at_provider",
        WorkMessage::DiscardOutput { .. } => "discard_output",
        WorkMessage::KeepOutput { .. } => "keep_output",
        WorkMessage::Notify { .. } => "notify",
        WorkMessage::Refresh { .. } => "refresh",
    }
}

/// Handles one message (the tests call this directly too).
pub async fn handle(worker: &Worker, message: WorkMessage) -> Result<(), WorkError> {
    match message {
        WorkMessage::Submit { job_id, task_token, attempt } => submission::submit(worker, &job_id, task_token.as_deref(), attempt).await,
        WorkMessage::Finalize { job_id } => finalize(worker, &job_id).await,
        WorkMessage::Poll { job_id, task_token, round } => poll(worker, &job_id, task_token.as_deref(), round.unwrap_or(1)).await,
        WorkMessage::AwaitReview { job_id, task_token } => await_review(worker, &job_id, &task_token).await,
        WorkMessage::Expire { job_id } => expire(worker, &job_id).await,
        WorkMessage::GiveUp { job_id, error } => give_up(worker, &job_id, error.as_deref()).await,
        WorkMessage::CancelAtProvider { job_id } => cancel_at_provider(worker, &job_id).await,
        WorkMessage::DiscardOutput { job_id } => discard_output(worker, &job_id).await,
        WorkMessage::KeepOutput { job_id } => keep_output(worker, &job_id).await,
        WorkMessage::Refresh { job_id } => refresh(worker, &job_id).await,
        WorkMessage::Notify { job_id, status, attempt, not_before } => notify::notify(worker, &job_id, status, attempt, not_before).await,
    }
}

pub(crate) async fn load(worker: &Worker, id: &JobId) -> Result<Job, WorkError> {
    worker.jobs.job(id).await?.ok_or_else(|| WorkError::Unusable(format!("no job {id}")))
}

/// Moves `job` to `to` with `update`; `Ok(false)` when the lifecycle refuses
/// or another writer moved the job first (then `job` holds where it is).
pub(crate) async fn move_job(
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

pub(crate) fn provider_for<'w>(worker: &'w Worker, job: &Job) -> Option<&'w Arc<dyn Provider>> {
    worker.providers.get(job.provider.as_str())
}

/// Fails an in-flight job for good (credits back once) and tells the waiting task.
pub(crate) async fn fail_job(worker: &Worker, job: &mut Job, error: JobError, task_error: &str) -> Result<(), WorkError> {
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

pub(crate) async fn submit_request(worker: &Worker, job: &Job) -> Result<SubmitRequest, WorkError> {
    let prompt = worker.jobs.prompt(&job.job_id).await?;
    let image_url = match &job.params {
        videojobs_core::job::JobParams::ImageToVideo { image: ImageSource::Url(url), .. } => Some(url.clone()),
        videojobs_core::job::JobParams::ImageToVideo { image: ImageSource::Upload(upload_id), .. } => {
            let upload =
                worker.uploads.upload(upload_id).await?.ok_or_else(|| WorkError::Unusable(format!("upload {upload_id} is gone")))?;
            // Long enough for a queued provider to fetch it.
            let ttl = worker.presign_ttl_seconds.max(3_600);
            Some(worker.media.presign_get(&upload.object_key, ttl).await?.url)
        }
        _ => None,
    };
    let faults = if job.provider.as_str() == "local" { job.metadata.as_ref().and_then(|m| m.get("local_faults")).cloned() } else { None };
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
pub(crate) async fn refresh(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
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
            videojobs_core::progress::apply_working(worker.jobs.as_ref(), worker.progress.as_ref(), &job, &status, source, observed_at)
                .await?;
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
            let error =
                JobError { message: "The video could not be generated.".into(), next_step: Some(failure_advice(&code).into()), code };
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
        move_job(worker, job, EventSource::Worker, JobStatus::Processing, "The provider finished generating", None, JobUpdate::default())
            .await?;
    }
    let keys = artifact.object_keys();
    let update = JobUpdate {
        progress: Some(100),
        output: Some(artifact),
        output_expires_at: Some(now + Duration::from_secs(worker.retention_seconds)),
        completed_at: Some(now),
        ..JobUpdate::default()
    };
    let done =
        move_job(worker, job, EventSource::Worker, JobStatus::Completed, "The video is stored and ready for review", None, update).await?;
    if !done && job.status == JobStatus::Approved {
        // A duplicate of this step, beaten by one that completed the job and
        // then by an approval: this copy replaced the approved objects (same
        // keys, same bytes) tagged unreviewed. They are the approved video:
        // marked kept again, never deleted.
        worker.outputs.keep(&keys).await?;
        return Ok(());
    }
    if !done && job.status != JobStatus::Completed {
        // Canceled (or ended) while the output was copied: nothing points at
        // the copy, so it goes now rather than stay in S3 for good.
        tracing::info!(status = %job.status, "job moved on while its output was copied; deleting the copy");
        worker.outputs.delete(&keys).await?;
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
async fn poll(worker: &Worker, id: &JobId, token: Option<&str>, round: u32) -> Result<(), WorkError> {
    if let Some(token) = token {
        // The poll's token replaces the submission's, whose wait timed out.
        worker.jobs.save_task_token(id, token, true).await?;
    }
    let Some(token) = worker.jobs.task_token(id).await? else {
        return Err(WorkError::Unusable("no task token to answer".into()));
    };
    let mut job = load(worker, id).await?;
    match job.status {
        JobStatus::Completed | JobStatus::Approved | JobStatus::Rejected => {
            worker.tasks.succeed(&token, &json!({"job_id": id, "status": job.status})).await?;
            return Ok(());
        }
        status if status.is_terminal() => {
            worker.tasks.fail(&token, task_errors::JOB_ENDED, status.as_str()).await?;
            return Ok(());
        }
        _ => {}
    }
    let detail = if job.provider_request_id.is_none() {
        "never accepted by the provider".to_owned()
    } else {
        let (provider, request_id) = provider_request(worker, &job)?;
        match provider.poll(&request_id).await {
            Ok(ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. }) => "the provider is still working".to_owned(),
            Ok(status) => return settle(worker, &mut job, status).await,
            Err(ProviderError::Transient { message, .. }) => message,
            Err(err) => {
                let error = JobError {
                    code: "lost_at_provider".into(),
                    message: "The provider lost the job.".into(),
                    next_step: Some("Try again.".into()),
                };
                tracing::warn!(error = %err, "the provider does not know the job");
                return fail_job(worker, &mut job, error, task_errors::JOB_ENDED).await;
            }
        }
    };
    match POLL_WAITS.get(round.saturating_sub(1) as usize).filter(|_| round < POLL_ROUNDS) {
        Some(wait) => {
            let next = WorkMessage::Poll { job_id: id.clone(), task_token: None, round: Some(round + 1) };
            worker.queue.enqueue_after(&next, Duration::from_secs(*wait)).await?;
            tracing::info!(round, detail, wait_seconds = wait, "still running after the deadline; asking again later");
        }
        None => {
            tracing::info!(round, detail, "still running after the last round; the job is given up");
            worker.tasks.fail(&token, task_errors::STILL_RUNNING, &detail).await?;
        }
    }
    Ok(())
}

/// The retention window starts (`KeepForReview`): keep its task's token for
/// the approval to answer, then read the job. Saved first and read after,
/// both strongly consistent, as the approval commits first and reads the
/// token after: an approval that found no token is seen here, and answered.
async fn await_review(worker: &Worker, id: &JobId, token: &str) -> Result<(), WorkError> {
    worker.review_waits.save_review_token(id, token).await?;
    let job = load(worker, id).await?;
    if job.status == JobStatus::Approved {
        worker.tasks.succeed(token, &json!({"job_id": id, "status": job.status})).await?;
        tracing::info!("approved before its review wait was stored; answered");
    }
    Ok(())
}

/// The retention window is over: an output nobody approved is deleted. The
/// status moves first (conditioned on `completed`), the objects go after: an
/// approval that wins the race keeps its video, and one that loses finds the
/// job expired. A redelivered message finishes a deletion that was cut short.
async fn expire(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let mut job = load(worker, id).await?;
    if job.status == JobStatus::Completed {
        let message = "Not reviewed within the retention window; the video was deleted";
        let error = JobError {
            code: "retention_expired".into(),
            message: "The video was not reviewed in time and was deleted.".into(),
            next_step: Some("Generate it again.".into()),
        };
        if !move_job(worker, &mut job, EventSource::Worker, JobStatus::Expired, message, Some(error), JobUpdate::default()).await? {
            tracing::info!(status = %job.status, "the job moved on before it expired");
        }
    }
    match job.status {
        JobStatus::Expired | JobStatus::Rejected if job.output.is_some() => {
            delete_output(worker, &job).await?;
            tracing::info!(status = %job.status, "expired output deleted");
        }
        // The approval marked it kept before it committed, and its answer to
        // the review wait ended the execution; reaching here, that answer was
        // lost. Marking it again is harmless (and covers approvals made
        // before the approval kept its video itself).
        JobStatus::Approved => keep_output(worker, id).await?,
        other => tracing::info!(status = %other, "nothing to expire"),
    }
    Ok(())
}

/// Deletes a job's stored objects, then forgets them (conditioned on the
/// status it has, so an approval cannot lose its video to this).
async fn delete_output(worker: &Worker, job: &Job) -> Result<(), WorkError> {
    let Some(artifact) = &job.output else { return Ok(()) };
    worker.outputs.delete(&artifact.object_keys()).await?;
    let update = JobUpdate { remove_output: true, ..JobUpdate::default() };
    worker.jobs.update_in_status(&job.job_id, job.status, &update).await?;
    Ok(())
}

/// A reviewer rejected the video: delete its objects and forget them. Only a
/// rejected job's output is touched, so a stray message cannot delete an
/// approved video; a repeated one finds nothing left to do.
async fn discard_output(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let job = load(worker, id).await?;
    if job.status != JobStatus::Rejected || job.output.is_none() {
        tracing::info!(status = %job.status, "no rejected output to discard");
        return Ok(());
    }
    delete_output(worker, &job).await?;
    tracing::info!("rejected output deleted");
    Ok(())
}

/// A reviewer approved the video: its objects are marked kept, so that the
/// bucket's safety net for stray copies never takes them. Only an approved
/// job's objects are marked; a repeated message marks them again, harmlessly.
async fn keep_output(worker: &Worker, id: &JobId) -> Result<(), WorkError> {
    let job = load(worker, id).await?;
    let Some(artifact) = job.output.as_ref().filter(|_| job.status == JobStatus::Approved) else {
        tracing::info!(status = %job.status, "no approved output to keep");
        return Ok(());
    };
    let keys = artifact.object_keys();
    worker.outputs.keep(&keys).await?;
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
pub async fn give_up(worker: &Worker, id: &JobId, cause: Option<&str>) -> Result<(), WorkError> {
    let (to, error) = match cause {
        Some(task_errors::PROVIDER_BUSY) => (
            JobStatus::Failed,
            JobError {
                code: "provider_busy".into(),
                message: "The provider was too busy to take the job.".into(),
                next_step: Some("Try again in a few minutes.".into()),
            },
        ),
        Some(task_errors::PROVIDER_REFUSED | task_errors::JOB_ENDED) => (
            JobStatus::Failed,
            JobError {
                code: "generation_failed".into(),
                message: "The video could not be generated.".into(),
                next_step: Some("Try again, or change the prompt.".into()),
            },
        ),
        _ => (
            JobStatus::Expired,
            JobError {
                code: "deadline_exceeded".into(),
                message: "The video was not ready in time.".into(),
                next_step: Some("Try again; a shorter video is usually faster.".into()),
            },
        ),
    };
    for _ in 0..5 {
        let mut job = load(worker, id).await?;
        if transition(job.status, to).is_err() {
            tracing::info!(status = %job.status, "job already past giving up; nothing to do");
            return Ok(());
        }
        if let (Some(request_id), Some(provider)) = (job.provider_request_id.clone(), provider_for(worker, &job).cloned()) {
            match provider.cancel(&request_id).await {
                Ok(()) | Err(ProviderError::NotFound(_) | ProviderError::Refused { .. }) => {}
                Err(ProviderError::Transient { message, .. }) => return Err(WorkError::ProviderUnavailable(message)),
            }
        }
        if move_job(worker, &mut job, EventSource::StateMachine, to, &error.message, Some(error.clone()), JobUpdate::default()).await? {
            return Ok(());
        }
    }
    Err(StoreError::Unavailable("the job kept changing".into()).into())
}

/// A job `queued` longer than this has lost its execution's start (create
/// died between its transaction and `StartExecution`): the check starts it.
pub const QUEUED_STUCK_AFTER_SECONDS: i64 = 10;

/// Starts the execution of every job that has been `queued` for over
/// [`QUEUED_STUCK_AFTER_SECONDS`] (starting it twice is harmless: the
/// execution's name is the job id), then counts the jobs stuck in flight
/// (from the index), those among them, and reports them as the `StuckJobs`
/// metric the stuck-jobs alarm watches; returns how many there are.
pub async fn check_stuck(worker: &Worker) -> Result<u64, WorkError> {
    let now = timestamp::now();
    let restarted = restart_unstarted(worker, now).await?;
    let stuck = videojobs_core::stats::stuck_jobs(worker.stats.as_ref(), worker.stuck_after_seconds, now).await?;
    let count = stuck.count.max(restarted);
    videojobs_aws::stats::emit_stuck(count);
    for job in &stuck.oldest {
        tracing::warn!(job_id = %job.job_id, status = %job.status, provider = job.provider, updated_at = %timestamp::format(job.updated_at), "job looks stuck");
    }
    tracing::info!(count, restarted, threshold_seconds = worker.stuck_after_seconds, "stuck jobs checked");
    Ok(count)
}

async fn restart_unstarted(worker: &Worker, now: time::OffsetDateTime) -> Result<u64, WorkError> {
    let before = now - time::Duration::seconds(QUEUED_STUCK_AFTER_SECONDS);
    let page = worker.stats.stuck_jobs(JobStatus::Queued, before, videojobs_core::stats::STUCK_JOBS_LISTED).await?;
    let mut restarted = 0;
    for stuck in &page.oldest {
        let Some(job) = worker.jobs.job(&stuck.job_id).await?.filter(|job| job.status == JobStatus::Queued) else { continue };
        worker.workflows.start(&videojobs_core::service::workflow_input(&job, &worker.settings)).await?;
        tracing::warn!(job_id = %job.job_id, created_at = %timestamp::format(job.created_at), "queued job had no running execution; started it");
        restarted += 1;
    }
    Ok(restarted)
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
