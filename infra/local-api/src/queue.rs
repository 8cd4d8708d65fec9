//! The SQS event source mappings, locally: long-polls a queue (the work queue,
//! or the notification queue), hands each batch to the worker's handler, and
//! deletes only the messages the handler did not report as failed (so the
//! others come back after the queue's visibility timeout, as on AWS). Several
//! pollers per queue stand for Lambda's concurrent invocations.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use lambda_runtime::{Context, LambdaEvent};
use std::collections::HashSet;
use std::time::Duration;

/// How many batches of each queue are handled at once, like concurrent
/// Lambda invocations: the pipeline's and the notifications' are apart, so a
/// slow batch of one never holds the other back. The notifications' five are
/// the template's `MaximumConcurrency`: one more than a tenant's delivery
/// slots, so one tenant's hanging deliveries never hold every batch.
pub const WORK_POLLERS: usize = 4;
pub const NOTIFY_POLLERS: usize = 5;

/// Both queues' pollers, as the template's two event source mappings.
pub fn spawn_pollers(sqs: &Client, resources: &videojobs_aws::Resources, worker: &worker::Pipeline) -> Vec<tokio::task::JoinHandle<()>> {
    let queues = [(resources.work_queue_url.clone(), WORK_POLLERS), (resources.notify_queue_url.clone(), NOTIFY_POLLERS)];
    let mut tasks = Vec::new();
    for (queue_url, pollers) in queues {
        for _ in 0..pollers {
            tasks.push(tokio::spawn(poll_forever(sqs.clone(), queue_url.clone(), worker.clone())));
        }
    }
    tasks
}

pub async fn poll_forever(sqs: Client, queue_url: String, worker: worker::Pipeline) {
    loop {
        if let Err(err) = poll_once(&sqs, &queue_url, &worker, 5).await {
            tracing::warn!(error = %err, "polling the work queue failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What the template's EventBridge schedule does on AWS: puts
/// `{"kind":"check_stuck"}` on the work queue every `every`.
pub async fn schedule_check_stuck_forever(sqs: Client, queue_url: String, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let body = serde_json::json!({"kind": "check_stuck"}).to_string();
        if let Err(err) = sqs.send_message().queue_url(&queue_url).message_body(body).send().await {
            tracing::warn!(error = %err, "could not schedule the stuck-jobs check");
        }
    }
}

/// One receive and one batch: returns how many messages it handled and how
/// long the worker's handler took (what Lambda would bill).
pub async fn poll_once(
    sqs: &Client,
    queue_url: &str,
    worker: &worker::Pipeline,
    wait_seconds: i32,
) -> Result<(usize, std::time::Duration), Box<dyn std::error::Error + Send + Sync>> {
    let received = sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).wait_time_seconds(wait_seconds).send().await?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok((0, std::time::Duration::ZERO));
    }
    let records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record.event_source = Some("aws:sqs".into());
            record
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    let started = std::time::Instant::now();
    let response = worker::handler(worker, LambdaEvent::new(event, Context::default())).await?;
    let handled_in = started.elapsed();
    let failed: HashSet<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    for message in &messages {
        if message.message_id.as_ref().is_some_and(|id| failed.contains(id)) {
            continue;
        }
        if let Some(handle) = &message.receipt_handle {
            sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await?;
        }
    }
    Ok((messages.len(), handled_in))
}
