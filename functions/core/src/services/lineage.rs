//! Jobs made from other jobs: `POST /videos/jobs/{id}/retry` makes the same
//! request again after a job that gave no video to keep; `…/remix` makes one
//! from any job with the fields the caller overrides. Either rebuilds the
//! parent's request as its JSON body and parses it as a create would, so a
//! new job passes every check a new request does, is charged as one, and
//! honours `Idempotency-Key`. The new job names its `parent_job_id`;
//! `GET /videos/jobs/{id}/children` lists what was made from a job.

use crate::model::job::{Job, JobParams};
use crate::model::lifecycle::JobStatus;
use crate::model::request::{AnimateRequest, GenerateRequest, ImageSource, InvalidRequest};
use crate::model::views::{ListBody, StatusBody};
use crate::ports::Principal;
use crate::services::error::AppError;
use crate::services::jobs::{Accepted, Idempotency, JobSpec, Services};
use serde_json::{json, Map, Value};

/// The statuses a job may be retried from: it ended without a video to keep.
pub const RETRYABLE_STATUSES: [JobStatus; 4] = [JobStatus::Failed, JobStatus::Expired, JobStatus::Rejected, JobStatus::Canceled];

/// The most children `GET …/children` lists (a job is rarely retried more).
pub const CHILDREN_LISTED: u32 = 100;

/// A text-to-video request without its prompt: the parent's was deleted
/// with its retention window, and nothing gave another.
fn lacks_its_prompt(parent: &Job, body: &Map<String, Value>) -> bool {
    matches!(parent.params, JobParams::TextToVideo { .. }) && !body.contains_key("prompt")
}

impl Services {
    /// `POST /videos/jobs/{id}/retry`: the parent's request again, as a new job.
    pub async fn retry(&self, who: &Principal, parent_id: &str, idempotency: Option<Idempotency>) -> Result<Accepted, AppError> {
        let parent = self.own_job(who, parent_id).await?;
        if !RETRYABLE_STATUSES.contains(&parent.status) {
            let message = format!("{} job has a video or is still being made: remix it instead", parent.status.with_article());
            return Err(AppError::WrongState { status: parent.status, message });
        }
        let body = self.request_of(&parent).await?;
        if lacks_its_prompt(&parent, &body) {
            return Err(AppError::InputsGone);
        }
        self.create_child(who, &parent, body, idempotency).await
    }

    /// `POST /videos/jobs/{id}/remix`: the parent's request with the fields
    /// of `overrides` (a JSON object of the parent's create fields) in place
    /// of its own; a field set to `null` is left out, taking its default.
    pub async fn remix(
        &self,
        who: &Principal,
        parent_id: &str,
        overrides: &[u8],
        idempotency: Option<Idempotency>,
    ) -> Result<Accepted, AppError> {
        let overrides: Map<String, Value> = crate::model::request::parse_json(overrides)?;
        let parent = self.own_job(who, parent_id).await?;
        let mut body = self.request_of(&parent).await?;
        // An image source given replaces the parent's, whichever kind it was.
        if overrides.contains_key("image_url") || overrides.contains_key("upload_id") {
            body.remove("image_url");
            body.remove("upload_id");
        }
        for (field, value) in overrides {
            if value.is_null() {
                body.remove(&field);
            } else {
                body.insert(field, value);
            }
        }
        if lacks_its_prompt(&parent, &body) {
            return Err(InvalidRequest::new("prompt", "the parent's prompt is no longer kept: give one").into());
        }
        self.create_child(who, &parent, body, idempotency).await
    }

    /// `GET /videos/jobs/{id}/children`: the jobs made from a job the caller may see, newest first.
    pub async fn children(&self, who: &Principal, parent_id: &str) -> Result<ListBody, AppError> {
        let parent = self.visible_job(who, parent_id).await?;
        let children = self.listings.children_of(&parent.job_id, CHILDREN_LISTED).await?;
        let jobs = children
            .iter()
            .filter(|child| child.is_owned_by(&parent.user_id))
            .map(|job| StatusBody::new(job, &Default::default()))
            .collect();
        Ok(ListBody { jobs, next_cursor: None })
    }

    /// The job, if the caller owns it: only the owner makes jobs from it
    /// (they pay for them); another user's job is "not found" as for every read.
    async fn own_job(&self, who: &Principal, id: &str) -> Result<Job, AppError> {
        let job = self.visible_job(who, id).await?;
        if !job.is_owned_by(&who.user_id) {
            return Err(AppError::Forbidden("only the job's owner can make a new job from it"));
        }
        Ok(job)
    }

    /// The create request's body that made `job`, as the API takes it.
    async fn request_of(&self, job: &Job) -> Result<Map<String, Value>, AppError> {
        let prompt = self.reads.prompt(&job.job_id).await?;
        let mut body = match &job.params {
            JobParams::TextToVideo { duration_seconds, aspect_ratio, resolution } => {
                json!({"duration_seconds": duration_seconds, "aspect_ratio": aspect_ratio, "resolution": resolution})
            }
            JobParams::ImageToVideo { image, length_seconds, frame_rate, zoom_speed } => {
                let mut body = json!({"length": length_seconds, "frame_rate": frame_rate, "zoom_speed": zoom_speed});
                match image {
                    ImageSource::Url(url) => body["image_url"] = json!(url),
                    ImageSource::Upload(id) => body["upload_id"] = json!(id.to_string()),
                }
                body
            }
        };
        body["provider"] = json!(job.provider.as_str());
        let optional = [
            ("prompt", prompt.map(Value::from)),
            ("webhook_url", job.webhook_url.clone().map(Value::from)),
            ("metadata", job.metadata.clone().map(Value::Object)),
            ("seed", job.seed.map(Value::from)),
            ("cancel_after_seconds", job.cancel_after_seconds.map(Value::from)),
            ("tags", (!job.tags.is_empty()).then(|| json!(job.tags))),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                body[field] = value;
            }
        }
        match body {
            Value::Object(map) => Ok(map),
            _ => Err(AppError::Internal("a job's request is not an object".into())),
        }
    }

    async fn create_child(
        &self,
        who: &Principal,
        parent: &Job,
        body: Map<String, Value>,
        idempotency: Option<Idempotency>,
    ) -> Result<Accepted, AppError> {
        let bytes = serde_json::to_vec(&body).map_err(|e| AppError::Internal(format!("writing a request: {e}")))?;
        let limits = &self.settings.limits;
        let spec = match parent.params {
            JobParams::TextToVideo { .. } => JobSpec::Generate(GenerateRequest::parse(&bytes, limits)?),
            JobParams::ImageToVideo { .. } => JobSpec::Animate(AnimateRequest::parse(&bytes, limits)?),
        };
        self.create_job_from(who, spec, idempotency, Some(parent.job_id.clone())).await
    }
}
