//! What one message does: the worker's entry point.

use super::context::{Pipeline, WorkError};
use super::finishing::{await_review, cancel_at_provider, discard_output, expire, finalize, give_up, keep_output, poll, refresh};
use super::{delivery, submission};
use crate::model::work::WorkMessage;
use std::time::Duration;

/// How long one message may take, well inside the functions' timeouts (60 s
/// for the pipeline's worker, 30 s for the notifier): a client endpoint gets
/// 20 s (its connect and request timeouts are 5 s and 10 s); a pipeline step
/// (a provider call, an output copy) 45 s.
pub fn budget_for(message: Option<&WorkMessage>) -> Duration {
    match message {
        Some(message) if message.is_notification() => Duration::from_secs(20),
        _ => Duration::from_secs(45),
    }
}

/// Does what one message asks (the worker's handler, the tests and the simulator call this).
pub async fn handle(pipeline: &Pipeline, message: WorkMessage) -> Result<(), WorkError> {
    match message {
        WorkMessage::Submit { job_id, task_token, attempt } => submission::submit(pipeline, &job_id, task_token.as_deref(), attempt).await,
        WorkMessage::Finalize { job_id } => finalize(pipeline, &job_id).await,
        WorkMessage::Poll { job_id, task_token, round } => poll(pipeline, &job_id, task_token.as_deref(), round.unwrap_or(1)).await,
        WorkMessage::AwaitReview { job_id, task_token } => await_review(pipeline, &job_id, &task_token).await,
        WorkMessage::Expire { job_id } => expire(pipeline, &job_id).await,
        WorkMessage::GiveUp { job_id, error } => give_up(pipeline, &job_id, error.as_deref()).await,
        WorkMessage::CancelAtProvider { job_id } => cancel_at_provider(pipeline, &job_id).await,
        WorkMessage::DiscardOutput { job_id } => discard_output(pipeline, &job_id).await,
        WorkMessage::KeepOutput { job_id } => keep_output(pipeline, &job_id).await,
        WorkMessage::Refresh { job_id } => refresh(pipeline, &job_id).await,
        WorkMessage::Notify { job_id, status, attempt, not_before, queued_at, slot_waits } => {
            delivery::notify(pipeline, &job_id, status, attempt, not_before, queued_at, slot_waits).await
        }
        WorkMessage::Redeliver { job_id, status, slot_waits } => delivery::redeliver(pipeline, &job_id, status, slot_waits).await,
    }
}
