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
    /// A video from a prompt.
    TextToVideo {
        /// Length of the video, in seconds.
        duration_seconds: u32,
        /// The frame's shape.
        aspect_ratio: AspectRatio,
        /// The frame's size.
        resolution: Resolution,
    },
    /// A video from a source image.
    ImageToVideo {
        /// Where the provider gets the image.
        image: ImageSource,
        /// Length of the video, in seconds.
        length_seconds: u32,
        /// Frames per second.
        frame_rate: u32,
        /// How fast the camera closes in: 0.1 is 10 % a second.
        zoom_speed: f64,
    },
}

impl JobParams {
    /// Which kind of job these parameters make.
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
    /// Stable and machine-readable: one of ours (docs/ERRORS.md), the provider's, or a review reason's.
    pub code: String,
    /// What went wrong, for the job's owner to read.
    pub message: String,
    /// What the owner can do about it, when we know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

/// The ways a job fails for a reason of ours, each with its code (stable, in
/// docs/ERRORS.md), its message and what the user can do next. A provider's
/// own failure code and a reviewer's rejection reason reach `JobError` as
/// they are (see `provider::failure_advice` and `review::ReviewReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The create request's execution could not be started.
    StartFailed,
    /// The job's provider is not configured in this deployment.
    ProviderUnavailable,
    /// Every submission found the provider busy.
    ProviderBusy,
    /// The provider refused or failed the job without a code of its own.
    GenerationFailed,
    /// The provider reports the job canceled on its side.
    CanceledByProvider,
    /// What the provider returned is not a playable video.
    OutputUnusable,
    /// Asked after the deadline, the provider does not know the job.
    LostAtProvider,
    /// Not ready before the generation deadline.
    DeadlineExceeded,
    /// Not reviewed within the retention window: the video was deleted.
    RetentionExpired,
}

impl Failure {
    /// Every failure, for tests and docs checks.
    pub const ALL: [Failure; 9] = [
        Failure::StartFailed,
        Failure::ProviderUnavailable,
        Failure::ProviderBusy,
        Failure::GenerationFailed,
        Failure::CanceledByProvider,
        Failure::OutputUnusable,
        Failure::LostAtProvider,
        Failure::DeadlineExceeded,
        Failure::RetentionExpired,
    ];

    /// The stable code the job's error carries.
    pub fn code(self) -> &'static str {
        match self {
            Failure::StartFailed => "start_failed",
            Failure::ProviderUnavailable => "provider_unavailable",
            Failure::ProviderBusy => "provider_busy",
            Failure::GenerationFailed => "generation_failed",
            Failure::CanceledByProvider => "canceled_by_provider",
            Failure::OutputUnusable => "output_unusable",
            Failure::LostAtProvider => "lost_at_provider",
            Failure::DeadlineExceeded => "deadline_exceeded",
            Failure::RetentionExpired => "retention_expired",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Failure::StartFailed => "The job could not be started.",
            Failure::ProviderUnavailable => "The job's provider is not available.",
            Failure::ProviderBusy => "The provider was too busy to take the job.",
            Failure::GenerationFailed => "The video could not be generated.",
            Failure::CanceledByProvider => "The provider canceled the job.",
            Failure::OutputUnusable => "The provider returned a file that is not a playable video.",
            Failure::LostAtProvider => "The provider lost the job.",
            Failure::DeadlineExceeded => "The video was not ready in time.",
            Failure::RetentionExpired => "The video was not reviewed in time and was deleted.",
        }
    }

    fn next_step(self) -> &'static str {
        match self {
            Failure::StartFailed => "Try again in a moment.",
            Failure::ProviderUnavailable => "Try again with another provider.",
            Failure::ProviderBusy => "Try again in a few minutes.",
            Failure::GenerationFailed => "Try again, or change the prompt.",
            Failure::CanceledByProvider | Failure::OutputUnusable | Failure::LostAtProvider => "Try again.",
            Failure::DeadlineExceeded => "Try again; a shorter video is usually faster.",
            Failure::RetentionExpired => "Generate it again.",
        }
    }

    /// The failure whose code is `code`; `None` for a code not ours.
    pub fn from_code(code: &str) -> Option<Failure> {
        Failure::ALL.into_iter().find(|failure| failure.code() == code)
    }

    /// Whether the same request, made again, may succeed: every failure of
    /// ours but a provider that is not there (the same request names it again).
    pub fn retryable(self) -> bool {
        self != Failure::ProviderUnavailable
    }

    /// The error a job that failed this way carries.
    pub fn error(self) -> JobError {
        JobError { code: self.code().to_owned(), message: self.message().to_owned(), next_step: Some(self.next_step().to_owned()) }
    }
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// `approve` or `reject`.
    pub decision: String,
    /// The review reason's code; always present on a rejection.
    pub reason: Option<String>,
    /// The reviewer's own words, when they wrote any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who reviewed: never the job's owner.
    pub reviewer_id: UserId,
    /// When the decision was recorded.
    #[serde(with = "timestamp")]
    pub reviewed_at: OffsetDateTime,
}

/// The stored video: where it is in S3 and what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// The video's object key in the output bucket.
    pub video_key: String,
    /// The thumbnail's object key; `None` when the provider gave none.
    pub thumbnail_key: Option<String>,
    /// Counted in the stored-bytes figures; absent on records made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_size_bytes: Option<u64>,
    /// The video's MIME type, `video/mp4` for the outputs we keep.
    pub mime_type: String,
    /// The video's size in bytes.
    pub size_bytes: u64,
    /// The video's length, in seconds.
    pub duration_seconds: f64,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
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

    /// Writes the metadata as one JSON string.
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

    /// Reads the metadata from a JSON string, or from the map older items kept.
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
    /// The job's id; also the name of its Step Functions execution.
    pub job_id: JobId,
    /// Whose job this is: the caller's user id at creation.
    pub user_id: UserId,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// What the provider is asked to make.
    pub params: JobParams,
    /// The client's own JSON, stored as its text (see [`metadata_text`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "metadata_text")]
    pub metadata: Option<Map<String, Value>>,
    /// Hex SHA-256 of the prompt; the prompt itself is kept apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_hash: Option<String>,
    /// The provider that makes the video; changes at most once, on failover.
    pub provider: ProviderName,
    /// The provider's id for the job, once the provider has accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_request_id: Option<String>,
    /// The submission attempt that is current (0 before the first): only a
    /// message of this attempt may act on the provider (a fencing token).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub submit_attempt: u32,
    /// Percentage done, 0 to 100; 100 only once the video is stored.
    pub progress: u8,
    /// Credits debited when the job was accepted; a refund gives back this many.
    pub cost_credits: u32,
    /// Where the client asked to be told when the job completes or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// When the job was accepted.
    #[serde(with = "timestamp")]
    pub created_at: OffsetDateTime,
    /// When the job last changed.
    #[serde(with = "timestamp")]
    pub updated_at: OffsetDateTime,
    /// When the video was stored and the job completed.
    #[serde(default, with = "timestamp::option", skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<OffsetDateTime>,
    /// Why the job failed, was rejected or expired; `None` while nothing went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The reviewer's decision, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// The stored video, once there is one; removed when it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Artifact>,
    /// When an unapproved output is deleted and the result answers `410`.
    #[serde(default, with = "timestamp::option", skip_serializing_if = "Option::is_none")]
    pub output_expires_at: Option<OffsetDateTime>,
    /// The provider's last word while it works (see `progress`); removed when the job leaves flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<crate::model::progress::ProgressDetail>,
    /// The seed the client gave, passed to providers that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// The client's deadline, in seconds from acceptance: the job's execution
    /// gives it up then if the deployment's own deadline is not sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_after_seconds: Option<u32>,
    /// The job this one was made from by a retry or a remix. Its attribute is
    /// the `by_parent` index's key: only such jobs are in that index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_id: Option<JobId>,
    /// The client's labels, to find the job again (`GET /videos/jobs?tag=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<crate::model::tag::Tag>,
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
            seed: None,
            cancel_after_seconds: None,
            parent_job_id: None,
            tags: Vec::new(),
        }
    }

    /// Which kind of job this is.
    pub fn workflow_type(&self) -> WorkflowType {
        self.params.workflow_type()
    }

    /// Whether `user` made the job.
    pub fn is_owned_by(&self, user: &UserId) -> bool {
        &self.user_id == user
    }

    /// The credits given back: all of them when the job gave up before its
    /// video was stored (failed, canceled, or out of time in flight), none
    /// otherwise. The rule [`crate::model::lifecycle::transition`] applies
    /// when the refund is made, read back from where the job ended.
    pub fn refunded_credits(&self) -> u32 {
        use crate::model::lifecycle::JobStatus::*;
        let refunded = match self.status {
            Failed | Canceled => true,
            Expired => self.completed_at.is_none(),
            Queued | Submitted | Retrying | Processing | Completed | Approved | Rejected => false,
        };
        if refunded {
            self.cost_credits
        } else {
            0
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Who or what caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// A client's request: create, cancel.
    Api,
    /// The worker, acting on a queue message: submit, poll, finalize, failover.
    Worker,
    /// A provider's callback.
    Webhook,
    /// The job's Step Functions execution, giving up on the job.
    StateMachine,
    /// A reviewer's approval or rejection.
    Reviewer,
    /// A client notification attempt (the status is the one notified, unchanged).
    Notifier,
}

/// One line of a job's history. A change of status writes one in the same
/// transaction as the change; an event that changed nothing is kept too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job it belongs to.
    pub job_id: JobId,
    /// When it happened.
    #[serde(with = "timestamp")]
    pub at: OffsetDateTime,
    /// Who or what caused it.
    pub source: EventSource,
    /// The status before; `None` on the job's first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<JobStatus>,
    /// The status after (the same as before when nothing changed).
    pub status: JobStatus,
    /// What happened, in a sentence.
    pub message: String,
    /// The code of the error the job got with it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The user or reviewer behind it, when a person acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<UserId>,
    /// An attempt at a client notification: the delivery log's entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::model::delivery::DeliveryFacts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_own_code_a_next_step_and_a_row_in_the_error_docs() {
        let docs = include_str!("../../../../docs/ERRORS.md");
        let codes: std::collections::HashSet<_> = Failure::ALL.iter().map(|f| f.code()).collect();
        assert_eq!(codes.len(), Failure::ALL.len(), "codes are unique");
        for failure in Failure::ALL {
            let error = failure.error();
            assert!(error.next_step.is_some_and(|s| !s.is_empty()), "{failure:?}");
            assert!(docs.contains(&format!("| `{}` |", error.code)), "{} is not in docs/ERRORS.md", error.code);
        }
    }

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
    fn the_refund_read_back_from_a_finished_job_agrees_with_the_lifecycles_rule() {
        use crate::model::lifecycle::{transition, JobStatus::*};
        let params = JobParams::TextToVideo { duration_seconds: 2, aspect_ratio: AspectRatio::Square, resolution: Resolution::Hd };
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let all = [Queued, Submitted, Retrying, Processing, Completed, Approved, Rejected, Failed, Canceled, Expired];
        for from in all {
            for to in all {
                let Ok(t) = transition(from, to) else { continue };
                let mut job = Job::accepted(
                    crate::model::ids::JobId::generate(),
                    "u".parse().unwrap(),
                    params.clone(),
                    "local".parse().unwrap(),
                    7,
                    now,
                );
                // Only a job whose video was stored has been `completed`.
                job.completed_at = (!from.is_in_flight()).then_some(now);
                job.status = to;
                let expected = if t.refunds_credits { 7 } else { 0 };
                assert_eq!(job.refunded_credits(), expected, "{from} -> {to}");
            }
        }
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
