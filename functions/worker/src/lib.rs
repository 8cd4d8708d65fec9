//! `worker`: consumes the work queue, one span per message, and reports the
//! messages it could not handle so that only those come back (partial batch
//! failure). Every step is safe to run twice: a status change is conditioned
//! on the status it leaves.
//!
//! Message kinds (the state machine sends them; see `infra/statemachine`):
//! - `give_up`: the execution ran out of time or retries. The job becomes
//!   `expired` (deadline) or `failed` (anything else) and its credits come
//!   back once.
//! - `submit`: hand the job to its provider. Providers arrive with the
//!   pipeline issue; until then a `submit` is reported as failed, so it is
//!   retried and finally lands in the dead-letter queue rather than vanishing.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use std::sync::Arc;
use tracing::Instrument;
use videojobs_core::ids::JobId;
use videojobs_core::job::{timestamp, EventSource, JobError, JobEvent};
use videojobs_core::lifecycle::{transition, JobStatus};
use videojobs_core::ports::{ChangeOutcome, JobStore, StatusChange};
use videojobs_core::StoreError;

/// What the worker needs, built once per Lambda instance.
#[derive(Clone)]
pub struct Worker {
    pub jobs: Arc<dyn JobStore>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkMessage {
    Submit { job_id: JobId, task_token: String },
    GiveUp { job_id: JobId, error: Option<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The message can never be handled: retrying will not help.
    #[error("unusable message: {0}")]
    Unusable(String),
    /// Storage or a service failed: the message comes back and is tried again.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotYetSupported(&'static str),
}

impl WorkError {
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkError::Unusable(_) => false,
            WorkError::Store(err) => err.is_retryable(),
            WorkError::NotYetSupported(_) => true,
        }
    }
}

pub async fn handler(worker: &Worker, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for message in event.payload.records {
        let id = message.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id, job_id = tracing::field::Empty);
        let outcome = handle_message(worker, &message).instrument(span.clone()).await;
        let _entered = span.enter();
        match outcome {
            Ok(()) => tracing::info!("message handled"),
            // An unusable message is dropped (logged) rather than retried forever.
            Err(err) if !err.is_retryable() => tracing::error!(error = %err, "message dropped"),
            Err(err) => {
                tracing::warn!(error = %err, "message failed; it will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    Ok(response)
}

async fn handle_message(worker: &Worker, message: &SqsMessage) -> Result<(), WorkError> {
    let body = message.body.as_deref().ok_or_else(|| WorkError::Unusable("no body".into()))?;
    let parsed: WorkMessage = serde_json::from_str(body).map_err(|e| WorkError::Unusable(e.to_string()))?;
    match parsed {
        WorkMessage::GiveUp { job_id, error } => {
            tracing::Span::current().record("job_id", job_id.as_str());
            give_up(worker, &job_id, error.as_deref()).await
        }
        WorkMessage::Submit { job_id, .. } => {
            tracing::Span::current().record("job_id", job_id.as_str());
            Err(WorkError::NotYetSupported("no provider adapter is available to submit to"))
        }
    }
}

/// Ends a job the state machine gave up on, unless it already ended.
pub async fn give_up(worker: &Worker, job_id: &JobId, cause: Option<&str>) -> Result<(), WorkError> {
    let timed_out = cause == Some("States.Timeout");
    let (to, error) = if timed_out {
        (
            JobStatus::Expired,
            JobError {
                code: "deadline_exceeded".into(),
                message: "The video was not ready in time.".into(),
                next_step: Some("Try again; a shorter video is usually faster.".into()),
            },
        )
    } else {
        (
            JobStatus::Failed,
            JobError {
                code: "generation_failed".into(),
                message: "The video could not be generated.".into(),
                next_step: Some("Try again, or change the prompt.".into()),
            },
        )
    };
    for _ in 0..5 {
        let Some(job) = worker.jobs.job(job_id).await? else {
            return Err(WorkError::Unusable(format!("no job {job_id}")));
        };
        let Ok(t) = transition(job.status, to) else {
            tracing::info!(status = %job.status, "job already past giving up; nothing to do");
            return Ok(());
        };
        let now = timestamp::now();
        let change = StatusChange {
            job_id: job.job_id.clone(),
            user_id: job.user_id.clone(),
            transition: t,
            cost_credits: job.cost_credits,
            event: JobEvent {
                job_id: job.job_id.clone(),
                at: now,
                source: EventSource::StateMachine,
                previous_status: Some(job.status),
                status: to,
                message: error.message.clone(),
                error_code: Some(error.code.clone()),
                actor: None,
            },
            error: Some(error.clone()),
            at: now,
        };
        match worker.jobs.change_status(&change).await? {
            ChangeOutcome::Applied => return Ok(()),
            ChangeOutcome::NotFound => return Err(WorkError::Unusable(format!("no job {job_id}"))),
            ChangeOutcome::StatusWas(_) => continue,
        }
    }
    Err(WorkError::Store(StoreError::Unavailable("the job kept changing".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_by_kind() {
        let id = JobId::generate();
        let give_up: WorkMessage =
            serde_json::from_str(&format!(r#"{{"kind":"give_up","job_id":"{id}","error":"States.Timeout"}}"#)).unwrap();
        assert_eq!(give_up, WorkMessage::GiveUp { job_id: id.clone(), error: Some("States.Timeout".into()) });
        let submit: WorkMessage =
            serde_json::from_str(&format!(r#"{{"kind":"submit","job_id":"{id}","task_token":"t"}}"#)).unwrap();
        assert_eq!(submit, WorkMessage::Submit { job_id: id, task_token: "t".into() });
        assert!(serde_json::from_str::<WorkMessage>(r#"{"kind":"dance"}"#).is_err());
    }

    #[test]
    fn unusable_messages_are_not_retried_and_storage_hiccups_are() {
        assert!(!WorkError::Unusable("x".into()).is_retryable());
        assert!(WorkError::Store(StoreError::Unavailable("x".into())).is_retryable());
        assert!(!WorkError::Store(StoreError::Internal("x".into())).is_retryable());
    }
}
