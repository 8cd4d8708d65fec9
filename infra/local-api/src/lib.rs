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
use videojobs_core::model::ids::{ApiKey, Role, UserId};
use videojobs_core::ports::Principal;
use videojobs_core::services::Services;

pub mod queue;

/// API Gateway's own cap on a request body.
const GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// Everything the functions need, wired once: what each Lambda would build.
#[derive(Clone)]
pub struct App {
    pub services: Services,
    pub webhook: webhook::Callbacks,
    pub worker: worker::Pipeline,
}

impl App {
    pub fn on_aws(
        clients: &videojobs_aws::AwsClients,
        resources: &videojobs_aws::Resources,
        settings: videojobs_core::model::settings::Settings,
        providers: videojobs_core::ports::Providers,
        http: videojobs_providers::HttpClient,
        callback_base_url: String,
    ) -> Self {
        // Each function's own wiring: the local stack runs them as AWS would.
        let worker = worker::pipeline_on_aws(clients, resources, &settings, providers.clone(), http, callback_base_url);
        let webhook = webhook::callbacks_on_aws(clients, resources, providers);
        let services = videojobs_aws::services(clients, resources, settings);
        Self { services, webhook, worker }
    }
}

/// Answers one HTTP request the way API Gateway, the function URL and the
/// functions would.
pub async fn dispatch(app: &App, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
    let outcome = if webhook::provider_of(&request).is_some() {
        webhook::handler(&app.webhook.providers, &app.webhook, request).await
    } else if create::serves(&request) {
        create::handler(&app.services, request).await
    } else {
        status::handler(&app.services, request).await
    };
    outcome.unwrap_or_else(|err| {
        tracing::error!(error = %err, "handler failed");
        videojobs_api::error_response(&videojobs_core::AppError::Internal(err.to_string()))
    })
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
/// reusing the keys in `path` when it is there.
pub async fn seed_demo(services: &Services, path: &Path) -> Result<DemoKeys, Box<dyn std::error::Error + Send + Sync>> {
    let keys = match std::fs::read_to_string(path) {
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
        (&keys.user_id, &keys.user_key, Role::User),
        (&keys.reviewer_id, &keys.reviewer_key, Role::Reviewer),
        (&keys.admin_id, &keys.admin_key, Role::Admin),
    ] {
        let user_id: UserId = user.parse()?;
        let key: ApiKey = key.parse()?;
        let principal = Principal { user_id: user_id.clone(), role };
        // Saving a key again is harmless: the same hash maps to the same principal.
        services
            .keys
            .save_key_record(&key.hash(), &videojobs_core::ports::KeyRecord::for_key(&key.hash(), principal.clone(), "local demo"))
            .await?;
        services.accounts.open_account(&user_id, DEMO_CREDITS).await?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&keys)?)?;
    Ok(keys)
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
