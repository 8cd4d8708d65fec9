//! Endpoints that keep failing are paused: after a run of failed attempts
//! to one of a user's endpoints (scheme, host and port), the notifier holds
//! every notification for it, until the user resumes it
//! (`POST /videos/webhook-endpoints/resume`), sending what was held or not.

use crate::model::request::{parse_json, InvalidRequest};
use crate::model::timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How many failed attempts in a row (to one endpoint of one user, any of
/// their jobs, scheduled or manual) pause it, by default
/// (`NOTIFY_PAUSE_AFTER_FAILURES`): more than one job's whole schedule (9),
/// so one bad notification does not pause an endpoint, and far fewer than an
/// endpoint that is down for a day would take.
pub const DEFAULT_PAUSE_AFTER_FAILURES: u32 = 15;

/// The code of an attempt held because its endpoint is paused.
pub const HELD_CODE: &str = "notify_endpoint_paused";

/// An endpoint's record: its run of failures and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    /// `scheme://host[:port]`.
    pub endpoint: String,
    /// Failed attempts since its last delivery.
    pub consecutive_failures: u32,
    /// When the run of failures paused it; `None` while it is not paused.
    pub paused_at: Option<OffsetDateTime>,
}

/// What recording an attempt's outcome did to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointChange {
    /// Nothing to tell.
    Unchanged,
    /// This failure paused it (exactly one write sees this).
    Paused,
}

/// A paused endpoint, as the account shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PausedEndpointView {
    /// `scheme://host[:port]`.
    pub endpoint: String,
    /// When it was paused (RFC 3339).
    pub paused_at: String,
    /// Failed attempts in a row when it was paused, and since.
    pub consecutive_failures: u32,
}

impl PausedEndpointView {
    /// The view of a paused `state`; `None` when it is not paused.
    pub fn of(state: &EndpointState) -> Option<Self> {
        Some(Self {
            endpoint: state.endpoint.clone(),
            paused_at: timestamp::format(state.paused_at?),
            consecutive_failures: state.consecutive_failures,
        })
    }
}

/// The answer to a resume.
#[derive(Debug, Clone, Serialize)]
pub struct ResumedBody {
    /// The endpoint.
    pub endpoint: String,
    /// `true`: it was paused and now is not; `false`: it was not paused (or a
    /// concurrent resume did it), and nothing was sent.
    pub resumed: bool,
    /// What was held and is sent again (when `send_held`).
    pub redeliveries: Vec<crate::model::notification::log::RedeliveryView>,
    /// More held notifications than one request sends again: resume sent
    /// these; send the rest with `POST /videos/deliveries/redeliver`.
    pub more: bool,
}

/// `POST /videos/webhook-endpoints/resume`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The endpoint as the log and the account write it: `scheme://host[:port]`.
    pub endpoint: String,
    /// Whether to send again what was held while it was paused.
    pub send_held: bool,
}

impl ResumeRequest {
    /// Parses `{"endpoint": "https://hooks.example.com", "send_held": true}`
    /// (`send_held` is `true` when left out).
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            endpoint: String,
            #[serde(default)]
            send_held: Option<bool>,
        }
        let raw: Body = parse_json(body)?;
        let endpoint = endpoint_of(&raw.endpoint)
            .filter(|normal| *normal == raw.endpoint.trim_end_matches('/'))
            .ok_or_else(|| InvalidRequest::new("endpoint", "is scheme://host[:port], as the account and the delivery log write it"))?;
        Ok(Self { endpoint, send_held: raw.send_held.unwrap_or(true) })
    }
}

/// The endpoint of a URL: scheme, host and port only (a path or query may
/// carry the client's token); `None` when it is not a URL with a host.
pub fn endpoint_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_scheme_host_and_port_without_path_query_or_credentials() {
        assert_eq!(endpoint_of("https://hooks.example.com/a/b?token=x").as_deref(), Some("https://hooks.example.com"));
        assert_eq!(endpoint_of("http://127.0.0.1:8080/h").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(
            endpoint_of("https://user:pw@hooks.example.com:443/").as_deref(),
            Some("https://hooks.example.com"),
            "the default port is implied"
        );
        assert_eq!(endpoint_of("not a url"), None);
    }

    #[test]
    fn a_resume_names_an_endpoint_as_the_log_writes_it_and_sends_what_was_held_by_default() {
        let parsed = ResumeRequest::parse(br#"{"endpoint": "https://hooks.example.com"}"#).unwrap();
        assert_eq!(parsed, ResumeRequest { endpoint: "https://hooks.example.com".into(), send_held: true });
        let kept = ResumeRequest::parse(br#"{"endpoint": "http://127.0.0.1:8080/", "send_held": false}"#).unwrap();
        assert_eq!((kept.endpoint.as_str(), kept.send_held), ("http://127.0.0.1:8080", false));
        for bad in [r#"{"endpoint": "https://hooks.example.com/path"}"#, r#"{"endpoint": "hooks.example.com"}"#, r#"{}"#] {
            assert!(ResumeRequest::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_paused_endpoint_has_a_view() {
        let mut state = EndpointState { endpoint: "https://h.example".into(), consecutive_failures: 3, paused_at: None };
        assert_eq!(PausedEndpointView::of(&state), None);
        state.paused_at = timestamp::parse("2026-12-01T00:00:00Z");
        assert_eq!(PausedEndpointView::of(&state).unwrap().paused_at, "2026-12-01T00:00:00.000Z");
    }
}
