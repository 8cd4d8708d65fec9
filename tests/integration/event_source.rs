//! The local SQS event source delivers as AWS does: at least once (a share
//! of messages twice, at the same time or later), in no set order, and a
//! handler still running at its function's timeout is stopped, its message
//! coming back after the visibility timeout. Against real queues in moto.

use crate::harness::repo_root;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use local_api::queue::{poll_once, Consumer, Delivery, Handled};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use videojobs_aws::AwsClients;

/// One handling of one message: when it started and whether it ran to its end.
#[derive(Debug, Clone)]
struct Handling {
    started: Instant,
    finished: Option<Instant>,
}

/// Records every message it is handed; the first handling of each message
/// takes `first_takes`, later ones are quick.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<HashMap<String, Vec<Handling>>>>,
    first_takes: Duration,
}

impl Recorder {
    fn new(first_takes: Duration) -> Self {
        Self { seen: Arc::default(), first_takes }
    }

    fn handlings(&self) -> HashMap<String, Vec<Handling>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Consumer for Recorder {
    fn consume(&self, event: SqsEvent) -> Handled {
        let this = self.clone();
        Box::pin(async move {
            let mut tasks = Vec::new();
            for record in event.records {
                let body = record.body.clone().unwrap_or_default();
                let this = this.clone();
                tasks.push(async move {
                    let index = {
                        let mut seen = this.seen.lock().unwrap();
                        let handlings = seen.entry(body.clone()).or_default();
                        handlings.push(Handling { started: Instant::now(), finished: None });
                        handlings.len() - 1
                    };
                    tokio::time::sleep(if index == 0 { this.first_takes } else { Duration::from_millis(50) }).await;
                    this.seen.lock().unwrap().get_mut(&body).unwrap()[index].finished = Some(Instant::now());
                });
            }
            futures::future::join_all(tasks).await;
            Ok(SqsBatchResponse::default())
        })
    }
}

async fn queue_with_visibility(clients: &AwsClients, seconds: u32) -> String {
    let name = format!("event-source-{}", ulid::Ulid::new().to_string().to_lowercase());
    let out = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, seconds.to_string())
        .send()
        .await
        .unwrap();
    out.queue_url.unwrap()
}

async fn poll_until(clients: &AwsClients, url: &str, consumer: &Recorder, delivery: &Delivery, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "the queue was not drained within 60 s: {:?}", consumer.handlings().len());
        poll_once(&clients.sqs, url, consumer, 1, delivery).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_handled_and_a_share_is_delivered_twice_at_once_or_later() {
    // Arrange: 60 messages; half of them drawn for a second delivery.
    let clients = AwsClients::from_env();
    let url = queue_with_visibility(&clients, 30).await;
    for i in 0..60 {
        clients.sqs.send_message().queue_url(&url).message_body(format!("m{i}")).send().await.unwrap();
    }
    let consumer = Recorder::new(Duration::from_millis(200));
    let delivery = Delivery::new(0.5, Duration::from_secs(10), 19);

    // Act: poll until all 60 were handled, then give the later copies their time.
    poll_until(&clients, &url, &consumer, &delivery, || consumer.handlings().len() == 60).await;
    tokio::time::sleep(delivery.redelivery_within + Duration::from_secs(1)).await;

    // Assert
    let handlings = consumer.handlings();
    assert!(handlings.values().all(|h| !h.is_empty() && h.len() <= 2), "{handlings:?}");
    let twice: Vec<&Vec<Handling>> = handlings.values().filter(|h| h.len() == 2).collect();
    let overlapping = |h: &Vec<Handling>| h[1].started < h[0].finished.unwrap_or(h[1].started);
    let at_once = twice.iter().filter(|h| overlapping(h)).count();
    let later = twice.len() - at_once;
    assert!((15..=45).contains(&twice.len()), "about half delivered twice: {}", twice.len());
    assert!(at_once > 0 && later > 0, "both kinds of copy: {at_once} at once, {later} later");
    let left = clients.sqs.receive_message().queue_url(&url).wait_time_seconds(0).send().await.unwrap();
    assert!(left.messages.unwrap_or_default().is_empty(), "every handled message was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_timeout_is_stopped_and_its_message_comes_back_after_the_visibility_timeout() {
    // Arrange: a 1 s function; its first handling would take 60 s (far past
    // the timeout: a stalled runtime that polls the handler only after both
    // timers ran out would otherwise see it finish first); a 2 s visibility timeout.
    let clients = AwsClients::from_env();
    let url = queue_with_visibility(&clients, 2).await;
    clients.sqs.send_message().queue_url(&url).message_body("slow").send().await.unwrap();
    let consumer = Recorder::new(Duration::from_secs(60));
    let delivery = Delivery::new(0.0, Duration::from_secs(1), 1);

    // Act
    let started = Instant::now();
    poll_until(&clients, &url, &consumer, &delivery, || {
        consumer.handlings().get("slow").is_some_and(|h| h.iter().any(|handling| handling.finished.is_some()))
    })
    .await;

    // Assert: stopped once, delivered again only after the visibility timeout, then done.
    let handlings = consumer.handlings()["slow"].clone();
    assert_eq!(handlings.len(), 2, "{handlings:?}");
    assert!(handlings[0].finished.is_none(), "the first handling was stopped at the function's timeout");
    assert!(handlings[1].started.duration_since(started) >= Duration::from_secs(2), "{handlings:?}");
    let left = clients.sqs.receive_message().queue_url(&url).wait_time_seconds(0).send().await.unwrap();
    assert!(left.messages.unwrap_or_default().is_empty());
}

/// The timeout of a function in template.yaml (its own, else the Globals').
fn template_timeout(logical_id: &str) -> Duration {
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let global = template.lines().skip_while(|l| !l.starts_with("Globals:")).find_map(|l| l.trim().strip_prefix("Timeout: "));
    let own = template
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {logical_id}:"))
        .skip(1)
        .take_while(|l| !l.starts_with("  ") || l.starts_with("   "))
        .find_map(|l| l.strip_prefix("      Timeout: "));
    Duration::from_secs(own.or(global).unwrap().trim().parse().unwrap())
}

#[test]
fn the_local_stack_stops_each_function_at_its_timeout_in_the_template() {
    assert_eq!(local_api::queue::WORKER_TIMEOUT, template_timeout("WorkerFunction"));
    assert_eq!(local_api::queue::NOTIFY_TIMEOUT, template_timeout("NotifyFunction"));
    assert_eq!(local_api::WEBHOOK_FUNCTION_TIMEOUT, template_timeout("WebhookFunction"));
    assert_eq!(local_api::API_FUNCTION_TIMEOUT, template_timeout("CreateFunction"));
    assert_eq!(local_api::API_FUNCTION_TIMEOUT, template_timeout("StatusFunction"));
    // API Gateway's integration timeout (30 s) is never reached: Lambda stops the function first.
    assert!(local_api::API_FUNCTION_TIMEOUT < Duration::from_secs(30));
}

/// `maxReceiveCount` of a queue's redrive policy in template.yaml.
fn template_max_receives(queue: &str) -> u32 {
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let count = template
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {queue}:"))
        .skip(1)
        .take_while(|l| !l.starts_with("  ") || l.starts_with("   "))
        .find_map(|l| l.trim().strip_prefix("maxReceiveCount: "));
    count.unwrap_or_else(|| panic!("{queue} has a redrive policy")).trim().parse().unwrap()
}

#[test]
fn the_worker_dead_letters_on_the_receive_after_which_the_queue_would_redrive() {
    assert_eq!(worker::MAX_RECEIVES, template_max_receives("WorkQueue"));
    assert_eq!(worker::MAX_RECEIVES, template_max_receives("NotifyQueue"));
}

#[tokio::test]
async fn a_message_failing_on_its_last_receive_reaches_the_dead_letter_queue_with_the_reason() {
    // Arrange: a job whose reads fail (the store is down), and its submit message.
    let app = crate::harness::TestApp::builder().credits(100).in_memory().build().await;
    let id = app.new_job(1).await;
    let memory = app.memory();
    memory.faults().fail_always("JobReads::job", videojobs_testkit::Moment::Before);
    let body = serde_json::json!({"kind": "submit", "job_id": id.as_str()}).to_string();
    let delivery = |receive_count: u32| {
        let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
        record.message_id = Some(format!("m-{receive_count}"));
        record.body = Some(body.clone());
        record.attributes.insert("ApproximateReceiveCount".into(), receive_count.to_string());
        let mut event = SqsEvent::default();
        event.records = vec![record];
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())
    };

    // Act: SQS's fourth delivery, then its fifth and last.
    let fourth = worker::handler(&app.app.worker, delivery(worker::MAX_RECEIVES - 1)).await.unwrap();
    let last = worker::handler(&app.app.worker, delivery(worker::MAX_RECEIVES)).await.unwrap();

    // Assert: the fourth comes back to be tried again; the last is dead-lettered by the worker, with why.
    assert_eq!(fourth.batch_item_failures.len(), 1, "a retryable failure comes back");
    assert!(last.batch_item_failures.is_empty(), "the last is not left to the redrive");
    let dead = memory.receive(videojobs_testkit::QueueName::WorkDeadLetters, 10, Duration::from_secs(30));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, body);
    let reason = dead[0].reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("failed on each of its 5 receives; the last time: "), "{reason}");
}
