//! The job record and its events, as the domain sees them.

use crate::model::ids::{JobId, UserId};
use crate::model::lifecycle::JobStatus;
use crate::model::request::{AspectRatio, ImageSource, ProviderName, Resolution, WorkflowType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Timestamps are kept to the millisecond and written as fixed-width RFC 3339
/// (`2026-11-22T10:00:00.123Z`), so that their text sorts like their time.
/// Kept here too: most code reads times with the job they belong to.
pub use crate::model::timestamp;

/// What the provider is asked to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "workflow_type", rename_all = "snake_case")]
pub enum JobParams {
    TextToVideo { duration_seconds: u32, aspect_ratio: AspectRatio, resolution: Resolution },
    ImageToVideo { image: ImageSource, length_seconds: u32, frame_rate: u32, zoom_speed: f64 },
}

impl JobParams {
    pub fn workflow_type(&self) -> WorkflowType {
        match self {
            JobParams::TextToVideo { .. } => WorkflowType::TextToVideo,
            JobParams::ImageToVideo { .. } => WorkflowType::ImageToVideo,
        }
    }

    /// Length of the video asked for.
    pub fn video_seconds(&self) -> u32 {
        match self {
            JobParams::TextToVideo { duration_seconds, .. } => *duration_seconds,
            JobParams::ImageToVideo { length_seconds, .. } => *length_seconds,
        }
    }

    /// A rough wait a client can show: provider queueing plus render time.
    pub fn estimated_time_seconds(&self) -> u32 {
        30 + 6 * self.video_seconds()
    }
}

/// Why a job ended badly, in words the user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub decision: String,
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub reviewer_id: UserId,
    #[serde(with = "timestamp")]
    pub reviewed_at: OffsetDateTime,
}

/// The stored video: where it is in S3 and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub video_key: String,
    pub thumbnail_key: Option<String>,
    /// Counted in the stored-bytes figures; absent on records made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_size_bytes: Option<u64>,
    pub mime_type: String,
    pub size_bytes: u64,
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
}

impl Artifact {
    /// The objects it is stored as: the video, and the thumbnail if any.
    pub fn object_keys(&self) -> Vec<String> {
        std::iter::once(self.video_key.clone()).chain(self.thumbnail_key.clone()).collect()
    }
}

/// A job's `metadata` is the client's JSON, of any shape the request checks
/// allow: kept as one string attribute, not as a document of nested maps. In
/// moto a `null` inside a nested object comes back as an item the SDK cannot
/// read (found by Schemathesis: every read and listing of that user's jobs
/// answered 500 from then on), and a string is stored byte for byte by any
/// store. Items written before this kept a map; both read.
pub mod metadata_text {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(value: &Option<Map<String, Value>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(map) => s.serialize_some(&serde_json::to_string(map).map_err(S::Error::custom)?),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Map(Map<String, Value>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
        Ok(match Option::<Stored>::deserialize(d)? {
            None => None,
            Some(Stored::Text(text)) => Some(serde_json::from_str(&text).map_err(D::Error::custom)?),
            Some(Stored::Map(map)) => Some(map),
        })
    }
}

/// Where a job is now: the record a status request reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: JobId,
    pub user_id: UserId,
    pub status: JobStatus,
    pub params: JobParams,
    /// The client's own JSON, stored as its text (see [`metadata_text`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "metadata_text")]
    pub metadata: Option<Map<String, Value>>,
    /// Hex SHA-256 of the prompt; the prompt itself is kept apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_hash: Option<String>,
    pub provider: ProviderName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_request_id: Option<String>,
    /// The submission attempt that is current (0 before the first): only a
    /// message of this attempt may act on the provider (a fencing token).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub submit_attempt: u32,
    pub progress: u8,
    pub cost_credits: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(with = "timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "timestamp")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "timestamp::option", skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Artifact>,
    /// When an unapproved output is deleted and the result answers `410`.
    #[serde(default, with = "timestamp::option", skip_serializing_if = "Option::is_none")]
    pub output_expires_at: Option<OffsetDateTime>,
    /// The provider's last word while it works (see `progress`); removed when the job leaves flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<crate::model::progress::ProgressDetail>,
}

impl Job {
    /// The provider's last word, shown only while the job is waiting on it.
    pub fn visible_progress_detail(&self) -> Option<&crate::model::progress::ProgressDetail> {
        self.progress_detail.as_ref().filter(|d| d.allowed_statuses().contains(&self.status))
    }

    /// A job as it is accepted: queued at `at`, nothing done for it yet. The
    /// API builds every job from this; other fields are set on top of it.
    pub fn accepted(
        job_id: JobId,
        user_id: UserId,
        params: JobParams,
        provider: ProviderName,
        cost_credits: u32,
        at: OffsetDateTime,
    ) -> Self {
        Job {
            job_id,
            user_id,
            status: crate::model::lifecycle::JobStatus::Queued,
            params,
            metadata: None,
            prompt_hash: None,
            provider,
            provider_request_id: None,
            submit_attempt: 0,
            progress: 0,
            cost_credits,
            webhook_url: None,
            created_at: at,
            updated_at: at,
            completed_at: None,
            error: None,
            review: None,
            output: None,
            output_expires_at: None,
            progress_detail: None,
        }
    }

    pub fn workflow_type(&self) -> WorkflowType {
        self.params.workflow_type()
    }

    pub fn is_owned_by(&self, user: &UserId) -> bool {
        &self.user_id == user
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Who or what caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Api,
    Worker,
    Webhook,
    StateMachine,
    Reviewer,
    /// A client notification attempt (the status is the one notified, unchanged).
    Notifier,
}

/// One line of a job's history. A change of status writes one in the same
/// transaction as the change; an event that changed nothing is kept too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    #[serde(with = "timestamp")]
    pub at: OffsetDateTime,
    pub source: EventSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<JobStatus>,
    pub status: JobStatus,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The user or reviewer behind it, when a person acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<UserId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_sort_as_text() {
        let early = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let late = early + time::Duration::milliseconds(1_500);
        assert_eq!(timestamp::format(early), "2023-11-14T22:13:20.000Z");
        assert_eq!(timestamp::format(late), "2023-11-14T22:13:21.500Z");
        assert!(timestamp::format(early) < timestamp::format(late));
        assert_eq!(timestamp::parse(&timestamp::format(late)), Some(late));
    }

    #[test]
    fn metadata_is_stored_as_its_text_and_an_older_map_still_reads() {
        let params = JobParams::TextToVideo {
            duration_seconds: 1,
            aspect_ratio: crate::model::request::AspectRatio::Square,
            resolution: crate::model::request::Resolution::Sd,
        };
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let metadata: Map<String, Value> = serde_json::from_str(r#"{"a": {"b": null, "NULL": [null]}}"#).unwrap();
        let job = Job {
            metadata: Some(metadata.clone()),
            ..Job::accepted(crate::model::ids::JobId::generate(), "u".parse().unwrap(), params, "local".parse().unwrap(), 1, now)
        };
        let stored = serde_json::to_value(&job).unwrap();
        assert_eq!(stored["metadata"], serde_json::json!(r#"{"a":{"NULL":[null],"b":null}}"#));
        assert_eq!(serde_json::from_value::<Job>(stored.clone()).unwrap().metadata, Some(metadata.clone()));
        let mut older = stored;
        older["metadata"] = Value::Object(metadata.clone());
        assert_eq!(serde_json::from_value::<Job>(older).unwrap().metadata, Some(metadata));
    }

    #[test]
    fn now_reads_back_equal_after_formatting() {
        let now = timestamp::now();
        assert_eq!(timestamp::parse(&timestamp::format(now)), Some(now));
    }

    #[test]
    fn params_say_their_workflow_and_length() {
        let text = JobParams::TextToVideo { duration_seconds: 8, aspect_ratio: AspectRatio::Square, resolution: Resolution::Hd };
        assert_eq!(text.workflow_type(), WorkflowType::TextToVideo);
        assert_eq!(text.video_seconds(), 8);
        assert_eq!(text.estimated_time_seconds(), 78);
        let json = serde_json::to_value(&text).unwrap();
        assert_eq!(json["workflow_type"], "text_to_video");
        assert_eq!(serde_json::from_value::<JobParams>(json).unwrap(), text);
    }
}
