//! The HTTP client every AWS client shares. The SDK's default loads the
//! system's trust store while the client is built, which is most of a cold
//! start; here that load runs on a thread of its own while the runtime asks
//! Lambda for its first event, and a first request that comes sooner waits
//! for it.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Debug, Clone)]
struct WarmedInBackground {
    inner: SharedHttpClient,
}

impl HttpClient for WarmedInBackground {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(&self, _: &RuntimeComponentsBuilder, _: &ConfigBag) -> Result<(), BoxError> {
        // The trust store is loading on the warm-up thread.
        Ok(())
    }
}

/// An HTTPS client (rustls with aws-lc, as the SDK's default) whose trust
/// store loads in the background.
pub fn https_client() -> SharedHttpClient {
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    let warm = inner.clone();
    std::thread::spawn(move || {
        let _ = warm.validate_base_client_config(&RuntimeComponentsBuilder::new("warm-up"), &ConfigBag::base());
    });
    SharedHttpClient::new(WarmedInBackground { inner })
}
