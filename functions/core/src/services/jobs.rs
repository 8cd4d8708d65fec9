//! What the API does, written against the ports: authenticate, create, read,
//! list and cancel jobs. HTTP handlers parse, call one of these, and render.

use crate::model::error::StoreError;
use crate::model::ids::{ApiKey, IdempotencyKey, JobId, UploadId, UserId};
use crate::model::job::{timestamp, EventSource, Failure, Job, JobError, JobEvent, JobParams};
use crate::model::lifecycle::{transition, JobStatus};
use crate::model::listing::JobFilter;
use crate::model::notification::endpoints::PausedEndpointView;
use crate::model::ratelimit::Policy;
use crate::model::request::{
    legacy_request_fingerprint, prompt_hash, request_fingerprint, AnimateRequest, CommonOptions, GenerateRequest, ImageSource,
    InvalidRequest, ProviderName, UploadRequest,
};
use crate::model::settings::Settings;
use crate::model::views::*;
use crate::ports::*;
use crate::services::error::AppError;
use crate::services::retry::{retry, Backoff, Failed};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long an upload's PUT URL works: long enough to send an image, short
/// enough that a leaked URL is soon worth nothing (what `animate` checked
/// cannot be replaced through it in any case, see `check_upload`).
pub const UPLOAD_URL_TTL_SECONDS: u64 = 300;

/// The ports a handler works with, built once per Lambda instance.
#[derive(Clone)]
pub struct Services {
    /// Creations and status changes (wrapped so that a client is told of a change).
    pub writes: Arc<dyn JobWrites>,
    /// Jobs, their events, prompts and idempotency records.
    pub reads: Arc<dyn JobReads>,
    /// A user's jobs, from the indexes: `GET /videos/jobs` and `GET /videos/jobs/active`.
    pub listings: Arc<dyn JobListings>,
    /// API keys, by hash: authentication and the admin endpoints.
    pub keys: Arc<dyn ApiKeyStore>,
    /// Users' credits and in-flight counts.
    pub accounts: Arc<dyn AccountStore>,
    /// The records of source images users asked to upload.
    pub uploads: Arc<dyn UploadStore>,
    /// The media bucket: presigned URLs for uploads and outputs, and small reads of uploaded images.
    pub media: Arc<dyn MediaStore>,
    /// Starts and stops jobs' Step Functions executions.
    pub workflows: Arc<dyn Workflows>,
    /// The worker's queue: cancels at the provider, deletions of rejected videos, progress refreshes.
    pub work: Arc<dyn WorkQueue>,
    /// The completed jobs waiting for a review.
    pub review_queue: Arc<dyn crate::ports::ReviewQueue>,
    /// Users' signing secrets for client notifications.
    pub webhook_secrets: Arc<dyn crate::ports::WebhookSecrets>,
    /// DNS, to check where a `webhook_url` points.
    pub resolver: Arc<dyn crate::ports::HostResolver>,
    /// Sends the test deliveries of `POST /videos/webhook-test`.
    pub poster: Arc<dyn crate::ports::NotificationPoster>,
    /// Which notifications were delivered, and the requests to send one again.
    pub notification_log: Arc<dyn crate::ports::NotificationLog>,
    /// Each user's failed notification attempts, across jobs.
    pub delivery_log: Arc<dyn crate::ports::DeliveryLog>,
    /// Each user's notification endpoints: the paused ones, and resuming them.
    pub endpoints: Arc<dyn crate::ports::EndpointHealth>,
    /// The notification queue: a notification sent again by hand goes
    /// through the notifier, within the user's delivery slots like any other.
    pub redeliveries: Arc<dyn WorkQueue>,
    /// Operational counters and the stuck-jobs index (`GET /videos/stats`).
    pub stats: Arc<dyn crate::ports::StatsStore>,
    /// Progress details, and their refresh window (see `progress`).
    pub progress: Arc<dyn crate::ports::ProgressDetails>,
    /// Counts each key's requests (`ratelimit`).
    pub rate_limiter: Arc<dyn crate::ports::RateLimiter>,
    /// An approval marks the video's objects kept before it commits…
    pub kept: Arc<dyn KeepOutputs>,
    /// …and then answers the task that waits for the review (see `review`).
    pub review_waits: Arc<dyn ReviewWaits>,
    /// Answers the task a review waits on, once a video is approved.
    pub tasks: Arc<dyn TaskTokens>,
    /// The deployment's typical time to complete, for status answers' estimates.
    pub typical_times: Arc<crate::services::estimate::TypicalTimes>,
    /// The deployment's configuration.
    pub settings: Settings,
}

/// A job to create, from either POST.
#[derive(Debug, Clone)]
pub enum JobSpec {
    /// `POST /videos/generate`: a text-to-video job.
    Generate(GenerateRequest),
    /// `POST /videos/animate`: an image-to-video job.
    Animate(AnimateRequest),
}

/// The client's `Idempotency-Key` and what identifies its request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The key the client sent, unique per user.
    pub key: IdempotencyKey,
    /// What the record keeps (keyed: see [`request_fingerprint`]).
    pub fingerprint: String,
    /// The unkeyed form records written before had, compared with but never
    /// written: a retry of such a request still replays while its record lasts.
    pub legacy_fingerprint: Option<String>,
}

impl Idempotency {
    /// The key and fingerprints of a request to `route` with `body`, under
    /// the deployment's prompt hash key (`Settings::prompt_hash_key`).
    pub fn for_request(key: IdempotencyKey, prompt_hash_key: &[u8], route: &str, body: &[u8]) -> Self {
        Self {
            key,
            fingerprint: request_fingerprint(prompt_hash_key, route, body),
            legacy_fingerprint: Some(legacy_request_fingerprint(route, body)),
        }
    }

    /// Whether `record` was written for this same request.
    fn matches(&self, record: &IdempotencyRecord) -> bool {
        record.fingerprint == self.fingerprint || self.legacy_fingerprint.as_ref().is_some_and(|legacy| record.fingerprint == *legacy)
    }
}

/// The answer to a create request: the first answer again on a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The HTTP status to answer with: 202, or the first answer's on a replay.
    pub status: u16,
    /// The JSON body to answer with, byte for byte the first one on a replay.
    pub body: String,
    /// The job created, or the one the first request created.
    pub job_id: JobId,
    /// Whether this answers a repeated `Idempotency-Key` rather than creating a job.
    pub replayed: bool,
}

impl Services {
    /// Finds who is calling from the key they presented.
    /// A revoked or expired key is refused at once, like an unknown one. The
    /// key's public id goes on the request's span (`key_id`), for the logs.
    /// Each request counts against the key's rate limit.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AppError> {
        self.authenticate_for(presented, &[Policy::Requests]).await
    }

    /// As [`Services::authenticate`], for a request that creates a job: it
    /// also counts against the key's create limit.
    pub async fn authenticate_to_create(&self, presented: Option<&str>) -> Result<Principal, AppError> {
        self.authenticate_for(presented, &[Policy::Requests, Policy::Creates]).await
    }

    /// Checks the key, then counts the request against each of `limits`, in order.
    pub(crate) async fn authenticate_for(&self, presented: Option<&str>, limits: &[Policy]) -> Result<Principal, AppError> {
        let key: ApiKey = presented.and_then(|text| text.trim().parse().ok()).ok_or(AppError::Unauthenticated)?;
        let record = self.keys.key_for(&key.hash()).await?.ok_or(AppError::Unauthenticated)?;
        tracing::Span::current().record("key_id", record.key_id.as_str());
        let now = timestamp::now();
        if record.state(now) != "active" {
            tracing::info!(key_id = %record.key_id, state = record.state(now), "key refused");
            return Err(AppError::Unauthenticated);
        }
        for policy in limits {
            crate::services::ratelimit::check(
                self.rate_limiter.as_ref(),
                self.settings.rate_limits,
                &record.key_id,
                *policy,
                now.unix_timestamp(),
            )
            .await?;
        }
        Ok(record.principal)
    }

    /// Creates a job for `who`: checks it, debits its credits and starts its execution; with an `Idempotency-Key` seen
    /// before, answers as the first request did (or refuses a different request under it).
    pub async fn create_job(&self, who: &Principal, spec: JobSpec, idempotency: Option<Idempotency>) -> Result<Accepted, AppError> {
        self.create_job_from(who, spec, idempotency, None).await
    }

    /// As [`Services::create_job`], for a job made from `parent` (a retry or a remix).
    pub(crate) async fn create_job_from(
        &self,
        who: &Principal,
        spec: JobSpec,
        idempotency: Option<Idempotency>,
        parent: Option<JobId>,
    ) -> Result<Accepted, AppError> {
        if let Some(idem) = &idempotency {
            if let Some(previous) = self.reads.idempotency_record(&who.user_id, &idem.key).await? {
                return self.replay(previous, idem).await;
            }
        }
        let job_id = JobId::generate();
        let (params, prompt, common, cost) = self.job_parts(who, spec, &job_id).await?;
        if let Some(url) = &common.webhook_url {
            self.check_webhook_url(url).await?;
        }
        if let JobParams::ImageToVideo { image: ImageSource::Url(text), .. } = &params {
            // Checked when parsed, so it parses; a name that resolves inward is refused here.
            // One that does not resolve (yet) is the provider's to fail: ours checks again when it fetches.
            let url = url::Url::parse(text).map_err(|_| InvalidRequest::new("image_url", "is not a URL"))?;
            let policy = self.settings.limits.webhook_policy();
            match crate::services::webhook_rules::check_destination(&url, policy, self.resolver.as_ref()).await {
                Ok(_) | Err(crate::model::notification::DestinationError::Unresolved { .. }) => {}
                Err(err) => return Err(InvalidRequest::new("image_url", err.to_string()).into()),
            }
        }
        let provider = self.provider_for(&common)?;
        let now = timestamp::now();
        let job = Job {
            metadata: common.metadata,
            prompt_hash: prompt.as_deref().map(|p| prompt_hash(&self.settings.prompt_hash_key, p)),
            webhook_url: common.webhook_url.map(String::from),
            seed: common.seed,
            cancel_after_seconds: common.cancel_after_seconds,
            parent_job_id: parent,
            tags: common.tags,
            ..Job::accepted(job_id, who.user_id.clone(), params, provider, cost, now)
        };
        let body = json(&AcceptedBody::for_job(&job))?;
        let new = NewJob {
            first_event: JobEvent {
                job_id: job.job_id.clone(),
                at: now,
                source: EventSource::Api,
                previous_status: None,
                status: JobStatus::Queued,
                message: format!("Job accepted: {} credits debited", job.cost_credits),
                error_code: None,
                actor: Some(who.user_id.clone()),
                delivery: None,
            },
            idempotency: idempotency.as_ref().map(|idem| IdempotencyRecord {
                user_id: who.user_id.clone(),
                key: idem.key.clone(),
                fingerprint: idem.fingerprint.clone(),
                job_id: job.job_id.clone(),
                response_status: 202,
                response_body: body.clone(),
                created_at: now,
            }),
            prompt_expires_at: prompt
                .as_ref()
                .map(|_| now + Duration::from_secs(self.settings.generation_timeout_seconds + self.settings.retention_seconds)),
            prompt,
            max_active_jobs: self.settings.max_active_jobs,
            job,
        };
        match self.writes.create(&new).await? {
            CreateOutcome::Created => {}
            CreateOutcome::IdempotencyKeyTaken => {
                // Another request with this key won the race; answer as it did.
                let idem = idempotency.as_ref().ok_or_else(|| AppError::Internal("idempotency conflict without a key".into()))?;
                let previous = self.wait_for_idempotency_record(&who.user_id, &idem.key).await?;
                return self.replay(previous, idem).await;
            }
            CreateOutcome::InsufficientCredits { balance } => {
                return Err(AppError::InsufficientCredits { needed: new.job.cost_credits, balance })
            }
            CreateOutcome::NoAccount => return Err(AppError::InsufficientCredits { needed: new.job.cost_credits, balance: 0 }),
            CreateOutcome::TooManyActiveJobs => return Err(AppError::TooManyActiveJobs { limit: self.settings.max_active_jobs }),
        }
        if let Err(err) = self.workflows.start(&workflow_input(&new.job, &self.settings)).await {
            self.give_up_unstarted(&new.job, &err).await;
            return Err(err.into());
        }
        Ok(Accepted { status: 202, body, job_id: new.job.job_id, replayed: false })
    }

    /// The first answer again, after making sure its job's execution exists
    /// (the first request may have died between its write and the start).
    async fn replay(&self, previous: IdempotencyRecord, idem: &Idempotency) -> Result<Accepted, AppError> {
        if !idem.matches(&previous) {
            return Err(AppError::IdempotencyConflict);
        }
        if let Some(job) = self.reads.job(&previous.job_id).await? {
            if job.status == JobStatus::Queued {
                self.workflows.start(&workflow_input(&job, &self.settings)).await?;
            }
        }
        Ok(Accepted { status: previous.response_status, body: previous.response_body, job_id: previous.job_id, replayed: true })
    }

    async fn wait_for_idempotency_record(&self, user: &UserId, key: &IdempotencyKey) -> Result<IdempotencyRecord, AppError> {
        // The winner's transaction may still be committing when ours is cancelled.
        retry(Backoff::linear(20, Duration::from_millis(25)), |_| async {
            match self.reads.idempotency_record(user, key).await {
                Ok(Some(record)) => Ok(record),
                Ok(None) => Err(Failed::Retry(AppError::Unavailable("idempotency record did not appear".into()))),
                Err(err) => Err(Failed::Stop(err.into())),
            }
        })
        .await
    }

    /// The execution could not start: fail the job and give its credits back,
    /// so that nothing waits on a job no one will run.
    async fn give_up_unstarted(&self, job: &Job, cause: &StoreError) {
        tracing::error!(job_id = %job.job_id, error = %cause, "could not start the job's execution");
        let change = failure_change(job, JobStatus::Queued, EventSource::Api, Failure::StartFailed.error());
        if let Some(change) = change {
            if let Err(err) = self.writes.change_status(&change).await {
                tracing::error!(job_id = %job.job_id, error = %err, "could not fail the unstarted job");
            }
        }
    }

    async fn job_parts(
        &self,
        who: &Principal,
        spec: JobSpec,
        job: &JobId,
    ) -> Result<(JobParams, Option<String>, CommonOptions, u32), AppError> {
        Ok(match spec {
            JobSpec::Generate(request) => {
                let cost = request.cost_credits();
                let params = JobParams::TextToVideo {
                    duration_seconds: request.duration_seconds,
                    aspect_ratio: request.aspect_ratio,
                    resolution: request.resolution,
                };
                (params, Some(request.prompt), request.common, cost)
            }
            JobSpec::Animate(request) => {
                let cost = request.cost_credits();
                if let ImageSource::Upload(id) = &request.image {
                    self.check_upload(who, id, job).await?;
                }
                let params = JobParams::ImageToVideo {
                    image: request.image,
                    length_seconds: request.length_seconds,
                    frame_rate: request.frame_rate,
                    zoom_speed: request.zoom_speed,
                };
                (params, request.prompt, request.common, cost)
            }
        })
    }

    /// An upload may be animated by the user who made it, once its bytes are
    /// in. Its URL still takes PUTs after this, so what is checked is a copy
    /// made for `job` where no client can write ([`Upload::checked_key_for`]),
    /// and that copy is what the provider gets.
    async fn check_upload(&self, who: &Principal, id: &UploadId, job: &JobId) -> Result<(), AppError> {
        let missing = || InvalidRequest::new("upload_id", "no such upload, or the image has not been uploaded yet");
        let upload = match self.uploads.upload(id).await? {
            Some(upload) if upload.user_id == who.user_id => upload,
            _ => return Err(missing().into()),
        };
        if matches!(self.media.object_size(&upload.object_key).await?, None | Some(0)) {
            return Err(missing().into());
        }
        let checked = Upload::checked_key_for(job);
        self.media.copy_object(&upload.object_key, &checked).await?;
        match self.media.object_size(&checked).await? {
            Some(size) if size > 0 && size <= self.settings.limits.upload_max_bytes => {}
            Some(0) | None => return Err(missing().into()),
            Some(size) => return Err(AppError::UploadTooLarge { message: format!("the uploaded image is {size} bytes, over the limit") }),
        }
        // The bytes must be the image the upload declared: nothing else reaches a provider.
        let head = self.media.read_prefix(&checked, crate::model::image::SNIFF_BYTES).await?.ok_or_else(missing)?;
        match crate::model::image::check(&head, upload.content_type) {
            Ok(_) => Ok(()),
            Err(err) if err.is_wrong_media_type() => Err(AppError::UnsupportedImage { message: err.to_string() }),
            Err(err) => Err(InvalidRequest::new("upload_id", format!("the uploaded image {err}")).into()),
        }
    }

    fn provider_for(&self, common: &CommonOptions) -> Result<ProviderName, AppError> {
        let chosen = common.provider.clone().unwrap_or_else(|| self.settings.default_provider.clone());
        if self.settings.enabled_providers.contains(&chosen) {
            return Ok(chosen);
        }
        let enabled: Vec<&str> = self.settings.enabled_providers.iter().map(|p| p.as_str()).collect();
        Err(InvalidRequest::new("provider", format!("'{chosen}' is not available here; choose one of: {}", enabled.join(", "))).into())
    }

    /// A presigned PUT for a source image; its id is what `animate` accepts.
    pub async fn create_upload(&self, who: &Principal, request: UploadRequest) -> Result<UploadBody, AppError> {
        let upload_id = UploadId::generate();
        let upload = Upload {
            object_key: Upload::object_key_for(&who.user_id, &upload_id),
            upload_id,
            user_id: who.user_id.clone(),
            content_type: request.content_type,
            size_bytes: request.size_bytes,
            created_at: timestamp::now(),
        };
        let ttl = self.settings.presign_ttl_seconds.min(UPLOAD_URL_TTL_SECONDS);
        let presigned = self.media.presign_put(&upload.object_key, request.size_bytes, ttl).await?;
        self.uploads.save_upload(&upload).await?;
        Ok(UploadBody {
            upload_id: upload.upload_id.to_string(),
            url: presigned.url,
            method: presigned.method,
            headers: presigned.headers.into_iter().map(|(k, v)| (k, v.into())).collect(),
            expires_at: timestamp::format(presigned.expires_at),
            max_bytes: self.settings.limits.upload_max_bytes,
        })
    }

    /// The job, if the caller may see it. Someone else's job is "not found",
    /// so that its existence is not disclosed.
    pub async fn visible_job(&self, who: &Principal, id: &str) -> Result<Job, AppError> {
        let id: JobId = id.parse().map_err(|_| AppError::JobNotFound)?;
        match self.reads.job(&id).await? {
            Some(job) if job.is_owned_by(&who.user_id) || who.role.sees_every_job() => Ok(job),
            _ => Err(AppError::JobNotFound),
        }
    }

    /// `GET /videos/jobs/{id}/status`: the job's status body; may ask for fresh progress.
    pub async fn status(&self, who: &Principal, id: &str) -> Result<StatusBody, AppError> {
        let job = self.visible_job(who, id).await?;
        self.refresher().after_read(&job).await;
        self.status_body(&job).await
    }

    /// Asks for fresh progress of jobs whose provider sends no progress callbacks.
    fn refresher(&self) -> crate::services::progress::Refresher {
        crate::services::progress::Refresher {
            details: self.progress.clone(),
            work: self.work.clone(),
            window_seconds: self.settings.progress_refresh_seconds,
            providers: self.settings.progress_refresh_providers.clone(),
        }
    }

    pub(crate) async fn status_body(&self, job: &Job) -> Result<StatusBody, AppError> {
        let now = timestamp::now();
        let links = self.output_links(job, now).await?;
        Ok(StatusBody::new(job, &links).with_estimate(self.estimate(job, now).await))
    }

    /// An in-flight job's estimated completion and poll hint; nothing is read for a finished one.
    async fn estimate(&self, job: &Job, now: OffsetDateTime) -> Option<crate::model::estimate::Estimate> {
        if !job.status.is_in_flight() {
            return None;
        }
        let typical = self.typical_times.get(self.stats.as_ref()).await;
        crate::model::estimate::estimate(job, typical, now)
    }

    async fn output_links(&self, job: &Job, now: OffsetDateTime) -> Result<OutputLinks, AppError> {
        let Some(artifact) = &job.output else { return Ok(OutputLinks::default()) };
        // A rejected video is being deleted: it is no longer offered.
        if output_has_expired(job, now) || job.status == JobStatus::Rejected {
            return Ok(OutputLinks::default());
        }
        let ttl = self.settings.presign_ttl_seconds;
        let video = self.media.presign_get(&artifact.video_key, ttl).await?;
        let thumbnail = match &artifact.thumbnail_key {
            Some(key) => Some(self.media.presign_get(key, ttl).await?.url),
            None => None,
        };
        Ok(OutputLinks { video_url: Some(video.url), thumbnail_url: thumbnail, expires_at: Some(video.expires_at) })
    }

    /// `GET /videos/jobs/{id}/result`: fresh links to the video and its facts, once there is one to give.
    pub async fn result(&self, who: &Principal, id: &str) -> Result<ResultBody, AppError> {
        let job = self.visible_job(who, id).await?;
        let now = timestamp::now();
        if job.status == JobStatus::Rejected {
            return Err(AppError::Rejected);
        }
        if job.status == JobStatus::Expired || (job.output.is_some() && output_has_expired(&job, now)) {
            return Err(AppError::Expired);
        }
        let Some(artifact) = &job.output else {
            let message = match job.status {
                status if status.is_in_flight() => "the video is not ready yet",
                JobStatus::Failed => "the job failed and has no video",
                JobStatus::Canceled => "the job was canceled and has no video",
                _ => "the job has no video",
            };
            return Err(AppError::WrongState { status: job.status, message: message.into() });
        };
        let links = self.output_links(&job, now).await?;
        Ok(ResultBody {
            job_id: job.job_id.clone(),
            status: job.status,
            video: VideoView {
                url: links.video_url.unwrap_or_default(),
                thumbnail_url: links.thumbnail_url,
                duration_seconds: artifact.duration_seconds,
                width: artifact.width,
                height: artifact.height,
                mime_type: artifact.mime_type.clone(),
                size_bytes: artifact.size_bytes,
                expires_at: links.expires_at.map(timestamp::format).unwrap_or_default(),
            },
        })
    }

    /// `GET /videos/jobs/{id}/events`: the job's history, oldest first.
    pub async fn events(&self, who: &Principal, id: &str) -> Result<EventsBody, AppError> {
        let job = self.visible_job(who, id).await?;
        let events = self.reads.events(&job.job_id).await?;
        Ok(EventsBody { job_id: job.job_id, events: events.iter().map(EventView::from).collect() })
    }

    /// `GET /videos/jobs`: a page of the caller's own jobs that pass `filter`, newest first.
    pub async fn list(&self, who: &Principal, filter: &JobFilter, page: PageRequest) -> Result<ListBody, AppError> {
        let page = self.listings.jobs_of(&who.user_id, filter, &page).await.map_err(|err| match err {
            ListError::BadCursor => InvalidRequest::new("cursor", "is not a cursor this API gave out").into(),
            ListError::Store(err) => AppError::from(err),
        })?;
        let mut jobs = Vec::with_capacity(page.items.len());
        let refresher = self.refresher();
        for job in &page.items {
            refresher.after_read(job).await;
            jobs.push(self.status_body(job).await?);
        }
        Ok(ListBody { jobs, next_cursor: page.next_cursor })
    }

    /// `GET /videos/jobs/active`: the caller's in-flight jobs, newest first, without output links.
    pub async fn active(&self, who: &Principal) -> Result<ListBody, AppError> {
        let jobs = self.listings.active_jobs_of(&who.user_id).await?;
        let refresher = self.refresher();
        for job in &jobs {
            refresher.after_read(job).await;
        }
        let now = timestamp::now();
        let mut bodies = Vec::with_capacity(jobs.len());
        for job in &jobs {
            bodies.push(StatusBody::new(job, &OutputLinks::default()).with_estimate(self.estimate(job, now).await));
        }
        Ok(ListBody { jobs: bodies, next_cursor: None })
    }

    /// The caller's balance and in-flight count.
    pub async fn account(&self, who: &Principal) -> Result<AccountBody, AppError> {
        let account = self.accounts.account(&who.user_id).await?;
        let (credits, active_jobs) = account.map(|a| (a.credits, a.active_jobs)).unwrap_or((0, 0));
        Ok(AccountBody {
            user_id: who.user_id.to_string(),
            role: who.role.as_str(),
            credits,
            active_jobs,
            max_active_jobs: self.settings.max_active_jobs,
            paused_endpoints: self.endpoints.paused_endpoints(&who.user_id).await?.iter().filter_map(PausedEndpointView::of).collect(),
        })
    }

    /// Cancels an in-flight job: its credits come back once, its execution stops.
    pub async fn cancel(&self, who: &Principal, id: &str) -> Result<StatusBody, AppError> {
        let mut job = self.visible_job(who, id).await?;
        if !job.is_owned_by(&who.user_id) && who.role != crate::model::ids::Role::Admin {
            return Err(AppError::Forbidden("only the job's owner or an admin can cancel it"));
        }
        // The job may move (queued → submitted) between our read and our write:
        // then try again from where it is now.
        for _ in 0..5 {
            let refused =
                || AppError::WrongState { status: job.status, message: format!("{} job cannot be canceled", job.status.with_article()) };
            let t = transition(job.status, JobStatus::Canceled).map_err(|_| refused())?;
            let message = format!("Canceled by the user; {} credits refunded", job.cost_credits);
            let change = StatusChange::new(&job, t, EventSource::Api, message, None, JobUpdate::default()).by(&who.user_id);
            let now = change.at;
            match self.writes.change_status(&change).await? {
                ChangeOutcome::Applied => {
                    if let Err(err) = self.workflows.stop(&job.job_id, "canceled by the user").await {
                        // The execution then ends at its own deadline; the job is already canceled.
                        tracing::warn!(job_id = %job.job_id, error = %err, "could not stop the execution");
                    }
                    if job.provider_request_id.is_some() {
                        let message = crate::model::work::WorkMessage::CancelAtProvider { job_id: job.job_id.clone() };
                        if let Err(err) = self.work.enqueue(&message).await {
                            tracing::warn!(job_id = %job.job_id, error = %err, "could not ask the provider to cancel");
                        }
                    }
                    job.status = JobStatus::Canceled;
                    job.updated_at = now;
                    return self.status_body(&job).await;
                }
                ChangeOutcome::NotFound => return Err(AppError::JobNotFound),
                ChangeOutcome::StatusWas(current) => job.status = current,
            }
        }
        Err(AppError::Unavailable("the job kept changing while being canceled".into()))
    }
}

/// A change to `failed` from `from`, refunding as the lifecycle says; `None`
/// when the lifecycle refuses it.
pub fn failure_change(job: &Job, from: JobStatus, source: EventSource, error: JobError) -> Option<StatusChange> {
    let t = transition(from, JobStatus::Failed).ok()?;
    Some(StatusChange::new(job, t, source, error.message.clone(), Some(error), JobUpdate::default()))
}

/// The input a job's execution starts with (create, a replay, and the worker
/// restarting a job whose execution never started all give the same). Its
/// deadline is the client's (`cancel_after_seconds`) when that is sooner
/// than the deployment's.
pub fn workflow_input(job: &Job, settings: &Settings) -> WorkflowInput {
    let deadline_seconds = match job.cancel_after_seconds {
        Some(client) => settings.generation_timeout_seconds.min(client.into()),
        None => settings.generation_timeout_seconds,
    };
    WorkflowInput {
        job_id: job.job_id.clone(),
        workflow_type: job.workflow_type().as_str().to_owned(),
        deadline_seconds,
        retention_seconds: settings.retention_seconds,
    }
}

/// An output that was not approved is gone after the retention window.
pub(crate) fn output_has_expired(job: &Job, now: OffsetDateTime) -> bool {
    job.status != JobStatus::Approved && job.output_expires_at.is_some_and(|at| at <= now)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::Internal(format!("serialising a response: {e}")))
}
