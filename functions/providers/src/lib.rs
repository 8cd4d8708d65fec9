//! Provider adapters. Each turns one provider's wire format into the
//! normalised types of `videojobs_core::provider`.

pub mod fal;
mod jwks;
pub mod local;
#[cfg(any(test, feature = "test-server"))]
pub mod replay;
pub mod replicate;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;
use videojobs_core::model::provider::ProviderError;
use videojobs_core::model::settings::ConfigError;
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::ports::Providers;

/// A client builder for a request to an address someone else named (a
/// client's `webhook_url`, a provider's output link, a source image), after
/// it was checked: it connects to the checked address only (the host name is
/// pinned to it, no second lookup), through no proxy, and follows no
/// redirect. The caller adds its timeouts.
pub fn pinned_to(destination: &videojobs_core::model::notification::Destination) -> reqwest::ClientBuilder {
    tls::install_crypto_provider();
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy();
    match &destination.host_name {
        Some(host) => builder.resolve(host, destination.addr),
        None => builder,
    }
}

/// One HTTP client for every adapter: a provider that
/// stops answering turns into a retry rather than a hung worker, while a large
/// output that keeps flowing may take as long as it needs.
///
/// Building it loads the system's trust store, most of a cold start: it is
/// built on a thread of its own while the runtime asks for its first event,
/// and a request that comes sooner waits for it.
#[derive(Clone, Debug)]
pub struct HttpClient(Arc<std::sync::OnceLock<reqwest::Client>>);

impl HttpClient {
    pub fn get(&self) -> &reqwest::Client {
        self.0.get_or_init(build_client)
    }
}

fn build_client() -> reqwest::Client {
    tls::install_crypto_provider();
    reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).read_timeout(Duration::from_secs(30)).build().unwrap_or_default()
}

/// A client built when first used: for functions that rarely need one (the
/// webhook fetches a provider's signing keys at most), so that no trust store
/// loads at their start.
pub fn http_client_on_first_use() -> HttpClient {
    HttpClient(Arc::new(std::sync::OnceLock::new()))
}

pub fn http_client() -> HttpClient {
    let cell = Arc::new(std::sync::OnceLock::new());
    let warm = cell.clone();
    std::thread::spawn(move || {
        warm.get_or_init(build_client);
    });
    HttpClient(cell)
}

/// The providers this deployment is configured for, from the environment:
/// `LOCAL_PROVIDER_URL` and `LOCAL_PROVIDER_WEBHOOK_SECRETS` enable the local one
/// (`LOCAL_PROVIDER_TOKEN`, the bearer token it takes),
/// `REPLICATE_WEBHOOK_SECRET` Replicate (`replicate::Config::from_lookup`),
/// `FAL_KEY` or `FAL_JWKS_URL` fal (`fal::Config::from_lookup`). A function that
/// only verifies callbacks (the webhook) is given no API token.
pub fn from_lookup(get: impl Fn(&str) -> Option<String>, http: HttpClient) -> Result<Providers, ConfigError> {
    let mut providers = Providers::default();
    if let Some(config) = replicate::Config::from_lookup(&get)? {
        providers = providers.with(Arc::new(replicate::ReplicateProvider::new(config, http.clone())));
    }
    if let Some(config) = fal::Config::from_lookup(&get)? {
        providers = providers.with(Arc::new(fal::FalProvider::new(config, http.clone())));
    }
    if let Some(url) = get("LOCAL_PROVIDER_URL").filter(|u| !u.is_empty()) {
        let secrets = get("LOCAL_PROVIDER_WEBHOOK_SECRETS").unwrap_or_default();
        let secrets = WebhookSecret::parse_list(&secrets)
            .map_err(|e| ConfigError { name: "LOCAL_PROVIDER_WEBHOOK_SECRETS", problem: e.to_string() })?;
        if secrets.is_empty() {
            return Err(ConfigError { name: "LOCAL_PROVIDER_WEBHOOK_SECRETS", problem: "is not set".into() });
        }
        let token = non_empty(&get, "LOCAL_PROVIDER_TOKEN");
        providers = providers.with(Arc::new(local::LocalProvider::new(url, secrets, http).with_token(token)));
    }
    Ok(providers)
}

pub fn from_env(http: HttpClient) -> Result<Providers, ConfigError> {
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
    ProviderError::Transient { message: format!("network: {}", videojobs_core::model::redact::error(&err)), retry_after: None }
}

/// Seconds from a `retry-after` header (providers send whole seconds).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get("retry-after")?.to_str().ok()?.trim().parse().ok().map(Duration::from_secs)
}

/// Checks a callback signed the Standard Webhooks way (the local provider and
/// Replicate) and returns its `webhook-id`, the event id receipts are keyed by.
pub(crate) fn verify_standard_webhook(
    secrets: &[WebhookSecret],
    callback: &videojobs_core::model::provider::Callback<'_>,
) -> Result<String, videojobs_core::model::provider::CallbackError> {
    let header = |name: &str| callback.headers.get(name).map(String::as_str);
    let signed = videojobs_core::model::signing::SignedHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    videojobs_core::model::signing::verify(secrets, signed, callback.body, callback.now)
        .map_err(|e| videojobs_core::model::provider::CallbackError::BadSignature(e.to_string()))?;
    Ok(signed.id.unwrap_or_default().to_owned())
}

/// The length Kling makes (on Replicate and on fal): 5 or 10 seconds, the
/// asked length rounded up to one of them.
pub(crate) fn kling_seconds(seconds: u32) -> u32 {
    if seconds <= 5 {
        5
    } else {
        10
    }
}

/// The prompt Kling gets: the job's, or for an image job without one, a
/// gentle camera move (Kling wants a prompt).
pub(crate) fn kling_prompt(request: &videojobs_core::model::provider::SubmitRequest) -> String {
    match (&request.prompt, &request.params) {
        (Some(prompt), _) => prompt.clone(),
        (None, videojobs_core::model::job::JobParams::ImageToVideo { .. }) => "A slow, steady camera move over the scene".into(),
        (None, videojobs_core::model::job::JobParams::TextToVideo { .. }) => String::new(),
    }
}

/// A configured value that must be present, or `None`.
pub(crate) fn non_empty(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod progress_refresh_tests {
    use super::*;

    #[test]
    fn the_providers_refreshed_by_default_are_exactly_those_that_send_no_progress_callbacks() {
        let secret = videojobs_core::model::signing::WebhookSecret::generate_text();
        let lookup = |name: &str| match name {
            "FAL_KEY" => Some("id:secret".to_owned()),
            "REPLICATE_WEBHOOK_SECRET" | "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secret.clone()),
            "LOCAL_PROVIDER_URL" => Some("http://127.0.0.1:9".to_owned()),
            _ => None,
        };
        let providers = from_lookup(lookup, http_client()).unwrap();
        for name in ["local", "replicate", "fal"] {
            let provider = providers.get(name).unwrap_or_else(|| panic!("{name} is configured"));
            let refreshed = videojobs_core::model::settings::DEFAULT_PROGRESS_REFRESH_PROVIDERS.contains(&name);
            assert_eq!(refreshed, !provider.sends_progress_callbacks(), "{name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use videojobs_core::model::job::JobParams;
    use videojobs_core::model::provider::SubmitRequest;
    use videojobs_core::model::request::{AspectRatio, ImageSource, Resolution};

    fn request(params: JobParams, prompt: Option<&str>) -> SubmitRequest {
        SubmitRequest {
            idempotency_key: "job_1".into(),
            params,
            prompt: prompt.map(str::to_owned),
            image_url: None,
            callback_url: "https://hooks.example/webhooks/x".into(),
            faults: None,
            seed: None,
        }
    }

    fn text() -> JobParams {
        JobParams::TextToVideo { duration_seconds: 4, aspect_ratio: AspectRatio::Square, resolution: Resolution::Sd }
    }

    fn image() -> JobParams {
        JobParams::ImageToVideo {
            image: ImageSource::Url("https://img.example/a.png".into()),
            length_seconds: 3,
            frame_rate: 24,
            zoom_speed: 0.5,
        }
    }

    #[test]
    fn retry_after_reads_whole_seconds_and_ignores_anything_else() {
        let headers = |value: &'static str| {
            let mut map = reqwest::header::HeaderMap::new();
            map.insert("retry-after", reqwest::header::HeaderValue::from_static(value));
            map
        };
        assert_eq!(retry_after(&headers(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
    }

    #[test]
    fn kling_lengths_round_up_to_five_or_ten_seconds() {
        let lengths: Vec<u32> = [1, 5, 6, 10, 60].into_iter().map(kling_seconds).collect();
        assert_eq!(lengths, [5, 5, 10, 10, 10]);
    }

    #[test]
    fn kling_gets_the_jobs_prompt_or_for_an_image_without_one_a_camera_move() {
        assert_eq!(kling_prompt(&request(text(), Some("A kite"))), "A kite");
        assert_eq!(kling_prompt(&request(image(), Some("A kite"))), "A kite");
        assert_eq!(kling_prompt(&request(image(), None)), "A slow, steady camera move over the scene");
        assert_eq!(kling_prompt(&request(text(), None)), "");
    }
}
