//! The HTTP client every AWS client shares: rustls on ring, the one crypto
//! library of the binaries (the SDK's default is aws-lc, which reqwest would
//! not share: see the workspace `Cargo.toml`). Building an SDK client over it loads the system's trust store;
//! the functions build their clients on the first event
//! ([`crate::OnFirstEvent`]), so that load is no part of their start.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https()
}
