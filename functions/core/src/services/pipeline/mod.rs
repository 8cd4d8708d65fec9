//! The pipeline's decisions: what each message of the work queue does to a
//! job (submit, finalize, poll after the deadline, refresh, expire, give up,
//! cancel at the provider, discard or keep an output, notify) and the
//! scheduled check for stuck jobs. The worker function parses a message, calls
//! [`handle`] and reports; everything here speaks ports, so the same rules
//! run on AWS, on the local stack and in the simulator.
//!
//! Every step is safe when a message arrives twice or the function dies half
//! way: status changes are conditioned on the status they leave, submission
//! attempts are fenced (`submission.rs`), the provider gets the job id as its
//! idempotency key (a resubmission finds the same request), outputs go to
//! fixed keys, and a task token answered twice is ignored by Step Functions.

//!
//! The files, each importing only those before it: `context` (the ports and
//! errors), `steps`, `finishing` (how a job ends), `failover`, `submission`,
//! `delivery` (client notifications), `stuck` (the scheduled check) and
//! `dispatch` (which step a message takes).

mod context;
pub mod delivery;
mod dispatch;
mod failover;
mod finishing;
mod steps;
mod stuck;
pub mod submission;

pub use context::{task_errors, Notifier, Pipeline, WorkError};
pub use dispatch::{budget_for, handle};
pub use finishing::{give_up, POLL_ROUNDS};
pub use stuck::{check_stuck, QUEUED_STUCK_AFTER_SECONDS};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::StoreError;

    #[test]
    fn unusable_messages_are_not_retried_and_outages_are() {
        assert!(!WorkError::Unusable("x".into()).is_retryable());
        assert!(WorkError::Store(StoreError::Unavailable("x".into())).is_retryable());
        assert!(!WorkError::Store(StoreError::Internal("x".into())).is_retryable());
        assert!(WorkError::ProviderUnavailable("x".into()).is_retryable());
        assert!(WorkError::NotYet("x".into()).is_retryable());
    }
}
