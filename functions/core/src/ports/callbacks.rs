//! What the webhook remembers of providers' callbacks: each applied once
//! (the ledger of receipts), and each request tied to its job.

use crate::model::error::StoreError;
use crate::model::ids::JobId;
use async_trait::async_trait;
use std::time::Duration;

/// What a callback's receipt says. The receipt is put before the event is
/// applied and marked done after: a function that dies in between leaves a
/// pending receipt whose lease runs out, so the provider's retry applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptClaim {
    /// First delivery (or the lease of a dead one ran out): apply it.
    New,
    /// Applied before: answer `200` and change nothing.
    Done,
    /// Another delivery of it is being applied right now: ask for a retry.
    InProgress,
}

/// The receipts of provider callbacks, keyed by provider and the provider's
/// event id.
#[async_trait]
pub trait CallbackLedger: Send + Sync {
    /// Claims a callback for applying (see [`ReceiptClaim`]): the receipt is
    /// pending for `lease` until [`CallbackLedger::complete_receipt`]; a
    /// pending receipt whose lease ran out is taken over.
    async fn record_receipt(&self, provider: &str, event_id: &str, request_id: &str, lease: Duration) -> Result<ReceiptClaim, StoreError>;
    /// Marks a claimed callback applied: from now on it is a duplicate.
    async fn complete_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError>;
    /// Forgets a pending receipt whose event could not be applied, so a retry applies it.
    async fn forget_receipt(&self, provider: &str, event_id: &str) -> Result<(), StoreError>;
}

/// Ties a provider's request ids to our jobs so that no callback is lost,
/// whichever comes first: the worker records the owner (before the job
/// records its request id), then looks for an early callback; the webhook,
/// finding no owner, notes the early callback, then looks for the owner
/// again. Both are strongly consistent reads, so at least one side sees the
/// other, and applying an event twice is harmless.
#[async_trait]
pub trait ProviderRequests: Send + Sync {
    /// Records that `request_id` at `provider` belongs to `job`.
    async fn record_owner(&self, provider: &str, request_id: &str, job: &JobId) -> Result<(), StoreError>;
    /// The job a provider request belongs to (a strongly consistent read of
    /// the owner record).
    async fn job_for_provider_request(&self, provider: &str, request_id: &str) -> Result<Option<JobId>, StoreError>;
    /// Notes a verified callback for a request no job owns yet.
    async fn note_early_callback(&self, provider: &str, request_id: &str) -> Result<(), StoreError>;
    /// Whether a callback for the request came before its owner was recorded.
    async fn had_early_callback(&self, provider: &str, request_id: &str) -> Result<bool, StoreError>;
}
