#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! The simulator's four fixes, each replayed on core's own rules
//! (`services::pipeline`) over the in-memory adapters: two one call after
//! another, two with handlers interleaved between their port calls (the
//! simulator's gate, `videojobs_sim::gated`). Each fails with its fix undone.

use std::sync::Arc;
use videojobs_core::model::job::Job;
use videojobs_core::model::settings::Settings;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::*;
use videojobs_core::services::pipeline::{handle, Pipeline, WorkError};
use videojobs_core::JobStatus;
use videojobs_sim::gated::{Handler, Stepped, Stepper};
use videojobs_sim::small_mp4;
use videojobs_testkit::contract::{at, change, fresh_user, new_job};
use videojobs_testkit::provider::ProviderCall;
use videojobs_testkit::{Memory, ScriptedProvider, WebResource};

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

/// Core's handling of `message`, to be stepped one port call at a time.
fn handler(pipeline: &Arc<Pipeline>, message: WorkMessage) -> Handler<Result<(), WorkError>> {
    let pipeline = pipeline.clone();
    Box::pin(async move { handle(&pipeline, message).await })
}

fn gated(memory: &Memory) -> Stepper {
    let stepper = Stepper::default();
    memory.set_gate(Arc::new(stepper.clone()));
    stepper
}

/// Found by seed 2747 of the first simulator.
#[tokio::test]
async fn a_submit_copy_that_loses_the_claim_to_a_copy_still_midway_comes_back() {
    let (memory, _provider, pipeline, mut job) = world().await;
    let stepper = gated(&memory);
    let pipeline = Arc::new(pipeline);
    let mut late = handler(&pipeline, WorkMessage::Submit { job_id: job.job_id.clone(), task_token: None, attempt: Some(1) });
    // The late copy read the job queued and is about to claim attempt 1…
    stepper.run_until_before(1, &mut late, "JobWrites::change_status", 1);
    // …when the other copy claims it, and dies before it stores the request id.
    submitted_in_attempt_1(&memory, &mut job, None).await;

    let outcome = stepper.run_to_end(1, &mut late);

    // Succeeding would delete the message the dead copy's attempt needs.
    assert!(matches!(outcome, Stepped::Done(Err(WorkError::NotYet(_)))), "{outcome:?}");
}

/// `job` in `processing` with its request `req-1` stored, and the provider
/// saying that request succeeded, its video served.
async fn processing_with_a_finished_request(memory: &Memory, provider: &ScriptedProvider, job: &mut Job) {
    submitted_in_attempt_1(memory, job, Some(JobStatus::Processing)).await;
    let stored =
        JobUpdate { provider_request: Some((job.provider.to_string(), "req-1".into())), only_in_attempt: Some(1), ..JobUpdate::default() };
    assert!(memory.update_in_status(&job.job_id, JobStatus::Processing, &stored).await.unwrap());
    let url = "https://provider.example/req-1.mp4";
    memory.serve(url, WebResource::Body { bytes: small_mp4(), sha256: None });
    let output = videojobs_core::model::provider::ProviderOutput { video_url: url.into(), thumbnail_url: None };
    provider.set_status("req-1", Ok(videojobs_core::model::provider::ProviderStatus::Succeeded(output)));
}

/// Found by seed 274252 of a million-seed run.
#[tokio::test]
async fn a_second_completer_leaves_the_approved_jobs_video_alone() {
    let (memory, provider, pipeline, mut job) = world().await;
    processing_with_a_finished_request(&memory, &provider, &mut job).await;
    let stepper = gated(&memory);
    let pipeline = Arc::new(pipeline);
    let finalize = WorkMessage::Finalize { job_id: job.job_id.clone() };
    let (mut first, mut second) = (handler(&pipeline, finalize.clone()), handler(&pipeline, finalize));
    // The second copy has copied the video to its fixed key, and is about to complete the job…
    stepper.run_until_before(2, &mut second, "JobWrites::change_status", 1);
    assert!(stepper.calls(2).contains(&"OutputStore::copy_from_url"), "{:?}", stepper.calls(2));
    // …when the first copy completes it, and a reviewer approves it (the approval keeps the video first).
    assert!(matches!(stepper.run_to_end(1, &mut first), Stepped::Done(Ok(()))));
    let completed = memory.job(&job.job_id).await.unwrap().unwrap();
    let key = completed.output.as_ref().map(|o| o.object_keys()[0].clone()).expect("the completed job's video");
    KeepOutputs::keep(&memory, std::slice::from_ref(&key)).await.unwrap();
    let approve = change(&completed, JobStatus::Approved, at(9), JobUpdate::default());
    assert_eq!(memory.change_status(&approve).await.unwrap(), ChangeOutcome::Applied);

    let outcome = stepper.run_to_end(2, &mut second);

    assert!(matches!(outcome, Stepped::Done(Ok(()))), "{outcome:?}");
    let video = memory.object(&key).expect("the approved job's video is still in the bucket");
    assert!(!video.unreviewed(), "kept: untagged, {:?}", video.tags);
}

/// Found by seed 1495069 of a million-seed run on core's code.
#[tokio::test]
async fn a_finalize_that_died_after_its_copy_keeps_the_approved_video_when_it_comes_back() {
    let (memory, provider, pipeline, mut job) = world().await;
    processing_with_a_finished_request(&memory, &provider, &mut job).await;
    let stepper = gated(&memory);
    let pipeline = Arc::new(pipeline);
    let finalize = WorkMessage::Finalize { job_id: job.job_id.clone() };
    let (mut first, mut second) = (handler(&pipeline, finalize.clone()), handler(&pipeline, finalize.clone()));
    // The second copy read the job processing and is about to copy the video…
    stepper.run_until_before(2, &mut second, "OutputStore::copy_from_url", 1);
    // …when the first completes the job and a reviewer approves it (keeping the video first)…
    assert!(matches!(stepper.run_to_end(1, &mut first), Stepped::Done(Ok(()))));
    let completed = memory.job(&job.job_id).await.unwrap().unwrap();
    let key = completed.output.as_ref().map(|o| o.object_keys()[0].clone()).expect("the completed job's video");
    KeepOutputs::keep(&memory, std::slice::from_ref(&key)).await.unwrap();
    let approve = change(&completed, JobStatus::Approved, at(9), JobUpdate::default());
    assert_eq!(memory.change_status(&approve).await.unwrap(), ChangeOutcome::Applied);
    // …then the second copies it over the approved one (tagged unreviewed) and dies.
    stepper.crash_after(2, 1);
    assert!(matches!(stepper.run_to_end(2, &mut second), Stepped::Crashed));
    let retagged = memory.object(&key).expect("the video");
    assert!(retagged.unreviewed(), "{:?}", retagged.tags);

    // Its message comes back.
    handle(&pipeline, finalize).await.unwrap();

    let video = memory.object(&key).expect("the approved job's video is still in the bucket");
    assert!(!video.unreviewed(), "kept: untagged, {:?}", video.tags);
}
