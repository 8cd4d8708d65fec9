#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! What only the in-memory world has: the clock, injected faults, index
//! lag, explicit redelivery and dead letters, task tokens answered once,
//! the TTL sweep, and the scripted provider.

use std::collections::HashMap;
use std::time::Duration;
use videojobs_core::model::ids::{IdempotencyKey, JobId};
use videojobs_core::model::listing::JobFilter;
use videojobs_core::model::provider::{Callback, CallbackError, ProviderError, ProviderStatus, SubmitRequest};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::Provider;
use videojobs_core::ports::ReviewQueue;
use videojobs_core::ports::*;
use videojobs_core::{JobStatus, StoreError};
use videojobs_testkit::contract::{at, change, fresh_user, new_job};
use videojobs_testkit::provider::SIGNATURE_HEADER;
use videojobs_testkit::{Memory, Moment, QueueName, ScriptedProvider, TaskAnswer, WebResource};

async fn world_with_job() -> (Memory, videojobs_core::model::job::Job) {
    let memory = Memory::default();
    let user = fresh_user();
    memory.open_account(&user, 10).await.unwrap();
    let new = new_job(&user, 1, at(0));
    assert_eq!(memory.create(&new).await.unwrap(), CreateOutcome::Created);
    (memory, new.job)
}

#[tokio::test]
async fn a_fault_before_a_call_leaves_nothing_written() {
    let (memory, job) = world_with_job().await;
    memory.faults().fail_nth("JobWrites::change_status", 1, Moment::Before);
    let submit = change(&job, JobStatus::Submitted, at(1), JobUpdate::default());

    let failed = memory.change_status(&submit).await;
    let retried = memory.change_status(&submit).await;

    assert!(matches!(failed, Err(StoreError::Unavailable(_))), "{failed:?}");
    assert_eq!(retried, Ok(ChangeOutcome::Applied), "only the first call fails");
    assert_eq!(memory.events(&job.job_id).await.unwrap().len(), 2);
    assert_eq!(memory.faults().count("JobWrites::change_status"), 2);
}

#[tokio::test]
async fn a_fault_after_a_write_loses_the_answer_but_not_the_write() {
    let (memory, job) = world_with_job().await;
    memory.faults().fail_nth("JobWrites::change_status", 1, Moment::AfterWrite);
    let submit = change(&job, JobStatus::Submitted, at(1), JobUpdate::default());

    let lost = memory.change_status(&submit).await;
    let retried = memory.change_status(&submit).await;

    assert!(lost.is_err());
    assert_eq!(retried, Ok(ChangeOutcome::StatusWas(JobStatus::Submitted)), "the retry finds its own write");
}

#[tokio::test]
async fn a_predicate_picks_which_calls_fail_until_cleared() {
    let memory = Memory::default();
    let queue = memory.queue(QueueName::Work);
    memory.faults().fail_when(Moment::Before, |call| call.op.starts_with("WorkQueue::") && call.n % 2 == 0);
    let message = WorkMessage::Finalize { job_id: JobId::generate() };

    let outcomes: Vec<bool> = futures_outcomes(&queue, &message, 4).await;
    memory.faults().clear();

    assert_eq!(outcomes, [true, false, true, false]);
    assert!(queue.enqueue(&message).await.is_ok());
    assert_eq!(memory.messages(QueueName::Work).len(), 3);
}

async fn futures_outcomes(queue: &impl WorkQueue, message: &WorkMessage, n: usize) -> Vec<bool> {
    let mut outcomes = Vec::new();
    for _ in 0..n {
        outcomes.push(queue.enqueue(message).await.is_ok());
    }
    outcomes
}

#[tokio::test]
async fn the_indexes_lag_the_table_by_the_lag_set() {
    let memory = Memory::default();
    memory.set_index_lag(Duration::from_secs(5));
    let user = fresh_user();
    memory.open_account(&user, 10).await.unwrap();
    let new = new_job(&user, 1, at(0));
    memory.create(&new).await.unwrap();

    let listed_at_once = memory.jobs_of(&user, &JobFilter::default(), &PageRequest { limit: 10, cursor: None }).await.unwrap().items.len();
    let read_at_once = memory.job(&new.job.job_id).await.unwrap();
    memory.clock().advance(Duration::from_secs(5));
    let listed_later = memory.jobs_of(&user, &JobFilter::default(), &PageRequest { limit: 10, cursor: None }).await.unwrap().items.len();

    assert_eq!(listed_at_once, 0, "the index has not caught up");
    assert!(read_at_once.is_some(), "a read of the item is strongly consistent");
    assert_eq!(listed_later, 1);
}

#[tokio::test]
async fn a_lagging_review_queue_still_shows_a_job_that_was_just_reviewed() {
    let (memory, job) = world_with_job().await;
    let mut job = job;
    for (i, to) in [JobStatus::Submitted, JobStatus::Processing, JobStatus::Completed].into_iter().enumerate() {
        let update = JobUpdate { completed_at: Some(at(10)), ..JobUpdate::default() };
        memory.change_status(&change(&job, to, at(i as i64 + 1), update)).await.unwrap();
        job = memory.job(&job.job_id).await.unwrap().unwrap();
    }
    memory.set_index_lag(Duration::from_secs(2));
    memory.change_status(&change(&job, JobStatus::Approved, at(20), JobUpdate::default())).await.unwrap();
    let page = PageRequest { limit: 10, cursor: None };

    let stale = memory.waiting(&page).await.unwrap().items;
    memory.propagate_indexes();
    let fresh = memory.waiting(&page).await.unwrap().items;

    assert_eq!(stale.iter().map(|j| (j.job_id.clone(), j.status)).collect::<Vec<_>>(), vec![(job.job_id, JobStatus::Completed)]);
    assert_eq!(fresh, vec![]);
}

#[tokio::test]
async fn a_message_received_too_often_goes_to_its_dead_letter_queue() {
    let memory = Memory::default();
    memory.queue(QueueName::Work).enqueue(&WorkMessage::Finalize { job_id: JobId::generate() }).await.unwrap();
    for n in 1..=5 {
        let received = memory.receive(QueueName::Work, 10, Duration::from_secs(90));
        assert_eq!(received.iter().map(|r| r.receive_count).collect::<Vec<_>>(), vec![n]);
        memory.clock().advance(Duration::from_secs(90));
    }

    let sixth = memory.receive(QueueName::Work, 10, Duration::from_secs(90));
    let dead = memory.receive(QueueName::WorkDeadLetters, 10, Duration::from_secs(90));

    assert_eq!(sixth, vec![]);
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn only_the_latest_receipt_handle_deletes_and_visibility_can_be_changed() {
    let memory = Memory::default();
    memory.queue(QueueName::Notify).enqueue(&WorkMessage::Finalize { job_id: JobId::generate() }).await.unwrap();
    let first = memory.receive(QueueName::Notify, 1, Duration::from_secs(60)).remove(0);
    assert!(memory.change_visibility(QueueName::Notify, &first.receipt_handle, Duration::ZERO));
    let second = memory.receive(QueueName::Notify, 1, Duration::from_secs(60)).remove(0);

    assert!(!memory.delete(QueueName::Notify, &first.receipt_handle), "an older handle deletes nothing");
    assert_eq!(memory.messages(QueueName::Notify).len(), 1);
    assert!(memory.delete(QueueName::Notify, &second.receipt_handle));
    assert_eq!(memory.messages(QueueName::Notify), vec![]);
}

#[tokio::test]
async fn a_delay_is_cut_to_fifteen_minutes_and_the_next_visible_time_is_known() {
    let memory = Memory::default();
    let start = memory.clock().now();
    let message = WorkMessage::Finalize { job_id: JobId::generate() };
    memory.queue(QueueName::Work).enqueue_after(&message, Duration::from_secs(3_600)).await.unwrap();

    assert_eq!(memory.next_visible_at(QueueName::Work), Some(start + Duration::from_secs(900)));
    memory.clock().advance(Duration::from_secs(899));
    assert_eq!(memory.receive(QueueName::Work, 10, Duration::from_secs(30)), vec![]);
    memory.clock().advance(Duration::from_secs(1));
    assert_eq!(memory.receive(QueueName::Work, 10, Duration::from_secs(30)).len(), 1);
}

#[tokio::test]
async fn a_dead_letter_keeps_its_reason() {
    let memory = Memory::default();
    videojobs_core::ports::DeadLetters::dead_letter(&memory, "", "unreadable", videojobs_core::ports::MessageQueue::Notifications)
        .await
        .unwrap();
    let dead = memory.receive(QueueName::NotifyDeadLetters, 10, Duration::from_secs(1));
    assert_eq!(dead.iter().map(|d| (d.body.as_str(), d.reason.as_deref())).collect::<Vec<_>>(), vec![("(empty)", Some("unreadable"))]);
}

#[tokio::test]
async fn a_task_token_takes_its_first_answer_and_ignores_the_rest() {
    let memory = Memory::default();
    let job = JobId::generate();
    let input = WorkflowInput { job_id: job.clone(), workflow_type: "text_to_video".into(), deadline_seconds: 60, retention_seconds: 60 };
    memory.start(&input).await.unwrap();
    memory.start(&input).await.unwrap();
    let token = memory.issue_task_token(&job);

    memory.succeed(&token, &serde_json::json!({"ok": true})).await.unwrap();
    memory.fail(&token, "Late", "a redelivered message").await.unwrap();
    let stopped_token = memory.issue_task_token(&job);
    memory.stop(&job, "canceled").await.unwrap();
    memory.succeed(&stopped_token, &serde_json::json!({})).await.unwrap();

    let (answer, ignored) = memory.task_answers(&token);
    assert_eq!(answer, Some(TaskAnswer::Success(serde_json::json!({"ok": true}))));
    assert_eq!(ignored, vec![TaskAnswer::Failure { error: "Late".into(), cause: "a redelivered message".into() }]);
    assert_eq!(memory.task_answers(&stopped_token).0, None, "the execution had ended");
    let execution = memory.execution(&job).unwrap();
    assert_eq!((execution.starts, execution.stop_cause.as_deref()), (2, Some("canceled")));
}

#[tokio::test]
async fn expired_items_go_only_when_the_sweep_runs() {
    let memory = Memory::default();
    let user = fresh_user();
    memory.open_account(&user, 10).await.unwrap();
    let key: IdempotencyKey = "k".parse().unwrap();
    let mut new = new_job(&user, 1, at(0));
    new.idempotency = Some(IdempotencyRecord {
        user_id: user.clone(),
        key: key.clone(),
        fingerprint: "f".into(),
        job_id: new.job.job_id.clone(),
        response_status: 202,
        response_body: "{}".into(),
        created_at: at(0),
    });
    memory.create(&new).await.unwrap();

    memory.clock().advance(Duration::from_secs(2 * 24 * 3600));
    let before_sweep = memory.idempotency_record(&user, &key).await.unwrap();
    memory.sweep_expired();
    let after_sweep = memory.idempotency_record(&user, &key).await.unwrap();

    assert!(before_sweep.is_some(), "DynamoDB deletes expired items some time later, not at once");
    assert_eq!(after_sweep, None);
    assert!(memory.job(&new.job.job_id).await.unwrap().is_some(), "jobs have no TTL");
}

#[tokio::test]
async fn the_output_copy_tells_an_unavailable_source_from_an_unusable_one() {
    let memory = Memory::default();
    memory.serve("https://p/busy", WebResource::Status(503));
    memory.serve("https://p/gone", WebResource::Status(404));
    memory.serve("https://p/lying", WebResource::Body { bytes: b"abc".to_vec(), sha256: Some("00".into()) });

    let outcomes = [
        memory.copy_from_url("https://p/busy", "k", "video/mp4").await,
        memory.copy_from_url("https://p/nowhere", "k", "video/mp4").await,
        memory.copy_from_url("https://p/gone", "k", "video/mp4").await,
        memory.copy_from_url("https://p/lying", "k", "video/mp4").await,
    ];
    memory.faults().fail_always("OutputStore::copy_from_url", Moment::Before);
    let faulted = memory.copy_from_url("https://p/lying", "k", "video/mp4").await;

    assert!(matches!(outcomes[0], Err(CopyError::SourceUnavailable(_))));
    assert!(matches!(outcomes[1], Err(CopyError::SourceUnavailable(_))));
    assert!(matches!(outcomes[2], Err(CopyError::SourceUnusable(_))));
    assert!(matches!(outcomes[3], Err(CopyError::SourceUnusable(_))));
    assert!(matches!(faulted, Err(CopyError::Store(StoreError::Unavailable(_)))));
    assert_eq!(memory.object_keys(), Vec::<String>::new(), "nothing stored");
}

fn submit_request(key: &str) -> SubmitRequest {
    SubmitRequest {
        idempotency_key: key.into(),
        params: new_job(&fresh_user(), 1, at(0)).job.params,
        prompt: Some("a cat".into()),
        image_url: None,
        callback_url: "https://api.example/callbacks/scripted".into(),
        faults: None,
        seed: None,
    }
}

#[tokio::test]
async fn the_scripted_provider_answers_as_scripted_and_finds_a_repeated_submission() {
    let provider = ScriptedProvider::new("scripted".parse().unwrap());
    provider.answer_next_submit(Err(ProviderError::Refused { code: "content_policy".into(), message: "no".into() }));

    let refused = provider.submit(&submit_request("a")).await;
    let accepted = provider.submit(&submit_request("b")).await.unwrap();
    let repeated = provider.submit(&submit_request("b")).await.unwrap();
    provider.set_status(&accepted, Ok(ProviderStatus::Processing { percent: Some(40) }));

    assert!(matches!(refused, Err(ProviderError::Refused { .. })));
    assert_eq!((accepted.as_str(), repeated.as_str()), ("req-1", "req-1"));
    assert_eq!(provider.poll(&accepted).await, Ok(ProviderStatus::Processing { percent: Some(40) }));
    assert!(matches!(provider.poll("req-unknown").await, Err(ProviderError::NotFound(_))));
    provider.cancel(&accepted).await.unwrap();
    assert_eq!(provider.poll(&accepted).await, Ok(ProviderStatus::Canceled));
    assert_eq!(provider.calls().len(), 7);
}

#[tokio::test]
async fn a_scripted_callback_verifies_only_with_its_signature() {
    let provider = ScriptedProvider::new("scripted".parse().unwrap());
    let status = ProviderStatus::Queued { position: Some(2) };
    let body = ScriptedProvider::callback_body("evt-1", "req-1", &status);
    let signed = HashMap::from([(SIGNATURE_HEADER.to_owned(), "valid".to_owned())]);
    let unsigned = HashMap::new();

    let event = provider.verify_callback(&Callback { headers: &signed, body: &body, now: 0 }).await.unwrap();
    let refused = provider.verify_callback(&Callback { headers: &unsigned, body: &body, now: 0 }).await;

    assert_eq!((event.event_id.as_str(), event.request_id.as_str(), event.status), ("evt-1", "req-1", status));
    assert!(matches!(refused, Err(CallbackError::BadSignature(_))));
}

#[tokio::test]
async fn on_a_simulated_thread_the_cores_clock_follows_the_virtual_one() {
    let clock = videojobs_testkit::VirtualClock::default();
    let _simulated = videojobs_core::model::determinism::simulate(clock.now(), 7);

    clock.advance(Duration::from_secs(90));

    assert_eq!(videojobs_core::model::determinism::now(), clock.now());
    assert_eq!(videojobs_core::model::job::timestamp::now(), clock.now(), "what the services stamp");
}

#[tokio::test]
async fn a_host_resolves_to_what_the_test_says_or_fails() {
    use videojobs_core::ports::HostResolver;
    let memory = Memory::default();
    let address: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    memory.resolve_to("hooks.example", vec![address]);

    assert_eq!(memory.resolve("HOOKS.example", 443).await, Ok(vec![address]));
    assert!(memory.resolve("nowhere.example", 443).await.is_err());
    memory.faults().fail_always("HostResolver::resolve", Moment::Before);
    assert!(memory.resolve("hooks.example", 443).await.is_err());
}

#[tokio::test]
async fn the_apis_services_run_on_the_memory_world_alone() {
    use videojobs_core::model::ids::{Principal, Role};
    use videojobs_core::model::request::GenerateRequest;
    use videojobs_core::services::{Idempotency, JobSpec};
    let memory = Memory::default();
    let settings = videojobs_core::model::settings::Settings::from_lookup(|_| None).unwrap();
    let services = memory.services(settings.clone());
    let who = Principal { user_id: fresh_user(), role: Role::User };
    memory.open_account(&who.user_id, 100).await.unwrap();
    let request = || JobSpec::Generate(GenerateRequest::parse(br#"{"prompt": "a cat", "duration_seconds": 4}"#, &settings.limits).unwrap());
    let idempotency = Idempotency { key: "once".parse().unwrap(), fingerprint: "f".into(), legacy_fingerprint: None };

    let first = services.create_job(&who, request(), Some(idempotency.clone())).await.unwrap();
    let replayed = services.create_job(&who, request(), Some(idempotency)).await.unwrap();
    let job_id = first.job_id.clone();
    services.cancel(&who, job_id.as_str()).await.unwrap();

    assert_eq!((replayed.body, replayed.replayed), (first.body, true), "the first answer again");
    assert_eq!(memory.account(&who.user_id).await.unwrap().unwrap().credits, 100, "debited once, refunded once");
    let execution = memory.execution(&job_id).unwrap();
    // A replay starts the execution again (in case the first request died before it did): one execution, started twice.
    assert_eq!((execution.starts, execution.status), (2, videojobs_testkit::ExecutionStatus::Aborted));
}

#[tokio::test]
async fn a_simulator_can_redeliver_or_duplicate_a_message_at_will() {
    let memory = Memory::default();
    memory.queue(QueueName::Work).enqueue(&WorkMessage::Finalize { job_id: JobId::generate() }).await.unwrap();
    let first = memory.receive(QueueName::Work, 10, Duration::from_secs(90)).remove(0);

    assert!(memory.duplicate(QueueName::Work, &first.message_id));
    let copy = memory.receive(QueueName::Work, 10, Duration::from_secs(90));
    assert!(memory.redeliver(QueueName::Work, &first.message_id));
    let again = memory.receive(QueueName::Work, 10, Duration::from_secs(90));

    assert_eq!(copy.iter().map(|r| (r.body.clone(), r.receive_count)).collect::<Vec<_>>(), vec![(first.body.clone(), 1)]);
    assert_eq!(again.iter().map(|r| (r.message_id.clone(), r.receive_count)).collect::<Vec<_>>(), vec![(first.message_id.clone(), 2)]);
    assert!(!memory.delete(QueueName::Work, &first.receipt_handle), "received again since: the old handle is stale");
}
