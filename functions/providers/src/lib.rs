//! Provider adapters. Each turns one provider's wire format into the
//! normalised types of `videojobs_core::provider`.

pub mod local;

use std::sync::Arc;
use std::time::Duration;
use videojobs_core::provider::{ProviderError, Providers};
use videojobs_core::settings::ConfigError;
use videojobs_core::signing::WebhookSecret;

/// One HTTP client for every adapter: short timeouts, so a slow provider
/// turns into a retry rather than a hung worker.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// The providers this deployment is configured for, from the environment:
/// `LOCAL_PROVIDER_URL` and `LOCAL_PROVIDER_WEBHOOK_SECRETS` enable the local one.
pub fn from_lookup(get: impl Fn(&str) -> Option<String>, http: reqwest::Client) -> Result<Providers, ConfigError> {
    let mut providers = Providers::default();
    if let Some(url) = get("LOCAL_PROVIDER_URL").filter(|u| !u.is_empty()) {
        let secrets = get("LOCAL_PROVIDER_WEBHOOK_SECRETS").unwrap_or_default();
        let secrets = WebhookSecret::parse_list(&secrets).map_err(|e| ConfigError {
            name: "LOCAL_PROVIDER_WEBHOOK_SECRETS",
            problem: e.to_string(),
        })?;
        if secrets.is_empty() {
            return Err(ConfigError { name: "LOCAL_PROVIDER_WEBHOOK_SECRETS", problem: "is not set".into() });
        }
        providers = providers.with(Arc::new(local::LocalProvider::new(url, secrets, http)));
    }
    Ok(providers)
}

pub fn from_env(http: reqwest::Client) -> Result<Providers, ConfigError> {
    from_lookup(|name| std::env::var(name).ok(), http)
}

/// Classifies an HTTP status from a provider's API.
pub(crate) fn status_error(status: u16, retry_after: Option<Duration>, code: String, message: String) -> ProviderError {
    match status {
        408 | 425 | 429 | 500..=599 => ProviderError::Transient { message: format!("HTTP {status}: {message}"), retry_after },
        404 => ProviderError::NotFound(message),
        _ => ProviderError::Refused { code, message },
    }
}

/// A network failure: the request may not have arrived, so it may be retried.
pub(crate) fn network_error(err: reqwest::Error) -> ProviderError {
    ProviderError::Transient { message: format!("network: {err}"), retry_after: None }
}
