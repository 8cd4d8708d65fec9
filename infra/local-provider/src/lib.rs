//! The local provider: a small HTTP service with a video provider's contract,
//! modelled on Replicate's predictions API.
//!
//! | request | does |
//! |---|---|
//! | `POST /v1/predictions` (`Idempotency-Key`) | accepts a job, answers its id; the same key answers the same id |
//! | `GET /v1/predictions/{id}` | its status, progress, output or error |
//! | `POST /v1/predictions/{id}/cancel` | cancels it |
//! | `GET /files/{id}/video.mp4`, `/files/{id}/thumbnail.jpg` | the output, streamed |
//! | `POST /v1/faults` | faults for every later job (a job's own `faults` win) |
//! | `GET /v1/stats` | submissions per idempotency key, every prediction, callbacks delivered |
//!
//! Videos are real MP4s rendered by ffmpeg: a title card with the prompt for
//! text to video, a zoom over the image for image to video (honouring length,
//! frame rate and zoom speed). Callbacks are signed the Standard Webhooks way;
//! one that fails (no answer, or not 2xx) is retried with backoff for about
//! six minutes, as real providers retry theirs.

use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use videojobs_core::model::signing::WebhookSecret;

pub mod render;

/// Faults the provider can be told to produce, per job or for every job:
/// the type, and the bounds, the API checks `metadata.local_faults` with.
pub use videojobs_core::model::request::faults::RequestedFaults as Faults;

/// What is over the bounds the API also applies, if anything.
fn faults_out_of_bounds(faults: &Faults) -> Option<String> {
    videojobs_core::model::request::faults::out_of_bounds(faults).map(|(field, message)| format!("faults.{field} {message}"))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// `text` or `image`.
    pub mode: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub frame_rate: Option<u32>,
    #[serde(default)]
    pub zoom_speed: Option<f64>,
    /// Picks the text video's background: the same seed, the same colour.
    #[serde(default)]
    pub seed: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    input: Input,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    faults: Option<Faults>,
}

#[derive(Debug, Clone)]
struct Prediction {
    id: String,
    status: &'static str,
    progress: u8,
    error: Option<(String, String)>,
    /// The seed it was asked for, shown in the stats (tests check it arrived).
    seed: Option<u32>,
}

pub struct Config {
    /// Where videos are written.
    pub dir: PathBuf,
    /// Signs callbacks; file links are signed with a key derived from it
    /// ([`LINK_KEY_PURPOSE`]), never with it.
    pub secret: WebhookSecret,
    /// Where source images may be fetched from: public addresses only, unless
    /// the local stack allows loopback and `http` (its S3 is moto on 127.0.0.1).
    pub image_policy: videojobs_core::model::notification::WebhookPolicy,
    /// With a token, every `/v1/` call must carry it (`Authorization: Bearer`)
    /// and files are served only through signed links that expire after
    /// [`FILE_LINK_SECONDS`]. The binary always has one (`LOCAL_PROVIDER_TOKEN`);
    /// tests may run without.
    pub token: Option<String>,
}

/// How long a file link in a prediction stays good.
pub const FILE_LINK_SECONDS: i64 = 3_600;

impl Config {
    /// The local stack's: images also from loopback over `http`; no token.
    pub fn local(dir: PathBuf, secret: WebhookSecret) -> Self {
        let loopback = videojobs_core::model::notification::LoopbackPorts::range(1, u16::MAX);
        let image_policy = videojobs_core::model::notification::WebhookPolicy { allow_http: true, loopback };
        Self { dir, secret, image_policy, token: None }
    }
}

struct State {
    config: Config,
    /// Signs file links (derived from `config.secret`; see [`link_signature`]).
    link_key: WebhookSecret,
    base_url: String,
    predictions: Mutex<HashMap<String, Prediction>>,
    by_key: Mutex<HashMap<String, String>>,
    submissions: Mutex<HashMap<String, u32>>,
    global_faults: Mutex<Faults>,
    http: reqwest::Client,
    deliveries: std::sync::atomic::AtomicU64,
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, value: Value) -> Response<Body> {
    let body = Full::new(Bytes::from(value.to_string())).map_err(|never| match never {}).boxed();
    Response::builder().status(status).header("content-type", "application/json").body(body).expect("a valid response")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    full(status, json!({"error": {"code": code, "message": message}}))
}

/// A running local provider.
pub struct Handle {
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the provider on `listener` in a background task.
pub fn spawn(listener: TcpListener, config: Config) -> std::io::Result<Handle> {
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    std::fs::create_dir_all(&config.dir)?;
    let state = Arc::new(State {
        link_key: config.secret.derive(LINK_KEY_PURPOSE),
        config,
        base_url: base_url.clone(),
        predictions: Mutex::default(),
        by_key: Mutex::default(),
        submissions: Mutex::default(),
        global_faults: Mutex::default(),
        deliveries: Default::default(),
        http: {
            // reqwest has no crypto provider of its own here (see the workspace Cargo.toml).
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(std::io::Error::other)?
        },
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| route(state.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(Handle { base_url, task })
}

async fn route(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path: Vec<String> = request.uri().path().trim_matches('/').split('/').map(str::to_owned).collect();
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    if segments.first() == Some(&"v1") && !authorized(&state, &request) {
        return Ok(error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required"));
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let response = match (request.method().clone(), segments.as_slice()) {
        (Method::POST, ["v1", "predictions"]) => create(&state, request).await,
        (Method::GET, ["v1", "predictions", id]) => get(&state, id),
        (Method::POST, ["v1", "predictions", id, "cancel"]) => cancel(&state, id),
        (Method::GET, ["files", id, name]) => file(&state, id, name, &query).await,
        (Method::POST, ["v1", "faults"]) => set_faults(&state, request).await,
        (Method::GET, ["v1", "stats"]) => {
            let submissions = state.submissions.lock().map(|s| s.clone()).unwrap_or_default();
            let predictions: Vec<Value> = state
                .predictions
                .lock()
                .map(|p| p.values().map(|p| json!({"id": p.id, "status": p.status, "seed": p.seed})).collect())
                .unwrap_or_default();
            let deliveries = state.deliveries.load(std::sync::atomic::Ordering::Relaxed);
            full(StatusCode::OK, json!({ "submissions": submissions, "predictions": predictions, "deliveries": deliveries }))
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    Ok(response)
}

async fn read_json<T: for<'de> Deserialize<'de>>(request: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes =
        request.into_body().collect().await.map_err(|_| error(StatusCode::BAD_REQUEST, "bad_request", "unreadable body"))?.to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", &e.to_string()))
}

async fn set_faults(state: &State, request: Request<Incoming>) -> Response<Body> {
    match read_json::<Faults>(request).await {
        Ok(faults) => {
            if let Some(message) = faults_out_of_bounds(&faults) {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_faults", &message);
            }
            if let Ok(mut global) = state.global_faults.lock() {
                *global = faults;
            }
            full(StatusCode::OK, json!({"ok": true}))
        }
        Err(response) => response,
    }
}

async fn create(state: &Arc<State>, request: Request<Incoming>) -> Response<Body> {
    let key = request.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: CreateBody = match read_json(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(message) = body.faults.as_ref().and_then(faults_out_of_bounds) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_faults", &message);
    }
    let faults = body.faults.clone().unwrap_or_else(|| state.global_faults.lock().map(|f| f.clone()).unwrap_or_default());
    let key = key.unwrap_or_else(|| ulid::Ulid::new().to_string());
    let attempt = {
        let Ok(mut submissions) = state.submissions.lock() else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock");
        };
        let count = submissions.entry(key.clone()).or_insert(0);
        *count += 1;
        *count
    };
    if let Some(status) = faults.submit_errors.get(attempt as usize - 1) {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error(status, "injected", "an injected submission fault");
    }
    if let Some(existing) = state.by_key.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return full(StatusCode::OK, json!({"id": existing, "status": "starting"}));
    }
    if let Err(message) = render::check_input(&body.input) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", &message);
    }
    let id = format!("lp_{}", ulid::Ulid::new().to_string().to_lowercase());
    if let (Ok(mut predictions), Ok(mut by_key)) = (state.predictions.lock(), state.by_key.lock()) {
        predictions.insert(id.clone(), Prediction { id: id.clone(), status: "starting", progress: 0, error: None, seed: body.input.seed });
        by_key.insert(key, id.clone());
    }
    if faults.callbacks_before_answer {
        generate(state.clone(), id.clone(), body.input, body.webhook, faults).await;
    } else {
        tokio::spawn(generate(state.clone(), id.clone(), body.input, body.webhook, faults));
    }
    full(StatusCode::CREATED, json!({"id": id, "status": "starting"}))
}

fn snapshot(state: &State, id: &str) -> Option<Value> {
    let predictions = state.predictions.lock().ok()?;
    let p = predictions.get(id)?;
    Some(prediction_json(state, p))
}

fn prediction_json(state: &State, p: &Prediction) -> Value {
    let output = (p.status == "succeeded")
        .then(|| json!({"video": file_link(state, &p.id, "video.mp4"), "thumbnail": file_link(state, &p.id, "thumbnail.jpg")}));
    let error = p.error.as_ref().map(|(code, message)| json!({"code": code, "message": message}));
    json!({"id": p.id, "status": p.status, "progress": p.progress, "output": output, "error": error})
}

fn get(state: &State, id: &str) -> Response<Body> {
    match snapshot(state, id) {
        Some(value) => full(StatusCode::OK, value),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such prediction"),
    }
}

fn cancel(state: &State, id: &str) -> Response<Body> {
    let Ok(mut predictions) = state.predictions.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock");
    };
    match predictions.get_mut(id) {
        Some(p) => {
            if matches!(p.status, "starting" | "processing") {
                p.status = "canceled";
            }
            full(StatusCode::OK, prediction_json(state, p))
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such prediction"),
    }
}

/// Whether the request carries the configured token (always, without one).
fn authorized(state: &State, request: &Request<Incoming>) -> bool {
    let Some(token) = &state.config.token else { return true };
    let presented = request.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    presented.is_some_and(|p| videojobs_core::model::signing::constant_time_eq(p.trim().as_bytes(), token.as_bytes()))
}

/// What the key of file links is derived from the callback secret with.
pub const LINK_KEY_PURPOSE: &str = "local-provider/file-links/v1";

/// The signature of a file link: over the file and the link's expiry, under
/// a key of its own ([`LINK_KEY_PURPOSE`], derived from the secret), never the
/// callback secret itself: a link's signature must not verify as a callback.
fn link_signature(state: &State, id: &str, name: &str, expires: i64) -> String {
    state.link_key.sign(&format!("file:{id}/{name}"), expires, b"")
}

/// A link to one of a prediction's files: signed and expiring where a token is configured.
fn file_link(state: &State, id: &str, name: &str) -> String {
    let base = format!("{}/files/{id}/{name}", state.base_url);
    if state.config.token.is_none() {
        return base;
    }
    let expires = time::OffsetDateTime::now_utc().unix_timestamp() + FILE_LINK_SECONDS;
    let signature: String = url::form_urlencoded::byte_serialize(link_signature(state, id, name, expires).as_bytes()).collect();
    format!("{base}?expires={expires}&sig={signature}")
}

/// Whether a file request's link is one we signed and has not expired.
fn link_is_valid(state: &State, id: &str, name: &str, query: &str) -> bool {
    if state.config.token.is_none() {
        return true;
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let (Some(expires), Some(signature)) = (params.get("expires").and_then(|e| e.parse::<i64>().ok()), params.get("sig")) else {
        return false;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    expires > now
        && expires <= now + FILE_LINK_SECONDS
        && videojobs_core::model::signing::constant_time_eq(signature.as_bytes(), link_signature(state, id, name, expires).as_bytes())
}

async fn file(state: &State, id: &str, name: &str, query: &str) -> Response<Body> {
    if !matches!(name, "video.mp4" | "thumbnail.jpg") || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return error(StatusCode::NOT_FOUND, "not_found", "no such file");
    }
    if !link_is_valid(state, id, name, query) {
        return error(StatusCode::FORBIDDEN, "link_expired", "the link is not signed, or has expired: read the prediction again");
    }
    let path = state.config.dir.join(id).join(name);
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such file");
    };
    let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let checksum = tokio::fs::read_to_string(path.with_extension("sha256")).await.ok();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
    let body = BodyExt::boxed(StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))));
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", if name.ends_with(".mp4") { "video/mp4" } else { "image/jpeg" })
        .header("content-length", length);
    if let Some(checksum) = checksum {
        response = response.header("x-checksum-sha256", checksum.trim());
    }
    response.body(body).expect("a valid response")
}

fn set(state: &State, id: &str, status: &'static str, progress: u8, error: Option<(String, String)>) -> Option<Value> {
    let mut predictions = state.predictions.lock().ok()?;
    let p = predictions.get_mut(id)?;
    if p.status == "canceled" {
        return None;
    }
    p.status = status;
    p.progress = progress;
    p.error = error;
    Some(prediction_json(state, p))
}

fn is_canceled(state: &State, id: &str) -> bool {
    state.predictions.lock().ok().and_then(|p| p.get(id).map(|p| p.status == "canceled")).unwrap_or(true)
}

/// Makes the video and tells the webhook, as the job's faults say.
async fn generate(state: Arc<State>, id: String, input: Input, webhook: Option<String>, faults: Faults) {
    if faults.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    }
    let mut callbacks = Vec::new();
    let hold_back = faults.shuffle_callbacks || faults.completion_first || faults.duplicate_callbacks > 1;
    let Some(first) = set(&state, &id, "processing", 10, None) else { return };
    callbacks.push(first);
    if !hold_back {
        deliver(&state, webhook.as_deref(), &id, &faults, std::mem::take(&mut callbacks)).await;
    }
    let outcome = match &faults.fail_with {
        Some(code) => Err((code.clone(), "The generation failed (an injected fault).".to_owned())),
        None => render::render(state.config.image_policy, &state.config.dir.join(&id), &input)
            .await
            .map_err(|e| ("render_failed".to_owned(), e)),
    };
    if is_canceled(&state, &id) {
        return;
    }
    if let Some(midway) = set(&state, &id, "processing", 60, None) {
        callbacks.push(midway);
    }
    let last = match outcome {
        Ok(()) => set(&state, &id, "succeeded", 100, None),
        Err(error) => set(&state, &id, "failed", 100, Some(error)),
    };
    let Some(last) = last else { return };
    callbacks.push(last);
    if faults.completion_first {
        callbacks.reverse();
    }
    if faults.shuffle_callbacks {
        use rand::seq::SliceRandom;
        callbacks.shuffle(&mut rand::rng());
    }
    deliver(&state, webhook.as_deref(), &id, &faults, callbacks).await;
}

/// Posts each callback (as often as the faults say), signed, each with its own id.
async fn deliver(state: &Arc<State>, webhook: Option<&str>, id: &str, faults: &Faults, callbacks: Vec<Value>) {
    let Some(url) = webhook else { return };
    if faults.drop_callbacks {
        return;
    }
    let mut deliveries = Vec::new();
    for body in callbacks {
        let event_id = format!("evt_{id}_{}_{}", body["status"].as_str().unwrap_or(""), body["progress"]);
        for _ in 0..faults.duplicate_callbacks.max(1) {
            deliveries.push((event_id.clone(), body.clone()));
        }
    }
    if faults.shuffle_callbacks {
        use rand::seq::SliceRandom;
        deliveries.shuffle(&mut rand::rng());
    }
    for (index, (event_id, body)) in deliveries.into_iter().enumerate() {
        if index == 1 && faults.late_callbacks_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.late_callbacks_ms)).await;
        }
        let text = body.to_string();
        if post_callback(state, url, &event_id, &text).await {
            continue;
        }
        // As real providers do: a delivery that failed (the API was down, or
        // answered other than 2xx) is tried again with backoff, in the
        // background, so that later callbacks are not held back by it.
        let (state, url) = (state.clone(), url.to_owned());
        tokio::spawn(async move {
            for wait in CALLBACK_RETRY_WAITS {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                if post_callback(&state, &url, &event_id, &text).await {
                    return;
                }
            }
            tracing::warn!(event_id, "callback given up after its retries");
        });
    }
}

/// Waits between the attempts at a callback that failed: about 6 minutes in all.
const CALLBACK_RETRY_WAITS: [u64; 9] = [1, 2, 4, 8, 16, 30, 60, 90, 150];

/// One signed delivery (signed anew: the timestamp must be fresh); `true` on a 2xx.
async fn post_callback(state: &State, url: &str, event_id: &str, text: &str) -> bool {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = state.config.secret.sign(event_id, now, text.as_bytes());
    let sent = state
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", event_id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(text.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            state.deliveries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            true
        }
        Ok(response) => {
            tracing::warn!(status = response.status().as_u16(), event_id, "callback answered other than 2xx; retrying");
            false
        }
        Err(err) => {
            tracing::warn!(error = videojobs_core::model::redact::error(&err), event_id, "callback not delivered; retrying");
            false
        }
    }
}

/// The files a prediction wrote.
pub fn video_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(id).join("video.mp4")
}
