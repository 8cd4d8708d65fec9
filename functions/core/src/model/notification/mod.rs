//! Client notifications: a job created with a `webhook_url` is told of
//! `completed` and of every terminal status, with a body like the status
//! response, signed the Standard Webhooks way with the user's own secret.
//!
//! - [`NotifyingJobs`] wraps the job store: every status change that lands
//!   (whoever makes it: worker, cancel, review, expiry) puts one `notify`
//!   message on the notification queue. No code path has to remember to notify.
//! - The notifier delivers (`services/pipeline/delivery.rs`): it checks the URL
//!   again ([`check_destination`]), signs, posts to the checked address only,
//!   records each attempt as an event, and retries through the queue on the
//!   [`RetrySchedule`].
//! - [`WebhookSecrets`] keeps one `whsec_` secret per user, made on first use.

pub mod address;
pub mod endpoints;
pub mod log;

pub use address::{check_literal, classify, AddressKind, Destination, DestinationError, LoopbackPorts, WebhookPolicy};

use crate::model::ids::JobId;
use crate::model::job::{timestamp, Job};
use crate::model::lifecycle::JobStatus;
use crate::model::signing::WebhookSecret;
use crate::model::views::{OutputLinks, StatusBody};
use serde::Serialize;
use std::time::Duration;
use time::OffsetDateTime;

/// How long a rotated-out secret still signs deliveries (next to the new
/// one), so that a client can switch without missing a notification; a
/// rotation may ask for any grace up to [`MAX_ROTATION_GRACE_SECONDS`].
pub const ROTATION_GRACE_SECONDS: i64 = 24 * 3600;
/// The longest grace a rotation may ask for: a week.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// `POST /videos/webhook-secret/rotate`, checked: how long the replaced
/// secret keeps signing, 0 (it stops at once) to a week; a day when the
/// request has no body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateRequest {
    /// Seconds the replaced secret keeps signing next to the new one.
    pub grace_seconds: i64,
}

impl Default for RotateRequest {
    fn default() -> Self {
        Self { grace_seconds: ROTATION_GRACE_SECONDS }
    }
}

impl RotateRequest {
    /// Parses the body: `{}` or `{"grace_seconds": N}`; no body at all takes the default.
    pub fn parse(body: &[u8]) -> Result<Self, crate::model::request::InvalidRequest> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(default)]
            grace_seconds: Option<i64>,
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let raw: Body = crate::model::request::parse_json(body)?;
        match raw.grace_seconds {
            None => Ok(Self::default()),
            Some(seconds) if (0..=MAX_ROTATION_GRACE_SECONDS).contains(&seconds) => Ok(Self { grace_seconds: seconds }),
            Some(_) => Err(crate::model::request::InvalidRequest::new(
                "grace_seconds",
                format!("must be between 0 and {MAX_ROTATION_GRACE_SECONDS} (a week)"),
            )),
        }
    }
}

/// Whether a status is one the client is told of.
pub fn is_notified(status: JobStatus) -> bool {
    status == JobStatus::Completed || status.is_terminal()
}

/// A user's signing secrets: the current one and, for a while after a
/// rotation, the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWebhookSecrets {
    /// The `whsec_` secret that signs every delivery.
    pub current: String,
    /// The secret a rotation replaced, while it still signs.
    pub previous: Option<String>,
    /// When the replaced secret stops signing: the rotation's grace after it.
    pub previous_valid_until: Option<OffsetDateTime>,
}

impl UserWebhookSecrets {
    /// The secrets that sign a delivery at `now`, current first.
    pub fn signing_secrets(&self, now: OffsetDateTime) -> Vec<&str> {
        let mut secrets = vec![self.current.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous, self.previous_valid_until) {
            if now < until {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// The fairness rule between tenants: at most this many deliveries to one
/// user's endpoints are in flight at once. A notification that finds all of
/// its user's slots held waits [`SLOT_WAIT`] on the queue and does not count
/// as an attempt, so one tenant's slow receivers hold at most this many of
/// the notification consumer's concurrent deliveries.
pub const USER_SLOTS: u32 = 4;

/// How long a notification waits for one of its user's slots.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// How many times one attempt waits [`SLOT_WAIT`] for a slot (about a
/// minute) before the wait counts as a failed attempt (`notify_slots_busy`)
/// and the notification moves on the retry schedule: a tenant whose
/// receivers keep every slot busy cannot keep its messages hopping without
/// end, and every notification still ends within the schedule's attempts.
pub const SLOT_WAITS_PER_ATTEMPT: u32 = 12;

/// How long one attempt may hold its claim: longer than a lookup, a connection
/// and a request together, shorter than the queue's visibility timeout (a
/// copy of the message that found the claim held comes back after that).
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(60);

/// What a claim on one attempt of a notification came to. Attempts are
/// numbered and a copy of a message (SQS delivers at least once) carries
/// the same number: the claim lets one handling make each attempt once,
/// so a duplicate never posts again nor forks a second chain of retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptClaim {
    /// This handling makes the attempt.
    Taken,
    /// Another handling is making an attempt right now.
    Held,
    /// This attempt, or a later one, was made already.
    AlreadyMade,
}

/// The longest delay one SQS message can carry.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

/// How long after a status change began its writer can still be writing it:
/// Lambda stops every function within 15 minutes. A notification queued
/// before its change that still does not see the status after this never
/// will from that writer (one that died is retried, and queues again).
pub const WRITER_WINDOW: Duration = Duration::from_secs(900);

/// The delay of a notification queued before its status change is written:
/// long enough that the change has almost always landed when it arrives.
pub const AFTER_THE_CHANGE: Duration = Duration::from_secs(2);

/// How long a notification that arrived before its change waits before it
/// looks again: as long as it has waited so far, from [`AFTER_THE_CHANGE`]
/// up to a minute.
pub fn wait_for_the_change(waited: Duration) -> Duration {
    waited.clamp(AFTER_THE_CHANGE, Duration::from_secs(60))
}

// ---------------------------------------------------------------- retries

/// Waits between delivery attempts. The default, 30 s, 2 min, 10 min, 30 min,
/// 1 h, 3 h, 6 h and 12 h, makes nine attempts over about 22.7 hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    waits_seconds: Vec<u64>,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self { waits_seconds: Self::DEFAULT_SECONDS.to_vec() }
    }
}

impl RetrySchedule {
    /// The waits of the default schedule, in seconds.
    pub const DEFAULT_SECONDS: [u64; 8] = [30, 120, 600, 1_800, 3_600, 10_800, 21_600, 43_200];
    /// No single wait longer than a day.
    pub const MAX_WAIT_SECONDS: u64 = 86_400;

    /// A schedule of these waits, in seconds, in order.
    pub fn new(waits_seconds: Vec<u64>) -> Self {
        Self { waits_seconds }
    }

    /// `NOTIFY_RETRY_SCHEDULE_SECONDS`: comma-separated waits in seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let waits = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| match part.parse::<u64>() {
                Ok(wait) if wait <= Self::MAX_WAIT_SECONDS => Ok(wait),
                Ok(_) => Err(format!("{part} is more than {} seconds", Self::MAX_WAIT_SECONDS)),
                Err(_) => Err(format!("{part:?} is not a whole number of seconds")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { waits_seconds: waits })
    }

    /// Attempts in all: the first, then one after each wait.
    pub fn attempts(&self) -> u32 {
        self.waits_seconds.len() as u32 + 1
    }

    /// The wait after a failed `attempt` (1-based); `None` after the last.
    pub fn wait_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt).ok()?.checked_sub(1)?;
        self.waits_seconds.get(index).map(|s| Duration::from_secs(*s))
    }

    /// All the waits added up: how long the last attempt comes after the first.
    pub fn total(&self) -> Duration {
        Duration::from_secs(self.waits_seconds.iter().sum())
    }
}

// ---------------------------------------------------------------- the message

/// `job.completed`, `job.failed`, …
pub fn event_type(status: JobStatus) -> String {
    format!("job.{status}")
}

/// The `webhook-id`: the same for every attempt of one job's notification of
/// one status, so that a client can drop a repeat.
pub fn message_id(job: &JobId, status: JobStatus) -> String {
    format!("msg_{job}_{status}")
}

/// The body: the status response, with the status the notification is about,
/// and the Standard Webhooks `type` and `timestamp`.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationBody {
    /// The Standard Webhooks `type`: `job.` and the status (see [`event_type`]).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the notification was made (RFC 3339).
    pub timestamp: String,
    /// The job's status body, as of the notified status.
    #[serde(flatten)]
    pub job: StatusBody,
}

impl NotificationBody {
    /// The job as it is now, told as of `status` (a later status gets its own notification).
    pub fn new(job: &Job, status: JobStatus, links: &OutputLinks, at: OffsetDateTime) -> Self {
        let mut view = StatusBody::new(job, links);
        view.status = status;
        view.status_label = status.label();
        Self { event_type: event_type(status), timestamp: timestamp::format(at), job: view }
    }
}

/// The body of a test delivery (`POST /videos/webhook-test`): signed as a
/// notification is, with the Standard Webhooks `type` `ping`.
#[derive(Debug, Clone, Serialize)]
pub struct PingBody {
    /// Always `ping`: a receiver answers it and changes nothing.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// When it was sent (RFC 3339).
    pub timestamp: String,
    /// What it is, for whoever reads the receiver's log.
    pub message: &'static str,
}

/// What a test delivery found (`POST /videos/webhook-test`).
#[derive(Debug, Clone, Serialize)]
pub struct PingAnswer {
    /// Where it went, without the path or query: scheme, host and port.
    pub endpoint: String,
    /// The `webhook-id` it carried.
    pub webhook_id: String,
    /// Whether the receiver answered 2xx (a redirect is not followed, and is not delivered).
    pub delivered: bool,
    /// The receiver's HTTP status; `null` when it did not answer.
    pub status: Option<u16>,
    /// Why there is no answer (`unreachable`: no connection, or no answer
    /// within the notifier's time limits); `null` when there is one.
    pub error: Option<&'static str>,
    /// From sending to the answer (or giving up), in milliseconds.
    pub duration_ms: u64,
}

/// The `webhook-signature` value: one `v1,` signature per secret.
pub fn signature_header(secrets: &[WebhookSecret], id: &str, unix_timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, unix_timestamp, body)).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------- the API

/// `GET /videos/webhook-secret` and `POST /videos/webhook-secret/rotate`.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSecretBody {
    /// The user's current `whsec_` secret, to verify deliveries with.
    pub secret: String,
    /// Until when the secret it replaced still signs deliveries (after a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_asks_for_no_grace_to_a_weeks_and_takes_a_day_by_default() {
        assert_eq!(RotateRequest::parse(b"").unwrap().grace_seconds, ROTATION_GRACE_SECONDS);
        assert_eq!(RotateRequest::parse(b"{}").unwrap().grace_seconds, ROTATION_GRACE_SECONDS);
        assert_eq!(RotateRequest::parse(br#"{"grace_seconds":0}"#).unwrap().grace_seconds, 0);
        assert_eq!(RotateRequest::parse(br#"{"grace_seconds":604800}"#).unwrap().grace_seconds, MAX_ROTATION_GRACE_SECONDS);
        for bad in [r#"{"grace_seconds":604801}"#, r#"{"grace_seconds":-1}"#, r#"{"grace_seconds":"1h"}"#, r#"{"grace":1}"#] {
            assert!(RotateRequest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_schedule_makes_nine_attempts_over_about_a_day() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 9);
        assert_eq!(schedule.wait_after(1), Some(Duration::from_secs(30)));
        assert_eq!(schedule.wait_after(8), Some(Duration::from_secs(43_200)));
        assert_eq!(schedule.wait_after(9), None);
        assert_eq!(schedule.wait_after(0), None);
        let hours = schedule.total().as_secs_f64() / 3600.0;
        assert!((20.0..=26.0).contains(&hours), "{hours}");
    }

    #[test]
    fn a_schedule_parses_from_comma_separated_seconds_and_refuses_nonsense() {
        assert_eq!(RetrySchedule::parse("1, 2,3").unwrap(), RetrySchedule::new(vec![1, 2, 3]));
        assert_eq!(RetrySchedule::parse("").unwrap().attempts(), 1);
        assert!(RetrySchedule::parse("1,soon").is_err());
        assert!(RetrySchedule::parse("-5").is_err());
        assert!(RetrySchedule::parse("90000").is_err());
    }

    #[test]
    fn a_rotated_out_secret_signs_only_until_its_grace_ends() {
        let now = timestamp::now();
        let secrets = UserWebhookSecrets {
            current: "whsec_new".into(),
            previous: Some("whsec_old".into()),
            previous_valid_until: Some(now + time::Duration::seconds(10)),
        };
        assert_eq!(secrets.signing_secrets(now), ["whsec_new", "whsec_old"]);
        assert_eq!(secrets.signing_secrets(now + time::Duration::seconds(10)), ["whsec_new"]);
    }

    #[test]
    fn the_signature_header_carries_one_signature_per_secret_and_verifies_with_either() {
        let a = WebhookSecret::parse(&WebhookSecret::generate_text()).unwrap();
        let b = WebhookSecret::parse(&WebhookSecret::generate_text()).unwrap();
        let header = signature_header(&[a.clone(), b.clone()], "msg_1", 1_700_000_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        let headers = crate::model::signing::SignedHeaders { id: Some("msg_1"), timestamp: Some("1700000000"), signature: Some(&header) };
        assert!(crate::model::signing::verify(&[b], headers, b"{}", 1_700_000_000).is_ok());
        assert!(crate::model::signing::verify(&[a], headers, b"{}", 1_700_000_000).is_ok());
    }

    #[test]
    fn only_completed_and_terminal_statuses_are_notified_with_stable_ids() {
        let notified: Vec<JobStatus> = JobStatus::ALL.into_iter().filter(|s| is_notified(*s)).collect();
        use JobStatus::*;
        assert_eq!(notified, [Completed, Approved, Rejected, Failed, Canceled, Expired]);
        let id = JobId::generate();
        assert_eq!(message_id(&id, Completed), message_id(&id, Completed));
        assert_ne!(message_id(&id, Completed), message_id(&id, Approved));
        assert_eq!(event_type(Failed), "job.failed");
    }
}
