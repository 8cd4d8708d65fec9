//! The delivery log: what each attempt at a client notification came to,
//! kept on the job's event of that attempt (so it lives as long as the job's
//! history), and the requests to send a notification again by hand.

pub use crate::model::delivery::{DeliveryFacts, DeliveryOutcome, Trigger};
use crate::model::ids::JobId;
use crate::model::job::{timestamp, JobEvent};
use crate::model::lifecycle::JobStatus;
use crate::model::request::{parse_json, InvalidRequest};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a request to send a notification again stands: another request
/// for the same job and status within it queues nothing, so that a client's
/// retried or concurrent requests make one send.
pub const REDELIVERY_WINDOW: Duration = Duration::from_secs(60);

/// The most notifications one `POST /videos/deliveries/redeliver` sends again.
pub const MAX_REDELIVERIES_PER_REQUEST: usize = 50;

/// One attempt as the API shows it (`GET …/deliveries`, `GET /videos/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// The job the notification was about.
    pub job_id: JobId,
    /// The status the client was told of.
    pub status: JobStatus,
    /// When the attempt ended (RFC 3339).
    pub at: String,
    /// `scheduled` or `manual`.
    pub trigger: Trigger,
    /// The schedule's attempt number; `null` for a manual send.
    pub attempt: Option<u32>,
    /// `scheme://host[:port]`.
    pub endpoint: String,
    /// `delivered` or `failed`.
    pub outcome: DeliveryOutcome,
    /// The endpoint's HTTP status; `null` when it did not answer.
    pub http_status: Option<u16>,
    /// Why it failed; `null` when delivered.
    pub error_class: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

impl DeliveryView {
    /// The view of `event`, if it records an attempt.
    pub fn of(event: &JobEvent) -> Option<Self> {
        let facts = event.delivery.as_ref()?;
        Some(Self {
            job_id: event.job_id.clone(),
            status: event.status,
            at: timestamp::format(event.at),
            trigger: facts.trigger,
            attempt: facts.attempt,
            endpoint: facts.endpoint.clone(),
            outcome: facts.outcome,
            http_status: facts.http_status,
            error_class: facts.error_class.clone(),
            duration_ms: facts.duration_ms,
        })
    }
}

/// `GET /videos/jobs/{id}/deliveries`: every attempt, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct JobDeliveriesBody {
    /// The job.
    pub job_id: JobId,
    /// Its attempts, oldest first.
    pub deliveries: Vec<DeliveryView>,
}

/// `GET /videos/deliveries`: a page of the caller's failed attempts, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct FailedDeliveriesBody {
    /// This page's attempts.
    pub deliveries: Vec<DeliveryView>,
    /// Where the next page starts; `null` on the last.
    pub next_cursor: Option<String>,
}

/// What `GET /videos/deliveries` narrows the caller's failed attempts to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedDeliveriesFilter {
    /// Attempts at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Attempts before this time.
    pub until: Option<OffsetDateTime>,
    /// Attempts that failed this way (`notify_http_500`, `notify_network`, …).
    pub error_class: Option<String>,
}

impl FailedDeliveriesFilter {
    /// Reads `since`, `until` and `error_class` from the query parameters `param` gives.
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Self, InvalidRequest> {
        let given = |name: &str| param(name).filter(|v| !v.is_empty());
        let time = |name: &'static str| {
            given(name)
                .map(|text| {
                    timestamp::parse(&text).ok_or_else(|| InvalidRequest::new(name, "is an RFC 3339 time, such as 2026-12-01T00:00:00Z"))
                })
                .transpose()
        };
        let filter = Self { since: time("since")?, until: time("until")?, error_class: given("error_class") };
        if let Some(class) = &filter.error_class {
            let known = class.starts_with("notify_")
                && class.len() <= 40
                && class.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !known {
                return Err(InvalidRequest::new("error_class", "is a notify_… code, such as notify_http_500 or notify_network"));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since >= until {
                return Err(InvalidRequest::new("until", "must be later than since"));
            }
        }
        Ok(filter)
    }

    /// Whether a failed attempt at `at` of class `class` passes.
    pub fn matches(&self, at: OffsetDateTime, class: Option<&str>) -> bool {
        self.since.is_none_or(|since| at >= since)
            && self.until.is_none_or(|until| at < until)
            && self.error_class.as_deref().is_none_or(|wanted| class == Some(wanted))
    }
}

/// `POST /videos/jobs/{id}/redeliver`: which notification to send again; the
/// job's latest notified status when the body names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedeliverRequest {
    /// The status whose notification is sent again.
    pub status: Option<JobStatus>,
}

impl RedeliverRequest {
    /// Parses `{}`, `{"status": "completed"}` or no body at all.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(default)]
            status: Option<String>,
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let raw: Body = parse_json(body)?;
        let status = raw
            .status
            .map(|text| {
                JobStatus::parse(&text).filter(|s| *s == JobStatus::Completed || s.is_terminal()).ok_or_else(|| {
                    InvalidRequest::new(
                        "status",
                        "is a status clients are told of: completed, approved, rejected, failed, canceled or expired",
                    )
                })
            })
            .transpose()?;
        Ok(Self { status })
    }
}

/// `POST /videos/deliveries/redeliver`: send again every notification of the
/// caller with a failed attempt since a time and no delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverRequest {
    /// Failed attempts at or after this time.
    pub since: OffsetDateTime,
}

impl RecoverRequest {
    /// Parses `{"since": "2026-12-01T00:00:00Z"}`; `since` is required.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            since: String,
        }
        let raw: Body = parse_json(body)?;
        let since = timestamp::parse(&raw.since)
            .ok_or_else(|| InvalidRequest::new("since", "is an RFC 3339 time, such as 2026-12-01T00:00:00Z"))?;
        Ok(Self { since })
    }
}

/// What a redelivery request did for one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedeliveryView {
    /// The job.
    pub job_id: JobId,
    /// The status whose notification is sent again.
    pub status: JobStatus,
    /// `true`: queued now; `false`: one was queued within the last minute
    /// (by this client's earlier or concurrent request) and stands.
    pub queued: bool,
}

/// The answer to either redelivery request.
#[derive(Debug, Clone, Serialize)]
pub struct RedeliveriesBody {
    /// Each notification to send again, and whether it was queued now.
    pub redeliveries: Vec<RedeliveryView>,
    /// `true` when more failed notifications match than one request sends
    /// again ([`MAX_REDELIVERIES_PER_REQUEST`]): ask again.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn filter(pairs: &[(&str, &str)]) -> Result<FailedDeliveriesFilter, InvalidRequest> {
        let params: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        FailedDeliveriesFilter::parse(|name| params.get(name).cloned())
    }

    #[test]
    fn a_failed_deliveries_filter_reads_its_window_and_class_and_refuses_what_does_not_parse() {
        let read =
            filter(&[("since", "2026-12-01T00:00:00Z"), ("until", "2026-12-02T00:00:00Z"), ("error_class", "notify_http_500")]).unwrap();
        assert!(read.since.is_some() && read.until.is_some());
        assert_eq!(read.error_class.as_deref(), Some("notify_http_500"));
        assert_eq!(filter(&[("since", "yesterday")]).unwrap_err().field, "since");
        assert_eq!(filter(&[("error_class", "Boom")]).unwrap_err().field, "error_class");
        assert_eq!(filter(&[("error_class", "http_500")]).unwrap_err().field, "error_class");
        let backwards = filter(&[("since", "2026-12-02T00:00:00Z"), ("until", "2026-12-01T00:00:00Z")]);
        assert_eq!(backwards.unwrap_err().field, "until");
        assert_eq!(filter(&[]).unwrap(), FailedDeliveriesFilter::default());
    }

    #[test]
    fn a_failed_attempt_matches_inside_its_window_and_of_its_class() {
        let f = filter(&[("since", "2026-12-01T00:00:00Z"), ("until", "2026-12-02T00:00:00Z"), ("error_class", "notify_network")]).unwrap();
        let inside = timestamp::parse("2026-12-01T12:00:00Z").unwrap();
        assert!(f.matches(inside, Some("notify_network")));
        assert!(!f.matches(inside, Some("notify_http_500")));
        assert!(!f.matches(timestamp::parse("2026-12-02T00:00:00Z").unwrap(), Some("notify_network")), "until is excluded");
    }

    #[test]
    fn a_redeliver_body_names_a_notified_status_or_nothing() {
        assert_eq!(RedeliverRequest::parse(b"").unwrap(), RedeliverRequest::default());
        assert_eq!(RedeliverRequest::parse(b"{}").unwrap(), RedeliverRequest::default());
        assert_eq!(RedeliverRequest::parse(br#"{"status":"completed"}"#).unwrap().status, Some(JobStatus::Completed));
        assert_eq!(RedeliverRequest::parse(br#"{"status":"processing"}"#).unwrap_err().field, "status");
        assert_eq!(RedeliverRequest::parse(br#"{"status":"done"}"#).unwrap_err().field, "status");
        assert!(RedeliverRequest::parse(br#"{"other":1}"#).is_err());
    }

    #[test]
    fn a_recover_body_needs_a_since_time() {
        assert!(RecoverRequest::parse(br#"{"since":"2026-12-01T00:00:00Z"}"#).is_ok());
        assert_eq!(RecoverRequest::parse(br#"{"since":"soon"}"#).unwrap_err().field, "since");
        assert_eq!(RecoverRequest::parse(b"{}").unwrap_err().field, "since");
    }
}
