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

    app.stack()
        .clients
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

/// The state machine as the template deploys it.
fn definition() -> Value {
    let path = crate::harness::repo_root().join("infra/statemachine/job.asl.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).expect("valid JSON")
}

#[test]
fn the_review_wait_is_a_task_whose_timeout_is_the_window_and_only_its_timeout_reaches_expire() {
    let asl = definition();

    let wait = &asl["States"]["KeepForReview"];

    assert_eq!(wait["Type"], "Task");
    assert_eq!(wait["Resource"], "arn:aws:states:::sqs:sendMessage.waitForTaskToken");
    assert_eq!(wait["Parameters"]["MessageBody"]["kind"], "await_review");
    assert_eq!(wait["TimeoutSecondsPath"], "$.retention_seconds");
    assert_eq!(wait["End"], true, "an approval's answer ends the execution");
    let catches = wait["Catch"].as_array().expect("a catch");
    assert_eq!(catches.len(), 1);
    assert_eq!(catches[0]["ErrorEquals"], serde_json::json!(["States.Timeout"]));
    assert_eq!(catches[0]["Next"], "Expire");
    // Only the sending of its message is retried: States.TaskFailed never matches the timeout.
    let retries = wait["Retry"].as_array().expect("a retry");
    assert!(retries.iter().all(|r| r["ErrorEquals"] == serde_json::json!(["States.TaskFailed"])), "{retries:?}");
    assert_eq!(asl["States"]["Submit"]["Next"], "KeepForReview");
    assert_eq!(asl["States"]["AskProvider"]["Next"], "KeepForReview");
}

#[test]
fn the_tasks_whose_token_the_worker_answers_have_no_retry() {
    let asl = definition();

    for name in ["Submit", "AskProvider"] {
        let task = &asl["States"][name];

        assert!(task["Resource"].as_str().unwrap().ends_with(".waitForTaskToken"), "{name}");
        assert!(task.get("Retry").is_none(), "{name} must not be retried (docs/RELIABILITY.md)");
    }
}
