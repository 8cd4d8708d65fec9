//! `webhook`: providers' callbacks on the function URL, one path per provider
//! (`POST /webhooks/{provider}`). It answers within a second or two: it
//! verifies the signature over the raw body, records a receipt once, applies
//! the event forward-only, and hands slow work (copying the output) to the
//! worker through the queue.
//!
//! | outcome | answer | writes |
//! |---|---|---|
//! | unknown provider | `404` | nothing |
//! | body over 256 KiB | `413` | nothing |
//! | bad, missing or stale signature | `401` | nothing |
//! | body not understood (signature good) | `400` | nothing |
//! | a delivery seen before | `200 {"duplicate": true}` | nothing |
//! | a delivery being applied right now | `409` (the provider retries) | nothing |
//! | a request id no job owns yet | `202 {"matched": false}` | an early-callback note: the worker asks the provider once it records the request id |
//! | progress | `200` | receipt; `submitted → processing` or a higher `progress` |
//! | finished, failed or canceled | `200` | receipt; a `finalize` message for the worker |
//! | anything for a job already past it | `200` | receipt and an event saying it was ignored |
//!
//! The receipt is put `pending` before the event is applied and marked done
//! after; a failure deletes it, and a function that dies in between leaves a
//! pending receipt whose 30 s lease runs out, so the provider's retry is
//! applied rather than taken for a duplicate.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;
use videojobs_api::{json_response, path_segments};
use videojobs_core::model::job::{timestamp, EventSource, Job, JobEvent};
use videojobs_core::model::lifecycle::JobStatus;
use videojobs_core::model::provider::{Callback, CallbackError, ProviderEvent, ProviderStatus};
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::Providers;
use videojobs_core::ports::{JobStore, ProviderRequests, ReceiptClaim, WorkQueue};
use videojobs_core::StoreError;

#[derive(Clone)]
pub struct Webhook {
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub providers: Providers,
    /// Where duplicate deliveries are counted.
    pub stats: Arc<dyn videojobs_core::ports::StatsStore>,
    /// Where progress callbacks record the provider's queue position or stage.
    pub progress: Arc<dyn videojobs_core::ports::ProgressDetails>,
    /// Finds the job of a request id, and notes callbacks that come first.
    pub requests: Arc<dyn ProviderRequests>,
}

impl Webhook {
    /// The webhook wired to AWS: status changes go through the store that
    /// queues client notifications.
    pub fn on_aws(clients: &videojobs_aws::AwsClients, resources: &videojobs_aws::Resources, providers: Providers) -> Self {
        let store = Arc::new(videojobs_aws::DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table));
        let queue = Arc::new(videojobs_aws::SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url));
        let notifications = Arc::new(videojobs_aws::SqsWorkQueue::new(clients.sqs.clone(), &resources.notify_queue_url));
        Webhook {
            jobs: videojobs_aws::notifying(store.clone(), notifications),
            queue,
            providers,
            progress: store.clone(),
            requests: store.clone(),
            stats: store,
        }
    }
}

/// The provider a callback is addressed to, from `/webhooks/{provider}`.
pub fn provider_of(request: &Request) -> Option<&str> {
    match path_segments(request).as_slice() {
        ["webhooks", provider] => Some(provider),
        _ => None,
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    json_response(status, &body)
}

pub async fn handler(webhook: &Webhook, request: Request) -> Result<Response<Body>, Error> {
    let provider = provider_of(&request).unwrap_or("").to_owned();
    let span = tracing::info_span!("callback", provider, request_id = tracing::field::Empty, job_id = tracing::field::Empty);
    Ok(handle(webhook, &provider, &request).instrument(span).await)
}

async fn handle(webhook: &Webhook, provider_name: &str, request: &Request) -> Response<Body> {
    let Some(provider) = webhook.providers.get(provider_name) else {
        return answer(StatusCode::NOT_FOUND, json!({"error": {"code": "unknown_provider", "message": "no such provider"}}));
    };
    // Anyone may call this URL: a body too big to be a callback costs no cryptography.
    if request.body().len() > videojobs_core::model::signing::MAX_BODY_BYTES {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": {"code": "body_too_large", "message": "the callback body is too large"}}),
        );
    }
    let headers: HashMap<String, String> =
        request.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))).collect();
    let callback = Callback { headers: &headers, body: request.body().as_ref(), now: timestamp::now().unix_timestamp() };
    let event = match provider.verify_callback(&callback).await {
        Ok(event) => event,
        Err(CallbackError::BadSignature(reason)) => {
            tracing::warn!(reason, "callback refused");
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"code": "bad_signature", "message": "the signature did not verify"}}),
            );
        }
        Err(CallbackError::Malformed(reason)) => {
            tracing::warn!(reason, "callback not understood");
            return answer(StatusCode::BAD_REQUEST, json!({"error": {"code": "malformed", "message": "the callback was not understood"}}));
        }
    };
    tracing::Span::current().record("request_id", event.request_id.as_str());
    match apply(webhook, provider_name, &event).await {
        Ok(outcome) => outcome,
        Err(err) => {
            // The provider retries a failed delivery; the receipt is only kept once applied.
            tracing::error!(error = %err, "callback not applied");
            answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": {"code": "unavailable", "message": "try again"}}))
        }
    }
}

async fn apply(webhook: &Webhook, provider: &str, event: &ProviderEvent) -> Result<Response<Body>, StoreError> {
    let Some(job_id) = owner_of(webhook, provider, &event.request_id).await? else {
        tracing::warn!("callback for a request no job owns yet; noted for the worker");
        return Ok(answer(StatusCode::ACCEPTED, json!({"received": true, "matched": false})));
    };
    tracing::Span::current().record("job_id", job_id.as_str());
    let Some(job) = webhook.jobs.job(&job_id).await? else {
        return Ok(answer(StatusCode::ACCEPTED, json!({"received": true, "matched": false})));
    };
    match webhook.jobs.record_receipt(provider, &event.event_id, &event.request_id).await? {
        ReceiptClaim::New => {}
        ReceiptClaim::Done => {
            tracing::info!(event_id = event.event_id, "duplicate callback");
            // The answer does not depend on the count: a failed count is logged, not retried.
            if let Err(err) = webhook.stats.count_duplicate_callback(provider).await {
                tracing::warn!(error = %err, "duplicate callback not counted");
            }
            return Ok(answer(StatusCode::OK, json!({"received": true, "duplicate": true})));
        }
        ReceiptClaim::InProgress => {
            tracing::info!(event_id = event.event_id, "the same callback is being applied; asking for a retry");
            return Ok(answer(
                StatusCode::CONFLICT,
                json!({"error": {"code": "in_progress", "message": "this delivery is being applied; retry later"}}),
            ));
        }
    }
    if let Err(err) = apply_to_job(webhook, job, &event.status).await {
        // Let the provider's retry of this delivery apply it.
        webhook.jobs.forget_receipt(provider, &event.event_id).await?;
        return Err(err);
    }
    webhook.jobs.complete_receipt(provider, &event.event_id).await?;
    Ok(answer(StatusCode::OK, json!({"received": true, "duplicate": false})))
}

/// The job that owns the request. None yet (the worker has not recorded the
/// request id): the callback is noted, and the owner looked for once more,
/// so that one of the two sides sees the other (see `ProviderRequests`).
async fn owner_of(webhook: &Webhook, provider: &str, request_id: &str) -> Result<Option<videojobs_core::model::ids::JobId>, StoreError> {
    if let Some(job_id) = webhook.jobs.job_for_provider_request(provider, request_id).await? {
        return Ok(Some(job_id));
    }
    webhook.requests.note_early_callback(provider, request_id).await?;
    webhook.jobs.job_for_provider_request(provider, request_id).await
}

async fn apply_to_job(webhook: &Webhook, job: Job, status: &ProviderStatus) -> Result<(), StoreError> {
    match status {
        ProviderStatus::Queued { .. } | ProviderStatus::Processing { .. } => progress(webhook, job, status).await,
        _ if matches!(job.status, JobStatus::Submitted | JobStatus::Processing) => {
            webhook.queue.enqueue(&WorkMessage::Finalize { job_id: job.job_id.clone() }).await?;
            tracing::info!("finalize handed to the worker");
            Ok(())
        }
        finished => ignored(webhook, &job, finished).await,
    }
}

async fn progress(webhook: &Webhook, job: Job, status: &ProviderStatus) -> Result<(), StoreError> {
    let (jobs, details) = (webhook.jobs.as_ref(), webhook.progress.as_ref());
    let now = timestamp::now();
    if !videojobs_core::services::progress::apply_working(jobs, details, &job, status, EventSource::Webhook, now).await? {
        ignored(webhook, &job, status).await?;
    }
    Ok(())
}

/// A callback that arrived after the job moved past it: kept, changes nothing.
async fn ignored(webhook: &Webhook, job: &Job, status: &ProviderStatus) -> Result<(), StoreError> {
    let said = match status {
        ProviderStatus::Queued { .. } => "queued",
        ProviderStatus::Processing { .. } => "processing",
        ProviderStatus::Succeeded(_) => "succeeded",
        ProviderStatus::Failed { .. } => "failed",
        ProviderStatus::Canceled => "canceled",
    };
    tracing::info!(said, status = %job.status, "late callback ignored");
    webhook
        .jobs
        .record_event(&JobEvent {
            job_id: job.job_id.clone(),
            at: timestamp::now(),
            source: EventSource::Webhook,
            previous_status: Some(job.status),
            status: job.status,
            message: format!("Late '{said}' callback ignored: the job is already {}", job.status),
            error_code: None,
            actor: None,
        })
        .await
}
