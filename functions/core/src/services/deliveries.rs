//! The delivery log and manual sends of client notifications:
//! `GET /videos/jobs/{id}/deliveries`, `GET /videos/deliveries`,
//! `POST /videos/jobs/{id}/redeliver` and `POST /videos/deliveries/redeliver`.
//!
//! The log is the notifier's events (each attempt is one, with its facts):
//! nothing more is written per attempt. A manual send is a `redeliver`
//! message on the notification queue, so that it goes through the notifier
//! like every delivery: its address checked again, signed, within the user's
//! delivery slots, never at the same moment as a scheduled attempt. Each
//! request is recorded per job and status first, and another within
//! [`REDELIVERY_WINDOW`] queues nothing: a client's retried or concurrent
//! requests send once.

use crate::model::ids::JobId;
use crate::model::job::{Job, JobEvent};
use crate::model::lifecycle::{passed, JobStatus, Passed};
use crate::model::notification::endpoints::{ResumeRequest, ResumedBody, HELD_CODE};
use crate::model::notification::is_notified;
use crate::model::notification::log::{
    DeliveryView, FailedDeliveriesBody, FailedDeliveriesFilter, JobDeliveriesBody, RecoverRequest, RedeliverRequest, RedeliveriesBody,
    RedeliveryView, MAX_REDELIVERIES_PER_REQUEST, REDELIVERY_WINDOW,
};
use crate::model::timestamp;
use crate::model::work::WorkMessage;
use crate::ports::{ListError, PageRequest, Principal};
use crate::services::error::AppError;
use crate::services::Services;
use std::collections::HashSet;

/// How many pages of failed attempts a recovery reads at most, looking for
/// notifications still undelivered.
const RECOVERY_PAGES: usize = 10;
/// The size of each of those pages.
const RECOVERY_PAGE_SIZE: u32 = 100;

impl Services {
    /// `GET /videos/jobs/{id}/deliveries`: every attempt at the job's notifications, oldest first.
    pub async fn deliveries(&self, who: &Principal, id: &str) -> Result<JobDeliveriesBody, AppError> {
        let job = self.visible_job(who, id).await?;
        let events = self.reads.events(&job.job_id).await?;
        Ok(JobDeliveriesBody { job_id: job.job_id, deliveries: events.iter().filter_map(DeliveryView::of).collect() })
    }

    /// `GET /videos/deliveries`: the caller's failed attempts across their jobs, newest first.
    pub async fn failed_deliveries(
        &self,
        who: &Principal,
        filter: &FailedDeliveriesFilter,
        page: PageRequest,
    ) -> Result<FailedDeliveriesBody, AppError> {
        let page = self.delivery_log.failed_deliveries_of(&who.user_id, filter, &page).await.map_err(|err| match err {
            ListError::BadCursor => crate::model::request::InvalidRequest::new("cursor", "is not a cursor this API gave out").into(),
            ListError::Store(err) => AppError::from(err),
        })?;
        Ok(FailedDeliveriesBody { deliveries: page.items.iter().filter_map(DeliveryView::of).collect(), next_cursor: page.next_cursor })
    }

    /// `POST /videos/jobs/{id}/redeliver`: sends the job's notification of
    /// `status` (its latest notified status by default) again, now.
    pub async fn redeliver(&self, who: &Principal, id: &str, request: RedeliverRequest) -> Result<RedeliveriesBody, AppError> {
        let job = self.visible_job(who, id).await?;
        if !job.is_owned_by(&who.user_id) {
            return Err(AppError::Forbidden("only the job's owner can have its notifications sent again"));
        }
        if job.webhook_url.is_none() {
            return Err(AppError::WrongState { status: job.status, message: "the job has no webhook_url to notify".into() });
        }
        let status = match request.status {
            Some(status) => status,
            None if is_notified(job.status) => job.status,
            None => {
                return Err(AppError::WrongState {
                    status: job.status,
                    message: "the job has not reached a status clients are told of".into(),
                })
            }
        };
        if !self.has_been(&job, status).await? {
            return Err(AppError::WrongState {
                status: job.status,
                message: format!("the job was never {status}: there is nothing to send again"),
            });
        }
        let queued = self.request_redelivery(&job.job_id, status).await?;
        Ok(RedeliveriesBody { redeliveries: vec![RedeliveryView { job_id: job.job_id, status, queued }], more: false })
    }

    /// `POST /videos/deliveries/redeliver`: sends again every notification of
    /// the caller that has a failed attempt since `since` and was never
    /// delivered, newest first, at most [`MAX_REDELIVERIES_PER_REQUEST`].
    pub async fn recover_deliveries(&self, who: &Principal, request: RecoverRequest) -> Result<RedeliveriesBody, AppError> {
        let filter = FailedDeliveriesFilter { since: Some(request.since), until: None, error_class: None };
        self.redeliver_failed(who, &filter, |_| true).await
    }

    /// `POST /videos/webhook-endpoints/resume`: lets deliveries to a paused
    /// endpoint go again and, if asked, sends again what it held.
    pub async fn resume_endpoint(&self, who: &Principal, request: ResumeRequest) -> Result<ResumedBody, AppError> {
        let Some(paused_at) = self.endpoints.resume(&who.user_id, &request.endpoint).await? else {
            // Not paused, or a racing resume got there first: nothing held to send twice.
            return Ok(ResumedBody { endpoint: request.endpoint, resumed: false, redeliveries: Vec::new(), more: false });
        };
        tracing::info!(endpoint = request.endpoint, "endpoint resumed");
        if !request.send_held {
            return Ok(ResumedBody { endpoint: request.endpoint, resumed: true, redeliveries: Vec::new(), more: false });
        }
        let filter = FailedDeliveriesFilter { since: Some(paused_at), until: None, error_class: Some(HELD_CODE.to_owned()) };
        let endpoint = request.endpoint.clone();
        let held = self.redeliver_failed(who, &filter, |event| event.delivery.as_ref().is_some_and(|f| f.endpoint == endpoint)).await?;
        Ok(ResumedBody { endpoint: request.endpoint, resumed: true, redeliveries: held.redeliveries, more: held.more })
    }

    /// Sends again each of the caller's notifications with a failed attempt
    /// that passes `filter` and `keep`, never delivered, newest first, at most
    /// [`MAX_REDELIVERIES_PER_REQUEST`].
    async fn redeliver_failed(
        &self,
        who: &Principal,
        filter: &FailedDeliveriesFilter,
        keep: impl Fn(&JobEvent) -> bool,
    ) -> Result<RedeliveriesBody, AppError> {
        let mut seen: HashSet<(JobId, JobStatus)> = HashSet::new();
        let mut redeliveries = Vec::new();
        let mut cursor = None;
        let mut more = false;
        'pages: for _ in 0..RECOVERY_PAGES {
            let page = self
                .delivery_log
                .failed_deliveries_of(&who.user_id, filter, &PageRequest { limit: RECOVERY_PAGE_SIZE, cursor: cursor.take() })
                .await
                .map_err(|err| match err {
                    ListError::BadCursor => AppError::Internal("a recovery's own cursor was refused".into()),
                    ListError::Store(err) => AppError::from(err),
                })?;
            for event in page.items.into_iter().filter(|event| keep(event)) {
                if !seen.insert((event.job_id.clone(), event.status)) {
                    continue;
                }
                if self.notification_log.was_delivered(&event.job_id, event.status).await? {
                    continue;
                }
                if redeliveries.len() == MAX_REDELIVERIES_PER_REQUEST {
                    more = true;
                    break 'pages;
                }
                let queued = self.request_redelivery(&event.job_id, event.status).await?;
                redeliveries.push(RedeliveryView { job_id: event.job_id, status: event.status, queued });
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        // Pages left unread: there may be more to send.
        more |= cursor.is_some();
        Ok(RedeliveriesBody { redeliveries, more })
    }

    /// Records the request and, unless one stands from the last minute, queues the send.
    async fn request_redelivery(&self, id: &JobId, status: JobStatus) -> Result<bool, AppError> {
        if !self.notification_log.request_redelivery(id, status, timestamp::now(), REDELIVERY_WINDOW).await? {
            return Ok(false);
        }
        self.redeliveries.enqueue(&WorkMessage::Redeliver { job_id: id.clone(), status, slot_waits: 0 }).await?;
        Ok(true)
    }

    /// Whether the job has been `status` (a job past it, such as an expired
    /// video that was completed, shows it in its history).
    async fn has_been(&self, job: &Job, status: JobStatus) -> Result<bool, AppError> {
        Ok(match passed(job.status, status) {
            Passed::Yes => true,
            Passed::Perhaps => self.reads.events(&job.job_id).await?.iter().any(|e| e.previous_status.is_some() && e.status == status),
            Passed::NotYet | Passed::Never => false,
        })
    }
}
