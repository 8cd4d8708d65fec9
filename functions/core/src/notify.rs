//! Client notifications: a job created with a `webhook_url` is told of
//! `completed` and of every terminal status, with a body like the status
//! response, signed the Standard Webhooks way with the user's own secret.
//!
//! - [`NotifyingJobs`] wraps the job store: every status change that lands
//!   (whoever makes it: worker, cancel, review, expiry) puts one `notify`
//!   message on the work queue. No code path has to remember to notify.
//! - The worker delivers (`functions/worker/src/notify.rs`): it checks the URL
//!   again ([`check_destination`]), signs, posts to the checked address only,
//!   records each attempt as an event, and retries through the queue on the
//!   [`RetrySchedule`].
//! - [`WebhookSecrets`] keeps one `whsec_` secret per user, made on first use.

pub mod address;
mod jobs;

pub use address::{classify, AddressKind};
pub use jobs::NotifyingJobs;

use crate::error::{AppError, StoreError};
use crate::ids::{JobId, UserId};
use crate::job::{timestamp, Job};
use crate::lifecycle::JobStatus;
use crate::ports::Principal;
use crate::request::InvalidRequest;
use crate::service::Services;
use crate::signing::WebhookSecret;
use crate::views::{OutputLinks, StatusBody};
use async_trait::async_trait;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use time::OffsetDateTime;
use url::{Host, Url};

/// How long a rotated-out secret still signs deliveries (next to the new
/// one), so that a client can switch without missing a notification.
pub const ROTATION_GRACE_SECONDS: i64 = 24 * 3600;

/// Whether a status is one the client is told of.
pub fn is_notified(status: JobStatus) -> bool {
    status == JobStatus::Completed || status.is_terminal()
}

// ---------------------------------------------------------------- ports

/// Turns a host name into addresses (DNS).
#[async_trait]
pub trait HostResolver: Send + Sync {
    /// The host's addresses; `Err` carries a detail for the logs.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String>;
}

/// A user's signing secrets: the current one and, for a while after a
/// rotation, the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWebhookSecrets {
    pub current: String,
    pub previous: Option<String>,
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

#[async_trait]
pub trait WebhookSecrets: Send + Sync {
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

/// Which notifications were delivered (one record per job and status), and
/// who is attempting one right now.
#[async_trait]
pub trait NotificationLog: Send + Sync {
    async fn was_delivered(&self, job: &JobId, status: JobStatus) -> Result<bool, StoreError>;
    /// Records a delivery once: `false` if it was already recorded.
    async fn record_delivery(&self, job: &JobId, status: JobStatus, attempt: u32, http_status: u16) -> Result<bool, StoreError>;
    /// Takes the right to attempt this notification for `lease` (unless
    /// someone holds it and it has not run out) as `holder`: `false` when
    /// someone else does.
    async fn claim_attempt(&self, job: &JobId, status: JobStatus, holder: &str, lease: Duration) -> Result<bool, StoreError>;
    /// Gives the right back once the attempt is over, only if `holder` still
    /// holds it (a lease that ran out may have passed to another attempt).
    async fn release_attempt(&self, job: &JobId, status: JobStatus, holder: &str) -> Result<(), StoreError>;
    /// Takes one of the user's `slots` delivery slots for `lease` as `holder`:
    /// the slot's number, or `None` when all are held (see [`USER_SLOTS`]).
    async fn claim_user_slot(&self, user: &UserId, slots: u32, holder: &str, lease: Duration) -> Result<Option<u32>, StoreError>;
    /// Gives a slot back, only if `holder` still holds it.
    async fn release_user_slot(&self, user: &UserId, slot: u32, holder: &str) -> Result<(), StoreError>;
}

/// The fairness rule between tenants: at most this many deliveries to one
/// user's endpoints are in flight at once. A notification that finds all of
/// its user's slots held waits [`SLOT_WAIT`] on the queue and does not count
/// as an attempt, so one tenant's slow receivers hold at most this many of
/// the notification consumer's concurrent deliveries.
pub const USER_SLOTS: u32 = 4;

/// How long a notification waits for one of its user's slots.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// How long one attempt may hold its claim: longer than a lookup, a connection
/// and a request together, shorter than the queue's visibility timeout (a
/// copy of the message that found the claim held comes back after that).
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(60);

pub use crate::ports::DelayedWorkQueue;

/// The longest delay one SQS message can carry.
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

// ---------------------------------------------------------------- URL checks

/// What a deployment allows a `webhook_url` to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookPolicy {
    /// `http://` too (the local stack).
    pub allow_http: bool,
    /// Loopback addresses too (the local stack and tests; never in a deployment).
    pub allow_loopback: bool,
}

impl WebhookPolicy {
    pub fn allows(&self, kind: AddressKind) -> bool {
        kind == AddressKind::Public || (self.allow_loopback && kind == AddressKind::Loopback)
    }
}

/// Why a `webhook_url` may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("must be an https URL")]
    Scheme,
    #[error("must name a host")]
    NoHost,
    #[error("points at {addr}, a {} address; only public addresses are allowed", kind.describe())]
    NotPublic { addr: IpAddr, kind: AddressKind },
    #[error("names a host that could not be resolved")]
    Unresolved { detail: String },
}

impl DestinationError {
    /// A network problem rather than a bad URL.
    pub fn is_transient(&self) -> bool {
        matches!(self, DestinationError::Unresolved { .. })
    }
}

/// A checked destination: the URL and the one address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub url: Url,
    /// The host name to pin to `addr` (none for an IP literal).
    pub host_name: Option<String>,
    pub addr: SocketAddr,
}

/// The checks that need no DNS: scheme, host, and an IP literal's address.
/// `Ok(Some(addr))` for an IP literal, `Ok(None)` for a name to resolve.
pub fn check_literal(url: &Url, policy: WebhookPolicy) -> Result<Option<IpAddr>, DestinationError> {
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(DestinationError::Scheme),
    }
    let ip = match url.host() {
        None => return Err(DestinationError::NoHost),
        Some(Host::Domain(name)) => {
            // A bare number is a host the resolver may read as an IPv4 address.
            match name.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) if name.is_empty() => return Err(DestinationError::NoHost),
                Err(_) => return Ok(None),
            }
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    let kind = classify(ip);
    if policy.allows(kind) {
        Ok(Some(ip))
    } else {
        Err(DestinationError::NotPublic { addr: ip, kind })
    }
}

/// Checks a `webhook_url` all the way: scheme, then every address its host
/// resolves to (one private address among public ones refuses it, since DNS
/// may hand out either). The caller connects to `addr` only.
pub async fn check_destination(url: &Url, policy: WebhookPolicy, resolver: &dyn HostResolver) -> Result<Destination, DestinationError> {
    let port = url.port_or_known_default().unwrap_or(443);
    if let Some(ip) = check_literal(url, policy)? {
        return Ok(Destination { url: url.clone(), host_name: None, addr: SocketAddr::new(ip, port) });
    }
    let host = url.host_str().ok_or(DestinationError::NoHost)?;
    let addrs = resolver.resolve(host, port).await.map_err(|detail| DestinationError::Unresolved { detail })?;
    let Some(first) = addrs.first().copied() else {
        return Err(DestinationError::Unresolved { detail: "no addresses".into() });
    };
    for ip in &addrs {
        let kind = classify(*ip);
        if !policy.allows(kind) {
            return Err(DestinationError::NotPublic { addr: *ip, kind });
        }
    }
    Ok(Destination { url: url.clone(), host_name: Some(host.to_owned()), addr: SocketAddr::new(first, port) })
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
    pub const DEFAULT_SECONDS: [u64; 8] = [30, 120, 600, 1_800, 3_600, 10_800, 21_600, 43_200];
    /// No single wait longer than a day.
    pub const MAX_WAIT_SECONDS: u64 = 86_400;

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
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: String,
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

/// The `webhook-signature` value: one `v1,` signature per secret.
pub fn signature_header(secrets: &[WebhookSecret], id: &str, unix_timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, unix_timestamp, body)).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------- the API

/// `GET /videos/webhook-secret` and `POST /videos/webhook-secret/rotate`.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSecretBody {
    pub secret: String,
    /// Until when the secret it replaced still signs deliveries (after a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until: Option<String>,
}

/// The user's secrets, made on first use.
pub async fn secrets_of(store: &dyn WebhookSecrets, user: &UserId) -> Result<UserWebhookSecrets, StoreError> {
    if let Some(secrets) = store.webhook_secrets(user).await? {
        return Ok(secrets);
    }
    store.create_webhook_secret(user, &WebhookSecret::generate_text()).await
}

impl Services {
    pub async fn webhook_secret(&self, who: &Principal) -> Result<WebhookSecretBody, AppError> {
        let secrets = secrets_of(self.webhook_secrets.as_ref(), &who.user_id).await?;
        Ok(WebhookSecretBody { secret: secrets.current, previous_secret_valid_until: None })
    }

    /// A new secret; the old one keeps signing (next to it) for a grace period.
    /// With no secret yet, the first one is made (there is nothing to keep).
    pub async fn rotate_webhook_secret(&self, who: &Principal) -> Result<WebhookSecretBody, AppError> {
        for _ in 0..5 {
            let new = WebhookSecret::generate_text();
            let Some(current) = self.webhook_secrets.webhook_secrets(&who.user_id).await? else {
                let made = self.webhook_secrets.create_webhook_secret(&who.user_id, &new).await?;
                if made.current == new {
                    return Ok(WebhookSecretBody { secret: new, previous_secret_valid_until: None });
                }
                // A concurrent request made the first one: rotate that.
                continue;
            };
            let until = timestamp::now() + time::Duration::seconds(ROTATION_GRACE_SECONDS);
            if self.webhook_secrets.rotate_webhook_secret(&who.user_id, &current.current, &new, until).await? {
                tracing::info!(user_id = %who.user_id, "webhook secret rotated");
                return Ok(WebhookSecretBody { secret: new, previous_secret_valid_until: Some(timestamp::format(until)) });
            }
        }
        Err(AppError::Unavailable("the webhook secret kept changing during a rotation".into()))
    }

    /// The create-time check of a `webhook_url`: refused with `400` naming the field.
    pub async fn check_webhook_url(&self, url: &Url) -> Result<(), AppError> {
        match check_destination(url, self.settings.limits.webhook_policy(), self.resolver.as_ref()).await {
            Ok(_) => Ok(()),
            Err(err) => {
                if let DestinationError::Unresolved { detail } = &err {
                    tracing::info!(detail, "webhook_url host did not resolve");
                }
                Err(InvalidRequest::new("webhook_url", err.to_string()).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeDns(HashMap<&'static str, Vec<IpAddr>>);

    #[async_trait]
    impl HostResolver for FakeDns {
        async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, String> {
            self.0.get(host).cloned().ok_or_else(|| "NXDOMAIN".into())
        }
    }

    fn dns() -> FakeDns {
        FakeDns(HashMap::from([
            ("hooks.example.com", vec!["93.184.216.34".parse().unwrap()]),
            ("localhost", vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]),
            ("mixed.example.com", vec!["93.184.216.34".parse().unwrap(), "10.0.0.7".parse().unwrap()]),
            ("metadata.example.com", vec!["169.254.169.254".parse().unwrap()]),
            ("empty.example.com", vec![]),
        ]))
    }

    const DEPLOYED: WebhookPolicy = WebhookPolicy { allow_http: false, allow_loopback: false };
    const LOCAL: WebhookPolicy = WebhookPolicy { allow_http: true, allow_loopback: true };

    async fn check(url: &str, policy: WebhookPolicy) -> Result<Destination, DestinationError> {
        check_destination(&Url::parse(url).unwrap(), policy, &dns()).await
    }

    #[tokio::test]
    async fn a_public_host_is_pinned_to_the_address_it_resolved_to() {
        let dest = check("https://hooks.example.com/in", DEPLOYED).await.unwrap();
        assert_eq!(dest.addr, "93.184.216.34:443".parse().unwrap());
        assert_eq!(dest.host_name.as_deref(), Some("hooks.example.com"));
        let dest = check("https://hooks.example.com:8443/in", DEPLOYED).await.unwrap();
        assert_eq!(dest.addr.port(), 8443);
    }

    #[tokio::test]
    async fn ip_literals_at_loopback_private_or_metadata_addresses_are_refused_in_a_deployment() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00:ec2::254]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://0.0.0.0/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://100.64.1.1/x",
        ] {
            let err = check(url, DEPLOYED).await.unwrap_err();
            assert!(matches!(err, DestinationError::NotPublic { .. }), "{url}: {err:?}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_non_public_addresses_are_refused() {
        assert!(matches!(check("https://localhost/x", DEPLOYED).await, Err(DestinationError::NotPublic { .. })));
        assert!(matches!(check("https://mixed.example.com/x", DEPLOYED).await, Err(DestinationError::NotPublic { .. })));
        let err = check("https://metadata.example.com/x", DEPLOYED).await.unwrap_err();
        assert_eq!(err, DestinationError::NotPublic { addr: "169.254.169.254".parse().unwrap(), kind: AddressKind::LinkLocal });
        assert!(err.to_string().contains("link-local"));
    }

    #[tokio::test]
    async fn an_unresolvable_host_is_refused_without_its_detail() {
        let err = check("https://nowhere.example.com/x", DEPLOYED).await.unwrap_err();
        assert!(err.is_transient());
        assert!(!err.to_string().contains("NXDOMAIN"));
        assert!(check("https://empty.example.com/x", DEPLOYED).await.unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn the_local_stack_may_allow_loopback_and_http_but_never_private_addresses() {
        assert!(check("http://127.0.0.1:9000/x", LOCAL).await.is_ok());
        assert!(check("http://localhost:9000/x", LOCAL).await.is_ok());
        assert!(matches!(check("http://10.0.0.1/x", LOCAL).await, Err(DestinationError::NotPublic { .. })));
        assert!(matches!(check("http://169.254.169.254/x", LOCAL).await, Err(DestinationError::NotPublic { .. })));
        assert_eq!(check("http://hooks.example.com/x", DEPLOYED).await.unwrap_err(), DestinationError::Scheme);
        assert_eq!(check("ftp://hooks.example.com/x", LOCAL).await.unwrap_err(), DestinationError::Scheme);
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
        let headers = crate::signing::SignedHeaders { id: Some("msg_1"), timestamp: Some("1700000000"), signature: Some(&header) };
        assert!(crate::signing::verify(&[b], headers, b"{}", 1_700_000_000).is_ok());
        assert!(crate::signing::verify(&[a], headers, b"{}", 1_700_000_000).is_ok());
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
