//! `worker`: consumes a queue, one span per message, and reports the messages
//! it could not handle so that only those come back (partial batch failure).
//! The same binary consumes the pipeline's work queue and, as its own
//! function, the client-notification queue. What a message does is decided in
//! `videojobs_core::services::pipeline`; this crate parses, calls and reports.
//!
//! The messages of a batch are handled concurrently, each within a time
//! budget ([`budget_for`]) well inside the function's timeout: a slow message
//! comes back alone, never with its batch. A message that can never be
//! handled (unparseable, no such job, a 4xx from AWS) goes to the queue's
//! dead-letter queue with the reason, where the alarm sees it; so does one
//! that failed on its last receive ([`MAX_RECEIVES`]), which SQS's redrive
//! would otherwise move there with no reason at all.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use tracing::Instrument;
use videojobs_core::model::stats::ScheduledMessage;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::MessageQueue;
use videojobs_core::services::pipeline::budget_for;
pub use videojobs_core::services::pipeline::{check_stuck, handle, Notifier, Pipeline, WorkError};

/// The queues' `maxReceiveCount` (template.yaml; a test holds them equal):
/// a message that fails on this receive would be moved to the dead-letter
/// queue by SQS's redrive, without a reason, so the worker moves it itself.
pub const MAX_RECEIVES: u32 = 5;

pub async fn handler(pipeline: &Pipeline, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let outcomes = futures_util::future::join_all(event.payload.records.iter().map(|message| handle_record(pipeline, message))).await;
    let mut response = SqsBatchResponse::default();
    for failed in outcomes.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = failed;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// Handles one record in its own span and time budget; the message id when it
/// must come back.
async fn handle_record(pipeline: &Pipeline, message: &SqsMessage) -> Option<String> {
    let id = message.message_id.clone().unwrap_or_default();
    let span = tracing::info_span!("message", message_id = %id, kind = tracing::field::Empty, job_id = tracing::field::Empty);
    // Parsed once: the kind sets the budget and the dead-letter queue too.
    let parsed = message.body.as_deref().map(serde_json::from_str::<WorkMessage>);
    let budget = budget_for(parsed.as_ref().and_then(|p| p.as_ref().ok()));
    let queue =
        if matches!(&parsed, Some(Ok(message)) if message.is_notification()) { MessageQueue::Notifications } else { MessageQueue::Work };
    let outcome = match tokio::time::timeout(budget, handle_message(pipeline, message, parsed).instrument(span.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Err(WorkError::OutOfTime(budget)),
    };
    let _entered = span.enter();
    match outcome {
        Ok(()) => {
            tracing::info!("message handled");
            None
        }
        Err(err) if !err.is_retryable() || receive_count(message) >= MAX_RECEIVES => {
            let body = message.body.as_deref().unwrap_or("");
            let reason = match err.is_retryable() {
                true => format!("failed on each of its {MAX_RECEIVES} receives; the last time: {err}"),
                false => err.to_string(),
            };
            match pipeline.dead_letters.dead_letter(body, &reason, queue).await {
                Ok(()) => {
                    tracing::error!(error = %err, metric = "MessagesDeadLettered", "message can never be handled; sent to the dead-letter queue");
                    None
                }
                Err(dlq) => {
                    tracing::error!(error = %err, dlq_error = %dlq, "message can never be handled and the dead-letter queue refused it; it comes back");
                    Some(id)
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "message failed; it will be retried");
            Some(id)
        }
    }
}

/// How many times SQS has delivered the message, this time included (1 when
/// the event does not say: an invocation by hand).
fn receive_count(message: &SqsMessage) -> u32 {
    message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1)
}

async fn handle_message(
    pipeline: &Pipeline,
    message: &SqsMessage,
    parsed: Option<Result<WorkMessage, serde_json::Error>>,
) -> Result<(), WorkError> {
    let body = message.body.as_deref().ok_or_else(|| WorkError::Unusable("no body".into()))?;
    // A schedule's message has no job: it is told apart before the job messages.
    if let Ok(ScheduledMessage::CheckStuck) = serde_json::from_str(body) {
        tracing::Span::current().record("kind", "check_stuck");
        return check_stuck(pipeline).await.map(|_| ());
    }
    let parsed = parsed.ok_or_else(|| WorkError::Unusable("no body".into()))?.map_err(|e| WorkError::Unusable(e.to_string()))?;
    let span = tracing::Span::current();
    span.record("job_id", parsed.job_id().as_str());
    span.record("kind", parsed.kind());
    handle(pipeline, parsed).await
}
