//! The one place that triggers client notifications: a job store that, after
//! a status change lands, queues a `notify` message when the client asked to
//! be told of the new status.

use crate::model::emf::{MetricLine, Unit};
use crate::model::error::StoreError;
use crate::model::ids::{IdempotencyKey, JobId, UserId};
use crate::model::job::{Job, JobEvent};
use crate::model::lifecycle::JobStatus;
use crate::model::notify::is_notified;
use crate::model::work::WorkMessage;
use crate::ports::*;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Wraps a [`JobStore`]; everything passes through, and a status change that
/// was applied to `completed` or a terminal status of a job with a
/// `webhook_url` puts a `notify` message on the queue.
///
/// The message goes after the change has committed, so a failure to queue it
/// cannot undo the change. It is tried three times; if the queue still refuses,
/// the notification is lost: logged as an error with the job id and counted
/// in the `NotificationsNotQueued` metric. The change's own outcome is
/// returned either way (an error would make the caller retry a change that
/// already happened, which would not queue the message again either).
#[derive(Clone)]
pub struct NotifyingJobs {
    inner: Arc<dyn JobStore>,
    queue: Arc<dyn WorkQueue>,
}

impl NotifyingJobs {
    pub fn new(inner: Arc<dyn JobStore>, queue: Arc<dyn WorkQueue>) -> Self {
        Self { inner, queue }
    }

    async fn queue_notification(&self, change: &StatusChange) {
        let message = WorkMessage::Notify { job_id: change.job_id.clone(), status: change.transition.to, attempt: 1, not_before: None };
        let mut last_error = None;
        for attempt in 0..3u64 {
            match self.queue.enqueue(&message).await {
                Ok(()) => {
                    tracing::info!(job_id = %change.job_id, status = %change.transition.to, "notification queued");
                    return;
                }
                Err(err) => last_error = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        let error = last_error.map(|e| e.to_string()).unwrap_or_default();
        tracing::error!(job_id = %change.job_id, status = %change.transition.to, error, metric = "NotificationsNotQueued",
            "could not queue the client notification; it is lost");
        MetricLine::new().metric("NotificationsNotQueued", 1.0, Unit::Count).emit();
    }
}

#[async_trait]
impl JobStore for NotifyingJobs {
    async fn change_status(&self, change: &StatusChange) -> Result<ChangeOutcome, StoreError> {
        let outcome = self.inner.change_status(change).await?;
        if outcome == ChangeOutcome::Applied && change.webhook_url.is_some() && is_notified(change.transition.to) {
            self.queue_notification(change).await;
        }
        Ok(outcome)
    }

    async fn create(&self, new: &NewJob) -> Result<CreateOutcome, StoreError> {
        self.inner.create(new).await
    }
    async fn job(&self, id: &JobId) -> Result<Option<Job>, StoreError> {
        self.inner.job(id).await
    }
    async fn events(&self, id: &JobId) -> Result<Vec<JobEvent>, StoreError> {
        self.inner.events(id).await
    }
    async fn jobs_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<Job>, ListError> {
        self.inner.jobs_of(user, page).await
    }
    async fn active_jobs_of(&self, user: &UserId) -> Result<Vec<Job>, StoreError> {
        self.inner.active_jobs_of(user).await
    }
    async fn idempotency_record(&self, user: &UserId, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency_record(user, key).await
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
    async fn record_receipt(&self, provider: &str, event_id: &str, request_id: &str) -> Result<ReceiptClaim, StoreError> {
        self.inner.record_receipt(provider, event_id, request_id).await
    }
    async fn complete_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        self.inner.complete_receipt(provider, event_id).await
    }
    async fn forget_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError> {
        self.inner.forget_receipt(provider, event_id).await
    }
    async fn job_for_provider_request(&self, provider: &str, request_id: &str) -> Result<Option<JobId>, StoreError> {
        self.inner.job_for_provider_request(provider, request_id).await
    }
    async fn save_task_token(&self, id: &JobId, token: &str, replace: bool) -> Result<(), StoreError> {
        self.inner.save_task_token(id, token, replace).await
    }
    async fn task_token(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.inner.task_token(id).await
    }
    async fn prompt(&self, id: &JobId) -> Result<Option<String>, StoreError> {
        self.inner.prompt(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::{timestamp, EventSource, JobParams};
    use crate::model::lifecycle::transition;
    use crate::model::request::{AspectRatio, Resolution};
    use std::sync::Mutex;

    /// A store whose status changes land or not as told; nothing else is asked of it.
    struct Changes(ChangeOutcome);

    fn not_asked<T>() -> Result<T, StoreError> {
        Err(StoreError::Internal("these tests ask the store for status changes only".into()))
    }

    #[async_trait]
    impl JobStore for Changes {
        async fn change_status(&self, _: &StatusChange) -> Result<ChangeOutcome, StoreError> {
            Ok(self.0.clone())
        }
        async fn create(&self, _: &NewJob) -> Result<CreateOutcome, StoreError> {
            not_asked()
        }
        async fn job(&self, _: &JobId) -> Result<Option<Job>, StoreError> {
            not_asked()
        }
        async fn events(&self, _: &JobId) -> Result<Vec<JobEvent>, StoreError> {
            not_asked()
        }
        async fn jobs_of(&self, _: &UserId, _: &PageRequest) -> Result<Page<Job>, ListError> {
            Ok(not_asked()?)
        }
        async fn active_jobs_of(&self, _: &UserId) -> Result<Vec<Job>, StoreError> {
            not_asked()
        }
        async fn idempotency_record(&self, _: &UserId, _: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
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
        async fn record_receipt(&self, _: &str, _: &str, _: &str) -> Result<ReceiptClaim, StoreError> {
            not_asked()
        }
        async fn complete_receipt(&self, _: &str, _: &str) -> Result<(), StoreError> {
            not_asked()
        }
        async fn forget_receipt(&self, _: &str, _: &str) -> Result<(), StoreError> {
            not_asked()
        }
        async fn job_for_provider_request(&self, _: &str, _: &str) -> Result<Option<JobId>, StoreError> {
            not_asked()
        }
        async fn save_task_token(&self, _: &JobId, _: &str, _: bool) -> Result<(), StoreError> {
            not_asked()
        }
        async fn task_token(&self, _: &JobId) -> Result<Option<String>, StoreError> {
            not_asked()
        }
        async fn prompt(&self, _: &JobId) -> Result<Option<String>, StoreError> {
            not_asked()
        }
    }

    #[derive(Default)]
    struct Queue {
        sent: Mutex<Vec<WorkMessage>>,
        broken: bool,
    }

    #[async_trait]
    impl WorkQueue for Queue {
        async fn enqueue(&self, message: &WorkMessage) -> Result<(), StoreError> {
            if self.broken {
                return Err(StoreError::Unavailable("queue down".into()));
            }
            self.sent.lock().unwrap().push(message.clone());
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

    async fn change(outcome: ChangeOutcome, from: JobStatus, to: JobStatus, webhook: Option<&str>, queue: Arc<Queue>) -> ChangeOutcome {
        let store = NotifyingJobs::new(Arc::new(Changes(outcome)), queue);
        let job = job(from, webhook);
        let change = StatusChange::new(&job, transition(from, to).unwrap(), EventSource::Worker, "m", None, JobUpdate::default());
        store.change_status(&change).await.unwrap()
    }

    #[tokio::test]
    async fn an_applied_change_to_a_notified_status_queues_one_notify_message() {
        let queue = Arc::new(Queue::default());
        change(ChangeOutcome::Applied, JobStatus::Processing, JobStatus::Completed, Some("https://x.test/h"), queue.clone()).await;
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert!(matches!(&sent[0], WorkMessage::Notify { status: JobStatus::Completed, attempt: 1, not_before: None, .. }));
    }

    #[tokio::test]
    async fn no_message_without_a_webhook_url_for_a_lost_race_or_for_an_in_flight_status() {
        let queue = Arc::new(Queue::default());
        change(ChangeOutcome::Applied, JobStatus::Processing, JobStatus::Completed, None, queue.clone()).await;
        change(
            ChangeOutcome::StatusWas(JobStatus::Canceled),
            JobStatus::Processing,
            JobStatus::Completed,
            Some("https://x.test/h"),
            queue.clone(),
        )
        .await;
        change(ChangeOutcome::Applied, JobStatus::Queued, JobStatus::Submitted, Some("https://x.test/h"), queue.clone()).await;
        assert!(queue.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_queue_outage_after_the_change_still_reports_the_change_applied() {
        let queue = Arc::new(Queue { broken: true, ..Queue::default() });
        let outcome = change(ChangeOutcome::Applied, JobStatus::Queued, JobStatus::Canceled, Some("https://x.test/h"), queue).await;
        assert_eq!(outcome, ChangeOutcome::Applied);
    }
}
