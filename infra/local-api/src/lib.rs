//! The local stand-ins for what AWS does around the functions: API Gateway
//! (an HTTP server handing requests to the same handlers the Lambda binaries
//! run) and the SQS event source (a poller handing batches to the worker).
//! Also seeds the demo accounts and keys.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use videojobs_aws::{AwsClients, Function};
use videojobs_core::model::ids::{ApiKey, Role, UserId};
use videojobs_core::ports::Principal;
use videojobs_core::services::Services;

pub mod queue;

/// API Gateway's own cap on a request body.
const GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// Lambda's cap on a synchronous invocation's response (its JSON, a binary
/// body base64-encoded): over it the invocation fails.
pub const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;

/// The functions' timeouts in template.yaml (a test holds them equal), each
/// below API Gateway's 30 s integration timeout: Lambda stops the function first.
pub const API_FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub const WEBHOOK_FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything the functions need, wired once: what each Lambda would build,
/// each with its own AWS clients.
#[derive(Clone)]
pub struct App {
    pub create: Services,
    pub status: Services,
    pub webhook: webhook::Callbacks,
    /// The worker, on the work queue.
    pub worker: worker::Pipeline,
    /// The same binary as the notify function, on the notification queue.
    pub notifier: worker::Pipeline,
    /// The clients the SQS event source polls with (none for a world
    /// without SQS, such as the tests' in-memory one).
    pub queue_clients: Option<QueueClients>,
}

/// Lambda's SQS event source polls a queue with the role of the function it feeds.
#[derive(Clone)]
pub struct QueueClients {
    pub worker: aws_sdk_sqs::Client,
    pub notify: aws_sdk_sqs::Client,
}

impl App {
    /// Each function wired as its own Lambda would be, with the clients
    /// `clients_for` gives it.
    pub fn on_aws(
        clients_for: impl Fn(Function) -> AwsClients,
        resources: &videojobs_aws::Resources,
        settings: videojobs_core::model::settings::Settings,
        providers: videojobs_core::ports::Providers,
        callback_base_url: String,
    ) -> Self {
        let (worker_clients, notify_clients) = (clients_for(Function::Worker), clients_for(Function::Notify));
        let worker = videojobs_aws::pipeline(&worker_clients, resources, &settings, providers.clone(), callback_base_url.clone());
        let notifier = videojobs_aws::pipeline(&notify_clients, resources, &settings, providers.clone(), callback_base_url);
        let webhook = videojobs_aws::callbacks(&clients_for(Function::Webhook), resources, providers);
        let create = videojobs_aws::services(&clients_for(Function::Create), resources, settings.clone());
        let status = videojobs_aws::services(&clients_for(Function::Status), resources, settings);
        let queue_clients = Some(QueueClients { worker: worker_clients.sqs, notify: notify_clients.sqs });
        Self { create, status, webhook, worker, notifier, queue_clients }
    }

    /// The local stack's wiring: each function signs as itself, so the local
    /// gate checks every call against its role in template.yaml; the gate's
    /// fault profile `fault_profile` (its default when `None`).
    pub fn local(
        resources: &videojobs_aws::Resources,
        settings: videojobs_core::model::settings::Settings,
        providers: videojobs_core::ports::Providers,
        callback_base_url: String,
        fault_profile: Option<&str>,
    ) -> Self {
        Self::on_aws(|function| AwsClients::local_for(function, fault_profile), resources, settings, providers, callback_base_url)
    }

    /// The pipeline that handles `message` where it runs on AWS: the
    /// notifier for client notifications, the worker for the rest.
    pub fn consumer_of(&self, message: &videojobs_core::model::work::WorkMessage) -> &worker::Pipeline {
        if message.is_notification() {
            &self.notifier
        } else {
            &self.worker
        }
    }
}

/// Answers one HTTP request the way API Gateway, the function URL and the
/// functions would.
pub async fn dispatch(app: &App, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
    let is_webhook = webhook::provider_of(&request).is_some();
    let timeout = if is_webhook { WEBHOOK_FUNCTION_TIMEOUT } else { API_FUNCTION_TIMEOUT };
    let handled = async {
        if is_webhook {
            webhook::handler(&app.webhook.providers, &app.webhook, request).await
        } else if create::serves(&request) {
            create::handler(&app.create, request).await
        } else {
            status::handler(&app.status, request).await
        }
    };
    let response = match tokio::time::timeout(timeout, handled).await {
        Ok(outcome) => outcome.unwrap_or_else(|err| {
            tracing::error!(error = %err, "handler failed");
            videojobs_api::error_response(&videojobs_core::AppError::Internal(err.to_string()))
        }),
        Err(_) => {
            tracing::error!(timeout_seconds = timeout.as_secs(), "the function timed out");
            return invocation_failed(is_webhook);
        }
    };
    if invocation_size(&response) > LAMBDA_RESPONSE_LIMIT {
        tracing::error!("the response is over Lambda's 6 MB");
        return invocation_failed(is_webhook);
    }
    response
}

/// What the caller sees when the invocation itself fails (timed out, or its
/// response too large): API Gateway answers 500, a function URL 502.
fn invocation_failed(function_url: bool) -> lambda_http::Response<lambda_http::Body> {
    let (status, message) = if function_url { (502, "Bad Gateway") } else { (500, "Internal Server Error") };
    let mut response = lambda_http::Response::new(lambda_http::Body::Text(format!("{{\"message\":\"{message}\"}}")));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(status).unwrap_or(lambda_http::http::StatusCode::BAD_GATEWAY);
    response.headers_mut().insert("content-type", lambda_http::http::HeaderValue::from_static("application/json"));
    response
}

/// The bytes Lambda counts for a response: the body as it travels in the
/// invocation's JSON (binary bodies base64-encoded), headers included.
pub fn invocation_size(response: &lambda_http::Response<lambda_http::Body>) -> usize {
    let body = match response.body() {
        lambda_http::Body::Empty => 0,
        lambda_http::Body::Text(text) => text.len(),
        lambda_http::Body::Binary(bytes) => bytes.len().div_ceil(3) * 4,
        _ => response.body().as_ref().len(),
    };
    let headers: usize = response.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 6).sum();
    body + headers + 64
}

async fn serve_one(app: Arc<App>, request: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, GATEWAY_BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{\"message\":\"Request Entity Too Large\"}")));
            *response.status_mut() = hyper::StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(response);
        }
    };
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(err) => lambda_http::Body::Binary(err.into_bytes()),
        }
    };
    let response = dispatch(&app, lambda_http::Request::from_parts(parts, body)).await;
    let (parts, body) = response.into_parts();
    Ok(hyper::Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref()))))
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| serve_one(app.clone(), request));
            if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %err, "connection ended");
            }
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The demo accounts' keys, kept in a file so that a second start reuses them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DemoKeys {
    pub user_id: String,
    pub user_key: String,
    pub reviewer_id: String,
    pub reviewer_key: String,
    pub admin_id: String,
    pub admin_key: String,
}

pub const DEMO_CREDITS: i64 = 1_000;

/// Makes sure the demo user (with credits), reviewer and admin exist with keys,
/// reusing the keys in `path` when it is there. A key that was revoked stays
/// revoked: its holder gets a new key, written back to `path`. The file holds
/// keys, so only its owner may read it (0600, in a directory only they enter).
pub async fn seed_demo(services: &Services, path: &Path) -> Result<DemoKeys, Box<dyn std::error::Error + Send + Sync>> {
    let mut keys = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => DemoKeys {
            user_id: "demo".into(),
            user_key: ApiKey::generate().expose().into(),
            reviewer_id: "demo-reviewer".into(),
            reviewer_key: ApiKey::generate().expose().into(),
            admin_id: "demo-admin".into(),
            admin_key: ApiKey::generate().expose().into(),
        },
    };
    for (user, key, role) in [
        (&keys.user_id, &mut keys.user_key, Role::User),
        (&keys.reviewer_id, &mut keys.reviewer_key, Role::Reviewer),
        (&keys.admin_id, &mut keys.admin_key, Role::Admin),
    ] {
        let user_id: UserId = user.parse()?;
        let mut api_key: ApiKey = key.parse()?;
        match services.keys.key_for(&api_key.hash()).await? {
            // Saved before and still good: as it is.
            Some(record) if record.revoked_at.is_none() => {}
            found => {
                if found.is_some() {
                    // Revoked: saving it again would bring it back.
                    api_key = ApiKey::generate();
                    *key = api_key.expose().into();
                }
                let principal = Principal { user_id: user_id.clone(), role };
                let record = videojobs_core::ports::KeyRecord::for_key(&api_key.hash(), principal, "local demo");
                services.keys.save_key_record(&api_key.hash(), &record).await?;
            }
        }
        services.accounts.open_account(&user_id, DEMO_CREDITS).await?;
    }
    write_private(path, serde_json::to_string_pretty(&keys)?.as_bytes())?;
    Ok(keys)
}

/// Writes `bytes` to `path` readable by its owner alone, in a directory only
/// they may enter (created so if missing).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // A file made before this rule keeps its old mode through open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

/// What a person needs to start: the URL, the keys, and a first request.
pub fn banner(base: &str, keys: &DemoKeys) -> String {
    format!(
        "videojobs is up at {base}\n\
         \n  user key     ({}, {DEMO_CREDITS} credits): {}\
         \n  reviewer key ({}): {}\
         \n  admin key    ({}): {}\n\
         \nReview page: {base}/review (enter the reviewer key; the admin key also shows the stats)\n\
         \nTry:\n  curl -s -X POST {base}/videos/generate \\\n    -H 'Authorization: Bearer {}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"prompt\":\"A paper boat drifting down a rainy street\",\"duration_seconds\":4}}'\n",
        keys.user_id, keys.user_key, keys.reviewer_id, keys.reviewer_key, keys.admin_id, keys.admin_key, keys.user_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: lambda_http::Body) -> lambda_http::Response<lambda_http::Body> {
        lambda_http::Response::new(body)
    }

    #[test]
    fn a_binary_body_counts_as_its_base64_against_lambdas_response_limit() {
        let raw = LAMBDA_RESPONSE_LIMIT * 3 / 4;
        assert!(invocation_size(&response(lambda_http::Body::Text("x".repeat(raw)))) < LAMBDA_RESPONSE_LIMIT);
        assert!(invocation_size(&response(lambda_http::Body::Binary(vec![0; raw]))) > LAMBDA_RESPONSE_LIMIT);
        assert!(invocation_size(&response(lambda_http::Body::Text("x".repeat(LAMBDA_RESPONSE_LIMIT)))) > LAMBDA_RESPONSE_LIMIT);
    }

    #[test]
    fn a_failed_invocation_is_a_500_behind_api_gateway_and_a_502_behind_a_function_url() {
        assert_eq!(invocation_failed(false).status(), 500);
        assert_eq!(invocation_failed(true).status(), 502);
        assert_eq!(invocation_failed(false).body().as_ref(), br#"{"message":"Internal Server Error"}"#);
    }
}
