//! `POST /videos/batch`: every item checked before anything is written, then
//! each created as a create of its own, with its own answer.

use crate::harness::{all_at_once, TestApp};
use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use videojobs_core::model::job::JobParams;

fn refs_and_statuses(reply: &Value) -> Vec<(String, u64)> {
    let items = reply["items"].as_array().expect("items");
    items.iter().map(|i| (i["ref"].as_str().unwrap().to_owned(), i["status"].as_u64().unwrap())).collect()
}

#[tokio::test]
async fn twenty_items_with_shared_defaults_make_twenty_jobs_answered_in_order() {
    // Arrange: room for twenty in flight.
    let mut settings = crate::harness::settings();
    settings.max_active_jobs = 20;
    let app = TestApp::builder().credits(100).settings(settings).build().await;
    let items: Vec<Value> = (0..20).map(|i| json!({"ref": format!("clip-{i}"), "prompt": format!("Scene {i}")})).collect();
    let body = json!({"defaults": {"duration_seconds": 2, "resolution": "480p", "seed": 7}, "items": items});

    // Act
    let reply = app.create_batch(body.to_string()).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answers = refs_and_statuses(&reply.body);
    let expected: Vec<(String, u64)> = (0..20).map(|i| (format!("clip-{i}"), 202)).collect();
    assert_eq!(answers, expected);
    let first = &reply.body["items"][0]["job"];
    let job = app.job(&first["job_id"].as_str().unwrap().parse().unwrap()).await;
    assert!(matches!(job.params, JobParams::TextToVideo { duration_seconds: 2, .. }));
    assert_eq!(job.seed, Some(7));
    assert_eq!(app.stored_prompt(&job.job_id).await.as_deref(), Some("Scene 0"));
    assert_eq!(app.job_count().await, 20);
    assert_eq!(app.credits().await, 100 - 20 * 2);
}

#[tokio::test]
async fn one_bad_item_refuses_the_whole_batch_naming_it_and_nothing_is_written() {
    let app = TestApp::new(100).await;
    let body = json!({"items": [{"ref": "a", "prompt": "A kite"}, {"ref": "b", "prompt": "A boat", "duration_seconds": 99}]});

    let reply = app.create_batch(body.to_string()).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "items[1].duration_seconds");
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn credits_and_the_active_job_cap_are_applied_item_by_item() {
    // Arrange: credits for two 3-second jobs, and a cap of five in flight.
    let app = TestApp::new(7).await;
    let cap = app.services.settings.max_active_jobs as usize;
    let poor: Vec<Value> = (0..3).map(|i| json!({"ref": format!("p{i}"), "prompt": "A kite", "duration_seconds": 3})).collect();
    let (_, rich_key) = app.another_user(1_000, videojobs_core::model::ids::Role::User).await;
    let many: Vec<Value> = (0..cap + 2).map(|i| json!({"ref": format!("m{i}"), "prompt": "A kite", "duration_seconds": 1})).collect();

    // Act
    let poor_reply = app.create_batch(json!({"items": poor}).to_string()).await;
    let rich_reply = app.as_key(&rich_key).create_batch(json!({"items": many}).to_string()).await;

    // Assert
    assert_eq!(refs_and_statuses(&poor_reply.body), [("p0".into(), 202), ("p1".into(), 202), ("p2".into(), 402)]);
    assert_eq!(poor_reply.body["items"][2]["error"]["code"], "insufficient_credits");
    assert_eq!(app.credits().await, 1);
    let statuses: Vec<u64> = refs_and_statuses(&rich_reply.body).into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), cap);
    assert_eq!(&statuses[cap..], [429, 429]);
    assert_eq!(rich_reply.body["items"][cap]["error"]["code"], "too_many_active_jobs");
}

#[tokio::test]
async fn a_batch_sent_again_and_at_once_under_one_key_makes_each_item_once() {
    // Arrange
    let app = TestApp::new(100).await;
    let items: Vec<Value> =
        (0..5).map(|i| json!({"ref": format!("r{i}"), "prompt": format!("Scene {i}"), "duration_seconds": 1})).collect();
    let body = json!({"items": items}).to_string();
    let (app, body) = (&app, body.as_str());

    // Act: ten copies of the batch at once, then one more.
    let replies = all_at_once(10, |_| async move { app.idempotent("batch-1").create_batch(body).await }).await;
    let again = app.idempotent("batch-1").create_batch(body).await;

    // Assert: five jobs, five debits, and every copy names the same five.
    let mut job_ids = HashSet::new();
    for reply in replies.iter().chain([&again]) {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        for item in reply.body["items"].as_array().unwrap() {
            assert_eq!(item["status"], 202, "{item}");
            job_ids.insert(item["job"]["job_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(job_ids.len(), 5);
    assert_eq!(app.job_count().await, 5);
    assert_eq!(app.credits().await, 95);
    assert!(again.body["items"].as_array().unwrap().iter().all(|i| i["replayed"] == true));
}

#[tokio::test]
async fn a_batch_refuses_a_cancel_after_header_and_too_many_or_no_items() {
    let app = TestApp::new(100).await;
    let many: Vec<Value> = (0..21).map(|i| json!({"ref": format!("r{i}"), "prompt": "A"})).collect();

    let header = app.as_key(&app.key).with_header("cancel-after", "60").create_batch(r#"{"items":[{"ref":"a","prompt":"A"}]}"#).await;
    let too_many = app.create_batch(json!({"items": many}).to_string()).await;
    let none = app.create_batch(r#"{"items":[]}"#).await;
    let anonymous = app.anonymous().create_batch(r#"{"items":[]}"#).await;

    assert_eq!((header.status, header.body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Cancel-After")));
    assert_eq!((too_many.status, too_many.body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("items")));
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "the key is checked before the body");
    assert_eq!(app.job_count().await, 0);
}
