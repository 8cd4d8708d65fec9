//! Duplicate and concurrent requests are normal: each effect happens once.

use crate::harness::{all_at_once, TestApp};
use lambda_http::http::StatusCode;
use std::collections::HashSet;

#[tokio::test]
async fn twenty_concurrent_creates_with_one_key_make_one_job_and_one_debit() {
    let app = TestApp::new(100).await;
    let body = r#"{"prompt":"only one of me","duration_seconds":3}"#;
    let app = &app;

    let replies = all_at_once(20, |_| async move { app.idempotent("burst-1").generate(body).await }).await;

    let job_ids: HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
            r.body["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(job_ids.len(), 1);
    let replayed = replies.iter().filter(|r| r.headers.contains_key("idempotent-replayed")).count();
    assert_eq!(replayed, 19);
    assert_eq!(app.job_count().await, 1);
    assert_eq!(app.credits().await, 97);
    assert_eq!(app.active_jobs().await, 1);
}

#[tokio::test]
async fn twenty_concurrent_cancels_of_one_job_refund_once() {
    let app = TestApp::new(100).await;
    let id = app.new_job(6).await;

    let replies = all_at_once(20, |_| app.cancel_job(&id)).await;

    let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    let conflict = replies.iter().filter(|r| r.status == StatusCode::CONFLICT).count();
    assert_eq!((ok, conflict), (1, 19), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(app.credits().await, 100);
    assert_eq!(app.active_jobs().await, 0);
    let events = app.job_events(&id).await;
    assert_eq!(events.body["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_creates_without_keys_never_overdraw_the_balance() {
    let app = TestApp::new(10).await;
    let body = r#"{"prompt":"race for credits","duration_seconds":3}"#;

    let replies = all_at_once(10, |_| app.generate(body)).await;

    let accepted = replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).count();
    let refused = replies.iter().filter(|r| r.status == StatusCode::PAYMENT_REQUIRED).count();
    assert_eq!(accepted, 3);
    assert_eq!(refused, 7);
    assert_eq!(app.credits().await, 1);
    assert_eq!(app.job_count().await, 3);
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_active_job_cap() {
    let mut settings = crate::harness::settings();
    settings.max_active_jobs = 4;
    let app = TestApp::builder().credits(1_000).settings(settings).build().await;

    let replies = all_at_once(12, |_| app.generate(r#"{"prompt":"capped","duration_seconds":1}"#)).await;

    let accepted = replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).count();
    let capped = replies.iter().filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((accepted, capped), (4, 8));
    assert_eq!(app.active_jobs().await, 4);
    assert_eq!(app.credits().await, 996);
}
