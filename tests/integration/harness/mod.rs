//! The integration tests' harness: a [`TestApp`] per test made by
//! [`TestApp::builder`] (a fresh user with credits and a key; the whole
//! pipeline when asked) on one of two worlds (see [`World`]): the in-memory
//! adapters, or the local stack (fresh tables, queues, bucket and state
//! machine in the moto the test command started, one per test run). The
//! API's operations are its methods (`api`), the endpoints the pipeline
//! calls out to are in `receivers`, and the helpers the suites share here.

pub mod api;
pub mod receivers;

pub use api::{Caller, HttpApi, Page, Payload, Reply};
pub use receivers::{BlackHole, Received, Receiver};

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use videojobs_aws::{AwsClients, DynamoStore, Resources};
use videojobs_core::model::ids::{ApiKey, JobId, Role, UserId};
use videojobs_core::model::job::Job;
use videojobs_core::model::notification::LoopbackPorts;
use videojobs_core::model::settings::Settings;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::Providers;
use videojobs_core::ports::{JobReads, Principal};
use videojobs_core::services::Services;
use videojobs_core::JobStatus;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Added to every wait for the pipeline: SQS may lose a receive's answer
/// (AWS's faults are on in every suite), and its messages then come back only
/// after the work queue's visibility timeout (90 s, template.yaml).
pub const REDELIVERY_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(90);

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

/// The local stack's emulator's port, when the tests run beside one.
fn emulator_port() -> Option<u16> {
    std::env::var("AWS_ENDPOINT_URL").ok().and_then(|u| url::Url::parse(&u).ok()).and_then(|u| u.port_or_known_default())
}

/// Settings as a deployment would have them, with a retention short enough to test.
pub fn settings() -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("defaults are valid");
    settings.limits.allow_http_webhooks = true;
    // The receivers the tests start listen on any free port (and some tests name
    // closed ones, 1 or 9); the emulator's is never one.
    settings.limits.loopback_webhook_ports = LoopbackPorts::range(1, u16::MAX).refusing(emulator_port());
    // The tests drive the local provider's faults, as the local stack does.
    settings.limits.allow_fault_injection = true;
    // Tests poll the API quickly; the security suite turns the per-key limits on.
    settings.rate_limits = videojobs_core::model::ratelimit::RateLimits { requests_per_minute: 0, creates_per_minute: 0 };
    settings
}

/// One test's view of its world: a user with a key, the real handlers behind
/// the local API's router, and (built `with_local_provider`) the whole
/// pipeline running. Made by [`TestApp::builder`]; the API's operations are
/// its methods (as its user), or a [`Caller`]'s.
pub struct TestApp {
    pub app: local_api::App,
    pub services: Services,
    pub world: World,
    pub user: UserId,
    pub key: String,
    running: Option<Running>,
}

/// Where a test's handlers keep their state. The adapter contract
/// (`adapter_contract`) holds the two equal, so a behaviour suite proves the
/// same on either; the in-memory one is fast and never flaky, the stack adds
/// what only AWS's side has (roles, faults, SQS, the state machine running).
pub enum World {
    /// testkit's adapters, with a clock that follows the system's.
    Memory(videojobs_testkit::Memory),
    /// The local stack: moto behind the gate, through the real AWS SDK.
    Stack(Box<OnStack>),
}

/// The local stack as a test reads it: its own clients (signing as the
/// environment, unchecked by the gate), the jobs store and the resource names.
pub struct OnStack {
    pub clients: AwsClients,
    pub store: DynamoStore,
    pub resources: Resources,
}

/// The world a test runs on unless it asks for the stack:
/// `VIDEOJOBS_TEST_WORLD=stack` runs every behaviour suite on the stack too.
fn default_world_is_the_stack() -> bool {
    match std::env::var("VIDEOJOBS_TEST_WORLD").as_deref() {
        Ok("stack") => true,
        Ok("memory") | Err(_) => false,
        Ok(other) => panic!("VIDEOJOBS_TEST_WORLD={other:?}: say memory or stack"),
    }
}

/// What a [`TestApp`] built `with_local_provider` runs: the local provider,
/// the API and webhook on a local port, and the queue pollers.
struct Running {
    base_url: String,
    provider_url: String,
    provider_secret: String,
    _provider: local_provider::Handle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

enum StackChoice {
    /// The in-memory world, unless `VIDEOJOBS_TEST_WORLD=stack`.
    Default,
    /// The in-memory world, always (a test that injects its faults).
    Memory,
    Shared,
    Own,
    On(Resources),
}

/// Which parts of the stack a test needs, and who its user is.
pub struct TestAppBuilder {
    credits: Option<i64>,
    role: Role,
    settings: Settings,
    stack: StackChoice,
    provider_env: Vec<(String, String)>,
    local_provider: bool,
    callback_base_url: String,
    fault_profile: Option<String>,
}

impl TestAppBuilder {
    /// The user's credits (100, or 1,000 `with_local_provider`).
    pub fn credits(mut self, credits: i64) -> Self {
        self.credits = Some(credits);
        self
    }

    /// The user's role (a user, unless said).
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Settings other than [`settings()`].
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The in-memory world whatever `VIDEOJOBS_TEST_WORLD` says, for a test
    /// that injects faults into it (`World::Memory`'s `faults()`).
    pub fn in_memory(mut self) -> Self {
        self.stack = StackChoice::Memory;
        self
    }

    /// The local stack (shared by the test run), for tests that read what
    /// only AWS's side has (items' attributes, executions, S3's tags).
    pub fn on_the_stack(mut self) -> Self {
        self.stack = StackChoice::Shared;
        self
    }

    /// A stack of its own (tables, queues, bucket, state machine), for tests
    /// that read its queues or run a worker on them.
    pub fn own_stack(mut self) -> Self {
        self.stack = StackChoice::Own;
        self
    }

    /// The given stack's resources.
    pub fn on_stack(mut self, resources: Resources) -> Self {
        self.stack = StackChoice::On(resources);
        self
    }

    /// Providers configured from these variables, as a deployment's are
    /// (`REPLICATE_API_URL`, …); `with_local_provider` adds its own.
    pub fn provider_env<K: ToString, V: ToString>(mut self, env: impl IntoIterator<Item = (K, V)>) -> Self {
        self.provider_env.extend(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Where providers are told to call back (a closed port, unless running).
    pub fn callback_base_url(mut self, url: &str) -> Self {
        self.callback_base_url = url.to_owned();
        self
    }

    /// The local gate's fault profile for every function's calls (`storm`:
    /// many more throttles, 500s and lost answers than the default).
    pub fn fault_profile(mut self, profile: &str) -> Self {
        self.fault_profile = Some(profile.to_owned());
        self
    }

    /// The whole pipeline, on a stack of its own: the local provider, the
    /// API and webhook on a local port, and the queue pollers (the worker
    /// and the notifier), as `local-api` runs them.
    pub fn with_local_provider(mut self) -> Self {
        self.local_provider = true;
        self.stack = StackChoice::Own;
        self
    }

    pub async fn build(self) -> TestApp {
        // `TEST_LOG=1`: the functions' log lines on stdout, as in a Lambda (`RUST_LOG` filters them).
        if std::env::var_os("TEST_LOG").is_some() {
            videojobs_aws::telemetry::init();
        }
        let http = videojobs_providers::http_client();
        let providers = || {
            if self.provider_env.is_empty() {
                return Providers::default();
            }
            let lookup = |name: &str| self.provider_env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            videojobs_providers::from_lookup(lookup, http.clone()).expect("providers")
        };
        let resources = match self.stack {
            StackChoice::Memory => {
                let credits = self.credits.unwrap_or(100);
                return TestApp::in_memory(credits, self.role, self.settings, providers(), self.callback_base_url).await;
            }
            StackChoice::Default if !self.local_provider && !default_world_is_the_stack() => {
                let credits = self.credits.unwrap_or(100);
                return TestApp::in_memory(credits, self.role, self.settings, providers(), self.callback_base_url).await;
            }
            StackChoice::Default | StackChoice::Shared => resources().clone(),
            StackChoice::Own => fresh_resources(),
            StackChoice::On(resources) => resources,
        };
        if !self.local_provider {
            let credits = self.credits.unwrap_or(100);
            let providers = providers();
            return TestApp::on(resources, credits, self.role, self.settings, providers, self.callback_base_url, self.fault_profile).await;
        }
        let secret = videojobs_core::model::signing::WebhookSecret::generate_text();
        let provider_dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
        let provider_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let provider = local_provider::spawn(
            provider_listener,
            local_provider::Config::local(provider_dir, videojobs_core::model::signing::WebhookSecret::parse(&secret).expect("a secret")),
        )
        .expect("the local provider starts");
        let env = self.provider_env;
        let lookup = |name: &str| match name {
            "LOCAL_PROVIDER_URL" => Some(provider.base_url.clone()),
            "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secret.clone()),
            other => env.iter().find(|(n, _)| n == other).map(|(_, v)| v.clone()),
        };
        let providers = videojobs_providers::from_lookup(lookup, http).expect("providers");
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base_url = format!("http://{}", api_listener.local_addr().expect("an address"));
        let credits = self.credits.unwrap_or(1_000);
        let mut settings = self.settings;
        let own_ports = [api_listener.local_addr().map(|a| a.port()).ok(), url::Url::parse(&provider.base_url).ok().and_then(|u| u.port())];
        settings.limits.loopback_webhook_ports = settings.limits.loopback_webhook_ports.refusing(own_ports.into_iter().flatten());
        let mut app = TestApp::on(resources, credits, self.role, settings, providers, base_url.clone(), self.fault_profile).await;
        let server = tokio::spawn(local_api::serve(api_listener, Arc::new(app.app.clone())));
        // What the SQS event source mappings do on AWS (and `local-api` does
        // locally): pollers on the work queue and on the notification queue.
        let mut tasks = vec![server];
        tasks.extend(local_api::queue::spawn_pollers(&app.app, &app.stack().resources));
        app.running =
            Some(Running { base_url, provider_url: provider.base_url.clone(), provider_secret: secret, _provider: provider, tasks });
        app
    }
}

impl TestApp {
    /// A user with 100 credits in memory (or on the shared stack, see
    /// [`World`]), no providers: say what else the test needs.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            credits: None,
            role: Role::User,
            settings: settings(),
            stack: StackChoice::Default,
            provider_env: Vec::new(),
            local_provider: false,
            callback_base_url: "http://127.0.0.1:9".into(),
            fault_profile: None,
        }
    }

    /// The most common case: a user with `credits` in the default world.
    pub async fn new(credits: i64) -> Self {
        Self::builder().credits(credits).build().await
    }

    async fn on(
        resources: Resources,
        credits: i64,
        role: Role,
        settings: Settings,
        providers: Providers,
        callback_base_url: String,
        fault_profile: Option<String>,
    ) -> Self {
        // The test's own reads and setup sign with the environment's
        // credentials (unchecked); each function signs as itself, so the
        // local gate checks its calls against its role.
        let clients = AwsClients::from_env();
        let store = DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table);
        let services = videojobs_aws::services(&clients, &resources, settings.clone());
        let app = local_api::App::local(&resources, settings, providers, callback_base_url, fault_profile.as_deref());
        let (user, key) = new_user(&services, credits, role).await;
        Self { app, services, world: World::Stack(Box::new(OnStack { clients, store, resources })), user, key, running: None }
    }

    /// The same functions wired to one in-memory world of the test's own
    /// (testkit's wiring, as the simulator uses it).
    async fn in_memory(credits: i64, role: Role, settings: Settings, providers: Providers, callback_base_url: String) -> Self {
        let memory = videojobs_testkit::Memory::new(videojobs_testkit::VirtualClock::following_the_system());
        let services = memory.services(settings.clone());
        let app = local_api::App {
            create: memory.services(settings.clone()),
            status: memory.services(settings.clone()),
            webhook: memory.callbacks(providers.clone()),
            worker: memory.pipeline(settings.clone(), providers.clone(), &callback_base_url),
            notifier: memory.pipeline(settings, providers, &callback_base_url),
            queue_clients: None,
        };
        let (user, key) = new_user(&services, credits, role).await;
        Self { app, services, world: World::Memory(memory), user, key, running: None }
    }

    /// The local stack behind this app; a test that reads it is built
    /// [`TestAppBuilder::on_the_stack`] (or with a stack of its own).
    /// The in-memory world behind this app (built [`TestAppBuilder::in_memory`]).
    pub fn memory(&self) -> &videojobs_testkit::Memory {
        match &self.world {
            World::Memory(memory) => memory,
            World::Stack(_) => panic!("this test injects faults in memory: build its app in_memory()"),
        }
    }

    pub fn stack(&self) -> &OnStack {
        match &self.world {
            World::Stack(stack) => stack,
            World::Memory(_) => panic!("this test reads the local stack: build its app on_the_stack()"),
        }
    }

    // ------------------------------------------------------------------ users and callers

    /// Another user of the same stack, with their own key.
    pub async fn another_user(&self, credits: i64, role: Role) -> (UserId, String) {
        new_user(&self.services, credits, role).await
    }

    /// Saves `key` for `user` with `role` (for keys a test must know in advance).
    pub async fn save_key(&self, key: &ApiKey, user: &UserId, role: Role) {
        save_key(&self.services, key, user, role).await;
    }

    /// The API as the holder of `key`.
    pub fn as_key(&self, key: &str) -> Caller<'_> {
        Caller::in_process(self, Some(key))
    }

    /// The API with no key at all.
    pub fn anonymous(&self) -> Caller<'_> {
        Caller::in_process(self, None)
    }

    /// The API as this app's user, with a header of its own on each request.
    pub fn with_header(&self, name: &str, value: &str) -> Caller<'_> {
        Caller::in_process(self, Some(&self.key)).with_header(name, value)
    }

    /// The API as this app's user, creating with an idempotency key.
    pub fn idempotent(&self, key: &str) -> Caller<'_> {
        self.with_header("idempotency-key", key)
    }

    /// One request as this app's user, for what no operation covers.
    pub async fn request(&self, method: Method, path: &str, payload: Payload) -> Reply {
        self.dispatch(method, path, Some(&self.key), &[], payload).await
    }

    pub(crate) async fn dispatch(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        headers: &[(String, String)],
        payload: Payload,
    ) -> Reply {
        api::dispatch(&self.app, method, path, key, headers, payload).await
    }

    pub fn with_headers(&self, headers: &[(&str, &str)]) -> Caller<'_> {
        let mut caller = Caller::in_process(self, Some(&self.key));
        for (name, value) in headers {
            caller = caller.with_header(name, value);
        }
        caller
    }
}

// Every operation of the API, whichever the suites call.
#[allow(dead_code)]
impl TestApp {
    api::operations!();
}

impl TestApp {
    // ------------------------------------------------------------------ jobs through the API

    /// Creates a text-to-video job of `seconds` and returns its id.
    pub async fn new_job(&self, seconds: u32) -> JobId {
        self.new_job_with(&serde_json::json!({"prompt": "a test clip", "duration_seconds": seconds})).await
    }

    /// Creates a text-to-video job from `body`, which must be accepted.
    pub async fn new_job_with(&self, body: &Value) -> JobId {
        self.generate(body).await.job_id()
    }

    /// Creates a 2-second 480p job that notifies `webhook_url`.
    pub async fn new_job_with_webhook(&self, webhook_url: &str) -> JobId {
        let body =
            serde_json::json!({"prompt": "A kite over the dunes", "duration_seconds": 2, "resolution": "480p", "webhook_url": webhook_url});
        self.new_job_with(&body).await
    }

    /// The job's events as the API lists them.
    pub async fn events(&self, id: &JobId) -> Vec<Value> {
        let reply = self.job_events(id).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["events"].as_array().expect("events").clone()
    }

    /// The job's events from one source (`reviewer`, `notifier`, …).
    pub async fn events_from(&self, id: &JobId, source: &str) -> Vec<Value> {
        self.events(id).await.into_iter().filter(|e| e["source"] == source).collect()
    }

    /// The job's events from `source`, once there are `count` of them (or after 30 s).
    pub async fn wait_for_events_from(&self, id: &JobId, source: &str, count: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30) + REDELIVERY_ALLOWANCE;
        loop {
            let events = self.events_from(id, source).await;
            if events.len() >= count || std::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The user's webhook signing secret.
    pub async fn signing_secret(&self) -> String {
        let reply = self.webhook_secret().await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["secret"].as_str().expect("a secret").to_owned()
    }

    /// Asks for an upload of `bytes` declared as `content_type`, PUTs them
    /// to its URL the way a client does, and returns the upload id.
    pub async fn upload(&self, content_type: &str, bytes: &[u8]) -> String {
        let upload = self.create_upload(serde_json::json!({"content_type": content_type, "size_bytes": bytes.len()})).await;
        assert_eq!(upload.status, StatusCode::CREATED, "{}", upload.text);
        match &self.world {
            World::Stack(_) => assert_eq!(put_presigned(&upload.body, bytes).await, 200),
            // What the presigned PUT does: the client's bytes, under the upload's key.
            World::Memory(memory) => {
                let url = upload.body["url"].as_str().expect("an upload URL");
                let key = url.strip_prefix("memory://media/").and_then(|rest| rest.split('?').next()).expect("a memory:// URL");
                memory.put_object(key, bytes, content_type);
            }
        }
        upload.body["upload_id"].as_str().expect("an upload id").to_owned()
    }

    /// Uploads a PNG and returns the upload id (as JSON, for a request body).
    pub async fn upload_png(&self, image: &[u8]) -> Value {
        Value::String(self.upload("image/png", image).await)
    }

    /// Waits until the job's status satisfies `done`, or panics after `seconds`.
    pub async fn wait_for(&self, id: &JobId, seconds: u64, done: impl Fn(JobStatus) -> bool) -> Job {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds) + REDELIVERY_ALLOWANCE;
        loop {
            let job = self.job(id).await;
            if done(job.status) {
                return job;
            }
            if std::time::Instant::now() > deadline {
                let events = self.job_events(id).await;
                panic!("job {id} is still {} after {} s; events: {}", job.status, seconds + REDELIVERY_ALLOWANCE.as_secs(), events.body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Hands `message` to the worker, as its queue's poller does; it must be
    /// handled. A storage failure (AWS's faults are on in every suite) is
    /// delivered again, as SQS redelivers a message its handler reported
    /// failed, at most `HANDLE_WORK_DELIVERIES` times; any other error fails.
    pub async fn handle_work(&self, message: WorkMessage) {
        const HANDLE_WORK_DELIVERIES: u32 = 5;
        // As on AWS: notifications by the notify function, the rest by the worker.
        let consumer = self.app.consumer_of(&message);
        for delivery in 1..=HANDLE_WORK_DELIVERIES {
            match worker::handle(consumer, message.clone()).await {
                Ok(()) => return,
                Err(worker::WorkError::Store(err)) if err.is_retryable() && delivery < HANDLE_WORK_DELIVERIES => {
                    eprintln!("delivery {delivery} of {message:?} failed, delivered again: {err:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(err) => panic!("the function handles it: {err:?}"),
            }
        }
    }

    /// Waits until the job's stored output is forgotten (its objects deleted
    /// by the worker after a rejection or an expiry), or panics after `seconds`.
    pub async fn wait_for_output_gone(&self, id: &JobId, seconds: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds) + REDELIVERY_ALLOWANCE;
        while self.job(id).await.output.is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the output of {id} was not deleted within {} s",
                seconds + REDELIVERY_ALLOWANCE.as_secs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Waits until the worker has stored the provider's request id (the
    /// provider accepted the job), or panics after `seconds`; returns it.
    pub async fn wait_for_provider_request(&self, id: &JobId, seconds: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds) + REDELIVERY_ALLOWANCE;
        loop {
            if let Some(request_id) = self.job(id).await.provider_request_id {
                return request_id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the provider never accepted {id} within {} s",
                seconds + REDELIVERY_ALLOWANCE.as_secs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    // ------------------------------------------------------------------ the running pipeline

    fn running(&self) -> &Running {
        self.running.as_ref().expect("a TestApp built with_local_provider")
    }

    /// The API's URL (built `with_local_provider`).
    pub fn base_url(&self) -> &str {
        &self.running().base_url
    }

    /// The API over HTTP (built `with_local_provider`).
    pub fn http(&self) -> HttpApi {
        HttpApi::new(self.base_url())
    }

    /// The local provider's URL (built `with_local_provider`).
    pub fn provider_url(&self) -> &str {
        &self.running().provider_url
    }

    /// The secret the local provider signs its callbacks with.
    pub fn provider_secret(&self) -> &str {
        &self.running().provider_secret
    }

    /// Posts a callback to the webhook signed with the local provider's secret.
    pub async fn signed_callback(&self, event_id: &str, body: &Value) -> Reply {
        let secret = videojobs_core::model::signing::WebhookSecret::parse(self.provider_secret()).expect("a secret");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let text = body.to_string();
        let signature = secret.sign(event_id, now, text.as_bytes());
        let now = now.to_string();
        let headers = [("webhook-id", event_id), ("webhook-timestamp", now.as_str()), ("webhook-signature", signature.as_str())];
        self.anonymous().provider_callback("local", &headers, text).await
    }

    /// What the local provider has seen (`/v1/stats`).
    pub async fn provider_stats(&self) -> Value {
        let response = reqwest::get(format!("{}/v1/stats", self.provider_url())).await.expect("stats");
        response.json().await.expect("stats JSON")
    }

    /// Runs the `videojobs` command in-process against this app's API, with
    /// the URL and key in the environment, as a user would set them (served
    /// on a local port for the run when the app is not running).
    pub async fn videojobs(&self, key: &str, args: &[&str]) -> CliRun {
        if let Some(running) = &self.running {
            return videojobs_at(&running.base_url, key, args).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let server = tokio::spawn(local_api::serve(listener, Arc::new(self.app.clone())));
        let run = videojobs_at(&url, key, args).await;
        server.abort();
        run
    }

    // ------------------------------------------------------------------ the world behind the API

    pub async fn credits(&self) -> i64 {
        self.credits_of(&self.user).await
    }

    pub async fn credits_of(&self, user: &UserId) -> i64 {
        self.services.accounts.account(user).await.expect("account read").expect("account exists").credits
    }

    pub async fn active_jobs(&self) -> u32 {
        self.services.accounts.account(&self.user).await.expect("account read").expect("account exists").active_jobs
    }

    pub async fn job(&self, id: &JobId) -> Job {
        self.services.reads.job(id).await.expect("job read").expect("job exists")
    }

    /// The job's item as DynamoDB holds it, with the attributes the domain does not see.
    pub async fn job_item(&self, id: &JobId) -> HashMap<String, AttributeValue> {
        let stack = self.stack();
        stack
            .clients
            .dynamodb
            .get_item()
            .table_name(&stack.resources.jobs_table)
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
        self.services
            .listings
            .jobs_of(&self.user, &videojobs_core::model::listing::JobFilter::default(), &page)
            .await
            .expect("jobs listed")
            .items
            .len()
    }

    /// Writes a job record as it is, for states the API cannot reach yet.
    pub async fn put_job(&self, job: &Job) {
        match &self.world {
            World::Memory(memory) => memory.put_job(job),
            World::Stack(stack) => {
                let item = videojobs_aws::dynamo::job_item(job).expect("job encodes");
                let put = stack.clients.dynamodb.put_item().table_name(&stack.resources.jobs_table).set_item(Some(item));
                put.send().await.expect("job written");
            }
        }
    }

    pub async fn stored_prompt(&self, id: &JobId) -> Option<String> {
        let stack = match &self.world {
            World::Memory(memory) => return memory.stored_prompt(id),
            World::Stack(stack) => stack,
        };
        let out = stack
            .clients
            .dynamodb
            .get_item()
            .table_name(&stack.resources.prompts_table)
            .key("job_id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .expect("prompt read");
        out.item.and_then(|item| item.get("prompt").and_then(|v| v.as_s().ok()).cloned())
    }

    /// The states the job's execution entered, in order (each one billed transition).
    pub async fn states_entered(&self, id: &JobId) -> Vec<String> {
        let sfn = &self.stack().clients.sfn;
        let history = sfn.get_execution_history().execution_arn(self.execution_arn(id)).max_results(1000).send().await.unwrap();
        history.events().iter().filter_map(|e| e.state_entered_event_details()).map(|d| d.name().to_owned()).collect()
    }

    /// The statuses the job moved through, in order, from its events (read
    /// through the API): the path it took, whatever a poll happened to see.
    pub async fn statuses_entered(&self, id: &JobId) -> Vec<String> {
        let events = self.job_events(id).await;
        let events = events.body["events"].as_array().cloned().unwrap_or_default();
        let moves = events.iter().filter(|e| e["status"].is_string() && e["status"] != e["previous_status"]);
        moves.map(|e| e["status"].as_str().unwrap_or_default().to_owned()).collect()
    }

    pub fn execution_arn(&self, id: &JobId) -> String {
        let stack = self.stack();
        videojobs_aws::StepFunctions::new(stack.clients.sfn.clone(), &stack.resources.state_machine_arn).execution_arn(id)
    }

    /// The execution's status (`RUNNING`, `ABORTED`, …), or `None` if there is none.
    pub async fn execution_status(&self, id: &JobId) -> Option<String> {
        use videojobs_testkit::ExecutionStatus;
        let stack = match &self.world {
            World::Memory(memory) => {
                let status = memory.execution(id)?.status;
                let name = match status {
                    ExecutionStatus::Running => "RUNNING",
                    ExecutionStatus::Succeeded => "SUCCEEDED",
                    ExecutionStatus::Failed => "FAILED",
                    ExecutionStatus::Aborted => "ABORTED",
                };
                return Some(name.to_owned());
            }
            World::Stack(stack) => stack,
        };
        let out = stack.clients.sfn.describe_execution().execution_arn(self.execution_arn(id)).send().await.ok()?;
        Some(out.status().as_str().to_owned())
    }

    /// The execution's status once it has left `RUNNING` (the interpreter
    /// stops a waiting execution asynchronously), or `RUNNING` after 60 s plus
    /// [`REDELIVERY_ALLOWANCE`]: it returns as soon as the execution settled,
    /// so the long bound costs a passing test nothing and a starved machine
    /// (or a redelivered message) does not turn a late stop into a failure.
    pub async fn settled_execution_status(&self, id: &JobId) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60) + REDELIVERY_ALLOWANCE;
        loop {
            let status = self.execution_status(id).await;
            if status.as_deref() != Some("RUNNING") || std::time::Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Stores stand-in bytes at `key` in the media bucket.
    pub async fn put_object(&self, key: &str) {
        let bytes = b"stand-in bytes";
        let stack = match &self.world {
            World::Memory(memory) => return memory.put_object(key, bytes, "application/octet-stream"),
            World::Stack(stack) => stack,
        };
        let body = aws_sdk_s3::primitives::ByteStream::from(bytes.to_vec());
        stack.clients.s3.put_object().bucket(&stack.resources.media_bucket).key(key).body(body).send().await.expect("object stored");
    }

    /// Whether the media bucket holds `key`.
    pub async fn object_exists(&self, key: &str) -> bool {
        let stack = match &self.world {
            World::Memory(memory) => return memory.object(key).is_some(),
            World::Stack(stack) => stack,
        };
        match stack.clients.s3.head_object().bucket(&stack.resources.media_bucket).key(key).send().await {
            Ok(_) => true,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(err) => panic!("HeadObject {key}: {err:?}"),
        }
    }
}

/// A queue message's JSON as the worker reads it.
pub fn work_message(body: Value) -> WorkMessage {
    serde_json::from_value(body).expect("a work message")
}

/// A job's video in the media bucket.
pub fn video_key(id: &JobId) -> String {
    format!("outputs/{id}/video.mp4")
}

/// A job's thumbnail in the media bucket.
pub fn thumbnail_key(id: &JobId) -> String {
    format!("outputs/{id}/thumbnail.jpg")
}

/// The one way a test makes a user: an account with `credits` and a key with `role`.
async fn new_user(services: &Services, credits: i64, role: Role) -> (UserId, String) {
    let user: UserId = format!("user-{}", ulid::Ulid::new().to_string().to_lowercase()).parse().expect("valid user id");
    let key = ApiKey::generate();
    save_key(services, &key, &user, role).await;
    services.accounts.open_account(&user, credits).await.expect("account opened");
    (user, key.expose().to_owned())
}

async fn save_key(services: &Services, key: &ApiKey, user: &UserId, role: Role) {
    let record = videojobs_core::ports::KeyRecord::for_key(&key.hash(), Principal { user_id: user.clone(), role }, "test");
    services.keys.save_key_record(&key.hash(), &record).await.expect("key saved");
}

/// Runs `count` copies of a future-producing closure at once.
pub async fn all_at_once<F, Fut, T>(count: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    futures::future::join_all((0..count).map(make)).await
}

/// PUTs `bytes` to an upload's presigned URL with the headers the API asked
/// for, as a client does; returns the HTTP status.
pub async fn put_presigned(upload: &Value, bytes: &[u8]) -> u16 {
    let url = upload["url"].as_str().expect("an upload URL");
    let mut request = reqwest::Client::new().put(url).body(bytes.to_vec());
    for (name, value) in upload["headers"].as_object().expect("upload headers") {
        request = request.header(name.as_str(), value.as_str().unwrap_or_default());
    }
    request.send().await.expect("the PUT is answered").status().as_u16()
}

/// Up to ten messages from the stack's work queue (waiting a second for them).
pub async fn receive_work(app: &TestApp) -> Vec<aws_sdk_sqs::types::Message> {
    receive_from(app, &app.stack().resources.work_queue_url).await
}

/// The queue a message of `kind` goes to: notifications have their own.
pub fn queue_of<'a>(app: &'a TestApp, kind: &str) -> &'a str {
    if kind == "notify" || kind == "redeliver" {
        &app.stack().resources.notify_queue_url
    } else {
        &app.stack().resources.work_queue_url
    }
}

/// Up to ten messages from `queue_url` (waiting a second for them).
pub async fn receive_from(app: &TestApp, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let out = app
        .stack()
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
    let stack = app.stack();
    stack
        .clients
        .sqs
        .delete_message()
        .queue_url(&stack.resources.work_queue_url)
        .receipt_handle(receipt_handle)
        .send()
        .await
        .expect("delete");
}

/// Waits for the message of `kind` for `job` on its queue, leaving other
/// tests' messages for them (for 60 s plus [`REDELIVERY_ALLOWANCE`]: a
/// message whose receive answer was lost comes back only after the queue's
/// visibility timeout; the wait ends as soon as it is there).
pub async fn next_message(app: &TestApp, job: &JobId, kind: &str) -> (serde_json::Value, String) {
    let queue_url = queue_of(app, kind);
    let bound = std::time::Duration::from_secs(60) + REDELIVERY_ALLOWANCE;
    let deadline = std::time::Instant::now() + bound;
    while std::time::Instant::now() < deadline {
        for message in receive_from(app, queue_url).await {
            let body = message_body(&message);
            let handle = message.receipt_handle().unwrap_or_default().to_owned();
            if body["job_id"] == job.as_str() && body["kind"] == kind {
                app.stack().clients.sqs.delete_message().queue_url(queue_url).receipt_handle(&handle).send().await.expect("delete");
                return (body, message.message_id().unwrap_or_default().to_owned());
            }
            app.stack()
                .clients
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
    panic!("no {kind} message for {job} within {} s", bound.as_secs());
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

/// What the local gate's fault layer counted for the principals that name
/// `profile` (`WorkerFunction~storm`): calls seen and faults by kind.
pub async fn gate_fault_counts(profile: &str) -> std::collections::BTreeMap<String, u64> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("the local stack");
    let url = format!("{}/_gate/faults/counts", endpoint.trim_end_matches('/'));
    let Ok(response) = reqwest::get(&url).await else { return Default::default() };
    let document: Value = response.json().await.unwrap_or_default();
    document["by_profile"][profile]
        .as_object()
        .map(|kinds| kinds.iter().filter_map(|(kind, n)| Some((kind.clone(), n.as_u64()?))).collect())
        .unwrap_or_default()
}

/// A seeded generator (testkit's SplitMix64): a run prints its seed and can
/// be replayed with it.
pub struct SeededRng(videojobs_testkit::splitmix::SplitMix64);

impl SeededRng {
    /// Seeded from `$var` when it is set, else from the clock; prints the seed.
    pub fn from_env(var: &str, what: &str) -> Self {
        let seed = std::env::var(var).ok().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        println!("{what}: seed {seed} (replay with {var}={seed})");
        Self(videojobs_testkit::splitmix::SplitMix64::new(seed))
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
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
        all.push(("LOOPBACK_WEBHOOK_PORTS".into(), "1024-65535".into()));
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

/// How many unfinished jobs [`wait_until_settled`] reads a second: one moto
/// serves about 30 calls a second to everything, so a watcher reading 200
/// jobs a second would starve the pipeline it watches (the first 40-tenant
/// storm did: its submissions timed out into the dead-letter queue).
const SETTLE_READS_PER_SECOND: usize = 8;

/// Waits until none of `ids` is in flight, reading the unfinished ones in
/// turn, [`SETTLE_READS_PER_SECOND`] at a time (to leave moto to the
/// pipeline). Past `deadline`, an error listing each unfinished job with its
/// status and events.
pub async fn wait_until_settled(store: &DynamoStore, ids: &[JobId], deadline: std::time::Instant) -> Result<HashMap<JobId, Job>, String> {
    let mut settled: HashMap<JobId, Job> = HashMap::new();
    let mut turn = 0;
    loop {
        let unfinished: Vec<&JobId> = ids.iter().filter(|id| !settled.contains_key(*id)).collect();
        let this_round: Vec<&JobId> = unfinished
            .iter()
            .cycle()
            .skip(turn % unfinished.len().max(1))
            .take(SETTLE_READS_PER_SECOND.min(unfinished.len()))
            .copied()
            .collect();
        turn += this_round.len();
        for id in this_round {
            // A read that fails (moto busy, an injected fault past the SDK's
            // retries) is asked again next round; the deadline bounds the wait.
            let job = match store.job(id).await {
                Ok(job) => job.expect("job exists"),
                Err(err) => {
                    eprintln!("reading job {id} failed, asked again next round: {err}");
                    continue;
                }
            };
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
