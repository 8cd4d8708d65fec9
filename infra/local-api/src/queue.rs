//! The SQS event source mappings, locally, delivering as AWS does: at least
//! once. Long-polls a queue (the work queue, or the notification queue) with
//! the role of the function it feeds, hands each batch to that function's
//! handler, and deletes only the messages the handler did not report as
//! failed (so the others come back after the queue's visibility timeout).
//! Several pollers per queue stand for Lambda's concurrent invocations.
//!
//! What AWS does and a plain poller would not, on by default ([`Delivery`]):
//! - a share of messages is delivered twice: at the same time to a second
//!   invocation, or again later (also after it was deleted);
//! - a batch's messages are handed over in no particular order;
//! - a handler still running at its function's timeout is stopped, and its
//!   batch comes back after the visibility timeout, as Lambda does.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use lambda_runtime::{Context, LambdaEvent};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many batches of each queue are handled at once, like concurrent
/// Lambda invocations: the pipeline's and the notifications' are apart, so a
/// slow batch of one never holds the other back. The notifications' five are
/// the template's `MaximumConcurrency`: one more than a tenant's delivery
/// slots, so one tenant's hanging deliveries never hold every batch.
pub const WORK_POLLERS: usize = 4;
pub const NOTIFY_POLLERS: usize = 5;

/// The functions' timeouts in template.yaml (a test holds them equal).
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(60);
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a batch handler answers: the messages to leave on the queue.
pub type Handled = Pin<Box<dyn Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send>>;

/// A function fed by a queue.
pub trait Consumer: Clone + Send + Sync + 'static {
    fn consume(&self, event: SqsEvent) -> Handled;
}

impl Consumer for worker::Pipeline {
    fn consume(&self, event: SqsEvent) -> Handled {
        let pipeline = self.clone();
        Box::pin(async move { worker::handler(&pipeline, LambdaEvent::new(event, Context::default())).await })
    }
}

/// How the local event source delivers (AWS's at-least-once).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The share of messages delivered a second time (0 to 1).
    pub duplicate_share: f64,
    /// The consuming function's timeout: a batch still running then is stopped.
    pub function_timeout: Duration,
    /// The longest wait before a later copy of a duplicated message.
    pub redelivery_within: Duration,
    seed: Arc<AtomicU64>,
}

impl Delivery {
    /// At-least-once, with `LOCAL_SQS_DUPLICATE_SHARE` (default 0.05) of the
    /// messages delivered twice; `LOCAL_SQS_SEED` fixes the draws.
    pub fn from_env(function_timeout: Duration) -> Self {
        let share = std::env::var("LOCAL_SQS_DUPLICATE_SHARE").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.05);
        let seed = std::env::var("LOCAL_SQS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(time_seed);
        Self::new(share, function_timeout, seed)
    }

    pub fn new(duplicate_share: f64, function_timeout: Duration, seed: u64) -> Self {
        Self {
            duplicate_share: duplicate_share.clamp(0.0, 1.0),
            function_timeout,
            redelivery_within: Duration::from_secs(3),
            seed: Arc::new(AtomicU64::new(seed)),
        }
    }

    /// Exactly once, in order, never stopped: what a plain poller does (benches that count requests).
    pub fn exactly_once() -> Self {
        Self::new(0.0, Duration::from_secs(24 * 3600), 0)
    }

    /// A draw in [0, 1) (splitmix64: shared by the pollers, no lock).
    fn draw(&self) -> f64 {
        let mut z = self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn time_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}

/// Both queues' pollers, as the template's two event source mappings: the
/// work queue's feed the worker (polling as the worker), the notification
/// queue's the notifier (polling as the notify function).
pub fn spawn_pollers(app: &crate::App, resources: &videojobs_aws::Resources) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let Some(clients) = &app.queue_clients else {
        tracing::warn!("no SQS clients: the queues are not polled");
        return tasks;
    };
    let work = Delivery::from_env(WORKER_TIMEOUT);
    let notify = Delivery::from_env(NOTIFY_TIMEOUT);
    for _ in 0..WORK_POLLERS {
        tasks.push(tokio::spawn(poll_forever(clients.worker.clone(), resources.work_queue_url.clone(), app.worker.clone(), work.clone())));
    }
    for _ in 0..NOTIFY_POLLERS {
        let (sqs, url) = (clients.notify.clone(), resources.notify_queue_url.clone());
        tasks.push(tokio::spawn(poll_forever(sqs, url, app.notifier.clone(), notify.clone())));
    }
    tasks
}

pub async fn poll_forever<C: Consumer>(sqs: Client, queue_url: String, consumer: C, delivery: Delivery) {
    loop {
        if let Err(err) = poll_once(&sqs, &queue_url, &consumer, 5, &delivery).await {
            tracing::warn!(error = %err, "polling the queue failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What the template's EventBridge schedule does on AWS: puts
/// `{"kind":"check_stuck"}` on the work queue every `every`, with the
/// schedule's own role.
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

/// The access key id the local schedule signs with: its role's logical id.
pub const SCHEDULE_ROLE: &str = "CheckStuckScheduleRole";

/// One receive and one batch: returns how many messages it handled and how
/// long the handler took (what Lambda would bill).
pub async fn poll_once<C: Consumer>(
    sqs: &Client,
    queue_url: &str,
    consumer: &C,
    wait_seconds: i32,
    delivery: &Delivery,
) -> Result<(usize, Duration), Box<dyn std::error::Error + Send + Sync>> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok((0, Duration::ZERO));
    }
    let mut records: Vec<SqsMessage> = messages.iter().map(record_of).collect();
    shuffle(&mut records, delivery);
    let (mut at_once, mut later) = (Vec::new(), Vec::new());
    for record in &records {
        if delivery.draw() < delivery.duplicate_share {
            if delivery.draw() < 0.5 {
                at_once.push(record.clone());
            } else {
                later.push(record.clone());
            }
        }
    }
    // The copies delivered at the same time go to an invocation of their own,
    // whose answer is not acted on: the batch's own answer decides.
    let twin = (!at_once.is_empty()).then(|| tokio::spawn(invoke(consumer.clone(), at_once, delivery.function_timeout)));
    let started = std::time::Instant::now();
    let outcome = invoke(consumer.clone(), records, delivery.function_timeout).await;
    let handled_in = started.elapsed();
    if let Some(twin) = twin {
        let _ = twin.await;
    }
    let failed: HashSet<String> = match outcome {
        Invocation::Answered(response) => response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
        // Stopped, or the handler failed: nothing is deleted, and the batch
        // comes back after the visibility timeout.
        Invocation::TimedOut | Invocation::Failed => return Ok((messages.len(), handled_in)),
    };
    for message in &messages {
        if message.message_id.as_ref().is_some_and(|id| failed.contains(id)) {
            continue;
        }
        if let Some(handle) = &message.receipt_handle {
            sqs.delete_message().queue_url(queue_url).receipt_handle(handle).send().await?;
        }
    }
    for record in later {
        let wait = delivery.redelivery_within.mul_f64(delivery.draw());
        let (consumer, timeout) = (consumer.clone(), delivery.function_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = invoke(consumer, vec![record], timeout).await;
        });
    }
    Ok((messages.len(), handled_in))
}

enum Invocation {
    Answered(SqsBatchResponse),
    TimedOut,
    Failed,
}

/// One invocation of the consuming function, stopped at its timeout.
async fn invoke<C: Consumer>(consumer: C, records: Vec<SqsMessage>, timeout: Duration) -> Invocation {
    let mut event = SqsEvent::default();
    event.records = records;
    match tokio::time::timeout(timeout, consumer.consume(event)).await {
        Ok(Ok(response)) => Invocation::Answered(response),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "the function failed its batch");
            Invocation::Failed
        }
        Err(_) => {
            tracing::warn!(
                timeout_seconds = timeout.as_secs(),
                "the function timed out: its batch comes back after the visibility timeout"
            );
            Invocation::TimedOut
        }
    }
}

fn record_of(message: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id.clone();
    record.receipt_handle = message.receipt_handle.clone();
    record.body = message.body.clone();
    record.event_source = Some("aws:sqs".into());
    // What the event source mapping passes on, and the worker reads to dead-letter with a reason.
    if let Some(count) =
        message.attributes.as_ref().and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
    {
        record.attributes.insert("ApproximateReceiveCount".into(), count.clone());
    }
    record
}

/// Fisher-Yates with the delivery's draws: a batch arrives in no set order.
fn shuffle(records: &mut [SqsMessage], delivery: &Delivery) {
    if delivery.duplicate_share == 0.0 {
        return;
    }
    for i in (1..records.len()).rev() {
        let j = ((delivery.draw() * (i + 1) as f64) as usize).min(i);
        records.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_the_unit_interval_and_repeat_for_a_seed() {
        let (a, b) = (Delivery::new(0.5, WORKER_TIMEOUT, 7), Delivery::new(0.5, WORKER_TIMEOUT, 7));
        let first: Vec<f64> = (0..1000).map(|_| a.draw()).collect();
        let second: Vec<f64> = (0..1000).map(|_| b.draw()).collect();
        assert_eq!(first, second);
        assert!(first.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = first.iter().sum::<f64>() / first.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }

    #[test]
    fn a_shuffled_batch_keeps_every_message_once() {
        let delivery = Delivery::new(0.5, WORKER_TIMEOUT, 3);
        let mut records: Vec<SqsMessage> = (0..10)
            .map(|i| {
                let mut r = SqsMessage::default();
                r.message_id = Some(i.to_string());
                r
            })
            .collect();
        shuffle(&mut records, &delivery);
        let mut ids: Vec<String> = records.iter().filter_map(|r| r.message_id.clone()).collect();
        assert_ne!(ids, (0..10).map(|i| i.to_string()).collect::<Vec<_>>(), "seed 3 reorders ten messages");
        ids.sort_by_key(|id| id.parse::<u32>().unwrap_or(0));
        assert_eq!(ids, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn exactly_once_never_duplicates() {
        let delivery = Delivery::exactly_once();
        assert_eq!(delivery.duplicate_share, 0.0);
        assert!((0..1000).all(|_| delivery.draw() >= delivery.duplicate_share));
    }
}
