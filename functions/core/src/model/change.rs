//! A change of a job's status as a value: the transition, the event that
//! records it, and what else is written with it. The store applies it only if
//! the job is still where the change starts (see `ports::JobWrites`).

use crate::model::ids::{JobId, UserId};
use crate::model::job::{Artifact, Job, JobEvent};
use crate::model::lifecycle::{JobStatus, Transition};
use crate::model::request::WorkflowType;
use time::OffsetDateTime;

/// A change of status with its event, applied only if the job is still in
/// `transition.from`.
#[derive(Debug, Clone)]
pub struct StatusChange {
    /// The job that changes.
    pub job_id: JobId,
    /// The job's owner, whose credits a refund goes back to.
    pub user_id: UserId,
    /// From which status to which: the write is conditional on `from`.
    pub transition: Transition,
    /// Credits to give back when the transition refunds.
    pub cost_credits: u32,
    /// The entry written to the job's event history.
    pub event: JobEvent,
    /// The failure to record on the job, when the change is one.
    pub error: Option<crate::model::job::JobError>,
    /// When the change is made; the job's `updated_at` becomes this.
    pub at: OffsetDateTime,
    /// Further fields written with the change.
    pub update: JobUpdate,
    /// Where the client wants to be told of the change (see `services::notifying::NotifyingJobs`).
    pub webhook_url: Option<String>,
    /// Facts about the job the operational counters need (see `stats`).
    pub facts: JobFacts,
}

impl StatusChange {
    /// The change `transition` makes to `job`, with the event that records it.
    pub fn new(
        job: &Job,
        transition: Transition,
        source: crate::model::job::EventSource,
        message: impl Into<String>,
        error: Option<crate::model::job::JobError>,
        update: JobUpdate,
    ) -> Self {
        let at = crate::model::job::timestamp::now();
        Self {
            job_id: job.job_id.clone(),
            user_id: job.user_id.clone(),
            transition,
            cost_credits: job.cost_credits,
            event: JobEvent {
                job_id: job.job_id.clone(),
                at,
                source,
                previous_status: Some(transition.from),
                status: transition.to,
                message: message.into(),
                error_code: error.as_ref().map(|e| e.code.clone()),
                actor: None,
                delivery: None,
            },
            error,
            at,
            update,
            webhook_url: job.webhook_url.clone(),
            facts: JobFacts::of(job),
        }
    }

    /// The person behind the change, recorded on its event.
    pub fn by(mut self, actor: &UserId) -> Self {
        self.event.actor = Some(actor.clone());
        self
    }
}

/// Fields a status change may set besides the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobUpdate {
    /// The new progress percentage, 0 to 100.
    pub progress: Option<u8>,
    /// The provider's id for the job, with the provider's name.
    pub provider_request: Option<(String, String)>,
    /// The generated video and thumbnail, set when the job completes.
    pub output: Option<crate::model::job::Artifact>,
    /// When the stored output is deleted unless the job is approved.
    pub output_expires_at: Option<OffsetDateTime>,
    /// When the video was stored and the job completed; set with `processing → completed`.
    pub completed_at: Option<OffsetDateTime>,
    /// Forget the stored output (its objects were deleted).
    pub remove_output: bool,
    /// A reviewer's decision, set with `completed → approved | rejected`.
    pub review: Option<crate::model::job::Review>,
    /// Makes this submission attempt the job's current one.
    pub submit_attempt: Option<u32>,
    /// Applies the write only while this is the job's current submission
    /// attempt (0: none yet): a message of an older attempt changes nothing.
    pub only_in_attempt: Option<u32>,
    /// Takes the lease of the current submission attempt: only its holder
    /// calls the provider for it.
    pub submit_lease: Option<SubmitLease>,
}

/// The lease on a submission attempt. The copy of a `submit` message that
/// makes an attempt current takes it with that change; another copy may
/// resume the attempt only once the lease has run out (its holder died), so
/// two live copies never both ask the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitLease {
    /// The lease runs out at this time; after it another copy may resume the attempt.
    pub until: OffsetDateTime,
    /// Take it only if the lease held so far ran out by then (a resume);
    /// `None` with the change that makes the attempt current.
    pub if_run_out_at: Option<OffsetDateTime>,
}

/// What the store did with a [`StatusChange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The job was in `transition.from` and the change is written.
    Applied,
    /// The job was not in the expected status; this is where it is.
    StatusWas(JobStatus),
    /// There is no such job.
    NotFound,
}
/// What a status change must know about its job for the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFacts {
    /// The job's provider's name: a counter dimension.
    pub provider: String,
    /// What the job makes: a counter dimension.
    pub workflow_type: WorkflowType,
    /// When the job was made, to measure how long it took to finish.
    pub created_at: OffsetDateTime,
    /// The output the job holds before the change.
    pub stored: StoredBytes,
}

impl JobFacts {
    /// The facts of `job` as it is before the change.
    pub fn of(job: &Job) -> Self {
        Self {
            provider: job.provider.to_string(),
            workflow_type: job.workflow_type(),
            created_at: job.created_at,
            stored: StoredBytes::of(job.output.as_ref()),
        }
    }
}

/// Bytes of a stored output, by artifact type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredBytes {
    /// Bytes of the video.
    pub video: u64,
    /// Bytes of the thumbnail; 0 when there is none.
    pub thumbnail: u64,
}

impl StoredBytes {
    /// The bytes `artifact` holds; all 0 when there is none.
    pub fn of(artifact: Option<&Artifact>) -> Self {
        match artifact {
            Some(a) => Self { video: a.size_bytes, thumbnail: a.thumbnail_size_bytes.unwrap_or(0) },
            None => Self::default(),
        }
    }
}
