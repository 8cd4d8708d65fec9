//! Delivers client notifications (`notify` messages, queued by
//! `crate::services::notifying::NotifyingJobs` just before a status change
//! is written).
//!
//! A message first checks that the job has the status it tells of: one that
//! arrived before its change waits for it on the queue, and one whose change
//! never landed sends nothing. Then one attempt per message: check the job's `webhook_url` again (its host may
//! resolve elsewhere now), sign the body with the user's secret, POST it to
//! the checked address only (pinned: no second DNS lookup can swap it), follow
//! no redirect. A 2xx is a delivery; anything else, a network error or a
//! refused address is a failed attempt, retried through the queue on the
//! schedule. Every attempt is an event on the job (source `notifier`).
//! A delivery is recorded once per job and status, and checked before each
//! attempt, so a message that comes again after a success posts nothing; an
//! attempt holds a leased claim, so two copies of a message handled at the
//! same moment post once, and an attempt is recorded made (after its
//! successor is queued), so a copy of its message that comes later posts
//! nothing and queues nothing: one chain of attempts, each made once.

use super::context::{Pipeline, WorkError};
use crate::model::ids::JobId;
use crate::model::job::{timestamp, EventSource, Job, JobEvent};
use crate::model::lifecycle::{passed, JobStatus, Passed};
use crate::model::notification::endpoints::{endpoint_of, EndpointChange, HELD_CODE};
use crate::model::notification::log::{DeliveryFacts, DeliveryOutcome, Trigger};
use crate::model::notification::{
    message_id, signature_header, wait_for_the_change, AttemptClaim, DestinationError, NotificationBody, ATTEMPT_LEASE, MAX_QUEUE_DELAY,
    SLOT_WAIT, SLOT_WAITS_PER_ATTEMPT, USER_SLOTS, WRITER_WINDOW,
};
use crate::model::views::OutputLinks;
use crate::model::work::WorkMessage;
use crate::services::webhook_rules::check_destination;
use crate::services::webhook_rules::signing_keys;
use crate::StoreError;
use std::time::Duration;
use time::OffsetDateTime;

pub use super::context::Notifier;

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Answered(u16),
    Failed {
        code: &'static str,
        detail: String,
    },
    /// Not sent: its endpoint is paused. The chain stops here; a resume sends it.
    Held,
}

/// Handles one `notify` message: makes its attempt once the job shows `status`, or waits, hops or gives up as the
/// message's fields say.
pub async fn notify(
    pipeline: &Pipeline,
    id: &JobId,
    status: JobStatus,
    attempt: u32,
    not_before: Option<OffsetDateTime>,
    queued_at: Option<OffsetDateTime>,
    slot_waits: u32,
) -> Result<(), WorkError> {
    let notifier = &pipeline.notifier;
    let now = timestamp::now();
    // This message again, later, after `slot_waits` waits for a slot.
    let again = |slot_waits| WorkMessage::Notify { job_id: id.clone(), status, attempt, not_before, queued_at, slot_waits };
    if let Some(at) = not_before.filter(|at| *at > now) {
        // A wait longer than one SQS delay: hop again.
        let wait = Duration::try_from(at - now).unwrap_or_default();
        notifier.queue.enqueue_after(&again(slot_waits), round_up(wait)).await?;
        tracing::info!(attempt, wait_seconds = wait.as_secs(), "notification not due yet; waiting again");
        return Ok(());
    }
    let Some(job) = pipeline.reads.job(id).await? else {
        return Err(WorkError::Unusable(format!("no job {id}")));
    };
    let Some(url) = job.webhook_url.clone() else {
        return Err(WorkError::Unusable("the job has no webhook_url".into()));
    };
    if !shows_the_status(pipeline, &job, status, attempt, queued_at, now).await? {
        return Ok(());
    }
    if notifier.deliveries.was_delivered(id, status).await? {
        tracing::info!(%status, "notification already delivered; nothing to send");
        return Ok(());
    }
    let holder = format!("{:032x}", crate::model::determinism::random_u128());
    match notifier.deliveries.claim_attempt(id, status, attempt, &holder, ATTEMPT_LEASE).await? {
        AttemptClaim::Taken => {}
        AttemptClaim::AlreadyMade => {
            tracing::info!(attempt, "a copy of this message made this attempt already; nothing to send");
            return Ok(());
        }
        AttemptClaim::Held => {
            // A copy of this message, or the attempt before it finishing:
            // this one looks again shortly (and then finds it made, or free).
            notifier.queue.enqueue_after(&again(slot_waits), SLOT_WAIT).await?;
            tracing::info!(attempt, "another attempt at this notification is in progress; looking again shortly");
            return Ok(());
        }
    }
    // The fairness rule: a tenant's deliveries in flight are capped, so slow
    // receivers of one tenant cannot take every delivery of the consumer.
    let Some(slot) = notifier.deliveries.claim_user_slot(&job.user_id, USER_SLOTS, &holder, ATTEMPT_LEASE).await? else {
        if slot_waits + 1 >= SLOT_WAITS_PER_ATTEMPT {
            // Waited long enough: the wait is this attempt, failed, and the schedule moves on.
            let busy = Attempt::Failed {
                code: "notify_slots_busy",
                detail: format!("Not sent: {USER_SLOTS} deliveries to this account's endpoints stayed in progress"),
            };
            let made = Made { trigger: Trigger::Scheduled, attempt: Some(attempt), outcome: busy, duration: Duration::ZERO };
            let outcome = record_outcome(pipeline, &job, status, &url, now, made).await;
            release(notifier, id, status, &holder, None, outcome.is_ok().then_some(attempt), &job).await;
            return outcome;
        }
        release(notifier, id, status, &holder, None, None, &job).await;
        notifier.queue.enqueue_after(&again(slot_waits + 1), SLOT_WAIT).await?;
        tracing::info!(attempt, slot_waits = slot_waits + 1, "every delivery slot of this user is busy; waiting for one");
        return Ok(());
    };
    let outcome = attempt_and_record(pipeline, &job, status, attempt, &url, now).await;
    // Made only once its successor is queued (or none is due): a handling
    // that died before that leaves the attempt to be made again.
    let made = outcome.is_ok().then_some(attempt);
    release(notifier, id, status, &holder, Some(slot), made, &job).await;
    outcome
}

/// The claim number of a manual send: above any attempt of the schedule, so
/// that a manual send and a scheduled attempt never post at the same moment
/// (they share the claim's lease) while the schedule's count stays its own.
const MANUAL_CLAIM: u32 = u32::MAX;

/// Handles one `redeliver` message: one attempt, by hand, at the client's
/// notification of `status` (the API checked that the job was `status`), in
/// turn with the schedule's attempts and within the user's delivery slots,
/// like every delivery. Recorded in the log as `manual`; a delivery stops
/// the schedule, a failure leaves it as it was.
pub async fn redeliver(pipeline: &Pipeline, id: &JobId, status: JobStatus, slot_waits: u32) -> Result<(), WorkError> {
    let notifier = &pipeline.notifier;
    let now = timestamp::now();
    let again = |slot_waits| WorkMessage::Redeliver { job_id: id.clone(), status, slot_waits };
    let Some(job) = pipeline.reads.job(id).await? else {
        return Err(WorkError::Unusable(format!("no job {id}")));
    };
    let Some(url) = job.webhook_url.clone() else {
        return Err(WorkError::Unusable("the job has no webhook_url".into()));
    };
    let holder = format!("{:032x}", crate::model::determinism::random_u128());
    let waited_enough = slot_waits + 1 >= SLOT_WAITS_PER_ATTEMPT;
    let busy = |what: &str| Attempt::Failed { code: "notify_slots_busy", detail: format!("Not sent: {what} stayed in progress") };
    let manual = |outcome| Made { trigger: Trigger::Manual, attempt: None, outcome, duration: Duration::ZERO };
    if notifier.deliveries.claim_attempt(id, status, MANUAL_CLAIM, &holder, ATTEMPT_LEASE).await? != AttemptClaim::Taken {
        if waited_enough {
            return record_outcome(pipeline, &job, status, &url, now, manual(busy("another attempt at this notification"))).await;
        }
        notifier.queue.enqueue_after(&again(slot_waits + 1), SLOT_WAIT).await?;
        tracing::info!("another attempt at this notification is in progress; sending again shortly");
        return Ok(());
    }
    let Some(slot) = notifier.deliveries.claim_user_slot(&job.user_id, USER_SLOTS, &holder, ATTEMPT_LEASE).await? else {
        let outcome = if waited_enough {
            record_outcome(pipeline, &job, status, &url, now, manual(busy(&format!("{USER_SLOTS} deliveries to this account's endpoints"))))
                .await
        } else {
            notifier.queue.enqueue_after(&again(slot_waits + 1), SLOT_WAIT).await.map_err(WorkError::from)
        };
        release(notifier, id, status, &holder, None, None, &job).await;
        return outcome;
    };
    let outcome = make_attempt(pipeline, &job, status, &url, now, Trigger::Manual, None).await;
    // Given back, never recorded made: the schedule's own count stands.
    release(notifier, id, status, &holder, Some(slot), None, &job).await;
    outcome
}

/// Whether the job has been `status`, so that the client may be told of it.
/// A message is queued before its status change is written
/// (`NotifyingJobs`): one that arrives first waits on the queue for the
/// change, up to [`WRITER_WINDOW`] after it was queued, and a message whose
/// change lost its race, or never came, sends nothing.
async fn shows_the_status(
    pipeline: &Pipeline,
    job: &Job,
    status: JobStatus,
    attempt: u32,
    queued_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<bool, WorkError> {
    match passed(job.status, status) {
        Passed::Yes => return Ok(true),
        Passed::Perhaps => {
            // The job is past the status's branch (an `expired` job and
            // `completed`): its history is written with each change.
            let events = pipeline.reads.events(&job.job_id).await?;
            if events.iter().any(|event| event.previous_status.is_some() && event.status == status) {
                return Ok(true);
            }
        }
        Passed::NotYet => {
            let waited = queued_at.map(|at| Duration::try_from(now - at).unwrap_or_default());
            if let Some(waited) = waited.filter(|waited| *waited < WRITER_WINDOW) {
                let wait = wait_for_the_change(waited);
                let message =
                    WorkMessage::Notify { job_id: job.job_id.clone(), status, attempt, not_before: None, queued_at, slot_waits: 0 };
                pipeline.notifier.queue.enqueue_after(&message, wait).await?;
                tracing::info!(%status, current = %job.status, wait_seconds = wait.as_secs(), "the job is not yet as this notification says; waiting for the change");
                return Ok(false);
            }
        }
        Passed::Never => {}
    }
    tracing::info!(%status, current = %job.status, "the job never became what this notification says: its change lost a race or was never written; nothing to send");
    Ok(false)
}

/// Gives back what one attempt held, recording the attempt `made` if it was.
/// A failure is logged: leases run out on their own, a message that finds
/// one held comes back later, and an attempt not recorded made is made again
/// by a copy of its message (the receiver dedupes by `webhook-id`).
async fn release(notifier: &Notifier, id: &JobId, status: JobStatus, holder: &str, slot: Option<u32>, made: Option<u32>, job: &Job) {
    if let Some(slot) = slot {
        if let Err(err) = notifier.deliveries.release_user_slot(&job.user_id, slot, holder).await {
            tracing::warn!(error = %err, "could not release the delivery slot");
        }
    }
    let given_back = match made {
        Some(attempt) => notifier.deliveries.finish_attempt(id, status, attempt, holder).await,
        None => notifier.deliveries.release_attempt(id, status, holder).await,
    };
    if let Err(err) = given_back {
        tracing::warn!(error = %err, "could not release the notification claim");
    }
}

/// One attempt under the claim: post, record, and queue the next attempt or give up.
async fn attempt_and_record(
    pipeline: &Pipeline,
    job: &Job,
    status: JobStatus,
    attempt: u32,
    url: &str,
    now: OffsetDateTime,
) -> Result<(), WorkError> {
    let notifier = &pipeline.notifier;
    let id = &job.job_id;
    // A copy that held the claim a moment ago may have delivered it.
    if notifier.deliveries.was_delivered(id, status).await? {
        return Ok(());
    }
    make_attempt(pipeline, job, status, url, now, Trigger::Scheduled, Some(attempt)).await
}

/// One attempt to the job's endpoint, unless the endpoint is paused (then
/// it is held), counted in the endpoint's run of failures, and recorded.
async fn make_attempt(
    pipeline: &Pipeline,
    job: &Job,
    status: JobStatus,
    url: &str,
    now: OffsetDateTime,
    trigger: Trigger,
    attempt: Option<u32>,
) -> Result<(), WorkError> {
    let endpoints = &pipeline.notifier.endpoints;
    let endpoint = display_target(url);
    let health = endpoints.endpoint(&job.user_id, &endpoint).await?;
    if health.as_ref().is_some_and(|h| h.paused_at.is_some()) {
        let made = Made { trigger, attempt, outcome: Attempt::Held, duration: Duration::ZERO };
        return record_outcome(pipeline, job, status, url, now, made).await;
    }
    let started = std::time::Instant::now();
    let outcome = attempt_delivery(pipeline, job, status, url).await?;
    let duration = started.elapsed();
    // The endpoint's run of failures is bookkeeping: a failure to write it is
    // logged, never a reason to post again.
    let counted = match &outcome {
        Attempt::Delivered(_) if health.is_some_and(|h| h.consecutive_failures > 0) => {
            endpoints.record_success(&job.user_id, &endpoint).await.map(|_| None)
        }
        Attempt::Delivered(_) | Attempt::Held => Ok(None),
        Attempt::Answered(_) | Attempt::Failed { .. } => {
            endpoints.record_failure(&job.user_id, &endpoint, pipeline.settings.notify_pause_after_failures, now).await.map(Some)
        }
    };
    match counted {
        Ok(Some(EndpointChange::Paused)) => {
            let runs = pipeline.settings.notify_pause_after_failures;
            let message = format!(
                "Deliveries to {endpoint} are paused after {runs} failed attempts in a row; notifications for it are held until it is resumed (POST /videos/webhook-endpoints/resume)"
            );
            pipeline.writes.record_event(&notifier_event(job, status, message, None)).await?;
            tracing::warn!(endpoint, metric = "NotificationEndpointsPaused", "endpoint paused");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not count the attempt against its endpoint"),
    }
    record_outcome(pipeline, job, status, url, now, Made { trigger, attempt, outcome, duration }).await
}

/// One attempt made, for the log.
struct Made {
    trigger: Trigger,
    /// The schedule's number; `None` for a manual send.
    attempt: Option<u32>,
    outcome: Attempt,
    duration: Duration,
}

/// Records what an attempt came to, as an event carrying the delivery log's
/// facts and (for a delivery) the record that stops any later copy; a
/// scheduled attempt then queues the next one or gives up, a manual one
/// leaves the schedule as it was.
async fn record_outcome(
    pipeline: &Pipeline,
    job: &Job,
    status: JobStatus,
    url: &str,
    now: OffsetDateTime,
    made: Made,
) -> Result<(), WorkError> {
    let notifier = &pipeline.notifier;
    let id = &job.job_id;
    let attempts = pipeline.settings.notify_retry_schedule.attempts();
    let target = display_target(url);
    let (message, error_code, http_status) = match &made.outcome {
        Attempt::Delivered(code) => (format!("Delivered (HTTP {code})"), None, Some(*code)),
        Attempt::Answered(code) => (format!("The endpoint answered HTTP {code}"), Some(format!("notify_http_{code}")), Some(*code)),
        Attempt::Failed { code, detail } => (detail.clone(), Some((*code).to_owned()), None),
        Attempt::Held => (format!("Held: deliveries to {target} are paused"), Some(HELD_CODE.to_owned()), None),
    };
    let which = match made.attempt {
        Some(attempt) => format!("attempt {attempt} of {attempts}"),
        None => "sent again by hand".to_owned(),
    };
    let mut event = notifier_event(job, status, format!("Notification of {status} to {target}, {which}: {message}"), error_code.clone());
    event.delivery = Some(DeliveryFacts {
        user_id: job.user_id.clone(),
        trigger: made.trigger,
        attempt: made.attempt,
        endpoint: target.clone(),
        outcome: if matches!(made.outcome, Attempt::Delivered(_)) { DeliveryOutcome::Delivered } else { DeliveryOutcome::Failed },
        http_status,
        error_class: error_code,
        duration_ms: u64::try_from(made.duration.as_millis()).unwrap_or(u64::MAX),
    });
    if let Attempt::Delivered(code) = made.outcome {
        // Recorded before the event: a message that comes again must find it
        // (a manual delivery too: the schedule has nothing left to send).
        if !notifier.deliveries.record_delivery(id, status, made.attempt.unwrap_or(0), code).await? {
            tracing::info!("another attempt delivered this notification too");
        }
        pipeline.writes.record_event(&event).await?;
        tracing::info!(attempt = made.attempt, http_status = code, "notification delivered");
        return Ok(());
    }
    pipeline.writes.record_event(&event).await?;
    tracing::warn!(attempt = made.attempt, message, "notification attempt failed");
    let Some(attempt) = made.attempt.filter(|_| !matches!(made.outcome, Attempt::Held)) else {
        // A manual send neither restarts nor moves on the schedule; a held
        // notification waits for its endpoint to be resumed.
        return Ok(());
    };
    match pipeline.settings.notify_retry_schedule.wait_after(attempt) {
        Some(wait) => {
            let not_before = (wait > MAX_QUEUE_DELAY).then(|| now + wait);
            let next = WorkMessage::Notify { job_id: id.clone(), status, attempt: attempt + 1, not_before, queued_at: None, slot_waits: 0 };
            notifier.queue.enqueue_after(&next, wait).await?;
        }
        None => {
            let event = notifier_event(
                job,
                status,
                format!("Gave up notifying {target} of {status} after {attempt} attempts"),
                Some("notify_gave_up".into()),
            );
            pipeline.writes.record_event(&event).await?;
            tracing::error!(attempt, metric = "NotificationsAbandoned", "gave up on the notification");
        }
    }
    Ok(())
}

/// One POST; errors only when our own storage fails.
async fn attempt_delivery(pipeline: &Pipeline, job: &Job, status: JobStatus, url: &str) -> Result<Attempt, WorkError> {
    let notifier = &pipeline.notifier;
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(_) => return Ok(Attempt::Failed { code: "notify_bad_url", detail: "The webhook_url is not a URL".into() }),
    };
    let destination = match check_destination(&parsed, pipeline.settings.limits.webhook_policy(), notifier.resolver.as_ref()).await {
        Ok(destination) => destination,
        Err(err) => {
            let code = if err.is_transient() { "notify_unresolved" } else { "notify_refused_address" };
            if let DestinationError::Unresolved { detail } = &err {
                tracing::info!(detail, "webhook host did not resolve");
            }
            return Ok(Attempt::Failed { code, detail: format!("Not sent: the webhook_url {err}") });
        }
    };
    let now = timestamp::now();
    let keys = signing_keys(notifier.secrets.as_ref(), &job.user_id, now).await?;
    let links = output_links(pipeline, job, now).await?;
    let body = serde_json::to_vec(&NotificationBody::new(job, status, &links, now))
        .map_err(|e| StoreError::Internal(format!("encoding a notification: {e}")))?;
    let id = message_id(&job.job_id, status);
    let signature = signature_header(&keys, &id, now.unix_timestamp(), &body);
    match notifier.poster.post(&destination, &id, now.unix_timestamp(), &signature, body).await {
        Ok(code) if (200..300).contains(&code) => Ok(Attempt::Delivered(code)),
        Ok(code) => Ok(Attempt::Answered(code)),
        Err(detail) => {
            tracing::info!(detail, "notification request failed");
            Ok(Attempt::Failed { code: "notify_network", detail: "The endpoint could not be reached".into() })
        }
    }
}

/// Presigned links to the video, as the status response has them.
async fn output_links(pipeline: &Pipeline, job: &Job, now: OffsetDateTime) -> Result<OutputLinks, StoreError> {
    let Some(artifact) = &job.output else { return Ok(OutputLinks::default()) };
    if job.status != JobStatus::Approved && job.output_expires_at.is_some_and(|at| at <= now) {
        return Ok(OutputLinks::default());
    }
    let video = pipeline.media.presign_get(&artifact.video_key, pipeline.settings.presign_ttl_seconds).await?;
    let thumbnail = match &artifact.thumbnail_key {
        Some(key) => Some(pipeline.media.presign_get(key, pipeline.settings.presign_ttl_seconds).await?.url),
        None => None,
    };
    Ok(OutputLinks { video_url: Some(video.url), thumbnail_url: thumbnail, expires_at: Some(video.expires_at) })
}

fn notifier_event(job: &Job, status: JobStatus, message: String, error_code: Option<String>) -> JobEvent {
    JobEvent {
        job_id: job.job_id.clone(),
        at: timestamp::now(),
        source: EventSource::Notifier,
        previous_status: None,
        status,
        message,
        error_code,
        actor: None,
        delivery: None,
    }
}

/// Scheme, host and port only: a path or query may carry the client's token.
fn display_target(url: &str) -> String {
    endpoint_of(url).unwrap_or_else(|| "the webhook_url".into())
}

fn round_up(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_endpoint_without_its_path_or_query() {
        assert_eq!(display_target("https://hooks.example.com/in?token=secret"), "https://hooks.example.com");
        assert_eq!(display_target("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000");
        assert_eq!(display_target("not a url"), "the webhook_url");
    }

    #[test]
    fn hop_waits_round_up_to_whole_seconds() {
        assert_eq!(round_up(Duration::from_millis(1_200)), Duration::from_secs(2));
        assert_eq!(round_up(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
