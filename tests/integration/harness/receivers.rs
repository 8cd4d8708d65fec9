//! The HTTP endpoints the pipeline calls out to, stood up by the tests on
//! loopback: a client's webhook receiver (wiremock, answering as scripted)
//! and a receiver that never answers (a TCP black hole: what the isolation
//! test needs to see is when each connection opened and closed).

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use videojobs_core::model::signing::{verify, SignedHeaders, WebhookSecret};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

/// One request a [`Receiver`] took, and when.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: OffsetDateTime,
    /// The path and query.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The body as JSON, `null` when it is not.
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Whether the Standard Webhooks signature verifies with `secret`.
    pub fn verifies_with(&self, secret: &str) -> bool {
        let headers = SignedHeaders {
            id: self.headers.get("webhook-id").map(String::as_str),
            timestamp: self.headers.get("webhook-timestamp").map(String::as_str),
            signature: self.headers.get("webhook-signature").map(String::as_str),
        };
        let secrets = [WebhookSecret::parse(secret).expect("a whsec_ secret")];
        verify(&secrets, headers, &self.body, OffsetDateTime::now_utc().unix_timestamp()).is_ok()
    }
}

/// A notification as a client received it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivery {
    pub path: String,
    pub job_id: String,
    pub status: String,
    pub webhook_id: String,
}

/// Answers the scripted statuses in turn (by order of arrival), then `then`,
/// each after `delay`, and keeps every request.
struct Scripted {
    script: Vec<u16>,
    then: u16,
    delay: Duration,
    headers: Vec<(String, String)>,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Respond for Scripted {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let received = Received {
            at: OffsetDateTime::now_utc(),
            path: match request.url.query() {
                Some(query) => format!("{}?{query}", request.url.path()),
                None => request.url.path().to_owned(),
            },
            headers: request
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_ascii_lowercase(), value.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: request.body.clone(),
        };
        let status = {
            let mut log = self.log.lock().expect("the log");
            log.push(received);
            self.script.get(log.len() - 1).copied().unwrap_or(self.then)
        };
        let mut template = ResponseTemplate::new(status).set_delay(self.delay);
        for (name, value) in &self.headers {
            template = template.insert_header(name.as_str(), value.as_str());
        }
        template
    }
}

/// A client's webhook endpoint on loopback (a wiremock server).
pub struct Receiver {
    server: MockServer,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Answers every request with `status` at once.
    pub async fn answering(status: u16) -> Self {
        Self::start(Vec::new(), status, Duration::ZERO, Vec::new()).await
    }

    /// Answers `script` in turn, then `then`.
    pub async fn scripted(script: Vec<u16>, then: u16) -> Self {
        Self::start(script, then, Duration::ZERO, Vec::new()).await
    }

    /// Answers `status`, each after `delay`, as a slow client endpoint does.
    pub async fn slow(delay: Duration, status: u16) -> Self {
        Self::start(Vec::new(), status, delay, Vec::new()).await
    }

    /// Answers every request with a `302` to `location`.
    pub async fn redirecting_to(location: &str) -> Self {
        Self::start(Vec::new(), 302, Duration::ZERO, vec![("location".into(), location.to_owned())]).await
    }

    async fn start(script: Vec<u16>, then: u16, delay: Duration, headers: Vec<(String, String)>) -> Self {
        let server = MockServer::start().await;
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        Mock::given(wiremock::matchers::any())
            .respond_with(Scripted { script, then, delay, headers, log: log.clone() })
            .mount(&server)
            .await;
        Self { server, log }
    }

    /// The URL of `path` (with any query) on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.uri())
    }

    /// Every request so far, in the order they came.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("the log").clone()
    }

    /// Every request so far, once there are at least `count` of them (or
    /// `within` has passed): another copy of a message may be making the
    /// delivery a test waits for.
    pub async fn received_at_least(&self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count || std::time::Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every request so far that was a notification.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.received()
            .into_iter()
            .filter_map(|r| {
                let body = r.json_or_null();
                Some(Delivery {
                    job_id: body["job_id"].as_str()?.to_owned(),
                    status: body["status"].as_str()?.to_owned(),
                    webhook_id: r.headers.get("webhook-id").cloned().unwrap_or_default(),
                    path: r.path,
                })
            })
            .collect()
    }
}

/// One connection a [`BlackHole`] accepted: when, and when the other side
/// gave up and closed it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub accepted_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
}

impl Connection {
    /// Open at `at`: accepted before it and not yet closed by then.
    pub fn open_at(&self, at: OffsetDateTime) -> bool {
        self.accepted_at <= at && self.closed_at.is_none_or(|closed| closed > at)
    }
}

/// A webhook endpoint that accepts connections, reads whatever is sent and
/// never writes a byte back, as a broken endpoint does: the sender can only
/// give up. Keeps when each connection opened and closed.
pub struct BlackHole {
    base_url: String,
    log: Arc<Mutex<Vec<Connection>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        let log: Arc<Mutex<Vec<Connection>>> = Arc::default();
        let connections = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let index = {
                    let mut log = connections.lock().expect("the log");
                    log.push(Connection { accepted_at: OffsetDateTime::now_utc(), closed_at: None });
                    log.len() - 1
                };
                let log = connections.clone();
                tokio::spawn(async move {
                    let mut sink = [0u8; 4096];
                    loop {
                        match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    log.lock().expect("the log")[index].closed_at = Some(OffsetDateTime::now_utc());
                });
            }
        });
        Self { base_url, log, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.log.lock().expect("the log").clone()
    }

    pub fn open_at(&self, at: OffsetDateTime) -> usize {
        self.connections().iter().filter(|c| c.open_at(at)).count()
    }
}
