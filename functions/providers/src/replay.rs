//! A local HTTP server that replays a provider's documented answers, so that
//! each adapter's contract is tested without network access: it records every
//! request (method, path with query, headers, body) for the test to assert on,
//! and answers each route from a script (`429` with `retry-after`, `503`, then
//! `201`, …), the last answer repeating. HTTP/1.1 served by hyper.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One answer: status, extra headers and a JSON (or any) body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string().into_bytes() }
    }

    /// A file, such as the video a provider serves.
    pub fn bytes(content_type: &str, body: Vec<u8>) -> Self {
        Self { status: 200, headers: vec![("content-type".into(), content_type.into())], body }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct State {
    /// `(method, path)` → answers in order; the last one repeats.
    routes: HashMap<(String, String), Vec<Reply>>,
    requests: Vec<Recorded>,
}

/// The running server; it stops when dropped.
pub struct ReplayServer {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplayServer {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let service = hyper::service::service_fn(move |request| serve(state.clone(), request));
                tokio::spawn(async move {
                    // A client that hangs up early ends only its own connection.
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { base_url, state, task }
    }

    /// Answers `method path` (query ignored) with `replies`, in order.
    pub fn on(&self, method: &str, path: &str, replies: Vec<Reply>) {
        self.state.lock().expect("state").routes.insert((method.to_owned(), path.to_owned()), replies);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("state").requests.clone()
    }

    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == method && r.path() == path).collect()
    }
}

async fn serve(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    // A body that cannot be read is recorded empty: the test sees what arrived.
    let body = body.collect().await.map(|collected| collected.to_bytes().to_vec()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let request = Recorded { method: parts.method.as_str().to_owned(), target, headers, body };
    let reply = {
        let mut state = state.lock().expect("state");
        state.requests.push(request.clone());
        let key = (request.method.clone(), request.path().to_owned());
        match state.routes.get_mut(&key) {
            Some(replies) if replies.len() > 1 => replies.remove(0),
            Some(replies) if !replies.is_empty() => replies[0].clone(),
            _ => Reply::json(404, serde_json::json!({"detail": "Not found."})),
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !reply.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}
