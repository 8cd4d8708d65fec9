//! The JSON bodies the API answers with. `docs/API.md` describes them for
//! clients; these types are the single definition.

use crate::model::ids::JobId;
use crate::model::job::{timestamp, Job, JobEvent};
use crate::model::lifecycle::JobStatus;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize)]
pub struct Links {
    pub status: String,
    pub result: String,
    pub events: String,
}

impl Links {
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
    pub job_id: JobId,
    pub status: JobStatus,
    pub status_label: &'static str,
    pub estimated_time_seconds: u32,
    pub links: Links,
}

impl AcceptedBody {
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

#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostView {
    pub credits: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    pub decision: String,
    pub reason: Option<String>,
    pub note: Option<String>,
    pub reviewer_id: String,
    pub reviewed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputView {
    pub video_url: String,
    pub thumbnail_url: Option<String>,
    pub duration_seconds: f64,
}

/// `progress_detail` in the status body.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressDetailView {
    pub stage: crate::model::progress::Stage,
    pub queue_position: Option<u32>,
    pub message: String,
    pub observed_at: String,
}

/// Presigned links to a job's output, when it has one to show.
#[derive(Debug, Clone, Default)]
pub struct OutputLinks {
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// `GET /videos/jobs/{id}/status`, and each item of the listings.
#[derive(Debug, Clone, Serialize)]
pub struct StatusBody {
    pub job_id: JobId,
    pub status: JobStatus,
    pub status_label: &'static str,
    pub progress: u8,
    pub workflow_type: &'static str,
    pub provider: String,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    pub error: Option<ErrorView>,
    pub cost: CostView,
    pub review: Option<ReviewView>,
    pub output: Option<OutputView>,
    /// The provider's last word while it works; `null` otherwise.
    pub progress_detail: Option<ProgressDetailView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl StatusBody {
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
            }),
            cost: CostView { credits: job.cost_credits },
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
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoView {
    pub url: String,
    pub thumbnail_url: Option<String>,
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub mime_type: String,
    pub size_bytes: u64,
    /// When the presigned URL stops working.
    pub expires_at: String,
}

/// `GET /videos/jobs/{id}/result`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultBody {
    pub job_id: JobId,
    pub status: JobStatus,
    pub video: VideoView,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub at: String,
    pub source: crate::model::job::EventSource,
    pub previous_status: Option<JobStatus>,
    pub status: JobStatus,
    pub message: String,
    pub error_code: Option<String>,
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
    pub job_id: JobId,
    pub events: Vec<EventView>,
}

/// `GET /videos/jobs` and `GET /videos/jobs/active`.
#[derive(Debug, Clone, Serialize)]
pub struct ListBody {
    pub jobs: Vec<StatusBody>,
    pub next_cursor: Option<String>,
}

/// `POST /videos/uploads`.
#[derive(Debug, Clone, Serialize)]
pub struct UploadBody {
    pub upload_id: String,
    pub url: String,
    pub method: &'static str,
    /// Send exactly these headers with the PUT.
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub expires_at: String,
    pub max_bytes: u64,
}

/// `GET /videos/account`: who the key belongs to and what they have left.
#[derive(Debug, Clone, Serialize)]
pub struct AccountBody {
    pub user_id: String,
    pub role: &'static str,
    pub credits: i64,
    pub active_jobs: u32,
    pub max_active_jobs: u32,
}
