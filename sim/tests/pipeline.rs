#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! The simulator's fixes that can be replayed one call after another, on
//! core's own rules (`services::pipeline`) over the in-memory adapters. (The
//! others need two handlers interleaved between their port calls: the seeds
//! in `seeds.rs` replay them on the simulator's handlers.)

use std::sync::Arc;
use videojobs_core::model::job::Job;
use videojobs_core::model::settings::Settings;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::*;
use videojobs_core::services::pipeline::{handle, Pipeline, WorkError};
use videojobs_core::JobStatus;
use videojobs_testkit::contract::{at, change, fresh_user, new_job};
use videojobs_testkit::provider::ProviderCall;
use videojobs_testkit::{Memory, ScriptedProvider};

async fn world() -> (Memory, Arc<ScriptedProvider>, Pipeline, Job) {
    let memory = Memory::default();
    let user = fresh_user();
    memory.open_account(&user, 10).await.unwrap();
    let new = new_job(&user, 1, at(0));
    assert_eq!(memory.create(&new).await.unwrap(), CreateOutcome::Created);
    let provider = Arc::new(ScriptedProvider::new(new.job.provider.clone()));
    let settings = Settings::from_lookup(|_| None).unwrap();
    let pipeline = memory.pipeline(settings, Providers::default().with(provider.clone()), "https://api.example");
    (memory, provider, pipeline, new.job)
}

/// Moves the job as a claim of attempt 1 does, then to `to` when given.
async fn submitted_in_attempt_1(memory: &Memory, job: &mut Job, then: Option<JobStatus>) {
    let claim = JobUpdate { submit_attempt: Some(1), only_in_attempt: Some(0), ..JobUpdate::default() };
    assert_eq!(memory.change_status(&change(job, JobStatus::Submitted, at(1), claim)).await.unwrap(), ChangeOutcome::Applied);
    job.status = JobStatus::Submitted;
    if let Some(to) = then {
        assert_eq!(memory.change_status(&change(job, to, at(2), JobUpdate::default())).await.unwrap(), ChangeOutcome::Applied);
        job.status = to;
    }
}

#[tokio::test]
async fn a_finalize_that_finds_no_request_id_yet_comes_back_instead_of_dead_lettering() {
    let (memory, _provider, pipeline, mut job) = world().await;
    submitted_in_attempt_1(&memory, &mut job, None).await;

    let outcome = handle(&pipeline, WorkMessage::Finalize { job_id: job.job_id.clone() }).await;

    assert!(matches!(&outcome, Err(WorkError::NotYet(_))), "{outcome:?}");
    assert!(outcome.unwrap_err().is_retryable());
}

#[tokio::test]
async fn an_attempt_a_progress_callback_moved_to_processing_resumes_and_stores_its_request_id() {
    let (memory, provider, pipeline, mut job) = world().await;
    // The first copy's provider call went through; a progress callback then
    // moved the job before the copy stored the request id, and it died.
    submitted_in_attempt_1(&memory, &mut job, Some(JobStatus::Processing)).await;

    let message = WorkMessage::Submit { job_id: job.job_id.clone(), task_token: None, attempt: Some(1) };
    handle(&pipeline, message).await.unwrap();

    let stored = memory.job(&job.job_id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.provider_request_id.as_deref()), (JobStatus::Processing, Some("req-1")));
    assert!(!provider.calls().iter().any(|call| matches!(call, ProviderCall::Cancel(_))), "{:?}", provider.calls().len());
}
