//! A client's deadline (`cancel_after_seconds`, `Cancel-After`): the job's
//! execution, not the client's polling, gives up a job not completed by
//! then; the provider is told to cancel, and every credit comes back.

use crate::harness::TestApp;
use serde_json::json;
use videojobs_core::model::request::faults::MAX_DELAY_MS;
use videojobs_core::JobStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_clients_deadline_is_canceled_at_the_provider_expired_and_refunded() {
    // Arrange: the provider waits far longer than the deadline before it renders.
    let app = TestApp::builder().with_local_provider().build().await;
    let body = json!({"prompt": "A lighthouse in a storm", "duration_seconds": 2, "resolution": "480p",
                      "cancel_after_seconds": 5, "metadata": {"local_faults": {"delay_ms": MAX_DELAY_MS}}});

    // Act
    let id = app.new_job_with(&body).await;
    let job = app.wait_for(&id, 180, |s| !s.is_in_flight()).await;

    // Assert: the deadline, not the deployment's 900 s, ended the Submit step
    // (without it the provider's video, 120 s later, would have answered it).
    let states = app.states_entered(&id).await;
    assert_eq!(states.get(..2), Some(&["Submit".to_owned(), "AskProvider".to_owned()][..]), "{states:?}");
    if job.status == JobStatus::Completed {
        // Only on an emulator so loaded that the deadline's steps took longer
        // than the provider's 120 s: its video was there when asked, and is kept.
        assert!(job.output.is_some());
        return;
    }
    // ...and gave the job up: the documented code, every credit back, canceled at the provider.
    assert_eq!(job.status, JobStatus::Expired, "{:?}", job.error);
    let status = app.job_status(&id).await;
    assert_eq!(status.body["error"]["code"], "deadline_exceeded");
    assert_eq!(status.body["error"]["retryable"], true);
    assert_eq!(status.body["cost"], json!({"credits": 2, "refunded": 2, "charged": 0}));
    assert_eq!(app.credits().await, 1_000);
    if let Some(request_id) = &job.provider_request_id {
        let stats = app.provider_stats().await;
        let prediction = stats["predictions"].as_array().unwrap().iter().find(|p| p["id"] == request_id.as_str()).cloned();
        assert_eq!(prediction.expect("the provider has the request")["status"], "canceled", "{stats}");
    }
    assert!(states.contains(&"GiveUp".to_owned()), "{states:?}");
}
