//! The state machine (the ASL file the template deploys, run by moto's
//! interpreter) reaching the worker through the work queue with task tokens.

use crate::harness::{next_message, TestApp};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use videojobs_core::model::ids::JobId;
use videojobs_core::JobStatus;

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
    let app = TestApp::builder().credits(100).own_stack().build().await;

    let id = app.new_job(2).await;
    let (message, _) = next_message(&app, &id, "submit").await;

    assert!(message["task_token"].as_str().is_some_and(|t| !t.is_empty()), "{message}");
}

#[tokio::test]
async fn when_the_state_machine_gives_up_the_job_fails_once_with_one_refund() {
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let worker = app.app.worker.clone();
    let id = app.new_job(4).await;
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
    let events = app.job_events(&id).await;
    let events = events.body["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["source"], "state_machine");
}

#[tokio::test]
async fn a_deadline_makes_the_job_expired_not_failed() {
    let app = TestApp::new(100).await;
    let worker = app.app.worker.clone();
    let id = app.new_job(2).await;
    let give_up = serde_json::json!({"kind": "give_up", "job_id": id.as_str(), "error": "States.Timeout"});

    let response = worker::handler(&worker, sqs_event(&give_up, "m-1")).await.unwrap();

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(app.job(&id).await.status, JobStatus::Expired);
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn a_message_for_a_job_that_does_not_exist_is_dropped_not_retried() {
    let app = TestApp::new(100).await;
    let worker = app.app.worker.clone();
    let give_up = serde_json::json!({"kind": "give_up", "job_id": JobId::generate().as_str()});
    let garbage = serde_json::json!({"kind": "give_up", "job_id": "not-a-job"});

    let missing = worker::handler(&worker, sqs_event(&give_up, "m-1")).await.unwrap();
    let unusable = worker::handler(&worker, sqs_event(&garbage, "m-2")).await.unwrap();

    assert!(missing.batch_item_failures.is_empty());
    assert!(unusable.batch_item_failures.is_empty());
}
