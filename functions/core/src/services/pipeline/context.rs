//! What the pipeline's steps share: the ports they work with ([`Pipeline`]),
//! how a step fails ([`WorkError`]), and the error names the state machine
//! routes on.

use crate::model::error::StoreError;
use crate::ports::*;
use std::sync::Arc;
use std::time::Duration;

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

/// What the pipeline's rules need: one port per capability.
#[derive(Clone)]
pub struct Pipeline {
    /// Status changes and what a job records (wrapped so that a client is told of a change).
    pub writes: Arc<dyn JobWrites>,
    /// Jobs, their events and prompts.
    pub reads: Arc<dyn JobReads>,
    /// The token of the task that waits for the submission.
    pub tokens: Arc<dyn SubmissionTokens>,
    /// Takes the `unreviewed` tag off the objects of an approved video.
    pub kept: Arc<dyn KeepOutputs>,
    /// The records of uploaded source images, for image-to-video submissions.
    pub uploads: Arc<dyn UploadStore>,
    /// The media bucket: presigned links to source images for providers, and to outputs for notifications.
    pub media: Arc<dyn MediaStore>,
    /// Where outputs are copied into and deleted from.
    pub outputs: Arc<dyn OutputStore>,
    /// Answers the task a job's execution waits on.
    pub tasks: Arc<dyn TaskTokens>,
    /// Where the token of the task that waits for the review is kept.
    pub review_waits: Arc<dyn ReviewWaits>,
    /// The providers enabled here, by name.
    pub providers: Providers,
    /// Moves a job to the fallback provider on failover.
    pub switches: Arc<dyn crate::ports::ProviderSwitch>,
    /// Where providers call back: `{callback_base_url}/webhooks/{provider}`.
    pub callback_base_url: String,
    /// Client notifications (`notify` messages).
    pub notifier: Notifier,
    /// The stuck-jobs index, for the scheduled `check_stuck`.
    pub stats: Arc<dyn crate::ports::StatsStore>,
    /// Where a `refresh` records what the provider said.
    pub progress: Arc<dyn crate::ports::ProgressDetails>,
    /// The pipeline's own queue, for the worker's delayed retries.
    pub queue: Arc<dyn DelayedWorkQueue>,
    /// Ties provider request ids to jobs (see `ProviderRequests`).
    pub requests: Arc<dyn ProviderRequests>,
    /// Where messages that can never be handled go, with the reason.
    pub dead_letters: Arc<dyn DeadLetters>,
    /// Starts the execution of a job whose start was lost (see `check_stuck`).
    pub workflows: Arc<dyn Workflows>,
    /// Every setting (retention, presigned links' lifetime, stuck threshold,
    /// failover, …) is read from here, nowhere else.
    pub settings: crate::model::settings::Settings,
}

/// How a step failed; decides whether its message comes back or goes to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The message can never be handled: retrying will not help.
    #[error("unusable message: {0}")]
    Unusable(String),
    /// Storage or a service failed: the message comes back and is tried again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider could not be reached or was busy for a step that must happen.
    #[error("provider unavailable: {}", crate::model::redact::provider_words(.0))]
    ProviderUnavailable(String),
    /// Another step has to happen first: the message comes back later.
    #[error("not yet: {0}")]
    NotYet(String),
    /// The message ran past its time budget: it comes back later.
    #[error("the message took longer than its budget of {0:?}")]
    OutOfTime(Duration),
}

impl WorkError {
    /// Whether the message should come back to be tried again; if not, it goes to the dead-letter queue.
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkError::Unusable(_) => false,
            WorkError::Store(err) => err.is_retryable(),
            WorkError::ProviderUnavailable(_) | WorkError::NotYet(_) | WorkError::OutOfTime(_) => true,
        }
    }
}

/// What delivering notifications needs.
#[derive(Clone)]
pub struct Notifier {
    /// Users' signing secrets, made on first use.
    pub secrets: Arc<dyn WebhookSecrets>,
    /// Which notifications were delivered, and the claims on attempts.
    pub deliveries: Arc<dyn NotificationLog>,
    /// The notification queue, for retries, hops and waits for a slot.
    pub queue: Arc<dyn DelayedWorkQueue>,
    /// DNS, to check the `webhook_url` again at each attempt.
    pub resolver: Arc<dyn HostResolver>,
    /// Posts a signed notification to the checked address.
    pub poster: Arc<dyn NotificationPoster>,
    /// Each user's endpoints: their runs of failures, and the paused ones.
    pub endpoints: Arc<dyn crate::ports::EndpointHealth>,
}
