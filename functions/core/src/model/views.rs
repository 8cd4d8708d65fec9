//! The JSON bodies the API answers with. `docs/API.md` describes them for
//! clients; these types are the single definition.

use crate::model::ids::JobId;
use crate::model::job::{timestamp, Job, JobEvent};
use crate::model::lifecycle::JobStatus;
use serde::Serialize;
use time::OffsetDateTime;

/// Where to read more about a job: paths relative to the API's base URL.
#[derive(Debug, Clone, Serialize)]
pub struct Links {
    /// Path of the job's status.
    pub status: String,
    /// Path of the job's result, once it has a video.
    pub result: String,
    /// Path of the job's history.
    pub events: String,
}

impl Links {
    /// The links of the job `id`.
    pub fn for_job(id: &JobId) -> Self {
        Self {
            status: format!("/videos/jobs/{id}/status"),
            result: format!("/videos/jobs/{id}/result"),
            events: format!("/videos/jobs/{id}/events"),
        }
    }
}

/// `202` for a new job.
#[derive(Debug, Clone, Serialize)]
pub struct AcceptedBody {
    /// The new job's id: what every later request names.
    pub job_id: JobId,
    /// Always `queued`.
    pub status: JobStatus,
    /// The status in words a person reads.
    pub status_label: &'static str,
    /// A rough wait to show, in seconds: provider queueing plus render time.
    pub estimated_time_seconds: u32,
    /// Where to follow the job.
    pub links: Links,
}

impl AcceptedBody {
    /// The body for `job` as it was accepted.
    pub fn for_job(job: &Job) -> Self {
        Self {
            job_id: job.job_id.clone(),
            status: job.status,
            status_label: job.status.label(),
            estimated_time_seconds: job.params.estimated_time_seconds(),
            links: Links::for_job(&job.job_id),
        }
    }
}

/// Why a job failed, was rejected or expired.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// Stable and machine-readable: one of ours (docs/ERRORS.md), the provider's, or a review reason.
    pub code: String,
    /// What went wrong, to show the user.
    pub message: String,
    /// What the user can do about it; left out when there is nothing to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// Whether the same request, made again, may succeed (`false`: change it first).
    pub retryable: bool,
}

/// Whether trying the same request again may help, by the code of the job's
/// error: a failure of ours (see [`Failure::retryable`](crate::model::job::Failure::retryable)), a reviewer's reason
/// (see [`crate::model::review::ReviewReason::retryable`]), or else a
/// provider's code (see [`crate::model::provider::retryable`]).
pub fn retryable(code: &str) -> bool {
    if let Some(failure) = crate::model::job::Failure::from_code(code) {
        return failure.retryable();
    }
    if let Some(reason) = crate::model::review::ReviewReason::parse(code) {
        return reason.retryable();
    }
    crate::model::provider::retryable(code)
}

/// What a job costs.
#[derive(Debug, Clone, Serialize)]
pub struct CostView {
    /// Credits debited when the job was accepted.
    pub credits: u32,
    /// Credits given back: all of them when the job failed, was canceled or
    /// ran out of time before its video was stored; none otherwise.
    pub refunded: u32,
    /// What the job costs the user in the end: `credits` less `refunded`.
    pub charged: u32,
}

/// A reviewer's decision on a job's video.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    /// `approve` or `reject`.
    pub decision: String,
    /// The review reason's code; always set on a rejection, `null` on an approval without one.
    pub reason: Option<String>,
    /// The reviewer's note; `null` when they wrote none.
    pub note: Option<String>,
    /// The user id of the reviewer.
    pub reviewer_id: String,
    /// When the decision was made (RFC 3339).
    pub reviewed_at: String,
}

/// The job's video, through presigned links.
#[derive(Debug, Clone, Serialize)]
pub struct OutputView {
    /// Presigned GET of the video; stops working after the presign lifetime.
    pub video_url: String,
    /// Presigned GET of the thumbnail; `null` when there is none.
    pub thumbnail_url: Option<String>,
    /// Length of the video, in seconds.
    pub duration_seconds: f64,
}

/// `progress_detail` in the status body.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressDetailView {
    /// `queued` (waiting at the provider) or `processing` (being generated).
    pub stage: crate::model::progress::Stage,
    /// Jobs ahead of this one at the provider (0: next); `null` when the provider does not say.
    pub queue_position: Option<u32>,
    /// The detail in a sentence, to show as it is.
    pub message: String,
    /// When the provider said it (RFC 3339).
    pub observed_at: String,
}

/// Presigned links to a job's output, when it has one to show.
#[derive(Debug, Clone, Default)]
pub struct OutputLinks {
    /// Presigned GET of the video; `None` when there is nothing to offer.
    pub video_url: Option<String>,
    /// Presigned GET of the thumbnail, when there is one.
    pub thumbnail_url: Option<String>,
    /// When the presigned links stop working.
    pub expires_at: Option<OffsetDateTime>,
}

/// `GET /videos/jobs/{id}/status`, and each item of the listings.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBody {
    /// The job's id.
    pub job_id: JobId,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// The status in words a person reads.
    pub status_label: &'static str,
    /// Percentage done, 0 to 100; never below what the status implies.
    pub progress: u8,
    /// `text_to_video` or `image_to_video`.
    pub workflow_type: &'static str,
    /// The provider making the video (the fallback's name after a failover).
    pub provider: String,
    /// When the job was accepted (RFC 3339).
    pub created_at: String,
    /// When the job last changed (RFC 3339).
    pub updated_at: String,
    /// When the video was stored (RFC 3339); `null` until then.
    pub completed_at: Option<String>,
    /// Why the job failed, was rejected or expired; `null` otherwise.
    pub error: Option<ErrorView>,
    /// What the job costs.
    pub cost: CostView,
    /// The reviewer's decision; `null` until the video is reviewed.
    pub review: Option<ReviewView>,
    /// Links to the video; `null` until it is stored, once it is past retention or rejected, and in the active list.
    pub output: Option<OutputView>,
    /// The provider's last word while it works; `null` otherwise.
    pub progress_detail: Option<ProgressDetailView>,
    /// The client's own JSON given at creation; left out when there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// When the video is deleted unless it is approved (RFC 3339); `null`
    /// when there is no video waiting for a review.
    pub expires_at: Option<String>,
    /// When an in-flight job's video should be stored (RFC 3339), from this
    /// deployment's average time to complete; `null` once it is not in flight.
    pub estimated_completion_at: Option<String>,
    /// The seed the job was created with; `null` when none was given.
    pub seed: Option<u32>,
    /// The client's deadline in seconds from acceptance; `null` when none was given.
    pub cancel_after_seconds: Option<u32>,
    /// The job this one was made from (`POST …/retry` or `…/remix`); `null` otherwise.
    pub parent_job_id: Option<JobId>,
    /// The client's labels; empty when none were given.
    pub tags: Vec<crate::model::tag::Tag>,
    /// When to ask again, in seconds: the single status answer sends it as
    /// `Retry-After`; not part of the body.
    #[serde(skip)]
    pub poll_after_seconds: Option<u32>,
}

impl StatusBody {
    /// The body for `job`, with its video's `links` when there are any.
    pub fn new(job: &Job, links: &OutputLinks) -> Self {
        let output = match (&job.output, &links.video_url) {
            (Some(artifact), Some(url)) => Some(OutputView {
                video_url: url.clone(),
                thumbnail_url: links.thumbnail_url.clone(),
                duration_seconds: artifact.duration_seconds,
            }),
            _ => None,
        };
        Self {
            job_id: job.job_id.clone(),
            status: job.status,
            status_label: job.status.label(),
            progress: job.progress.max(job.status.progress_floor()).min(100),
            workflow_type: job.workflow_type().as_str(),
            provider: job.provider.to_string(),
            created_at: timestamp::format(job.created_at),
            updated_at: timestamp::format(job.updated_at),
            completed_at: job.completed_at.map(timestamp::format),
            error: job.error.as_ref().map(|e| ErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
                next_step: e.next_step.clone(),
                retryable: retryable(&e.code),
            }),
            cost: CostView {
                credits: job.cost_credits,
                refunded: job.refunded_credits(),
                charged: job.cost_credits - job.refunded_credits(),
            },
            review: job.review.as_ref().map(|r| ReviewView {
                decision: r.decision.clone(),
                reason: r.reason.clone(),
                note: r.note.clone(),
                reviewer_id: r.reviewer_id.to_string(),
                reviewed_at: timestamp::format(r.reviewed_at),
            }),
            output,
            progress_detail: job.visible_progress_detail().map(|d| ProgressDetailView {
                stage: d.stage,
                queue_position: d.queue_position,
                message: d.message(),
                observed_at: timestamp::format(d.observed_at),
            }),
            metadata: job.metadata.clone(),
            expires_at: job.output_expires_at.filter(|_| job.status == JobStatus::Completed).map(timestamp::format),
            estimated_completion_at: None,
            seed: job.seed,
            cancel_after_seconds: job.cancel_after_seconds,
            parent_job_id: job.parent_job_id.clone(),
            tags: job.tags.clone(),
            poll_after_seconds: None,
        }
    }

    /// The body with an in-flight job's `estimate` (see [`crate::model::estimate`]).
    pub fn with_estimate(mut self, estimate: Option<crate::model::estimate::Estimate>) -> Self {
        self.estimated_completion_at = estimate.map(|e| timestamp::format(e.completion_at));
        self.poll_after_seconds = estimate.map(|e| e.poll_after_seconds);
        self
    }
}

/// The job's video, with fresh presigned links and its facts.
#[derive(Debug, Clone, Serialize)]
pub struct VideoView {
    /// Presigned GET of the video, valid until `expires_at`.
    pub url: String,
    /// Presigned GET of the thumbnail; `null` when there is none.
    pub thumbnail_url: Option<String>,
    /// Length of the video, in seconds.
    pub duration_seconds: f64,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// The video's MIME type, `video/mp4`.
    pub mime_type: String,
    /// Size of the video file, in bytes.
    pub size_bytes: u64,
    /// When the presigned URL stops working.
    pub expires_at: String,
}

/// `GET /videos/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultBody {
    /// The job's id.
    pub job_id: JobId,
    /// Where the job is: `completed` or `approved`.
    pub status: JobStatus,
    /// The video and where to fetch it.
    pub video: VideoView,
}

/// One entry of a job's history.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// When it happened (RFC 3339).
    pub at: String,
    /// Who or what caused it: `api`, `worker`, `webhook`, `state_machine`, `reviewer` or `notifier`.
    pub source: crate::model::job::EventSource,
    /// The status before; `null` on the job's first event.
    pub previous_status: Option<JobStatus>,
    /// The status after; the same as before when the event changed nothing.
    pub status: JobStatus,
    /// What happened, in a sentence.
    pub message: String,
    /// The code of the error the job got with this event; `null` when none.
    pub error_code: Option<String>,
    /// The user id of the person who acted (the owner, a reviewer, an admin); `null` when the system acted.
    pub actor: Option<String>,
}

impl From<&JobEvent> for EventView {
    fn from(e: &JobEvent) -> Self {
        Self {
            at: timestamp::format(e.at),
            source: e.source,
            previous_status: e.previous_status,
            status: e.status,
            message: e.message.clone(),
            error_code: e.error_code.clone(),
            actor: e.actor.as_ref().map(|a| a.to_string()),
        }
    }
}

/// `GET /videos/jobs/{id}/events`.
#[derive(Debug, Clone, Serialize)]
pub struct EventsBody {
    /// The job's id.
    pub job_id: JobId,
    /// Every event of the job, oldest first.
    pub events: Vec<EventView>,
}

/// `GET /videos/jobs` and `GET /videos/jobs/active`.
#[derive(Debug, Clone, Serialize)]
pub struct ListBody {
    /// The jobs on this page, newest first.
    pub jobs: Vec<StatusBody>,
    /// Pass back as `cursor` for the next page; `null` on the last page (always, for the active list).
    pub next_cursor: Option<String>,
}

/// `POST /videos/uploads`.
#[derive(Debug, Clone, Serialize)]
pub struct UploadBody {
    /// The upload's id: give it to `POST /videos/animate` as `upload_id` once the bytes are in.
    pub upload_id: String,
    /// The presigned URL to send the image to.
    pub url: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// Send exactly these headers with the PUT.
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// When the presigned URL stops working (RFC 3339).
    pub expires_at: String,
    /// The most bytes the deployment takes for one image.
    pub max_bytes: u64,
}

/// `GET /videos/account`: who the key belongs to and what they have left.
#[derive(Debug, Clone, Serialize)]
pub struct AccountBody {
    /// The caller's user id.
    pub user_id: String,
    /// The key's role: `user`, `reviewer` or `admin`.
    pub role: &'static str,
    /// Credits left to spend.
    pub credits: i64,
    /// The caller's jobs in flight now.
    pub active_jobs: u32,
    /// How many jobs the caller may have in flight at once.
    pub max_active_jobs: u32,
    /// The caller's notification endpoints that are paused after a run of
    /// failures (their notifications are held until resumed).
    pub paused_endpoints: Vec<crate::model::notification::endpoints::PausedEndpointView>,
}

/// The video's facts a reviewer weighs, beside the status body's links.
#[derive(Debug, Clone, Serialize)]
pub struct VideoFacts {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Length of the video, in seconds.
    pub duration_seconds: f64,
    /// The video's MIME type.
    pub mime_type: String,
    /// Size of the video file, in bytes.
    pub size_bytes: u64,
}

/// One job in `GET /videos/review/queue`: its status body, and what a reviewer
/// needs besides (the prompt, who asked, the video's facts).
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    /// The job's status body, its fields inline, with links to the video.
    #[serde(flatten)]
    pub status: StatusBody,
    /// Who asked for the video: a reviewer may not review their own.
    pub user_id: String,
    /// The raw prompt: reviewers may read it (image-to-video jobs may have none).
    pub prompt: Option<String>,
    /// The stored video's facts; `null` when the job has no output.
    pub video: Option<VideoFacts>,
}

/// `GET /videos/review/queue`.
#[derive(Debug, Clone, Serialize)]
pub struct QueueBody {
    /// The jobs on this page, oldest completion first.
    pub jobs: Vec<QueueEntry>,
    /// Pass back as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_retryable_unless_the_request_itself_must_change() {
        for failure in crate::model::job::Failure::ALL {
            assert_eq!(crate::model::job::Failure::from_code(failure.code()), Some(failure));
            assert_eq!(retryable(failure.code()), failure != crate::model::job::Failure::ProviderUnavailable, "{}", failure.code());
        }
        for code in ["content_policy", "nsfw", "invalid_input", "bad_request", "image_unreadable", "prompt_too_long"] {
            assert!(!retryable(code), "{code}");
        }
        assert!(retryable("E1234_unknown_provider_code"));
        assert!(retryable("poor_quality") && retryable("off_brief"));
        assert!(!retryable("rights_unclear") && !retryable("needs_disclosure"));
    }
}
