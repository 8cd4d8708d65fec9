//! A deployment's knobs, read once at start-up from the environment.

use crate::model::notification::address::LoopbackPorts;
use crate::model::request::{ProviderName, RequestLimits};

/// The adapters whose `sends_progress_callbacks` is false (a providers test keeps the two in step).
pub const DEFAULT_PROGRESS_REFRESH_PROVIDERS: &[&str] = &["fal"];

/// A deployment's configuration, from the environment; each Lambda reads it once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long an output that was not approved is kept.
    pub retention_seconds: u64,
    /// How many in-flight jobs one user may have.
    pub max_active_jobs: u32,
    /// The provider a job goes to when its request names none (`DEFAULT_PROVIDER`, `local` when unset).
    pub default_provider: ProviderName,
    /// The providers a request may name (`ENABLED_PROVIDERS`); always holds the default.
    pub enabled_providers: Vec<ProviderName>,
    /// Lifetime of presigned upload and download URLs.
    pub presign_ttl_seconds: u64,
    /// Bounds on requests: upload size, which webhook URLs pass, fault injection.
    pub limits: RequestLimits,
    /// Largest JSON body the API reads.
    pub body_max_bytes: usize,
    /// How long the state machine waits for a video before giving up.
    pub generation_timeout_seconds: u64,
    /// Where a job goes when its provider refuses it or keeps failing to accept it.
    pub failover: Option<crate::model::failover::Failover>,
    /// Waits between client notification attempts.
    pub notify_retry_schedule: crate::model::notification::RetrySchedule,
    /// Failed attempts in a row that pause one of a user's endpoints
    /// (`NOTIFY_PAUSE_AFTER_FAILURES`, at least 1).
    pub notify_pause_after_failures: u32,
    /// A job in `submitted` or `processing` this long without an update counts as stuck.
    pub stuck_after_seconds: u64,
    /// A read of an in-flight job asks its provider again at most this often (0: never).
    pub progress_refresh_seconds: u64,
    /// Providers that send no progress callbacks: their jobs are refreshed on reads.
    pub progress_refresh_providers: Vec<ProviderName>,
    /// The key of the prompt hash kept on each job (`PROMPT_HASH_KEY`, a
    /// deployment secret; the local stack's fixed key when unset).
    pub prompt_hash_key: Vec<u8>,
    /// Per-key limits (`RATE_LIMIT_REQUESTS_PER_MINUTE`, `RATE_LIMIT_CREATES_PER_MINUTE`; 0: none).
    pub rate_limits: crate::model::ratelimit::RateLimits,
}

/// The prompt hash key of the local stack and tests; a deployment sets its own.
pub const LOCAL_PROMPT_HASH_KEY: &[u8] = b"videojobs-local-prompt-hash-key";

/// An environment variable whose value cannot be used; the function does not start with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {name} {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub name: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

/// `LOOPBACK_WEBHOOK_PORTS` (none unless named), never the local stack's own
/// ports: the emulator's (`AWS_ENDPOINT_URL`), the API's (`LOCAL_API_ADDR`)
/// and the local provider's (`LOCAL_PROVIDER_URL`).
fn loopback_webhook_ports(get: &impl Fn(&str) -> Option<String>) -> Result<LoopbackPorts, ConfigError> {
    if get("ALLOW_LOOPBACK_WEBHOOKS").is_some_and(|v| !v.trim().is_empty()) {
        let problem = "is gone: it opened every loopback port, the emulator's too; name yours in LOOPBACK_WEBHOOK_PORTS (8000-8999)";
        return Err(ConfigError { name: "ALLOW_LOOPBACK_WEBHOOKS", problem: problem.into() });
    }
    let named = LoopbackPorts::parse(&get("LOOPBACK_WEBHOOK_PORTS").unwrap_or_default())
        .map_err(|problem| ConfigError { name: "LOOPBACK_WEBHOOK_PORTS", problem })?;
    let url_port = |name: &str| get(name).and_then(|u| url::Url::parse(u.trim()).ok()).and_then(|u| u.port_or_known_default());
    let addr_port = |name: &str| get(name).and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok()).map(|a| a.port());
    let own = [url_port("AWS_ENDPOINT_URL"), addr_port("LOCAL_API_ADDR"), url_port("LOCAL_PROVIDER_URL")];
    Ok(named.refusing(own.into_iter().flatten()))
}

impl Settings {
    /// Reads settings through `get` (the environment, in a function).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn number<T: std::str::FromStr>(get: &impl Fn(&str) -> Option<String>, name: &'static str, default: T) -> Result<T, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(text) => text.trim().parse().map_err(|_| ConfigError { name, problem: format!("is {text:?}, not a number") }),
            }
        }
        let provider =
            |name: &'static str, text: &str| text.trim().parse::<ProviderName>().map_err(|e| ConfigError { name, problem: e.0.to_owned() });
        let default_provider = provider("DEFAULT_PROVIDER", &get("DEFAULT_PROVIDER").unwrap_or_else(|| "local".into()))?;
        let mut enabled_providers = match get("ENABLED_PROVIDERS") {
            Some(list) => {
                list.split(',').filter(|p| !p.trim().is_empty()).map(|p| provider("ENABLED_PROVIDERS", p)).collect::<Result<Vec<_>, _>>()?
            }
            None => Vec::new(),
        };
        if !enabled_providers.contains(&default_provider) {
            enabled_providers.push(default_provider.clone());
        }
        let retention_seconds = number(&get, "RETENTION_SECONDS", 86_400)?;
        if retention_seconds == 0 {
            return Err(ConfigError { name: "RETENTION_SECONDS", problem: "must be at least 1".into() });
        }
        let failover = match get("FALLBACK_PROVIDER").filter(|p| !p.trim().is_empty()) {
            Some(text) => {
                let after_attempts = number(&get, "FALLBACK_AFTER_ATTEMPTS", 2)?;
                // The worker submits a job at most five times (MAX_SUBMISSIONS in worker/src/submission.rs).
                if !(1..=5).contains(&after_attempts) {
                    return Err(ConfigError { name: "FALLBACK_AFTER_ATTEMPTS", problem: "must be from 1 to 5".into() });
                }
                Some(crate::model::failover::Failover { fallback: provider("FALLBACK_PROVIDER", &text)?, after_attempts })
            }
            None => None,
        };
        Ok(Self {
            failover,
            retention_seconds,
            max_active_jobs: number(&get, "MAX_ACTIVE_JOBS", 5)?,
            default_provider,
            enabled_providers,
            presign_ttl_seconds: number(&get, "PRESIGN_TTL_SECONDS", 900)?,
            limits: RequestLimits {
                allow_http_webhooks: get("ALLOW_HTTP_WEBHOOKS").is_some_and(|v| v == "true" || v == "1"),
                loopback_webhook_ports: loopback_webhook_ports(&get)?,
                upload_max_bytes: number(&get, "UPLOAD_MAX_BYTES", 10 * 1024 * 1024)?,
                allow_fault_injection: get("ALLOW_FAULT_INJECTION").is_some_and(|v| v == "true" || v == "1"),
            },
            body_max_bytes: number(&get, "BODY_MAX_BYTES", 64 * 1024)?,
            generation_timeout_seconds: number(&get, "GENERATION_TIMEOUT_SECONDS", 900)?,
            notify_retry_schedule: match get("NOTIFY_RETRY_SCHEDULE_SECONDS") {
                None => crate::model::notification::RetrySchedule::default(),
                Some(text) => crate::model::notification::RetrySchedule::parse(&text)
                    .map_err(|problem| ConfigError { name: "NOTIFY_RETRY_SCHEDULE_SECONDS", problem })?,
            },
            notify_pause_after_failures: match number(
                &get,
                "NOTIFY_PAUSE_AFTER_FAILURES",
                crate::model::notification::endpoints::DEFAULT_PAUSE_AFTER_FAILURES,
            )? {
                0 => return Err(ConfigError { name: "NOTIFY_PAUSE_AFTER_FAILURES", problem: "must be at least 1".into() }),
                n => n,
            },
            stuck_after_seconds: number(&get, "STUCK_AFTER_SECONDS", 1_800)?,
            progress_refresh_seconds: number(&get, "PROGRESS_REFRESH_SECONDS", 10)?,
            rate_limits: crate::model::ratelimit::RateLimits {
                requests_per_minute: number(&get, "RATE_LIMIT_REQUESTS_PER_MINUTE", crate::model::ratelimit::DEFAULT_REQUESTS_PER_MINUTE)?,
                creates_per_minute: number(&get, "RATE_LIMIT_CREATES_PER_MINUTE", crate::model::ratelimit::DEFAULT_CREATES_PER_MINUTE)?,
            },
            prompt_hash_key: get("PROMPT_HASH_KEY")
                .filter(|key| !key.trim().is_empty())
                .map_or_else(|| LOCAL_PROMPT_HASH_KEY.to_vec(), |key| key.trim().as_bytes().to_vec()),
            progress_refresh_providers: match get("PROGRESS_REFRESH_PROVIDERS") {
                Some(list) => list
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| provider("PROGRESS_REFRESH_PROVIDERS", p))
                    .collect::<Result<Vec<_>, _>>()?,
                None => DEFAULT_PROGRESS_REFRESH_PROVIDERS.iter().filter_map(|p| p.parse().ok()).collect(),
            },
        })
    }

    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.retention_seconds, 86_400);
        assert_eq!(s.max_active_jobs, 5);
        assert_eq!(s.default_provider.as_str(), "local");
        assert_eq!(s.enabled_providers.len(), 1);
        assert_eq!(s.presign_ttl_seconds, 900);
        assert_eq!(s.limits.upload_max_bytes, 10 * 1024 * 1024);
        assert!(!s.limits.allow_http_webhooks);
        assert_eq!(s.body_max_bytes, 65_536);
        assert_eq!(s.generation_timeout_seconds, 900);
        assert_eq!(s.failover, None);
        assert_eq!(s.limits.loopback_webhook_ports, LoopbackPorts::NONE);
        assert!(!s.limits.allow_fault_injection, "faults are off unless a deployment turns them on");
        assert!(settings(&[("ALLOW_FAULT_INJECTION", "true")]).unwrap().limits.allow_fault_injection);
        assert_eq!(s.notify_retry_schedule.attempts(), 9);
        assert_eq!(s.stuck_after_seconds, 1_800);
        assert_eq!(s.prompt_hash_key, LOCAL_PROMPT_HASH_KEY);
        assert_eq!(s.rate_limits, crate::model::ratelimit::RateLimits { requests_per_minute: 300, creates_per_minute: 30 });
        assert_eq!(settings(&[("PROMPT_HASH_KEY", "s3cret")]).unwrap().prompt_hash_key, b"s3cret");
    }

    #[test]
    fn a_fallback_provider_fails_over_after_two_attempts_unless_told_otherwise() {
        let s = settings(&[("FALLBACK_PROVIDER", "local")]).unwrap();
        let failover = s.failover.unwrap();
        assert_eq!((failover.fallback.as_str(), failover.after_attempts), ("local", 2));
        let s = settings(&[("FALLBACK_PROVIDER", "fal"), ("FALLBACK_AFTER_ATTEMPTS", "4")]).unwrap();
        assert_eq!(s.failover.unwrap().after_attempts, 4);
        assert_eq!(
            settings(&[("FALLBACK_PROVIDER", "fal"), ("FALLBACK_AFTER_ATTEMPTS", "0")]).unwrap_err().name,
            "FALLBACK_AFTER_ATTEMPTS"
        );
        assert_eq!(
            settings(&[("FALLBACK_PROVIDER", "fal"), ("FALLBACK_AFTER_ATTEMPTS", "6")]).unwrap_err().name,
            "FALLBACK_AFTER_ATTEMPTS"
        );
        assert_eq!(settings(&[("FALLBACK_PROVIDER", "No Way")]).unwrap_err().name, "FALLBACK_PROVIDER");
        assert_eq!(settings(&[("FALLBACK_PROVIDER", "")]).unwrap().failover, None);
    }

    #[test]
    fn the_notification_schedule_is_configurable() {
        let s = settings(&[("NOTIFY_RETRY_SCHEDULE_SECONDS", "1,2")]).unwrap();
        assert_eq!(s.notify_retry_schedule.attempts(), 3);
        assert_eq!(settings(&[("NOTIFY_RETRY_SCHEDULE_SECONDS", "soon")]).unwrap_err().name, "NOTIFY_RETRY_SCHEDULE_SECONDS");
    }

    #[test]
    fn loopback_webhooks_reach_only_the_named_ports_and_never_the_local_stacks_own() {
        let local = [
            ("LOOPBACK_WEBHOOK_PORTS", "3000-9000"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("LOCAL_API_ADDR", "127.0.0.1:8000"),
            ("LOCAL_PROVIDER_URL", "http://127.0.0.1:4010"),
        ];
        let ports = settings(&local).unwrap().limits.loopback_webhook_ports;
        assert!(ports.allows(3000) && ports.allows(8080) && ports.allows(9000));
        for refused in [5000, 8000, 4010, 2999, 9001] {
            assert!(!ports.allows(refused), "{refused}");
        }
        assert!(settings(&[("LOOPBACK_WEBHOOK_PORTS", "8080")]).unwrap().limits.loopback_webhook_ports.allows(8080));
        for bad in ["http", "0", "70000", "1-x"] {
            assert_eq!(settings(&[("LOOPBACK_WEBHOOK_PORTS", bad)]).unwrap_err().name, "LOOPBACK_WEBHOOK_PORTS", "{bad}");
        }
        assert_eq!(
            settings(&[("ALLOW_LOOPBACK_WEBHOOKS", "true")]).unwrap_err().name,
            "ALLOW_LOOPBACK_WEBHOOKS",
            "the old switch is refused"
        );
    }

    #[test]
    fn fal_jobs_are_refreshed_every_ten_seconds_unless_told_otherwise() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.progress_refresh_seconds, 10);
        assert_eq!(s.progress_refresh_providers.iter().map(|p| p.as_str()).collect::<Vec<_>>(), vec!["fal"]);
        let s = settings(&[("PROGRESS_REFRESH_SECONDS", "0"), ("PROGRESS_REFRESH_PROVIDERS", "fal,replicate")]).unwrap();
        assert_eq!(s.progress_refresh_seconds, 0);
        assert_eq!(s.progress_refresh_providers.len(), 2);
        assert!(settings(&[("PROGRESS_REFRESH_PROVIDERS", "")]).unwrap().progress_refresh_providers.is_empty());
        assert_eq!(settings(&[("PROGRESS_REFRESH_SECONDS", "often")]).unwrap_err().name, "PROGRESS_REFRESH_SECONDS");
        assert_eq!(settings(&[("PROGRESS_REFRESH_PROVIDERS", "No Way")]).unwrap_err().name, "PROGRESS_REFRESH_PROVIDERS");
    }

    #[test]
    fn the_default_provider_is_always_enabled() {
        let s = settings(&[("DEFAULT_PROVIDER", "fal"), ("ENABLED_PROVIDERS", "local,replicate")]).unwrap();
        let names: Vec<&str> = s.enabled_providers.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["local", "replicate", "fal"]);
    }

    #[test]
    fn a_value_that_is_not_a_number_names_its_variable() {
        let err = settings(&[("MAX_ACTIVE_JOBS", "many")]).unwrap_err();
        assert_eq!(err.name, "MAX_ACTIVE_JOBS");
        assert!(settings(&[("RETENTION_SECONDS", "0")]).is_err());
        assert!(settings(&[("DEFAULT_PROVIDER", "Not OK")]).is_err());
    }
}
