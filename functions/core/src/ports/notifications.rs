use crate::model::error::StoreError;
use crate::model::ids::{JobId, UserId};
use crate::model::job::JobEvent;
use crate::model::lifecycle::JobStatus;
use crate::model::notification::endpoints::{EndpointChange, EndpointState};
use crate::model::notification::log::FailedDeliveriesFilter;
use crate::model::notification::{AttemptClaim, Destination, UserWebhookSecrets};
use crate::ports::records::{ListError, Page, PageRequest};
use async_trait::async_trait;
use std::net::IpAddr;
use std::time::Duration;
use time::OffsetDateTime;

/// Which notifications were delivered (one record per job and status), and
/// who is attempting one right now.
#[async_trait]
pub trait NotificationLog: Send + Sync {
    /// Whether the client was told of the job's `status` already.
    async fn was_delivered(&self, job: &JobId, status: JobStatus) -> Result<bool, StoreError>;
    /// Records a delivery once: `false` if it was already recorded.
    async fn record_delivery(&self, job: &JobId, status: JobStatus, attempt: u32, http_status: u16) -> Result<bool, StoreError>;
    /// Takes the right to make attempt `attempt` of this notification for
    /// `lease` as `holder`, unless another holder's lease is still running
    /// ([`AttemptClaim::Held`]) or that attempt or a later one was already
    /// made ([`AttemptClaim::AlreadyMade`]: the message is a stale copy).
    async fn claim_attempt(
        &self,
        job: &JobId,
        status: JobStatus,
        attempt: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<AttemptClaim, StoreError>;
    /// Gives the right back without the attempt being made (it is made again
    /// later), only if `holder` still holds it (a lease that ran out may have
    /// passed to another handling).
    async fn release_attempt(&self, job: &JobId, status: JobStatus, holder: &str) -> Result<(), StoreError>;
    /// Records that `attempt` was made (and its successor queued, or the
    /// notification delivered or given up) and gives the right back, only if
    /// `holder` still holds it: copies of that attempt's message now find
    /// [`AttemptClaim::AlreadyMade`].
    async fn finish_attempt(&self, job: &JobId, status: JobStatus, attempt: u32, holder: &str) -> Result<(), StoreError>;
    /// Takes one of the user's `slots` delivery slots for `lease` as `holder`:
    /// the slot's number, or `None` when all are held (see [`USER_SLOTS`]).
    async fn claim_user_slot(&self, user: &UserId, slots: u32, holder: &str, lease: Duration) -> Result<Option<u32>, StoreError>;
    /// Gives a slot back, only if `holder` still holds it.
    async fn release_user_slot(&self, user: &UserId, slot: u32, holder: &str) -> Result<(), StoreError>;
    /// Records a client's request, at `at`, to send the notification of the
    /// job's `status` again: `false` (nothing recorded) when one was recorded
    /// within `window` before, so that repeated or concurrent requests send once.
    async fn request_redelivery(&self, job: &JobId, status: JobStatus, at: OffsetDateTime, window: Duration) -> Result<bool, StoreError>;
}

/// Each user's endpoints (`scheme://host[:port]`): their run of failed
/// attempts, and whether it paused them.
#[async_trait]
pub trait EndpointHealth: Send + Sync {
    /// The endpoint's record; `None` before its first failure.
    async fn endpoint(&self, user: &UserId, endpoint: &str) -> Result<Option<EndpointState>, StoreError>;
    /// Counts a failed attempt; the failure that makes the run reach
    /// `pause_after` pauses the endpoint at `at` and is the only one told
    /// [`EndpointChange::Paused`].
    async fn record_failure(
        &self,
        user: &UserId,
        endpoint: &str,
        pause_after: u32,
        at: OffsetDateTime,
    ) -> Result<EndpointChange, StoreError>;
    /// A delivery: the run of failures starts again from none.
    async fn record_success(&self, user: &UserId, endpoint: &str) -> Result<(), StoreError>;
    /// Resumes a paused endpoint: when it was paused, or `None` if it was not
    /// (then nothing changed; of racing resumes, one gets the time).
    async fn resume(&self, user: &UserId, endpoint: &str) -> Result<Option<OffsetDateTime>, StoreError>;
    /// The user's endpoints that are paused.
    async fn paused_endpoints(&self, user: &UserId) -> Result<Vec<EndpointState>, StoreError>;
}

/// The failed attempts at a user's notifications, across their jobs (the
/// delivery log's index: each attempt itself is an event of its job).
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// The user's failed attempts that pass `filter`, newest first. A page
    /// may hold fewer than `page.limit` (the error class is tested on what
    /// one read found) and still have a next cursor.
    async fn failed_deliveries_of(
        &self,
        user: &UserId,
        filter: &FailedDeliveriesFilter,
        page: &PageRequest,
    ) -> Result<Page<JobEvent>, ListError>;
}

/// Each user's webhook signing secrets (`whsec_…`), made on first use.
#[async_trait]
pub trait WebhookSecrets: Send + Sync {
    /// The user's signing secrets; `None` before their first.
    async fn webhook_secrets(&self, user: &UserId) -> Result<Option<UserWebhookSecrets>, StoreError>;
    /// Stores `secret` as the user's first secret unless they have one;
    /// answers what is stored (theirs if a concurrent request won).
    async fn create_webhook_secret(&self, user: &UserId, secret: &str) -> Result<UserWebhookSecrets, StoreError>;
    /// Replaces the current secret `expected` by `new`, keeping `expected`
    /// valid until `grace_until`; `false` if the current secret is no longer `expected`.
    async fn rotate_webhook_secret(
        &self,
        user: &UserId,
        expected: &str,
        new: &str,
        grace_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// Turns a host name into addresses (DNS).
#[async_trait]
pub trait HostResolver: Send + Sync {
    /// The host's addresses; `Err` carries a detail for the logs.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String>;
}

/// Sends one signed client notification.
#[async_trait]
pub trait NotificationPoster: Send + Sync {
    /// POSTs `body` to the checked `destination` only (no second DNS lookup,
    /// no redirect followed), with the Standard Webhooks headers: the
    /// answer's HTTP status, or why there was none (a detail for the logs).
    async fn post(&self, destination: &Destination, id: &str, unix_timestamp: i64, signature: &str, body: Vec<u8>) -> Result<u16, String>;
}
