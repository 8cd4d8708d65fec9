//! Canceling: credits come back, the execution stops, and only in-flight jobs can be canceled.

use crate::harness::{next_message, TestApp};
use lambda_http::http::StatusCode;
use videojobs_core::model::ids::Role;
use videojobs_core::JobStatus;

#[tokio::test]
async fn cancel_marks_the_job_canceled_refunds_and_stops_the_execution() {
    let app = TestApp::builder().credits(100).own_stack().build().await;
    let id = app.new_job(5).await;
    assert_eq!(app.credits().await, 95);
    let (submit, _) = next_message(&app, &id, "submit").await;

    let reply = app.cancel_job(&id).await;
    // moto's interpreter notices a stop only when the waiting task wakes up; on
    // AWS this call is refused because the execution has already stopped.
    let _ = app.stack().clients.sfn.send_task_success().task_token(submit["task_token"].as_str().unwrap()).output("{}").send().await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "canceled");
    assert_eq!(reply.body["status_label"], "Canceled");
    assert_eq!(app.job(&id).await.status, JobStatus::Canceled);
    assert_eq!(app.credits().await, 100);
    assert_eq!(app.active_jobs().await, 0);
    assert_eq!(app.settled_execution_status(&id).await.as_deref(), Some("ABORTED"));
}

#[tokio::test]
async fn canceling_a_terminal_job_is_409_and_refunds_nothing_more() {
    let app = TestApp::new(100).await;
    let id = app.new_job(5).await;
    app.cancel_job(&id).await;

    let again = app.cancel_job(&id).await;

    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "wrong_state");
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn a_completed_job_cannot_be_canceled() {
    let app = TestApp::new(100).await;
    let id = app.new_job(2).await;
    let mut job = app.job(&id).await;
    job.status = JobStatus::Completed;
    app.put_job(&job).await;

    let reply = app.cancel_job(&id).await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(app.job(&id).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn an_admin_may_cancel_someone_elses_job() {
    let app = TestApp::new(100).await;
    let id = app.new_job(4).await;
    let (_, admin) = app.another_user(0, Role::Admin).await;

    let reply = app.as_key(&admin).cancel_job(&id).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn the_account_shows_the_balance_before_and_after_a_cancel() {
    let app = TestApp::new(50).await;
    let id = app.new_job(5).await;
    let during = app.account().await;

    app.cancel_job(&id).await;
    let after = app.account().await;

    assert_eq!(during.status, StatusCode::OK);
    assert_eq!((during.body["credits"].as_i64(), during.body["active_jobs"].as_u64()), (Some(45), Some(1)));
    assert_eq!((after.body["credits"].as_i64(), after.body["active_jobs"].as_u64()), (Some(50), Some(0)));
    assert_eq!(after.body["user_id"], app.user.as_str());
    assert_eq!(after.body["role"], "user");
}
