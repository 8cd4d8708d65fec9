//! The one place that triggers client notifications: a job store that,
//! before a status change is written, queues a `notify` message when the
//! client asked to be told of the new status.

use crate::model::error::StoreError;
use crate::model::ids::JobId;
use crate::model::job::{timestamp, JobEvent};
use crate::model::lifecycle::JobStatus;
use crate::model::notification::{is_notified, AFTER_THE_CHANGE};
use crate::model::work::WorkMessage;
use crate::ports::*;
use crate::services::retry::{retry, Backoff, Failed};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Wraps a job store's [`JobWrites`]; everything passes through, and a status change to
/// `completed` or a terminal status of a job with a `webhook_url` first puts
/// a `notify` message on the queue, delayed [`AFTER_THE_CHANGE`].
///
/// The message goes first so that a writer that dies right after its change
/// cannot lose the notification (the change is in, nothing else remembers
/// to tell the client). The notifier delivers only once the job shows the
/// status, and waits for it a while (`pipeline::delivery`): a message queued
/// for a change that lost its race or was never written sends nothing. If
/// the queue refuses three times, the change is not made: the caller gets
/// the store's `Unavailable` and retries the change as it retries any
/// store error.
#[derive(Clone)]
pub struct NotifyingJobs {
    inner: Arc<dyn JobWrites>,
    queue: Arc<dyn DelayedWorkQueue>,
}

impl NotifyingJobs {
    /// Wraps `inner`, queueing each change's notification on `queue`.
    pub fn new(inner: Arc<dyn JobWrites>, queue: Arc<dyn DelayedWorkQueue>) -> Self {
        Self { inner, queue }
    }

    async fn queue_notification(&self, change: &StatusChange) -> Result<(), StoreError> {
        let message = WorkMessage::Notify {
            job_id: change.job_id.clone(),
            status: change.transition.to,
            attempt: 1,
            not_before: None,
            queued_at: Some(timestamp::now()),
            slot_waits: 0,
        };
        retry(Backoff::linear(3, Duration::from_millis(50)), |_| async {
            self.queue.enqueue_after(&message, AFTER_THE_CHANGE).await.map_err(Failed::Retry)
        })
        .await
        .map_err(|error| {
            tracing::warn!(job_id = %change.job_id, status = %change.transition.to, error = %error,
                "could not queue the client notification; the status change is not made");
            StoreError::Unavailable(format!("the notification queue: {error}"))
        })?;
        tracing::info!(job_id = %change.job_id, status = %change.transition.to, "notification queued ahead of its change");
        Ok(())
    }
}

#[async_trait]
impl JobWrites for NotifyingJobs {
    async fn change_status(&self, change: &StatusChange) -> Result<ChangeOutcome, StoreError> {
        if change.webhook_url.is_some() && is_notified(change.transition.to) {
            self.queue_notification(change).await?;
        }
        self.inner.change_status(change).await
    }

    async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError> {
        self.inner.create(new).await
    }
    async fn update_in_status(&self, id: &JobId, status: JobStatus, update: &JobUpdate) -> Result<bool, StoreError> {
        self.inner.update_in_status(id, status, update).await
    }
    async fn raise_progress(&self, id: &JobId, percent: u8) -> Result<(), StoreError> {
        self.inner.raise_progress(id, percent).await
    }
    async fn record_event(&self, event: &JobEvent) -> Result<(), StoreError> {
        self.inner.record_event(event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::{timestamp, EventSource, Job, JobParams};
    use crate::model::lifecycle::transition;
    use crate::model::request::{AspectRatio, Resolution};
    use std::sync::Mutex;

    /// A store whose status changes land or not as told; it notes how many
    /// messages were on the queue when each change was written.
    struct Changes {
        outcome: ChangeOutcome,
        queue: Arc<Queue>,
        queued_at_write: Mutex<Vec<usize>>,
    }

    fn not_asked<T>() -> Result<T, StoreError> {
        Err(StoreError::Internal("these tests ask the store for status changes only".into()))
    }

    #[async_trait]
    impl JobWrites for Changes {
        async fn change_status(&self, _: &StatusChange) -> Result<ChangeOutcome, StoreError> {
            self.queued_at_write.lock().unwrap().push(self.queue.sent.lock().unwrap().len());
            Ok(self.outcome.clone())
        }
        async fn create(&self, _: &NewJob) -> Result<CreateOutcome, StoreError> {
            not_asked()
        }
        async fn update_in_status(&self, _: &JobId, _: JobStatus, _: &JobUpdate) -> Result<bool, StoreError> {
            not_asked()
        }
        async fn raise_progress(&self, _: &JobId, _: u8) -> Result<(), StoreError> {
            not_asked()
        }
        async fn record_event(&self, _: &JobEvent) -> Result<(), StoreError> {
            not_asked()
        }
    }

    #[derive(Default)]
    struct Queue {
        sent: Mutex<Vec<(WorkMessage, Duration)>>,
        broken: bool,
    }

    #[async_trait]
    impl DelayedWorkQueue for Queue {
        async fn enqueue_after(&self, message: &WorkMessage, delay: Duration) -> Result<(), StoreError> {
            if self.broken {
                return Err(StoreError::Unavailable("queue down".into()));
            }
            self.sent.lock().unwrap().push((message.clone(), delay));
            Ok(())
        }
    }

    fn job(status: JobStatus, webhook: Option<&str>) -> Job {
        let params = JobParams::TextToVideo { duration_seconds: 2, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Hd };
        Job {
            status,
            webhook_url: webhook.map(str::to_owned),
            ..Job::accepted(JobId::generate(), "u1".parse().unwrap(), params, "local".parse().unwrap(), 2, timestamp::now())
        }
    }

    /// Makes one change through a `NotifyingJobs`; answers its outcome and,
    /// for each write the store saw, how many messages were queued by then.
    async fn change(
        outcome: ChangeOutcome,
        from: JobStatus,
        to: JobStatus,
        webhook: Option<&str>,
        queue: Arc<Queue>,
    ) -> (Result<ChangeOutcome, StoreError>, Vec<usize>) {
        let store = Arc::new(Changes { outcome, queue: queue.clone(), queued_at_write: Mutex::default() });
        let jobs = NotifyingJobs::new(store.clone(), queue);
        let job = job(from, webhook);
        let change = StatusChange::new(&job, transition(from, to).unwrap(), EventSource::Worker, "m", None, JobUpdate::default());
        let outcome = jobs.change_status(&change).await;
        let writes = store.queued_at_write.lock().unwrap().clone();
        (outcome, writes)
    }

    #[tokio::test]
    async fn a_change_to_a_notified_status_queues_one_delayed_notify_message_before_it_is_written() {
        let queue = Arc::new(Queue::default());

        let (outcome, writes) =
            change(ChangeOutcome::Applied, JobStatus::Processing, JobStatus::Completed, Some("https://x.test/h"), queue.clone()).await;

        assert_eq!(outcome.unwrap(), ChangeOutcome::Applied);
        assert_eq!(writes, vec![1], "the message was on the queue when the change was written");
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert!(matches!(
            &sent[0].0,
            WorkMessage::Notify { status: JobStatus::Completed, attempt: 1, not_before: None, queued_at: Some(_), .. }
        ));
        assert_eq!(sent[0].1, AFTER_THE_CHANGE);
    }

    #[tokio::test]
    async fn no_message_without_a_webhook_url_or_for_an_in_flight_status() {
        let queue = Arc::new(Queue::default());

        let (_, without_url) = change(ChangeOutcome::Applied, JobStatus::Processing, JobStatus::Completed, None, queue.clone()).await;
        let (_, in_flight) =
            change(ChangeOutcome::Applied, JobStatus::Queued, JobStatus::Submitted, Some("https://x.test/h"), queue.clone()).await;

        assert!(queue.sent.lock().unwrap().is_empty());
        assert_eq!((without_url, in_flight), (vec![0], vec![0]), "both changes were written");
    }

    #[tokio::test]
    async fn a_change_that_loses_its_race_has_queued_its_message_all_the_same() {
        // The notifier finds the job canceled, not completed, and sends nothing (pipeline::delivery's tests).
        let queue = Arc::new(Queue::default());

        let (outcome, _) = change(
            ChangeOutcome::StatusWas(JobStatus::Canceled),
            JobStatus::Processing,
            JobStatus::Completed,
            Some("https://x.test/h"),
            queue.clone(),
        )
        .await;

        assert_eq!(outcome.unwrap(), ChangeOutcome::StatusWas(JobStatus::Canceled));
        assert_eq!(queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_queue_outage_refuses_the_change_before_it_is_written() {
        let queue = Arc::new(Queue { broken: true, ..Queue::default() });

        let (outcome, writes) =
            change(ChangeOutcome::Applied, JobStatus::Queued, JobStatus::Canceled, Some("https://x.test/h"), queue).await;

        assert!(matches!(outcome, Err(StoreError::Unavailable(_))), "{outcome:?}");
        assert!(writes.is_empty(), "the change was not written");
    }
}
