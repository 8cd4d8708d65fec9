//! The API as the tests call it: one method per operation of
//! docs/openapi.json, on the in-process app ([`TestApp`]), on another caller
//! of it ([`Caller`]) and over HTTP ([`HttpApi`]). The paths are written here
//! and nowhere else.

use super::TestApp;
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::Body;
use serde_json::Value;

/// What a request carries: nothing, JSON (a value, or text sent as it is, to
/// test what the API makes of odd JSON), or bytes of a given content type.
pub enum Payload {
    None,
    Json(String),
    Bytes { content_type: &'static str, bytes: Vec<u8> },
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload::Json(value.to_string())
    }
}

impl From<&Value> for Payload {
    fn from(value: &Value) -> Self {
        Payload::Json(value.to_string())
    }
}

impl From<&str> for Payload {
    fn from(text: &str) -> Self {
        Payload::Json(text.to_owned())
    }
}

impl From<String> for Payload {
    fn from(text: String) -> Self {
        Payload::Json(text)
    }
}

impl From<&String> for Payload {
    fn from(text: &String) -> Self {
        Payload::Json(text.clone())
    }
}

impl Payload {
    /// `text` sent with another content type (`text/plain`, …).
    pub fn typed(content_type: &'static str, text: &str) -> Self {
        Payload::Bytes { content_type, bytes: text.as_bytes().to_vec() }
    }

    fn content_type(&self) -> Option<&'static str> {
        match self {
            Payload::None => None,
            Payload::Json(_) => Some("application/json"),
            Payload::Bytes { content_type, .. } => Some(content_type),
        }
    }
}

/// A page of a listing: `Page::first()`, `Page::of(2)`, `.after(cursor)`.
#[derive(Default, Clone)]
pub struct Page {
    limit: Option<u32>,
    cursor: Option<String>,
    filters: Vec<(String, String)>,
}

impl Page {
    /// The first page, at the API's default size.
    pub fn first() -> Self {
        Self::default()
    }

    pub fn of(limit: u32) -> Self {
        Self { limit: Some(limit), cursor: None, filters: Vec::new() }
    }

    /// The page with the list filter `name` = `value` (sent URL-encoded).
    pub fn filtered(mut self, name: &str, value: &str) -> Self {
        self.filters.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn after(mut self, cursor: &str) -> Self {
        self.cursor = Some(cursor.to_owned());
        self
    }

    pub(crate) fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        if let Some(cursor) = &self.cursor {
            parts.push(format!("cursor={cursor}"));
        }
        for (name, value) in &self.filters {
            parts.push(url::form_urlencoded::Serializer::new(String::new()).append_pair(name, value).finish());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// An answer: its status, headers and body (JSON, else `null` with the text kept).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

/// The status of a [`Reply`] that never came (a network error over HTTP,
/// the process down): no HTTP status, so none the API could answer.
pub const NO_ANSWER: u16 = 599;

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The job id of an accepted create.
    pub fn job_id(&self) -> videojobs_core::model::ids::JobId {
        assert_eq!(self.status, StatusCode::ACCEPTED, "{}", self.text);
        self.body["job_id"].as_str().expect("a job id").parse().expect("a valid job id")
    }

    fn from_parts(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let is_json = headers.get("content-type").and_then(|v| v.to_str().ok()).is_none_or(|v| v.contains("json"));
        let body = if bytes.is_empty() || !is_json { Value::Null } else { serde_json::from_slice(bytes).expect("a JSON body") };
        Self { status, headers, body, text }
    }

    fn no_answer(err: &str) -> Self {
        Self {
            status: StatusCode::from_u16(NO_ANSWER).expect("a status"),
            headers: HeaderMap::new(),
            body: Value::String(err.to_owned()),
            text: err.to_owned(),
        }
    }
}

/// The API over HTTP, as a client reaches it (the `local-api` binary, or the
/// server of a [`TestApp`] built `with_local_provider`).
#[derive(Clone)]
pub struct HttpApi {
    pub base_url: String,
    http: reqwest::Client,
}

impl HttpApi {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().expect("an HTTP client");
        Self { base_url: base_url.trim_end_matches('/').to_owned(), http }
    }

    /// The API as the holder of `key`.
    pub fn as_key(&self, key: &str) -> Caller<'_> {
        Caller { transport: Transport::Http(self), key: Some(key.to_owned()), headers: Vec::new() }
    }

    /// The API with no key (a provider's callback).
    pub fn anonymous(&self) -> Caller<'_> {
        Caller { transport: Transport::Http(self), key: None, headers: Vec::new() }
    }

    /// One request; a network error is a [`NO_ANSWER`] reply with the error as its body.
    async fn send(&self, method: Method, path: &str, key: Option<&str>, headers: &[(String, String)], payload: Payload) -> Reply {
        let method_name = method.as_str().to_owned();
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("a method");
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(content_type) = payload.content_type().filter(|_| !has_content_type(headers)) {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request = match payload {
            Payload::None => request,
            Payload::Json(text) => request.body(text),
            Payload::Bytes { bytes, .. } => request.body(bytes),
        };
        match request.send().await {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
                let mut headers = HeaderMap::new();
                for (name, value) in response.headers() {
                    if let (Ok(name), Ok(value)) = (
                        lambda_http::http::HeaderName::from_bytes(name.as_str().as_bytes()),
                        lambda_http::http::HeaderValue::from_bytes(value.as_bytes()),
                    ) {
                        headers.append(name, value);
                    }
                }
                match response.bytes().await {
                    Ok(bytes) => {
                        let path_only = path.split('?').next().unwrap_or(path);
                        crate::contract::check(&method_of(&method_name), path_only, status.as_u16(), &headers, &bytes);
                        Reply::from_parts(status, headers, &bytes)
                    }
                    Err(err) => Reply::no_answer(&err.to_string()),
                }
            }
            Err(err) => Reply::no_answer(&err.to_string()),
        }
    }
}

/// Whether the caller sets the content type itself (a test of a wrong one).
fn has_content_type(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
}

fn method_of(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("a method")
}

#[derive(Clone, Copy)]
enum Transport<'a> {
    InProcess(&'a TestApp),
    /// Handlers wired differently from the test's app (a port swapped for a failing one).
    Handlers(&'a local_api::App),
    Http(&'a HttpApi),
}

/// Someone calling the API: a key (or none) and headers of their own.
pub struct Caller<'a> {
    transport: Transport<'a>,
    key: Option<String>,
    headers: Vec<(String, String)>,
}

impl<'a> Caller<'a> {
    pub(super) fn in_process(app: &'a TestApp, key: Option<&str>) -> Self {
        Caller { transport: Transport::InProcess(app), key: key.map(str::to_owned), headers: Vec::new() }
    }

    /// The holder of `key` calling these handlers (for a test that swapped one of their ports).
    pub fn on_handlers(app: &'a local_api::App, key: &str) -> Self {
        Caller { transport: Transport::Handlers(app), key: Some(key.to_owned()), headers: Vec::new() }
    }

    /// A header on every request of this caller (`idempotency-key`, …).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The idempotency key of a create.
    pub fn idempotent(self, key: &str) -> Self {
        self.with_header("idempotency-key", key)
    }

    /// One request to `path`, for what no operation covers (a path the API
    /// does not have). Everything else goes through the methods below.
    pub async fn request(&self, method: Method, path: &str, payload: Payload) -> Reply {
        match self.transport {
            Transport::InProcess(app) => app.dispatch(method, path, self.key.as_deref(), &self.headers, payload).await,
            Transport::Handlers(app) => dispatch(app, method, path, self.key.as_deref(), &self.headers, payload).await,
            Transport::Http(api) => api.send(method, path, self.key.as_deref(), &self.headers, payload).await,
        }
    }
}

/// The operations of docs/openapi.json, on any type with a
/// `request(method, path, payload)`: `TestApp` (as its user) and `Caller`.
macro_rules! operations {
    () => {
        /// `POST /videos/generate` (generateVideo).
        pub async fn generate(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/generate", body.into()).await
        }

        /// `POST /videos/animate` (animateImage).
        pub async fn animate(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/animate", body.into()).await
        }

        /// `POST /videos/uploads` (createUpload).
        pub async fn create_upload(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/uploads", body.into()).await
        }

        /// `GET /videos/jobs` (listJobs).
        pub async fn list_jobs(&self, page: $crate::harness::api::Page) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs{}", page.query());
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `GET /videos/jobs/active` (listActiveJobs).
        pub async fn list_active_jobs(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/videos/jobs/active", $crate::harness::api::Payload::None).await
        }

        /// `GET /videos/jobs/{job_id}/status` (getJobStatus).
        pub async fn job_status(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/status");
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `GET /videos/jobs/{job_id}/result` (getJobResult).
        pub async fn job_result(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/result");
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/batch` (createBatch).
        pub async fn create_batch(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/batch", body.into()).await
        }

        /// `POST /videos/jobs/{job_id}/retry` (retryJob): no body.
        pub async fn retry_job(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/retry");
            self.request(lambda_http::http::Method::POST, &path, $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/jobs/{job_id}/remix` (remixJob).
        pub async fn remix_job(
            &self,
            id: impl std::fmt::Display,
            body: impl Into<$crate::harness::api::Payload>,
        ) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/remix");
            self.request(lambda_http::http::Method::POST, &path, body.into()).await
        }

        /// `GET /videos/jobs/{job_id}/deliveries` (listJobDeliveries).
        pub async fn job_deliveries(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/deliveries");
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/jobs/{job_id}/redeliver` (redeliverJobNotification).
        pub async fn redeliver(
            &self,
            id: impl std::fmt::Display,
            body: impl Into<$crate::harness::api::Payload>,
        ) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/redeliver");
            self.request(lambda_http::http::Method::POST, &path, body.into()).await
        }

        /// `GET /videos/deliveries` (listFailedDeliveries), with `query` (`since=…&error_class=…`, URL-encoded).
        pub async fn failed_deliveries(&self, query: &str) -> $crate::harness::api::Reply {
            let path = if query.is_empty() { "/videos/deliveries".to_owned() } else { format!("/videos/deliveries?{query}") };
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/webhook-endpoints/resume` (resumeEndpoint).
        pub async fn resume_endpoint(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/webhook-endpoints/resume", body.into()).await
        }

        /// `POST /videos/deliveries/redeliver` (recoverDeliveries).
        pub async fn recover_deliveries(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/deliveries/redeliver", body.into()).await
        }

        /// `GET /videos/jobs/{job_id}/children` (listJobChildren).
        pub async fn job_children(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/children");
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `GET /videos/jobs/{job_id}/events` (getJobEvents).
        pub async fn job_events(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/events");
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `DELETE /videos/jobs/{job_id}` (cancelJob).
        pub async fn cancel_job(&self, id: impl std::fmt::Display) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}");
            self.request(lambda_http::http::Method::DELETE, &path, $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/jobs/{job_id}/review` (reviewJob).
        pub async fn review_job(
            &self,
            id: impl std::fmt::Display,
            body: impl Into<$crate::harness::api::Payload>,
        ) -> $crate::harness::api::Reply {
            let path = format!("/videos/jobs/{id}/review");
            self.request(lambda_http::http::Method::POST, &path, body.into()).await
        }

        /// `GET /videos/review/queue` (getReviewQueue).
        pub async fn review_queue(&self, page: $crate::harness::api::Page) -> $crate::harness::api::Reply {
            let path = format!("/videos/review/queue{}", page.query());
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `GET /videos/account` (getAccount).
        pub async fn account(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/videos/account", $crate::harness::api::Payload::None).await
        }

        /// `GET /videos/webhook-secret` (getWebhookSecret).
        pub async fn webhook_secret(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/videos/webhook-secret", $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/webhook-secret/rotate` (rotateWebhookSecret).
        pub async fn rotate_webhook_secret(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/webhook-secret/rotate", $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/webhook-test` (testWebhook).
        pub async fn test_webhook(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/webhook-test", body.into()).await
        }

        /// `POST /videos/webhook-secret/rotate` (rotateWebhookSecret) with a body.
        pub async fn rotate_webhook_secret_with(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/webhook-secret/rotate", body.into()).await
        }

        /// `GET /videos/stats` (getStats).
        pub async fn stats(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/videos/stats", $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/admin/keys` (createKey).
        pub async fn create_key(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/admin/keys", body.into()).await
        }

        /// `GET /videos/admin/keys` (listKeys).
        pub async fn list_keys(&self, page: $crate::harness::api::Page) -> $crate::harness::api::Reply {
            let path = format!("/videos/admin/keys{}", page.query());
            self.request(lambda_http::http::Method::GET, &path, $crate::harness::api::Payload::None).await
        }

        /// `DELETE /videos/admin/keys/{key_id}` (revokeKey).
        pub async fn revoke_key(&self, key_id: &str) -> $crate::harness::api::Reply {
            let path = format!("/videos/admin/keys/{key_id}");
            self.request(lambda_http::http::Method::DELETE, &path, $crate::harness::api::Payload::None).await
        }

        /// `POST /videos/admin/credits` (grantCredits).
        pub async fn grant_credits(&self, body: impl Into<$crate::harness::api::Payload>) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::POST, "/videos/admin/credits", body.into()).await
        }

        /// `GET /review` (reviewPage).
        pub async fn review_page(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/review", $crate::harness::api::Payload::None).await
        }

        /// `GET /docs` (apiDocsPage).
        pub async fn docs_page(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/docs", $crate::harness::api::Payload::None).await
        }

        /// `GET /openapi.json` (getOpenApi).
        pub async fn openapi(&self) -> $crate::harness::api::Reply {
            self.request(lambda_http::http::Method::GET, "/openapi.json", $crate::harness::api::Payload::None).await
        }

        /// `POST /webhooks/{provider}` (providerCallback): a provider's
        /// callback, with the headers its signature scheme uses.
        pub async fn provider_callback(
            &self,
            provider: &str,
            headers: &[(&str, &str)],
            body: impl Into<$crate::harness::api::Payload>,
        ) -> $crate::harness::api::Reply {
            let path = format!("/webhooks/{provider}");
            self.with_headers(headers).request(lambda_http::http::Method::POST, &path, body.into()).await
        }
    };
}
pub(crate) use operations;

// Every operation of the API, whichever the suites call.
#[allow(dead_code)]
impl Caller<'_> {
    operations!();
}

impl<'a> Caller<'a> {
    pub fn with_headers(&self, headers: &[(&str, &str)]) -> Caller<'a> {
        let transport = self.transport;
        let mut all = self.headers.clone();
        all.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Caller { transport, key: self.key.clone(), headers: all }
    }
}

/// What every in-process request goes through: built as API Gateway hands it
/// to a function, dispatched by the local API's router, and its answer
/// checked against docs/openapi.json on its way back.
pub(super) async fn dispatch(
    app: &local_api::App,
    method: Method,
    path: &str,
    key: Option<&str>,
    headers: &[(String, String)],
    payload: Payload,
) -> Reply {
    let host = if path.starts_with("/webhooks/") { "hooks.test" } else { "api.test" };
    let mut builder = lambda_http::http::Request::builder().method(method.clone()).uri(format!("https://{host}{path}"));
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    if let Some(content_type) = payload.content_type().filter(|_| !has_content_type(headers)) {
        builder = builder.header("content-type", content_type);
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = match payload {
        Payload::None => Body::Empty,
        Payload::Json(text) => Body::Text(text),
        Payload::Bytes { bytes, .. } => Body::Binary(bytes),
    };
    let request = builder.body(body).expect("a valid request");
    let path_only = request.uri().path().to_owned();
    let response = local_api::dispatch(app, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes: &[u8] = response.body().as_ref();
    crate::contract::check(&method, &path_only, status.as_u16(), &headers, bytes);
    Reply::from_parts(status, headers, bytes)
}
