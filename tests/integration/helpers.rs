//! What the integration tests start and share: one local stack per test run
//! (fresh tables, queues, bucket and state machine in the moto the test command
//! started), a fresh user with credits and a key per test, and a client that
//! calls the real handlers with the real SDK behind them.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::Body;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use videojobs_aws::{AwsClients, DynamoStore, Resources};
use videojobs_core::model::ids::{ApiKey, JobId, Role, UserId};
use videojobs_core::model::job::Job;
use videojobs_core::model::settings::Settings;
use videojobs_core::ports::Providers;
use videojobs_core::ports::{AccountStore, JobStore, Principal};
use videojobs_core::services::Services;
use videojobs_core::JobStatus;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stack's resource names. Created once per test run; clients are not
/// shared because each test has its own async runtime.
pub fn resources() -> &'static Resources {
    static RESOURCES: OnceLock<Resources> = OnceLock::new();
    RESOURCES.get_or_init(|| bootstrap(&format!("it-{}-{}", std::process::id(), time::OffsetDateTime::now_utc().unix_timestamp())))
}

/// A stack of its own (tables, queues, bucket, state machine), for tests that
/// run a worker on its queue.
pub fn fresh_resources() -> Resources {
    fresh_stack().resources
}

/// A stack of its own with the environment the bootstrap exported for it
/// (what `scripts/up` gives `local-api`), for tests that run the binaries.
pub struct Stack {
    pub resources: Resources,
    pub exports: HashMap<String, String>,
}

pub fn fresh_stack() -> Stack {
    let (resources, exports) = bootstrap_with_exports(&format!("e2e-{}", ulid::Ulid::new().to_string().to_lowercase()));
    Stack { resources, exports }
}

fn bootstrap(stack: &str) -> Resources {
    bootstrap_with_exports(stack).0
}

fn bootstrap_with_exports(stack: &str) -> (Resources, HashMap<String, String>) {
    {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "the integration tests need the local AWS stack: run ./scripts/test (it starts moto)"
        );
        let root = repo_root();
        let env_file = std::env::temp_dir().join(format!("{stack}.env"));
        let python = root.join(".venv/bin/python");
        let status = Command::new(&python)
            .arg(root.join("infra/local/bootstrap.py"))
            .args(["--stack-name", stack, "--env-out"])
            .arg(&env_file)
            .current_dir(&root)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running {} failed: {e}", python.display()));
        assert!(status.success(), "bootstrapping the local stack failed");
        let exports = read_exports(&env_file);
        let resources = Resources::from_lookup(|name| exports.get(name).cloned()).expect("bootstrap exported every resource");
        (resources, exports)
    }
}

/// `export NAME=value` lines, as the bootstrap writes them.
fn read_exports(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).expect("bootstrap wrote its env file");
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches(|c| c == '\'' || c == '"').to_owned()))
        .collect()
}

/// Settings as a deployment would have them, with a retention short enough to test.
pub fn settings() -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("defaults are valid");
    settings.limits.allow_http_webhooks = true;
    settings.limits.allow_loopback_webhooks = true;
    // The tests drive the local provider's faults, as the local stack does.
    settings.limits.allow_fault_injection = true;
    // Tests poll the API quickly; the security suite turns the per-key limits on.
    settings.rate_limits = videojobs_core::model::ratelimit::RateLimits { requests_per_minute: 0, creates_per_minute: 0 };
    settings
}

pub struct TestApp {
    pub app: local_api::App,
    pub services: Services,
    pub clients: AwsClients,
    pub store: DynamoStore,
    pub resources: Resources,
    pub user: UserId,
    pub key: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// A fresh user with `credits` and a user key.
    pub async fn new(credits: i64) -> Self {
        Self::with_settings(credits, settings()).await
    }

    pub async fn with_settings(credits: i64, settings: Settings) -> Self {
        Self::on(resources().clone(), credits, settings, Providers::default(), "http://127.0.0.1:9".into()).await
    }

    /// A user on a stack of its own, for tests that read the work queue.
    pub async fn isolated(credits: i64) -> Self {
        Self::on(fresh_resources(), credits, settings(), Providers::default(), "http://127.0.0.1:9".into()).await
    }

    /// A user on the given stack, with the given providers.
    pub async fn on(resources: Resources, credits: i64, settings: Settings, providers: Providers, callback_base_url: String) -> Self {
        let clients = AwsClients::from_env().await;
        let store = DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table);
        let http = videojobs_providers::http_client();
        let app = local_api::App::on_aws(&clients, &resources, settings, providers, http, callback_base_url);
        let services = app.services.clone();
        let (user, key) = new_user(&services, credits, Role::User).await;
        Self { app, services, clients, store, resources, user, key }
    }

    /// Another user of the same stack, with their own key.
    pub async fn another_user(&self, credits: i64, role: Role) -> (UserId, String) {
        new_user(&self.services, credits, role).await
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<&str>) -> Reply {
        self.call_with(method, path, key, body, &[]).await
    }

    pub async fn call_with(&self, method: Method, path: &str, key: Option<&str>, body: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut builder = lambda_http::http::Request::builder().method(method).uri(format!("https://api.test{path}"));
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = body.map(|b| Body::Text(b.to_owned())).unwrap_or(Body::Empty);
        let request = builder.body(body).expect("a valid request");
        self.send(request).await
    }

    /// Every answer is checked against docs/openapi.json on its way back.
    pub async fn send(&self, request: lambda_http::Request) -> Reply {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = local_api::dispatch(&self.app, request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes: &[u8] = response.body().as_ref();
        crate::contract::check(&method, &path, status.as_u16(), &headers, bytes);
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(bytes).expect("a JSON body") };
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.key), None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.call(Method::POST, path, Some(&self.key), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&self.key), None).await
    }

    /// Creates a text-to-video job and returns its id.
    pub async fn generate(&self, seconds: u32) -> JobId {
        self.generate_with(&serde_json::json!({"prompt": "a test clip", "duration_seconds": seconds})).await
    }

    /// Creates a text-to-video job from `body`, which must be accepted.
    pub async fn generate_with(&self, body: &Value) -> JobId {
        let reply = self.post("/videos/generate", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.body["job_id"].as_str().expect("a job id").parse().expect("a valid job id")
    }

    /// Uploads a PNG the way a client does (the API's form, then a PUT to
    /// its URL) and returns the upload id.
    pub async fn upload_png(&self, image: &[u8]) -> Value {
        let upload = self.post("/videos/uploads", &format!(r#"{{"content_type":"image/png","size_bytes":{}}}"#, image.len())).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.body);
        let headers: Vec<(String, String)> = upload.body["headers"]
            .as_object()
            .expect("upload headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        assert_eq!(http_put(upload.body["url"].as_str().expect("an upload URL"), &headers, image).await, 200);
        upload.body["upload_id"].clone()
    }

    pub async fn credits(&self) -> i64 {
        self.credits_of(&self.user).await
    }

    pub async fn credits_of(&self, user: &UserId) -> i64 {
        self.store.account(user).await.expect("account read").expect("account exists").credits
    }

    pub async fn active_jobs(&self) -> u32 {
        self.store.account(&self.user).await.expect("account read").expect("account exists").active_jobs
    }

    pub async fn job(&self, id: &JobId) -> Job {
        self.store.job(id).await.expect("job read").expect("job exists")
    }

    /// The job's item as DynamoDB holds it, with the attributes the domain does not see.
    pub async fn job_item(&self, id: &JobId) -> HashMap<String, AttributeValue> {
        self.clients
            .dynamodb
            .get_item()
            .table_name(&self.resources.jobs_table)
            .key("pk", AttributeValue::S(format!("JOB#{id}")))
            .key("sk", AttributeValue::S("JOB".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("job item read")
            .item
            .expect("job item")
    }

    pub async fn job_count(&self) -> usize {
        let page = videojobs_core::ports::PageRequest { limit: 100, cursor: None };
        self.store.jobs_of(&self.user, &page).await.expect("jobs listed").items.len()
    }

    /// Writes a job record as it is, for states the API cannot reach yet.
    pub async fn put_job(&self, job: &Job) {
        let item = videojobs_aws::dynamo::job_item(job).expect("job encodes");
        self.clients.dynamodb.put_item().table_name(&self.resources.jobs_table).set_item(Some(item)).send().await.expect("job written");
    }

    pub async fn stored_prompt(&self, id: &JobId) -> Option<String> {
        let out = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.resources.prompts_table)
            .key("job_id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .expect("prompt read");
        out.item.and_then(|item| item.get("prompt").and_then(|v| v.as_s().ok()).cloned())
    }

    pub fn execution_arn(&self, id: &JobId) -> String {
        videojobs_aws::StepFunctions::new(self.clients.sfn.clone(), &self.resources.state_machine_arn).execution_arn(id)
    }

    /// The execution's status (`RUNNING`, `ABORTED`, …), or `None` if there is none.
    pub async fn execution_status(&self, id: &JobId) -> Option<String> {
        let out = self.clients.sfn.describe_execution().execution_arn(self.execution_arn(id)).send().await.ok()?;
        Some(out.status().as_str().to_owned())
    }

    /// The execution's status once it has left `RUNNING` (the interpreter
    /// stops a waiting execution asynchronously), or after 10 s.
    pub async fn settled_execution_status(&self, id: &JobId) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = self.execution_status(id).await;
            if status.as_deref() != Some("RUNNING") || std::time::Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

async fn new_user(services: &Services, credits: i64, role: Role) -> (UserId, String) {
    let user: UserId = format!("user-{}", ulid::Ulid::new().to_string().to_lowercase()).parse().expect("valid user id");
    let key = ApiKey::generate();
    services.keys.save_key(&key.hash(), &Principal { user_id: user.clone(), role }, "test").await.expect("key saved");
    services.accounts.open_account(&user, credits).await.expect("account opened");
    (user, key.expose().to_owned())
}

/// Runs `count` copies of a future-producing closure at once.
pub async fn all_at_once<F, Fut, T>(count: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::future::join_all((0..count).map(make)).await
}

/// A plain HTTP/1.1 PUT (the local stack speaks http), returning the status.
pub async fn http_put(url: &str, headers: &[(String, String)], body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url::Url::parse(url).expect("a URL");
    let host = url.host_str().expect("a host");
    let port = url.port_or_known_default().expect("a port");
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut head = format!("PUT {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.expect("connected");
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(body).await.expect("body sent");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("response read");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line")
}

/// Up to ten messages from the stack's work queue (waiting a second for them).
pub async fn receive_work(app: &TestApp) -> Vec<aws_sdk_sqs::types::Message> {
    receive_from(app, &app.resources.work_queue_url).await
}

/// The queue a message of `kind` goes to: notifications have their own.
pub fn queue_of<'a>(app: &'a TestApp, kind: &str) -> &'a str {
    if kind == "notify" {
        &app.resources.notify_queue_url
    } else {
        &app.resources.work_queue_url
    }
}

/// Up to ten messages from `queue_url` (waiting a second for them).
pub async fn receive_from(app: &TestApp, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let out = app
        .clients
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    out.messages.unwrap_or_default()
}

/// A work message's JSON body (`null` when it is not JSON).
pub fn message_body(message: &aws_sdk_sqs::types::Message) -> Value {
    serde_json::from_str(message.body().unwrap_or("{}")).unwrap_or(Value::Null)
}

pub async fn delete_work(app: &TestApp, receipt_handle: &str) {
    app.clients.sqs.delete_message().queue_url(&app.resources.work_queue_url).receipt_handle(receipt_handle).send().await.expect("delete");
}

/// Waits for the message of `kind` for `job` on its queue, leaving other
/// tests' messages for them.
pub async fn next_message(app: &TestApp, job: &JobId, kind: &str) -> (serde_json::Value, String) {
    let queue_url = queue_of(app, kind);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        for message in receive_from(app, queue_url).await {
            let body = message_body(&message);
            let handle = message.receipt_handle().unwrap_or_default().to_owned();
            if body["job_id"] == job.as_str() && body["kind"] == kind {
                app.clients.sqs.delete_message().queue_url(queue_url).receipt_handle(&handle).send().await.expect("delete");
                return (body, message.message_id().unwrap_or_default().to_owned());
            }
            app.clients
                .sqs
                .change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(&handle)
                .visibility_timeout(0)
                .send()
                .await
                .expect("release");
        }
    }
    panic!("no {kind} message for {job} within 20 s");
}

/// The whole pipeline for one test: a stack of its own, the local provider,
/// the API and webhook on a local port, and the worker polling the queue.
pub struct Pipeline {
    pub app: TestApp,
    pub provider_url: String,
    pub callback_base_url: String,
    pub secret: String,
    _provider: local_provider::Handle,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for task in &self._tasks {
            task.abort();
        }
    }
}

impl Pipeline {
    pub async fn start(settings: Settings) -> Self {
        Self::start_with(settings, Vec::new()).await
    }

    /// The pipeline with further provider settings (`REPLICATE_API_URL`, …).
    pub async fn start_with(settings: Settings, provider_env: Vec<(&'static str, String)>) -> Self {
        let resources = fresh_resources();
        let secret = videojobs_core::model::signing::WebhookSecret::generate_text();
        let provider_dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
        let provider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let provider = local_provider::spawn(
            provider_listener,
            local_provider::Config::local(provider_dir, videojobs_core::model::signing::WebhookSecret::parse(&secret).expect("a secret")),
        )
        .expect("the local provider starts");
        let http = videojobs_providers::http_client();
        let lookup = |name: &str| match name {
            "LOCAL_PROVIDER_URL" => Some(provider.base_url.clone()),
            "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secret.clone()),
            other => provider_env.iter().find(|(name, _)| *name == other).map(|(_, value)| value.clone()),
        };
        let providers = videojobs_providers::from_lookup(lookup, http).expect("providers");
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let callback_base = format!("http://{}", api_listener.local_addr().expect("an address"));
        let app = TestApp::on(resources, 1_000, settings, providers, callback_base.clone()).await;
        let server = tokio::spawn(local_api::serve(api_listener, std::sync::Arc::new(app.app.clone())));
        let mut tasks = vec![server];
        tasks.extend(Self::pollers(&app));
        Self { app, provider_url: provider.base_url.clone(), callback_base_url: callback_base, secret, _provider: provider, _tasks: tasks }
    }

    /// What the SQS event source mappings do on AWS (and `local-api` does
    /// locally): pollers on the work queue and on the notification queue.
    fn pollers(app: &TestApp) -> Vec<tokio::task::JoinHandle<()>> {
        local_api::queue::spawn_pollers(&app.clients.sqs, &app.resources, &app.app.worker)
    }

    /// Waits until the job's status satisfies `done`, or panics after `seconds`.
    pub async fn wait_for(&self, id: &JobId, seconds: u64, done: impl Fn(JobStatus) -> bool) -> Job {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let job = self.app.job(id).await;
            if done(job.status) {
                return job;
            }
            if std::time::Instant::now() > deadline {
                let events = self.app.get(&format!("/videos/jobs/{id}/events")).await;
                panic!("job {id} is still {} after {seconds} s; events: {}", job.status, events.body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Posts a callback to the webhook signed with the local provider's secret.
    pub async fn signed_callback(&self, event_id: &str, body: &Value) -> Reply {
        let secret = videojobs_core::model::signing::WebhookSecret::parse(&self.secret).expect("a secret");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let text = body.to_string();
        let request = lambda_http::http::Request::builder()
            .method(Method::POST)
            .uri("https://hooks.test/webhooks/local")
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", secret.sign(event_id, now, text.as_bytes()))
            .body(Body::Text(text))
            .expect("a valid request");
        self.app.send(request).await
    }

    /// Runs the `videojobs` command in-process against this pipeline's API,
    /// with the URL and key in the environment, as a user would set them.
    pub async fn videojobs(&self, key: &str, args: &[&str]) -> CliRun {
        videojobs_at(&self.callback_base_url, key, args).await
    }

    pub async fn provider_stats(&self) -> serde_json::Value {
        let response = reqwest::get(format!("{}/v1/stats", self.provider_url)).await.expect("stats");
        response.json().await.expect("stats JSON")
    }
}

/// What a `videojobs` run printed, and its exit code.
pub struct CliRun {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// Runs the `videojobs` command in-process against the API at `url`, with
/// the URL and key in the environment, as a user would set them.
pub async fn videojobs_at(url: &str, key: &str, args: &[&str]) -> CliRun {
    let (url, key) = (url.to_owned(), key.to_owned());
    let env = move |name: &str| match name {
        "VIDEOJOBS_URL" => Some(url.clone()),
        "VIDEOJOBS_KEY" => Some(key.clone()),
        _ => None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv: Vec<&str> = std::iter::once("videojobs").chain(args.iter().copied()).collect();
    let code = videojobs_cli::run(argv, &env, &mut out, &mut err, false).await;
    CliRun { code, out: String::from_utf8(out).expect("UTF-8 output"), err: String::from_utf8(err).expect("UTF-8 errors") }
}

/// A one-frame PNG test pattern, made by ffmpeg.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=s={width}x{height}"))
        .args(["-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success() && !out.stdout.is_empty(), "ffmpeg made no PNG: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Downloads a URL into memory (test outputs are small).
pub async fn download(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.expect("downloaded");
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.bytes().await.expect("body").to_vec()
}

/// ffprobe's view of a file: (duration seconds, width, height).
pub fn ffprobe(bytes: &[u8]) -> (f64, u32, u32) {
    let path = std::env::temp_dir().join(format!("probe-{}.mp4", ulid::Ulid::new()));
    std::fs::write(&path, bytes).expect("written");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height:format=duration", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "ffprobe refused the file: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let duration = json["format"]["duration"].as_str().and_then(|d| d.parse().ok()).expect("a duration");
    let stream = &json["streams"][0];
    (duration, stream["width"].as_u64().unwrap_or(0) as u32, stream["height"].as_u64().unwrap_or(0) as u32)
}

// ------------------------------------------------------------------ load, faults and crashes

/// A number from the environment (a bench's size), else `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// A small seeded generator (SplitMix64): a run prints its seed and can be
/// replayed with it.
pub struct SeededRng(u64);

impl SeededRng {
    /// Seeded from `$var` when it is set, else from the clock; prints the seed.
    pub fn from_env(var: &str, what: &str) -> Self {
        let seed = std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        println!("{what}: seed {seed} (replay with {var}={seed})");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The API over HTTP, as a client reaches it (the `local-api` binary, or the
/// server a [`Pipeline`] runs).
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

    /// Sends one request; a network error is status 0 with the error as the body.
    pub async fn send(&self, method: Method, path: &str, key: &str, body: Option<&Value>, idempotency_key: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("a method");
        let mut request = self.http.request(method, format!("{}{path}", self.base_url)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("idempotency-key", idempotency_key);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let bytes = response.bytes().await.unwrap_or_default();
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            Err(err) => (0, Value::String(err.to_string())),
        }
    }
}

/// One connection a [`WebhookReceiver`] accepted: when, the request it read,
/// whether it answered, and when the other side closed it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub accepted_at: time::OffsetDateTime,
    pub closed_at: Option<time::OffsetDateTime>,
    pub path: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub answered: Option<u16>,
}

impl Connection {
    /// Open at `at`: accepted before it and not yet closed by then.
    pub fn open_at(&self, at: time::OffsetDateTime) -> bool {
        self.accepted_at <= at && self.closed_at.is_none_or(|closed| closed > at)
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

/// A client's webhook endpoint on loopback: answers every request with a
/// status at once, or (hanging) accepts the connection, reads the request
/// and never answers, as a broken endpoint does. Keeps every connection.
pub struct WebhookReceiver {
    base_url: String,
    log: Arc<Mutex<Vec<Connection>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookReceiver {
    pub async fn answering(status: u16) -> Self {
        Self::start(Some(status)).await
    }

    pub async fn hanging() -> Self {
        Self::start(None).await
    }

    async fn start(answer: Option<u16>) -> Self {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        let log: Arc<Mutex<Vec<Connection>>> = Arc::default();
        let connections = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let index = {
                    let mut log = connections.lock().expect("log");
                    log.push(Connection {
                        accepted_at: time::OffsetDateTime::now_utc(),
                        closed_at: None,
                        path: None,
                        headers: HashMap::new(),
                        body: Value::Null,
                        answered: None,
                    });
                    log.len() - 1
                };
                let log = connections.clone();
                tokio::spawn(async move {
                    let request = read_http_request(&mut stream).await;
                    if let Some((path, headers, body)) = request {
                        let mut log = log.lock().expect("log");
                        let entry = &mut log[index];
                        entry.path = Some(path);
                        entry.headers = headers;
                        entry.body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    }
                    match answer {
                        Some(status) => {
                            let head = format!("HTTP/1.1 {status} Answered\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                            let answered = stream.write_all(head.as_bytes()).await.is_ok();
                            let _ = stream.shutdown().await;
                            let mut log = log.lock().expect("log");
                            log[index].answered = answered.then_some(status);
                            log[index].closed_at = Some(time::OffsetDateTime::now_utc());
                        }
                        None => {
                            // Hold the connection until the sender gives up.
                            let mut sink = [0u8; 1024];
                            loop {
                                match tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(_) => {}
                                }
                            }
                            log.lock().expect("log")[index].closed_at = Some(time::OffsetDateTime::now_utc());
                        }
                    }
                });
            }
        });
        Self { base_url, log, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.log.lock().expect("log").clone()
    }

    /// Every notification read, answered or not.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.connections()
            .into_iter()
            .filter_map(|c| {
                Some(Delivery {
                    path: c.path?,
                    job_id: c.body["job_id"].as_str()?.to_owned(),
                    status: c.body["status"].as_str()?.to_owned(),
                    webhook_id: c.headers.get("webhook-id").cloned().unwrap_or_default(),
                })
            })
            .collect()
    }

    pub fn open_at(&self, at: time::OffsetDateTime) -> usize {
        self.connections().iter().filter(|c| c.open_at(at)).count()
    }

    pub fn answered(&self) -> usize {
        self.connections().iter().filter(|c| c.answered.is_some()).count()
    }
}

/// The request line's path, the headers and the body of one HTTP/1.1 request.
pub async fn read_http_request(stream: &mut tokio::net::TcpStream) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, buffer[head_end..].to_vec()))
}

/// One of the workspace's binaries, built next to this test binary
/// (`scripts/test` builds `local-api` and `local-provider` before the tests).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/integration-… → target/<profile>/<name>
    let path = exe.parent().and_then(Path::parent).expect("a target directory").join(name);
    assert!(path.is_file(), "{} is missing: build it first (`cargo build --locked -p {name}`; scripts/test does)", path.display());
    path
}

/// The `local-api` binary as a child process (API, webhook and worker in one
/// process, as `scripts/up` runs it) on a stack of its own, which can be
/// killed with SIGKILL and started again on the same port.
pub struct LocalApiProcess {
    pub base_url: String,
    addr: std::net::SocketAddr,
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
    starts: u32,
    log_stem: PathBuf,
}

impl Drop for LocalApiProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

impl LocalApiProcess {
    /// Starts `local-api` with the stack's exports, webhooks to loopback
    /// allowed, and `env` (the provider's URL and secret, settings) on a free port.
    pub async fn start(stack: &Stack, env: &[(&str, String)]) -> Self {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("an address")
        };
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let artifacts = repo_root().join("target/test-artifacts");
        std::fs::create_dir_all(&artifacts).expect("the artifacts directory");
        let mut all: Vec<(String, String)> = stack.exports.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.push(("LOCAL_API_ADDR".into(), addr.to_string()));
        all.push(("DEMO_KEYS_FILE".into(), std::env::temp_dir().join(format!("demo-keys-{id}.json")).display().to_string()));
        all.push(("ALLOW_HTTP_WEBHOOKS".into(), "1".into()));
        all.push(("ALLOW_LOOPBACK_WEBHOOKS".into(), "1".into()));
        // As the in-process tests' settings: faults on, per-key limits off.
        all.push(("ALLOW_FAULT_INJECTION".into(), "1".into()));
        all.push(("RATE_LIMIT_REQUESTS_PER_MINUTE".into(), "0".into()));
        all.push(("RATE_LIMIT_CREATES_PER_MINUTE".into(), "0".into()));
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let mut process = Self {
            base_url: format!("http://{addr}"),
            addr,
            env: all,
            child: None,
            starts: 0,
            log_stem: artifacts.join(format!("local-api-{id}")),
        };
        process.spawn().await;
        process
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log_path = self.log_stem.with_extension(format!("{}.log", self.starts));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let child = tokio::process::Command::new(workspace_binary("local-api"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(repo_root())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("local-api starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("local-api exited at start ({status}); see {}", log_path.display());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "local-api did not listen on {} within 60 s; see {}",
                self.addr,
                log_path.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no clean-up, whatever the process held in memory is lost.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("local-api killed");
        }
    }

    /// Starts it again on the same port, with the same environment.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    pub fn logs(&self) -> Vec<PathBuf> {
        (1..=self.starts).map(|n| self.log_stem.with_extension(format!("{n}.log"))).collect()
    }
}

/// A status's stage: a job's stages never decrease (`submitted` and
/// `retrying` are one stage: a retried submission goes back and forth).
pub fn stage(status: JobStatus) -> u8 {
    match status {
        JobStatus::Queued => 0,
        JobStatus::Submitted | JobStatus::Retrying => 1,
        JobStatus::Processing => 2,
        JobStatus::Completed => 3,
        JobStatus::Approved | JobStatus::Rejected | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired => 4,
    }
}

/// What is wrong with a job's history, in time order: a change of status the
/// lifecycle refuses, a change that does not start where the one before it
/// ended, or a return to an earlier stage. Times have millisecond precision:
/// events within the same millisecond are taken in the order that continues
/// the history (the one leaving the current status first), else by stage.
pub fn history_problems(events: &[videojobs_core::model::job::JobEvent]) -> Vec<String> {
    let mut pending: Vec<&videojobs_core::model::job::JobEvent> = events.iter().collect();
    pending.sort_by_key(|e| (e.at, stage(e.status)));
    let mut ordered = Vec::with_capacity(pending.len());
    let mut current: Option<JobStatus> = None;
    while !pending.is_empty() {
        let at = pending[0].at;
        let same_moment = pending.iter().take_while(|e| e.at == at).count();
        let leaves_current = |e: &&videojobs_core::model::job::JobEvent| {
            current.is_some() && e.previous_status == current && e.status != e.previous_status.unwrap()
        };
        let next = pending[..same_moment].iter().position(leaves_current).unwrap_or(0);
        let event = pending.remove(next);
        let is_change = event.previous_status.is_some_and(|p| p != event.status);
        if is_change || current.is_none() {
            current = Some(event.status);
        }
        ordered.push(event);
    }
    let mut problems = Vec::new();
    let mut current: Option<JobStatus> = None;
    for event in ordered {
        let Some(previous) = event.previous_status else {
            if current.is_none() {
                current = Some(event.status);
            }
            continue;
        };
        if previous == event.status {
            continue;
        }
        if let Err(refused) = videojobs_core::model::lifecycle::transition(previous, event.status) {
            problems.push(format!("{previous}→{} is not allowed ({refused}): {}", event.status, event.message));
        }
        if let Some(now) = current {
            if now != previous {
                problems.push(format!("{previous}→{} while the job was {now}: {}", event.status, event.message));
            }
            if stage(event.status) < stage(now) {
                problems.push(format!("moved back from {now} to {}: {}", event.status, event.message));
            }
        }
        current = Some(event.status);
    }
    problems
}

/// A job's history, one line per event, for a failure message.
pub fn describe_events(events: &[videojobs_core::model::job::JobEvent]) -> String {
    events
        .iter()
        .map(|e| {
            let previous = e.previous_status.map(|p| format!("{p}→")).unwrap_or_default();
            let code = e.error_code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
            format!(
                "    {} {previous}{} ({:?}) {}{code}",
                videojobs_core::model::job::timestamp::format(e.at),
                e.status,
                e.source,
                e.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until none of `ids` is in flight, reading only the unfinished ones
/// (once a second, to leave moto to the pipeline). Past `deadline`, an error
/// listing each unfinished job with its status and events.
pub async fn wait_until_settled(store: &DynamoStore, ids: &[JobId], deadline: std::time::Instant) -> Result<HashMap<JobId, Job>, String> {
    let mut settled: HashMap<JobId, Job> = HashMap::new();
    loop {
        for id in ids {
            if settled.contains_key(id) {
                continue;
            }
            let job = store.job(id).await.expect("job read").expect("job exists");
            if !job.status.is_in_flight() {
                settled.insert(id.clone(), job);
            }
        }
        if settled.len() == ids.len() {
            return Ok(settled);
        }
        if std::time::Instant::now() > deadline {
            let mut report = String::new();
            for id in ids.iter().filter(|id| !settled.contains_key(*id)) {
                let job = store.job(id).await.expect("job read").expect("job exists");
                let events = store.events(id).await.expect("events read");
                report.push_str(&format!("  job {id} is still {}; events:\n{}\n", job.status, describe_events(&events)));
            }
            return Err(format!("{} of {} jobs unfinished:\n{report}", ids.len() - settled.len(), ids.len()));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
