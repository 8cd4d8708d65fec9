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
use std::sync::OnceLock;
use videojobs_aws::{AwsClients, DynamoStore, Resources};
use videojobs_core::ids::{ApiKey, JobId, Role, UserId};
use videojobs_core::job::Job;
use videojobs_core::ports::{AccountStore, JobStore, Principal};
use videojobs_core::service::Services;
use videojobs_core::provider::Providers;
use videojobs_core::settings::Settings;
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
    bootstrap(&format!("e2e-{}", ulid::Ulid::new().to_string().to_lowercase()))
}

fn bootstrap(stack: &str) -> Resources {
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
        Resources::from_lookup(|name| exports.get(name).cloned()).expect("bootstrap exported every resource")
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
    settings.rate_limits = videojobs_core::ratelimit::RateLimits { requests_per_minute: 0, creates_per_minute: 0 };
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
    pub async fn on(
        resources: Resources,
        credits: i64,
        settings: Settings,
        providers: Providers,
        callback_base_url: String,
    ) -> Self {
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

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
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

    pub async fn send(&self, request: lambda_http::Request) -> Reply {
        let response = local_api::dispatch(&self.app, request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes: &[u8] = response.body().as_ref();
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
        self.clients
            .dynamodb
            .put_item()
            .table_name(&self.resources.jobs_table)
            .set_item(Some(item))
            .send()
            .await
            .expect("job written");
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
    services
        .keys
        .save_key(&key.hash(), &Principal { user_id: user.clone(), role }, "test")
        .await
        .expect("key saved");
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
    let out = app
        .clients
        .sqs
        .receive_message()
        .queue_url(&app.resources.work_queue_url)
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

/// Waits for the work queue's message of `kind` for `job`, leaving other
/// tests' messages for them.
pub async fn next_message(app: &TestApp, job: &JobId, kind: &str) -> (serde_json::Value, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        for message in receive_work(app).await {
            let body = message_body(&message);
            let handle = message.receipt_handle().unwrap_or_default().to_owned();
            if body["job_id"] == job.as_str() && body["kind"] == kind {
                delete_work(app, &handle).await;
                return (body, message.message_id().unwrap_or_default().to_owned());
            }
            app.clients
                .sqs
                .change_message_visibility()
                .queue_url(&app.resources.work_queue_url)
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
        let secret = videojobs_core::signing::WebhookSecret::generate_text();
        let provider_dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
        let provider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let provider = local_provider::spawn(
            provider_listener,
            local_provider::Config::local(provider_dir, videojobs_core::signing::WebhookSecret::parse(&secret).expect("a secret")),
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
        let poller = tokio::spawn(local_api::queue::poll_forever(
            app.clients.sqs.clone(),
            app.resources.work_queue_url.clone(),
            app.app.worker.clone(),
        ));
        Self { app, provider_url: provider.base_url.clone(), callback_base_url: callback_base, secret, _provider: provider, _tasks: vec![server, poller] }
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
        let secret = videojobs_core::signing::WebhookSecret::parse(&self.secret).expect("a secret");
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
        let url = self.callback_base_url.clone();
        let key = key.to_owned();
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
