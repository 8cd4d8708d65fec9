//! The state machine (the ASL file the template deploys, run by moto's
//! interpreter) reaching the worker through the work queue with task tokens.

use crate::helpers::TestApp;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use std::time::{Duration, Instant};
use videojobs_core::ids::JobId;
use videojobs_core::JobStatus;

/// Waits for the work queue's message of `kind` for `job`, leaving other
/// tests' messages for them.
async fn next_message(app: &TestApp, job: &JobId, kind: &str) -> (Value, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = app
            .clients
            .sqs
            .receive_message()
            .queue_url(&app.resources.work_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for message in out.messages.unwrap_or_default() {
            let body: Value = serde_json::from_str(message.body().unwrap_or("{}")).unwrap_or(Value::Null);
            let handle = message.receipt_handle().unwrap_or_default().to_owned();
            if body["job_id"] == job.as_str() && body["kind"] == kind {
                app.clients.sqs.delete_message().queue_url(&app.resources.work_queue_url).receipt_handle(&handle).send().await.expect("delete");
                return (body, message.message_id().unwrap_or_default().to_owned());
            }
            app.clients
                .sqs
                .change_message_visibility()
                .queue_url(&app.resources.work_queue_url)
                .receipt_handle(&handle)
                .visibility_timeout(0)
                .send()
                .await
                .expect("release");
        }
    }
    panic!("no {kind} message for {job} within 20 s");
}

fn sqs_event(body: &Value, message_id: &str) -> LambdaEvent<SqsEvent> {
    let mut message = SqsMessage::default();
    message.message_id = Some(message_id.to_owned());
    message.body = Some(body.to_string());
    let mut event = SqsEvent::default();
    event.records = vec![message];
    LambdaEvent::new(event, Context::default())
}

#[tokio::test]
async fn a_new_job_sends_the_worker_a_submit_message_with_a_task_token() {
    let app = TestApp::new(100).await;

    let id = app.generate(2).await;
    let (message, _) = next_message(&app, &id, "submit").await;

    assert!(message["task_token"].as_str().is_some_and(|t| !t.is_empty()), "{message}");
}

#[tokio::test]
async fn when_the_state_machine_gives_up_the_job_fails_once_with_one_refund() {
    let app = TestApp::new(100).await;
    let worker = worker::Worker { jobs: app.services.jobs.clone() };
    let id = app.generate(4).await;
    let (submit, _) = next_message(&app, &id, "submit").await;

    app.clients
        .sfn
        .send_task_failure()
        .task_token(submit["task_token"].as_str().unwrap())
        .error("ProviderRefused")
        .send()
        .await
        .expect("task failure sent");
    let (give_up, message_id) = next_message(&app, &id, "give_up").await;
    let first = worker::handler(&worker, sqs_event(&give_up, &message_id)).await.unwrap();
    let redelivered = worker::handler(&worker, sqs_event(&give_up, &message_id)).await.unwrap();

    assert!(first.batch_item_failures.is_empty());
    assert!(redelivered.batch_item_failures.is_empty());
    let job = app.job(&id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().next_step.is_some());
    assert_eq!(app.credits().await, 100);
    assert_eq!(app.active_jobs().await, 0);
    let events = app.get(&format!("/videos/jobs/{id}/events")).await;
    let events = events.body["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["source"], "state_machine");
}

#[tokio::test]
async fn a_deadline_makes_the_job_expired_not_failed() {
    let app = TestApp::new(100).await;
    let worker = worker::Worker { jobs: app.services.jobs.clone() };
    let id = app.generate(2).await;
    let give_up = serde_json::json!({"kind": "give_up", "job_id": id.as_str(), "error": "States.Timeout"});

    let response = worker::handler(&worker, sqs_event(&give_up, "m-1")).await.unwrap();

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(app.job(&id).await.status, JobStatus::Expired);
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn a_message_for_a_job_that_does_not_exist_is_dropped_not_retried() {
    let app = TestApp::new(100).await;
    let worker = worker::Worker { jobs: app.services.jobs.clone() };
    let give_up = serde_json::json!({"kind": "give_up", "job_id": JobId::generate().as_str()});
    let garbage = serde_json::json!({"kind": "give_up", "job_id": "not-a-job"});

    let missing = worker::handler(&worker, sqs_event(&give_up, "m-1")).await.unwrap();
    let unusable = worker::handler(&worker, sqs_event(&garbage, "m-2")).await.unwrap();

    assert!(missing.batch_item_failures.is_empty());
    assert!(unusable.batch_item_failures.is_empty());
}
