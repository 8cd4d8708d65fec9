//! An AWS endpoint that answers at once: a TLS server (the bench's own test
//! CA) replaying recorded answers, chosen by the request's `X-Amz-Target`
//! (DynamoDB and Step Functions speak JSON 1.0, one operation per target).
//! Each service gets a listener of its own, as each has a host of its own on
//! AWS, so a client opens one connection per service, as it would there.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The answers, written by hand from the API shapes (DynamoDB's and Step
/// Functions' JSON 1.0 responses); the bench fails if the function refuses one
/// (every create must be answered 202). The key's item is the one
/// `DynamoStore` saves for an active user key.
const ANSWERS: &[(&str, &str)] = &[
    (
        "DynamoDB_20120810.GetItem",
        r#"{"Item":{"pk":{"S":"APIKEY#bench"},"sk":{"S":"APIKEY"},"kind":{"S":"api_key"},"user_id":{"S":"bench-user"},"role":{"S":"user"},"label":{"S":"bench"}}}"#,
    ),
    // The rate limits' counters: a conditional ADD that succeeded.
    ("DynamoDB_20120810.UpdateItem", "{}"),
    // The job, its event, the user's debit and the stats shard: committed.
    ("DynamoDB_20120810.TransactWriteItems", "{}"),
    (
        "AWSStepFunctions.StartExecution",
        r#"{"executionArn":"arn:aws:states:us-east-1:123456789012:execution:jobs:job_01jbench0000000000000000000","startDate":1.7672256E9}"#,
    ),
];

/// The test CA (PEM, for the functions to trust) and the server's configuration.
pub struct TestPki {
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    /// A fresh CA and a certificate it signs for `localhost` and 127.0.0.1.
    pub fn generate() -> Result<Self, String> {
        let err = |e: rcgen::Error| e.to_string();
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "cold-bench test CA");
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = rcgen::Issuer::new(ca, ca_key);

        let server_key = rcgen::KeyPair::generate().map_err(err)?;
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(err)?;
        let server_cert = params.signed_by(&server_key, &issuer).map_err(err)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(server_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .map_err(|e| e.to_string())?;
        Ok(Self { ca_pem: ca_cert.pem(), server: Arc::new(server) })
    }
}

/// What the endpoints were asked, by target, and what they could not answer.
#[derive(Default, Clone)]
pub struct Seen {
    pub by_target: BTreeMap<String, u64>,
    pub unknown: Vec<String>,
}

/// One listener per service; all share the answers and the record of requests.
pub struct ReplayEndpoints {
    pub dynamodb: SocketAddr,
    pub sfn: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl ReplayEndpoints {
    pub fn start(pki: &TestPki) -> std::io::Result<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let dynamodb = listen(Arc::clone(&pki.server), Arc::clone(&seen))?;
        let sfn = listen(Arc::clone(&pki.server), Arc::clone(&seen))?;
        Ok(Self { dynamodb, sfn, seen })
    }

    /// What was asked since the last call (and forgets it).
    pub fn take_seen(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

fn listen(config: Arc<rustls::ServerConfig>, seen: Arc<Mutex<Seen>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (config, seen) = (Arc::clone(&config), Arc::clone(&seen));
            std::thread::spawn(move || serve(stream, config, &seen));
        }
    });
    Ok(addr)
}

/// Serves one keep-alive connection until the client closes it.
fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, seen: &Mutex<Seen>) {
    let _ = tcp.set_nodelay(true);
    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
    let mut reader = BufReader::new(rustls::StreamOwned::new(connection, tcp));
    loop {
        let Some(request) = bench_support::read_request(&mut reader) else { return };
        let (line, target) = (request.line.as_str(), request.header("x-amz-target").unwrap_or("").to_owned());
        let answer = ANSWERS.iter().find(|(t, _)| *t == target).map(|(_, a)| *a);
        {
            let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *seen.by_target.entry(target.clone()).or_default() += 1;
            if answer.is_none() {
                seen.unknown.push(format!("{line} {target}"));
            }
        }
        let (status, body) = match answer {
            Some(body) => ("200 OK", body.to_string()),
            None => (
                "400 Bad Request",
                format!(r#"{{"__type":"com.amazon.coral.validate#ValidationException","message":"no recorded answer for {target:?}"}}"#),
            ),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-requestid: cold-bench\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let stream = reader.get_mut();
        if stream.write_all(response.as_bytes()).and_then(|_| stream.flush()).is_err() {
            return;
        }
    }
}
