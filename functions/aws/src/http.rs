//! The HTTP client every AWS client shares: hyper with rustls on ring, the
//! one crypto library of the binaries (the SDK's default is aws-lc, which
//! reqwest would not share: see the workspace `Cargo.toml`), trusting a root
//! store compiled into the binary.
//!
//! Why not the SDK's own rustls client: it can only trust the system's store
//! (read from files and parsed, certificate by certificate, each time it
//! builds a connector) plus PEM text (parsed the same way). On a small
//! function that parsing is a large part of the first request (see
//! BENCHMARKS.md, "The cold request"). Mozilla's roots (`webpki-roots`) are
//! already in the parsed form rustls checks against, so this store costs a
//! copy of some 150 references. AWS's endpoints chain to Amazon's roots,
//! which are among them. A new root reaches the functions with a rebuild
//! (docs/DECISIONS.md says why that is acceptable).
//!
//! `EXTRA_CA_CERTS` may name a PEM file of roots trusted in addition (a proxy
//! or a test endpoint with its own CA, as in the cold-request bench); it is
//! read when the client is built. Verification itself is rustls's, unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Names a PEM file of roots to trust besides the compiled-in ones.
pub const EXTRA_CA_CERTS: &str = "EXTRA_CA_CERTS";

pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(Https { tls: Arc::new(tls_config()), connectors: Mutex::default() })
}

/// Mozilla's roots as compiled in, and those of `EXTRA_CA_CERTS`.
pub fn root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(file) = std::env::var_os(EXTRA_CA_CERTS).filter(|f| !f.is_empty()) {
        match extra_roots(std::path::Path::new(&file)) {
            Ok(certs) => {
                let (added, refused) = roots.add_parsable_certificates(certs);
                if refused > 0 || added == 0 {
                    tracing::error!(file = ?file, added, refused, "{EXTRA_CA_CERTS}: not every certificate could be trusted");
                }
            }
            // Nothing is trusted in its place: connections to the endpoints it
            // was meant for fail verification, and say so.
            Err(err) => tracing::error!(file = ?file, error = %err, "{EXTRA_CA_CERTS} could not be read"),
        }
    }
    roots
}

fn extra_roots(file: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(file)?.collect()
}

fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(root_store()).with_no_client_auth())
        // ring's provider supports the safe default versions; this cannot fail.
        .unwrap_or_else(|err| unreachable!("ring supports TLS 1.2 and 1.3: {err}"))
}

type HyperClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, SdkBody>;

/// Connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

/// One hyper client (one connection pool) per distinct timeout settings; the
/// SDK clients of a function all ask with the same ones.
#[derive(Debug)]
struct Https {
    tls: Arc<rustls::ClientConfig>,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

impl HttpClient for Https {
    fn http_connector(&self, settings: &HttpConnectorSettings, _components: &RuntimeComponents) -> SharedHttpConnector {
        let key: Timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, connector)) = connectors.iter().find(|(k, _)| *k == key) {
            return connector.clone();
        }
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(key.0);
        // http: only for a local stack's endpoint (AWS_ENDPOINT_URL); AWS's are https.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        let connector = SharedHttpConnector::new(Connector { client, read_timeout: key.1 });
        connectors.push((key, connector.clone()));
        connector
    }
}

#[derive(Debug, Clone)]
struct Connector {
    client: HyperClient,
    /// Until the response's head arrives, as the SDK's own client counts it.
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let (client, read_timeout) = (self.client.clone(), self.read_timeout);
        HttpConnectorFuture::new(async move {
            let sent = client.request(request);
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(response) => response,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => sent.await,
            };
            match response {
                Ok(response) => {
                    Response::try_from(response.map(SdkBody::from_body_1_x)).map_err(|err| ConnectorError::other(err.into(), None))
                }
                Err(err) => Err(classify(err)),
            }
        })
    }
}

/// As the SDK's client classifies hyper's errors, so that its retries behave
/// the same: connection problems are I/O (retried), a cut-off answer transient.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let hyper = find_source::<hyper::Error>(&err);
    let timed_out = hyper.is_some_and(hyper::Error::is_timeout);
    let user = hyper.is_some_and(hyper::Error::is_user);
    let closed = hyper.is_some_and(|e| e.is_closed() || e.is_canceled());
    let incomplete = hyper.is_some_and(hyper::Error::is_incomplete_message);
    let io = err.is_connect() || closed || find_source::<std::io::Error>(&err).is_some();
    if timed_out {
        ConnectorError::timeout(err.into())
    } else if user {
        ConnectorError::user(err.into())
    } else if io {
        ConnectorError::io(err.into())
    } else if incomplete {
        ConnectorError::other(err.into(), Some(ErrorKind::TransientError))
    } else {
        ConnectorError::other(err.into(), None)
    }
}

fn find_source<'a, E: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_store_holds_mozillas_roots_without_reading_a_file() {
        // Act
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };

        // Assert: Amazon Root CA 1, to which AWS's endpoints chain, is among them.
        assert!(roots.len() > 100);
        let amazon = roots.roots.iter().any(|anchor| {
            let subject: &[u8] = anchor.subject.as_ref();
            subject.windows(b"Amazon Root CA 1".len()).any(|w| w == b"Amazon Root CA 1")
        });
        assert!(amazon);
    }

    #[test]
    fn extra_roots_are_read_from_a_pem_file_and_a_missing_file_is_an_error() {
        // Arrange
        let dir = std::env::temp_dir().join(format!("videojobs-extra-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let file = dir.join("ca.pem");
        std::fs::write(&file, TEST_CA).expect("a scratch file");

        // Act
        let read = extra_roots(&file);
        let missing = extra_roots(&dir.join("missing.pem"));

        // Assert: the one certificate is read and parses as a trust anchor.
        let certs = read.expect("the PEM file reads");
        assert_eq!(certs.len(), 1);
        let mut store = rustls::RootCertStore::empty();
        assert_eq!(store.add_parsable_certificates(certs), (1, 0));
        assert!(missing.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A CA certificate made for this test (openssl, ECDSA P-256, valid for a century).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBnjCCAUWgAwIBAgIUCG2AdGttcs1AGW9/wGQSSDPOgkAwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRdmlkZW9qb2JzIHRlc3QgQ0EwIBcNMjYxMTI3MjAwMTUwWhgP
MjEyNjExMDMyMDAxNTBaMBwxGjAYBgNVBAMMEXZpZGVvam9icyB0ZXN0IENBMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELgF7M8NCQmE/JXl4mzQYnpAIsp1tc+QR
yGakNO1kIaJfeNG33drfiPQ84cdDUSL41Iaov+hEIUysMyobPyuytqNjMGEwHQYD
VR0OBBYEFILgTOU0pcwYlloTC7KVn/wF0pyIMB8GA1UdIwQYMBaAFILgTOU0pcwY
lloTC7KVn/wF0pyIMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoG
CCqGSM49BAMCA0cAMEQCIAmXzTHLfLAnAL3y+otyC4+F7Ki948VZmIcsSYPr90Oj
AiABNY6rOnC0LqA2IaT8n6bK6a+yPoa1S5qxVMNa6eRVUg==
-----END CERTIFICATE-----
";
}
