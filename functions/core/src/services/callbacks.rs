//! A provider's callback, the rules: verify it, record its receipt once, and
//! apply it forward-only; slow work (copying the output) goes to the worker
//! through the queue. The webhook function maps each [`CallbackOutcome`] to
//! its HTTP answer.
//!
//! | outcome | writes |
//! |---|---|
//! | unknown provider, body too large, bad signature, not understood | nothing |
//! | a delivery seen before ([`CallbackOutcome::Duplicate`]) | the duplicate counted |
//! | a delivery being applied right now ([`CallbackOutcome::InProgress`]) | nothing; the provider retries |
//! | a request id no job owns yet ([`CallbackOutcome::Unmatched`]) | an early-callback note: the worker asks the provider once it records the request id |
//! | progress | receipt; `submitted → processing` or a higher `progress` |
//! | finished, failed or canceled | receipt; a `finalize` message for the worker |
//! | anything for a job already past it | receipt and an event saying it was ignored |
//!
//! The receipt is put `pending` before the event is applied and marked done
//! after; a failure deletes it, and a function that dies in between leaves a
//! pending receipt whose 30 s lease runs out, so the provider's retry is
//! applied rather than taken for a duplicate.

use crate::model::error::StoreError;
use crate::model::ids::JobId;
use crate::model::job::{timestamp, EventSource, Job, JobEvent};
use crate::model::lifecycle::JobStatus;
use crate::model::provider::{Callback, CallbackError, ProviderEvent, ProviderStatus};
use crate::model::work::WorkMessage;
use crate::ports::{
    CallbackLedger, JobReads, JobWrites, ProgressDetails, ProviderRequests, Providers, ReceiptClaim, StatsStore, WorkQueue,
};
use std::collections::HashMap;
use std::sync::Arc;

/// How long a callback being applied holds its receipt: longer than the
/// webhook function's timeout (5 s), so a receipt is never taken over from a
/// delivery still applying it; a delivery that finds it pending is asked to
/// retry, and after this a retry takes the receipt over.
pub const RECEIPT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// What applying callbacks needs.
#[derive(Clone)]
pub struct Callbacks {
    /// Status changes (wrapped so that a client is told of a change).
    pub writes: Arc<dyn JobWrites>,
    /// Jobs, to read the job a callback is about.
    pub reads: Arc<dyn JobReads>,
    /// The receipts that apply each callback once.
    pub ledger: Arc<dyn CallbackLedger>,
    /// The worker's queue: a finished, failed or canceled job gets a `finalize` message.
    pub queue: Arc<dyn WorkQueue>,
    /// The providers enabled here, to verify each one's callbacks.
    pub providers: Providers,
    /// Where duplicate deliveries are counted.
    pub stats: Arc<dyn StatsStore>,
    /// Where progress callbacks record the provider's queue position or stage.
    pub progress: Arc<dyn ProgressDetails>,
    /// Finds the job of a request id, and notes callbacks that come first.
    pub requests: Arc<dyn ProviderRequests>,
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// No provider of that name is enabled here (404).
    UnknownProvider,
    /// The body is over the signed-body cap; refused before any cryptography (413).
    TooLarge,
    /// The signature is missing, stale or does not verify (401).
    BadSignature,
    /// The body is not this provider's callback (400).
    Malformed,
    /// No job owns the request id yet: noted for the worker.
    Unmatched,
    /// Applied before: nothing changes.
    Duplicate,
    /// The same delivery is being applied right now: the provider should retry.
    InProgress,
    /// The delivery is recorded and applied, or recorded as ignored for a job past it (200).
    Applied,
    /// Storage failed: nothing was kept, the provider should retry.
    Unavailable,
}

/// Receives one delivery for `provider`: headers (names lower case) and raw body.
pub async fn receive(callbacks: &Callbacks, provider_name: &str, headers: &HashMap<String, String>, body: &[u8]) -> CallbackOutcome {
    receive_with(&callbacks.providers, || callbacks, provider_name, headers, body).await
}

/// [`receive`], verifying with `providers` alone and asking `callbacks` for
/// the storage only once the delivery verified: the webhook answers a forged
/// callback without building its storage clients.
pub async fn receive_with<'c>(
    providers: &Providers,
    callbacks: impl FnOnce() -> &'c Callbacks,
    provider_name: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> CallbackOutcome {
    match verify(providers, provider_name, headers, body).await {
        Ok(event) => apply_verified(callbacks(), provider_name, &event).await,
        Err(refused) => refused,
    }
}

/// The first half of a delivery, which touches no storage: its event, or
/// why it is refused (an unknown provider, a body too large, a bad
/// signature, a body not understood).
async fn verify(
    providers: &Providers,
    provider_name: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Result<ProviderEvent, CallbackOutcome> {
    let Some(provider) = providers.get(provider_name) else {
        return Err(CallbackOutcome::UnknownProvider);
    };
    // Anyone may call this URL: a body too big to be a callback costs no cryptography.
    if body.len() > crate::model::signing::MAX_BODY_BYTES {
        return Err(CallbackOutcome::TooLarge);
    }
    let callback = Callback { headers, body, now: timestamp::now().unix_timestamp() };
    match provider.verify_callback(&callback).await {
        Ok(event) => {
            tracing::Span::current().record("request_id", event.request_id.as_str());
            Ok(event)
        }
        Err(CallbackError::BadSignature(reason)) => {
            tracing::warn!(reason, "callback refused");
            Err(CallbackOutcome::BadSignature)
        }
        Err(CallbackError::Malformed(reason)) => {
            tracing::warn!(reason, "callback not understood");
            Err(CallbackOutcome::Malformed)
        }
    }
}

/// The second half of a delivery: applies an event [`verify`] accepted.
async fn apply_verified(callbacks: &Callbacks, provider_name: &str, event: &ProviderEvent) -> CallbackOutcome {
    match apply(callbacks, provider_name, event).await {
        Ok(outcome) => outcome,
        Err(err) => {
            // The provider retries a failed delivery; the receipt is only kept once applied.
            tracing::error!(error = %err, "callback not applied");
            CallbackOutcome::Unavailable
        }
    }
}

async fn apply(callbacks: &Callbacks, provider: &str, event: &ProviderEvent) -> Result<CallbackOutcome, StoreError> {
    let Some(job_id) = owner_of(callbacks, provider, &event.request_id).await? else {
        tracing::warn!("callback for a request no job owns yet; noted for the worker");
        return Ok(CallbackOutcome::Unmatched);
    };
    tracing::Span::current().record("job_id", job_id.as_str());
    let Some(job) = callbacks.reads.job(&job_id).await? else {
        return Ok(CallbackOutcome::Unmatched);
    };
    match callbacks.ledger.record_receipt(provider, &event.event_id, &event.request_id, RECEIPT_LEASE).await? {
        ReceiptClaim::New => {}
        ReceiptClaim::Done => {
            tracing::info!(event_id = event.event_id, "duplicate callback");
            // The answer does not depend on the count: a failed count is logged, not retried.
            if let Err(err) = callbacks.stats.count_duplicate_callback(provider).await {
                tracing::warn!(error = %err, "duplicate callback not counted");
            }
            return Ok(CallbackOutcome::Duplicate);
        }
        ReceiptClaim::InProgress => {
            tracing::info!(event_id = event.event_id, "the same callback is being applied; asking for a retry");
            return Ok(CallbackOutcome::InProgress);
        }
    }
    if let Err(err) = apply_to_job(callbacks, job, &event.status).await {
        // Let the provider's retry of this delivery apply it.
        callbacks.ledger.forget_receipt(provider, &event.event_id).await?;
        return Err(err);
    }
    callbacks.ledger.complete_receipt(provider, &event.event_id).await?;
    Ok(CallbackOutcome::Applied)
}

/// The job that owns the request. None yet (the worker has not recorded the
/// request id): the callback is noted, and the owner looked for once more,
/// so that one of the two sides sees the other (see `ProviderRequests`).
async fn owner_of(callbacks: &Callbacks, provider: &str, request_id: &str) -> Result<Option<JobId>, StoreError> {
    if let Some(job_id) = callbacks.requests.job_for_provider_request(provider, request_id).await? {
        return Ok(Some(job_id));
    }
    callbacks.requests.note_early_callback(provider, request_id).await?;
    callbacks.requests.job_for_provider_request(provider, request_id).await
}

async fn apply_to_job(callbacks: &Callbacks, job: Job, status: &ProviderStatus) -> Result<(), StoreError> {
    match status {
        ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. } => progress(callbacks, job, status).await,
        _ if matches!(job.status, JobStatus::Submitted | JobStatus::Processing) => {
            callbacks.queue.enqueue(&WorkMessage::Finalize { job_id: job.job_id.clone() }).await?;
            tracing::info!("finalize handed to the worker");
            Ok(())
        }
        finished => ignored(callbacks, &job, finished).await,
    }
}

async fn progress(callbacks: &Callbacks, job: Job, status: &ProviderStatus) -> Result<(), StoreError> {
    let (jobs, details) = (callbacks.writes.as_ref(), callbacks.progress.as_ref());
    let now = timestamp::now();
    if !crate::services::progress::apply_working(jobs, details, &job, status, EventSource::Webhook, now).await? {
        ignored(callbacks, &job, status).await?;
    }
    Ok(())
}

/// A callback that arrived after the job moved past it: kept, changes nothing.
async fn ignored(callbacks: &Callbacks, job: &Job, status: &ProviderStatus) -> Result<(), StoreError> {
    let said = match status {
        ProviderStatus::Queued { .. } => "queued",
        ProviderStatus::Processing { .. } => "processing",
        ProviderStatus::Succeeded(_) => "succeeded",
        ProviderStatus::Failed { .. } => "failed",
        ProviderStatus::Canceled => "canceled",
    };
    tracing::info!(said, status = %job.status, "late callback ignored");
    callbacks
        .writes
        .record_event(&JobEvent {
            job_id: job.job_id.clone(),
            at: timestamp::now(),
            source: EventSource::Webhook,
            previous_status: Some(job.status),
            status: job.status,
            message: format!("Late '{said}' callback ignored: the job is already {}", job.status),
            error_code: None,
            actor: None,
            delivery: None,
        })
        .await
}
