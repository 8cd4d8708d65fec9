//! The scale mode (`simulate --scale`): many users creating jobs at a target
//! rate in virtual time, through core's own code over the in-memory
//! adapters, with the store counting every read and write per partition key
//! (`Memory::tally_partitions`). It prints the partition keys that carry
//! the most, per table and index, per second of virtual time: the hot keys
//! of docs/SCALE.md.
//!
//! Unlike a seed's run it injects no fault and steps no handler one call at
//! a time: each handler runs to its end at once (nothing in core waits but
//! on the queues), events come in time order from one seeded generator, and
//! the state machine follows the same model (`asl`). What it measures is
//! load, not interleavings; the seeds' runs check the interleavings. The
//! scheduled check makes `check_stuck`'s store calls without its metric
//! line, so that stdout carries the report only.
//!
//! The default run is docs/SCALE.md's: a million jobs a day (11.57 a
//! second), about 10,000 in flight, 31 minutes of virtual time measured over
//! the last 5; about two minutes in a debug build, half a minute in release.

use crate::asl;
use crate::rng::Rng;
use async_trait::async_trait;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use videojobs_core::model::admin::KeyRecord;
use videojobs_core::model::ids::{ApiKey, JobId, Principal, Role, UserId};
use videojobs_core::model::lifecycle::JobStatus;
use videojobs_core::model::provider::{
    Callback as ProviderCallback, CallbackError, ProviderError, ProviderEvent, ProviderOutput, ProviderStatus, SubmitRequest,
};
use videojobs_core::model::request::{GenerateRequest, ProviderName};
use videojobs_core::model::review::{ReviewReason, ReviewRequest};
use videojobs_core::model::settings::Settings;
use videojobs_core::model::stats::STUCK_JOBS_LISTED;
use videojobs_core::model::timestamp;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{AccountStore, ApiKeyStore, PageRequest, Provider, Providers, WebhookSecrets, WorkQueue};
use videojobs_core::services::callbacks::{receive, Callbacks};
use videojobs_core::services::jobs::{Idempotency, JobSpec};
use videojobs_core::services::pipeline::{handle, Pipeline, QUEUED_STUCK_AFTER_SECONDS};
use videojobs_core::services::stats::stuck_jobs;
use videojobs_core::services::Services;
use videojobs_testkit::tally::{PartitionTally, Place, Units};
use videojobs_testkit::{ExecutionStatus, Memory, QueueName, TaskAnswer, VirtualClock, WebResource};

/// What a scale run does. The defaults are docs/SCALE.md's run: a million
/// jobs a day with about 10,000 of them at the provider at any moment.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Users creating jobs (each with its own key and account).
    pub users: u32,
    /// Jobs created per second, all users together (a Poisson process).
    pub jobs_per_second: f64,
    /// Virtual seconds the run lasts.
    pub seconds: u64,
    /// Virtual seconds before the measurement starts (the pipeline fills up first).
    pub warmup: u64,
    /// How long the provider takes to make a video, seconds (uniform). By
    /// Little's law the jobs in flight are `jobs_per_second` times its mean.
    pub generation: (u64, u64),
    /// The state machine's deadline for a video (`GenerationTimeoutSeconds`),
    /// seconds: above the longest `generation`, or jobs are given up.
    pub deadline: u64,
    /// Progress callbacks per job, each with a higher percent (BENCHMARKS.md's
    /// local provider sends one); each rise moves the job in `stuck_watch`.
    pub progress_callbacks: u32,
    /// How often a client polls its job's status, seconds.
    pub poll_every: u64,
    /// Jobs created with a `webhook_url`, percent.
    pub webhooks_percent: u64,
    /// Jobs created with an `Idempotency-Key`, percent.
    pub idempotency_percent: u64,
    /// A reviewer's decision this long after completion, seconds (uniform);
    /// 80 % approve, 10 % reject, 10 % are never reviewed (they expire after the window).
    pub review_after: (u64, u64),
    /// Create attempts per second of one tenant whose client ignores its
    /// 429s (one key): the hot user.
    pub hot_user_per_second: f64,
    /// `GET /videos/stats` calls per second, by users at random.
    pub stats_per_second: f64,
    /// Partition keys printed per table and index.
    pub top: usize,
    pub seed: u64,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            users: 20_000,
            // A million a day.
            jobs_per_second: 1_000_000.0 / 86_400.0,
            // 8 to 21 minutes, 14.4 on average: 11.57 jobs/s × 864 s ≈ 10,000 in flight.
            generation: (480, 1_248),
            deadline: 1_800,
            // The longest generation, then the reviews: the window starts in the steady state.
            warmup: 1_560,
            seconds: 1_860,
            progress_callbacks: 1,
            poll_every: 20,
            webhooks_percent: 50,
            idempotency_percent: 50,
            review_after: (30, 300),
            hot_user_per_second: 10.0,
            stats_per_second: 1.0,
            top: 6,
            seed: 1,
        }
    }
}

impl ScaleOptions {
    /// The jobs in flight Little's law expects: the rate times the mean time at the provider.
    pub fn expected_in_flight(&self) -> f64 {
        self.jobs_per_second * (self.generation.0 + self.generation.1) as f64 / 2.0
    }
}

/// What a scale run measured over its window.
pub struct ScaleReport {
    pub options: ScaleOptions,
    /// The window's length, seconds.
    pub window: f64,
    pub tally: PartitionTally,
    /// Counts over the window, by name (`api.create`, `sfn.transitions`, …).
    pub counts: HashMap<&'static str, u64>,
    /// Jobs in flight (queued, submitted, retrying, processing), sampled every 10 s in the window.
    pub in_flight: Vec<u64>,
    /// Jobs completed and waiting for a review (the `review_queue` partition's entries), sampled with `in_flight`.
    pub awaiting_review: Vec<u64>,
    /// Executions still open at the end.
    pub open_executions: u64,
    /// Handlers that failed in a way a healthy run never shows (a message that could not be handled).
    pub errors: Vec<String>,
    /// Names printed instead of the hot tenant's key hash and key id.
    pub aliases: Vec<(String, &'static str)>,
}

/// The port calls counted from the store's call log, by the name they are reported under.
const CALLS: [(&str, &str); 6] = [
    ("sfn.start_execution", "Workflows::start"),
    ("sfn.send_task_success", "TaskTokens::succeed"),
    ("sfn.send_task_failure", "TaskTokens::fail"),
    ("sqs.send.enqueue", "WorkQueue::enqueue"),
    ("sqs.send.delayed", "DelayedWorkQueue::enqueue_after"),
    ("s3.copy", "OutputStore::copy_from_url"),
];

const SECOND: u64 = 1_000;
const VISIBILITY: Duration = Duration::from_secs(90);
const CHECK_EVERY: u64 = 60 * SECOND;
const SAMPLE_EVERY: u64 = 10 * SECOND;
const REVIEWERS: usize = 50;
/// A reviewer reads a page of the queue, then reviews its jobs one by one.
const QUEUE_PAGE: u32 = 20;

// ----------------------------------------------------------- the provider

struct ProviderModel {
    now: u64,
    rng: Rng,
    generation: (u64, u64),
    progress_callbacks: u32,
    /// When each request finishes, by id.
    requests: HashMap<String, u64>,
    by_key: HashMap<String, String>,
    /// Callbacks to deliver: when, and the body.
    due: Vec<(u64, String)>,
    next_event: u64,
}

/// A provider that accepts every job, makes it in the given time, and calls
/// back: processing, then its progress (by default once, at 50 %: three
/// callbacks per job, as BENCHMARKS.md's local provider makes), then succeeded.
struct ScaleProvider {
    name: ProviderName,
    model: Arc<Mutex<ProviderModel>>,
    memory: Memory,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn video_url(request: &str) -> String {
    format!("https://provider.example/{request}.mp4")
}

impl ProviderModel {
    fn callback(&mut self, at: u64, request: &str, state: &str, percent: Option<u8>) {
        self.next_event += 1;
        let mut body = serde_json::json!({"event_id": format!("evt{}", self.next_event), "request_id": request, "state": state});
        if let Some(p) = percent {
            body["percent"] = p.into();
        }
        self.due.push((at, body.to_string()));
    }
}

#[async_trait]
impl Provider for ScaleProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError> {
        let mut m = lock(&self.model);
        if let Some(id) = m.by_key.get(&request.idempotency_key) {
            return Ok(id.clone());
        }
        let id = format!("r{}", m.requests.len() + 1);
        let (lo, hi) = m.generation;
        let takes = m.rng.between(lo as i64 * 1_000, hi as i64 * 1_000) as u64;
        let (now, finishes) = (m.now, m.now + takes);
        m.requests.insert(id.clone(), finishes);
        m.by_key.insert(request.idempotency_key.clone(), id.clone());
        let started = now + m.rng.between(1_000, 3_000) as u64;
        m.callback(started, &id, "processing", None);
        let parts = u64::from(m.progress_callbacks) + 1;
        for k in 1..parts {
            let percent = u8::try_from(k * 100 / parts).unwrap_or(99);
            m.callback(now + takes * k / parts, &id, "processing", Some(percent));
        }
        m.callback(finishes, &id, "succeeded", None);
        drop(m);
        self.memory.serve(&video_url(&id), WebResource::Body { bytes: crate::small_mp4(), sha256: None });
        Ok(id)
    }

    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        let m = lock(&self.model);
        match m.requests.get(request_id) {
            None => Err(ProviderError::NotFound(request_id.to_owned())),
            Some(finishes) if *finishes <= m.now => {
                Ok(ProviderStatus::Succeeded(ProviderOutput { video_url: video_url(request_id), thumbnail_url: None }))
            }
            Some(_) => Ok(ProviderStatus::Processing { percent: None }),
        }
    }

    async fn cancel(&self, _request_id: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn verify_callback(&self, callback: &ProviderCallback<'_>) -> Result<ProviderEvent, CallbackError> {
        let body: serde_json::Value = serde_json::from_slice(callback.body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let text = |name: &str| body.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(event_id), Some(request_id), Some(state)) = (text("event_id"), text("request_id"), text("state")) else {
            return Err(CallbackError::Malformed("event_id, request_id and state".into()));
        };
        let percent = body.get("percent").and_then(|p| p.as_u64()).map(|p| p.min(100) as u8);
        let status = match state.as_str() {
            "processing" => ProviderStatus::Processing { percent },
            "succeeded" => ProviderStatus::Succeeded(ProviderOutput { video_url: video_url(&request_id), thumbnail_url: None }),
            _ => ProviderStatus::Failed { code: "failed".into(), message: "the provider failed".into() },
        };
        Ok(ProviderEvent { event_id, request_id, status })
    }

    fn sends_progress_callbacks(&self) -> bool {
        true
    }
}

// ----------------------------------------------------------- the run

#[derive(Debug, Clone)]
enum Event {
    /// One of the users creates a job (the next arrival is drawn then).
    Arrival,
    /// The hot user's client tries again.
    HotCreate,
    /// A client polls its job.
    Poll {
        job: JobId,
        user: usize,
    },
    /// The provider calls back.
    Callback {
        body: String,
    },
    /// A reviewer decides (a job nobody reviews gets no event: it expires after the window).
    Review {
        job: JobId,
        approve: bool,
    },
    /// A state's timeout fires, if the execution still waits on this token.
    Timer {
        job: JobId,
        token: String,
    },
    Check,
    Stats,
    Sample,
    WindowStarts,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// An execution of the state machine model.
struct Exec {
    state: &'static str,
    token: Option<String>,
    ended: bool,
    error: Option<String>,
}

struct Client {
    principal: Principal,
    key: String,
    /// The key's stored hash and public id, as they appear in partition keys.
    hash: String,
    key_id: String,
}

struct Scale {
    options: ScaleOptions,
    memory: Memory,
    start: time::OffsetDateTime,
    now: u64,
    end: u64,
    rng: Rng,
    events: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    provider: Arc<Mutex<ProviderModel>>,
    pipeline: Pipeline,
    callbacks: Callbacks,
    services: Services,
    users: Vec<Client>,
    hot: Client,
    reviewers: Vec<Client>,
    execs: HashMap<JobId, Exec>,
    counts: HashMap<&'static str, u64>,
    in_flight: Vec<u64>,
    awaiting_review: Vec<u64>,
    measuring: bool,
    /// The hot tenant's attempts due and not yet made (a fraction of one).
    hot_due: f64,
    /// The store's call counts of `CALLS` when the window started.
    calls_at_window: Vec<u64>,
    reviews: u64,
    errors: Vec<String>,
}

/// Runs a future that must not wait: with no gate, every port call answers at once.
fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a handler waited in the scale mode: nothing there should"),
    }
}

/// A deterministic key for client `n` (keys are otherwise random, and the
/// printed keys would change from run to run).
fn api_key(n: usize) -> String {
    format!("vj_{n:0>40}")
}

/// Runs the scale mode with `options` and reports what it measured.
pub fn run_scale(options: ScaleOptions) -> ScaleReport {
    let start = time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _simulated = videojobs_core::model::determinism::simulate(start, options.seed);
    let memory = Memory::new(VirtualClock::starting_at(start));
    // The template's defaults, but for the deadline (`GenerationTimeoutSeconds`).
    let deadline = options.deadline.to_string();
    let settings = Settings::from_lookup(|name| (name == "GENERATION_TIMEOUT_SECONDS").then(|| deadline.clone()))
        .unwrap_or_else(|e| panic!("settings: {e}"));
    let provider = Arc::new(Mutex::new(ProviderModel {
        now: 0,
        rng: Rng::new(options.seed ^ 0x9e0),
        generation: options.generation,
        progress_callbacks: options.progress_callbacks,
        requests: HashMap::new(),
        by_key: HashMap::new(),
        due: Vec::new(),
        next_event: 0,
    }));
    let scale_provider =
        Arc::new(ScaleProvider { name: settings.default_provider.clone(), model: provider.clone(), memory: memory.clone() });
    let providers = Providers::default().with(scale_provider);
    let pipeline = memory.pipeline(settings.clone(), providers.clone(), "https://api.example");
    let callbacks = memory.callbacks(providers);
    let services = memory.services(settings);
    memory.resolve_to("client.example", vec![std::net::IpAddr::from([93, 184, 216, 34])]);
    memory.endpoint_answers("https://client.example/hook", Some(200));
    let client = |n: usize, user: String, role: Role| {
        let user: UserId = user.parse().unwrap_or_else(|_| panic!("a user id"));
        let key = api_key(n);
        let principal = Principal { user_id: user.clone(), role };
        let record = KeyRecord::new(principal.clone(), "scale", start, None);
        let hash = key.parse::<ApiKey>().unwrap_or_else(|_| panic!("an API key")).hash();
        now(memory.save_key_record(&hash, &record)).unwrap_or_else(|e| panic!("a key: {e}"));
        now(memory.open_account(&user, 1_000_000)).unwrap_or_else(|e| panic!("an account: {e}"));
        now(memory.create_webhook_secret(&user, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap_or_else(|e| panic!("a secret: {e}"));
        Client { principal, key, hash: hash.as_str().to_owned(), key_id: record.key_id.to_string() }
    };
    let users: Vec<Client> = (0..options.users as usize).map(|n| client(n, format!("u{n}"), Role::User)).collect();
    let base = users.len();
    let hot = client(base, "hot".into(), Role::User);
    let reviewers = (0..REVIEWERS).map(|n| client(base + 1 + n, format!("reviewer{n}"), Role::Reviewer)).collect();
    // Counting starts with the traffic: the keys and accounts above are setup.
    memory.tally_partitions();
    let end = options.seconds * SECOND;
    let scale = Scale {
        rng: Rng::new(options.seed),
        options,
        memory,
        start,
        now: 0,
        end,
        events: BinaryHeap::new(),
        seq: 0,
        provider,
        pipeline,
        callbacks,
        services,
        users,
        hot,
        reviewers,
        execs: HashMap::new(),
        counts: HashMap::new(),
        in_flight: Vec::new(),
        awaiting_review: Vec::new(),
        measuring: false,
        hot_due: 0.0,
        calls_at_window: vec![0; CALLS.len()],
        reviews: 0,
        errors: Vec::new(),
    };
    scale.run()
}

impl Scale {
    fn at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse(Scheduled { at, seq: self.seq, event }));
    }

    fn count(&mut self, name: &'static str, n: u64) {
        if self.measuring {
            *self.counts.entry(name).or_insert(0) += n;
        }
    }

    /// An exponential wait for a Poisson process of `rate` per second, in ms.
    fn exponential(&mut self, rate: f64) -> u64 {
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-(1.0 - unit).ln() / rate * 1_000.0).round() as u64
    }

    fn advance_to(&mut self, at: u64) {
        if at > self.now {
            self.now = at;
            self.memory.clock().advance_to(self.start + Duration::from_millis(at));
            lock(&self.provider).now = at;
        }
    }

    fn run(mut self) -> ScaleReport {
        let first = self.exponential(self.options.jobs_per_second);
        self.at(first, Event::Arrival);
        if self.options.hot_user_per_second > 0.0 {
            self.at(0, Event::HotCreate);
        }
        if self.options.stats_per_second > 0.0 {
            self.at(0, Event::Stats);
        }
        self.at(CHECK_EVERY, Event::Check);
        self.at(self.options.warmup * SECOND, Event::WindowStarts);
        let window = self.end.saturating_sub(self.options.warmup * SECOND);
        loop {
            let next_message = [QueueName::Work, QueueName::Notify]
                .into_iter()
                .filter_map(|q| self.memory.next_visible_at(q))
                .map(|t| u64::try_from((t - self.start).whole_milliseconds()).unwrap_or(0))
                .min();
            let next_event = self.events.peek().map(|Reverse(s)| s.at);
            let Some(next) = next_message.into_iter().chain(next_event).min() else { break };
            if next > self.end {
                break;
            }
            self.advance_to(next);
            if next_message.is_some_and(|t| t <= self.now) {
                self.drain(QueueName::Work);
                self.drain(QueueName::Notify);
                continue;
            }
            if let Some(Reverse(scheduled)) = self.events.pop() {
                self.happen(scheduled.event);
            }
        }
        self.advance_to(self.end);
        let calls_at_end: Vec<u64> = CALLS.iter().map(|(_, op)| self.memory.faults().count(op)).collect();
        for ((name, _), (before, after)) in CALLS.iter().zip(self.calls_at_window.iter().zip(calls_at_end)) {
            *self.counts.entry(name).or_insert(0) += after - before;
        }
        let open_executions = self.execs.values().filter(|e| !e.ended).count() as u64;
        let aliases = vec![(self.hot.hash.clone(), "(the hot tenant's key)"), (self.hot.key_id.clone(), "(the hot tenant's key)")];
        ScaleReport {
            aliases,
            window: window as f64 / 1_000.0,
            tally: self.memory.partition_tally(),
            counts: self.counts,
            in_flight: self.in_flight,
            awaiting_review: self.awaiting_review,
            open_executions,
            errors: self.errors,
            options: self.options,
        }
    }
}

impl Scale {
    fn happen(&mut self, event: Event) {
        match event {
            Event::Arrival => {
                let user = self.rng.below(self.users.len() as u64) as usize;
                self.create(user);
                let next = self.now + self.exponential(self.options.jobs_per_second).max(1);
                self.at(next, Event::Arrival);
            }
            Event::HotCreate => {
                // The clock counts milliseconds: above 100 a second, the attempts due come every 10 ms.
                let rate = self.options.hot_user_per_second;
                let every = if rate >= 100.0 { 10 } else { ((1_000.0 / rate).round() as u64).max(1) };
                self.hot_due += rate * every as f64 / 1_000.0;
                while self.hot_due >= 1.0 {
                    self.hot_due -= 1.0;
                    self.create(usize::MAX);
                }
                self.at(self.now + every, Event::HotCreate);
            }
            Event::Poll { job, user } => self.poll(job, user),
            Event::Callback { body } => {
                self.count("webhook.callbacks", 1);
                let provider = self.services.settings.default_provider.to_string();
                now(receive(&self.callbacks, &provider, &HashMap::new(), body.as_bytes()));
                self.after_handler(None);
            }
            Event::Review { job, approve } => self.review(job, approve),
            Event::Timer { job, token } => {
                let waiting = self.execs.get(&job).is_some_and(|e| !e.ended && e.token.as_deref() == Some(token.as_str()));
                if waiting {
                    self.catch(&job, "States.Timeout");
                }
            }
            Event::Check => {
                self.count("worker.check_stuck", 1);
                self.check();
                self.at(self.now + CHECK_EVERY, Event::Check);
            }
            Event::Stats => {
                let user = self.rng.below(self.users.len() as u64) as usize;
                if self.authenticate(user, false, "api.stats").is_some() {
                    let who = self.users[user].principal.clone();
                    let _ = now(self.services.stats(&who));
                }
                let next = self.now + self.exponential(self.options.stats_per_second).max(1);
                self.at(next, Event::Stats);
            }
            Event::Sample => {
                let (flying, waiting) = self.memory.inspect(|s| {
                    s.jobs().fold((0, 0), |(flying, waiting), (job, _)| {
                        (flying + u64::from(job.status.is_in_flight()), waiting + u64::from(job.status == JobStatus::Completed))
                    })
                });
                self.in_flight.push(flying);
                self.awaiting_review.push(waiting);
                self.at(self.now + SAMPLE_EVERY, Event::Sample);
            }
            Event::WindowStarts => {
                self.measuring = true;
                self.memory.clear_partition_tally();
                self.calls_at_window = CALLS.iter().map(|(_, op)| self.memory.faults().count(op)).collect();
                self.at(self.now, Event::Sample);
            }
        }
    }

    /// The scheduled check: the reads and writes of core's `check_stuck`
    /// (the queued jobs without an execution, then the stuck jobs of every
    /// watched status), made through the same ports, without the metric line
    /// it prints: in the scale mode stdout carries the report only.
    fn check(&mut self) {
        let stats = self.pipeline.stats.clone();
        let at = timestamp::now();
        let queued = now(stats.stuck_jobs(JobStatus::Queued, at - time::Duration::seconds(QUEUED_STUCK_AFTER_SECONDS), STUCK_JOBS_LISTED));
        match queued {
            Ok(page) => {
                for stuck in &page.oldest {
                    // Every create starts its execution at once: a job queued this long lost its start.
                    if let Ok(Some(job)) = now(self.pipeline.reads.job(&stuck.job_id)) {
                        if job.status == JobStatus::Queued {
                            self.errors.push(format!("job {} stayed queued: its execution never started", job.job_id));
                        }
                    }
                }
            }
            Err(e) => self.errors.push(format!("check_stuck: {e}")),
        }
        if let Err(e) = now(stuck_jobs(stats.as_ref(), self.pipeline.settings.stuck_after_seconds, at)) {
            self.errors.push(format!("check_stuck: {e}"));
        }
    }

    fn client(&self, user: usize) -> &Client {
        if user == usize::MAX {
            &self.hot
        } else {
            &self.users[user]
        }
    }

    /// Authenticates one API request of `user` (the key's item read, its
    /// rate limit windows written); `None` when refused (a 429).
    fn authenticate(&mut self, user: usize, creating: bool, route: &'static str) -> Option<Principal> {
        self.count("api.requests", 1);
        self.count(route, 1);
        if user == usize::MAX {
            self.count("api.hot_user", 1);
        }
        let key = self.client(user).key.clone();
        let answer =
            if creating { now(self.services.authenticate_to_create(Some(&key))) } else { now(self.services.authenticate(Some(&key))) };
        match answer {
            Ok(principal) => Some(principal),
            Err(_) => {
                self.count("api.rate_limited", 1);
                None
            }
        }
    }

    fn create(&mut self, user: usize) {
        let Some(who) = self.authenticate(user, true, "api.create") else { return };
        let mut body = serde_json::json!({"prompt": "a paper boat drifting down a rainy street", "duration_seconds": 5});
        if self.rng.percent(self.options.webhooks_percent) {
            body["webhook_url"] = "https://client.example/hook".into();
        }
        let bytes = body.to_string().into_bytes();
        let request = match GenerateRequest::parse(&bytes, &self.services.settings.limits) {
            Ok(request) => request,
            Err(e) => panic!("the scale mode's request does not parse: {e:?}"),
        };
        let idempotency = self.rng.percent(self.options.idempotency_percent).then(|| {
            self.seq += 1;
            Idempotency {
                key: format!("order-{}", self.seq).parse().unwrap_or_else(|_| panic!("an idempotency key")),
                fingerprint: format!("POST /videos/generate:{}", String::from_utf8_lossy(&bytes)),
                legacy_fingerprint: None,
            }
        });
        match now(self.services.create_job(&who, JobSpec::Generate(request), idempotency)) {
            Ok(accepted) => {
                self.count("jobs.created", 1);
                let job = accepted.job_id;
                if self.memory.execution(&job).is_some() && !self.execs.contains_key(&job) {
                    self.count("sfn.executions", 1);
                    self.enter(&job, asl::START);
                }
                let first = self.now + self.options.poll_every * SECOND;
                self.at(first, Event::Poll { job, user });
            }
            Err(_) => self.count("jobs.refused", 1),
        }
        self.after_handler(None);
    }

    /// A client's poll; once it sees the job done it reads the result and stops.
    fn poll(&mut self, job: JobId, user: usize) {
        let Some(who) = self.authenticate(user, false, "api.status") else {
            self.at(self.now + self.options.poll_every * SECOND, Event::Poll { job, user });
            return;
        };
        let status = now(self.services.status(&who, job.as_str())).map(|body| body.status);
        self.after_handler(Some(&job));
        match status {
            Ok(status) if status.is_in_flight() => self.at(self.now + self.options.poll_every * SECOND, Event::Poll { job, user }),
            Ok(JobStatus::Completed) => {
                if self.authenticate(user, false, "api.result").is_some() {
                    let _ = now(self.services.result(&who, job.as_str()));
                }
                // A reviewer gets to it in a while, or never.
                let (lo, hi) = self.options.review_after;
                let after = self.rng.between(lo as i64, hi as i64) as u64 * SECOND;
                match self.rng.weighted(&[80, 10, 10]) {
                    0 => self.at(self.now + after, Event::Review { job, approve: true }),
                    1 => self.at(self.now + after, Event::Review { job, approve: false }),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn review(&mut self, job: JobId, approve: bool) {
        let reviewer = (self.reviews % REVIEWERS as u64) as usize;
        self.reviews += 1;
        let key = self.reviewers[reviewer].key.clone();
        let who = self.reviewers[reviewer].principal.clone();
        // Every QUEUE_PAGE reviews, a reviewer loads the queue's next page.
        if self.reviews % u64::from(QUEUE_PAGE) == 1 {
            self.count("api.requests", 1);
            self.count("api.review_queue", 1);
            let _ = now(self.services.authenticate(Some(&key)));
            let _ = now(self.services.review_queue(&who, PageRequest { limit: QUEUE_PAGE, cursor: None }));
        }
        self.count("api.requests", 1);
        self.count("api.review", 1);
        let _ = now(self.services.authenticate(Some(&key)));
        let request = if approve {
            ReviewRequest::Approve { reason: None, note: None }
        } else {
            ReviewRequest::Reject { reason: ReviewReason::OffBrief, note: None }
        };
        let _ = now(self.services.review(&who, job.as_str(), request));
        self.after_handler(Some(&job));
    }

    /// Receives and handles every visible message of `queue`, ten at a time
    /// (the event source mapping's batch), each to its end.
    fn drain(&mut self, queue: QueueName) {
        loop {
            let batch = self.memory.receive(queue, 10, VISIBILITY);
            if batch.is_empty() {
                return;
            }
            self.count(if queue == QueueName::Work { "worker.batches" } else { "notifier.batches" }, 1);
            for message in batch {
                self.count(if queue == QueueName::Work { "worker.messages" } else { "notifier.messages" }, 1);
                let parsed: WorkMessage = match serde_json::from_str(&message.body) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        self.errors.push(format!("unreadable message {}: {e}", message.body));
                        self.memory.delete(queue, &message.receipt_handle);
                        continue;
                    }
                };
                let job = parsed.job_id().clone();
                match now(handle(&self.pipeline, parsed)) {
                    Ok(()) => {
                        self.memory.delete(queue, &message.receipt_handle);
                    }
                    // It comes back after the visibility timeout, as on SQS.
                    Err(e) if e.is_retryable() => self.count("worker.retried", 1),
                    Err(e) => {
                        self.errors.push(format!("a message could not be handled: {}: {e}", message.body));
                        self.memory.delete(queue, &message.receipt_handle);
                    }
                }
                self.after_handler(Some(&job));
            }
        }
    }

    /// After a handler: the provider's new callbacks are scheduled, and the
    /// job's execution follows its tokens' answers.
    fn after_handler(&mut self, job: Option<&JobId>) {
        let due = std::mem::take(&mut lock(&self.provider).due);
        for (at, body) in due {
            self.at(at, Event::Callback { body });
        }
        // Only the worker and a review answer tokens, and both name their job
        // (a callback hands a finished video to the worker; a create starts its execution itself).
        if let Some(job) = job {
            self.follow(job);
        }
    }
}

// ----------------------------------------------------------- the state machine

impl Scale {
    /// Sends a message the state machine sends (its own `sqs:sendMessage`).
    fn send(&mut self, message: &WorkMessage) {
        self.count("sqs.send.state_machine", 1);
        let queue = self.memory.queue(QueueName::Work);
        if let Err(e) = now(queue.enqueue(message)) {
            self.errors.push(format!("the state machine's send failed: {e}"));
        }
    }

    /// Enters `state` of the job's execution (one state transition).
    fn enter(&mut self, job: &JobId, state: &'static str) {
        self.count("sfn.transitions", 1);
        let model = asl::state(state);
        let error = self.execs.get(job).and_then(|e| e.error.clone());
        let mut exec = Exec { state, token: None, ended: false, error: error.clone() };
        match model.kind {
            asl::Kind::WaitForToken { message, timeout, .. } => {
                let token = self.memory.issue_task_token(job);
                let body = match message {
                    "submit" => WorkMessage::Submit { job_id: job.clone(), task_token: Some(token.clone()), attempt: None },
                    "await_review" => WorkMessage::AwaitReview { job_id: job.clone(), task_token: token.clone() },
                    _ => WorkMessage::Poll { job_id: job.clone(), task_token: Some(token.clone()), round: None },
                };
                self.send(&body);
                let seconds = match timeout {
                    asl::Timeout::Path("$.retention_seconds") => self.pipeline.settings.retention_seconds,
                    asl::Timeout::Path(_) => self.services.settings.generation_timeout_seconds,
                    asl::Timeout::Seconds(s) => s,
                };
                // A timeout past the run's end never fires in it.
                let at = self.now + seconds * SECOND;
                if at <= self.end {
                    self.at(at, Event::Timer { job: job.clone(), token: token.clone() });
                }
                exec.token = Some(token);
            }
            asl::Kind::Send { message } => {
                let body = match message {
                    "expire" => WorkMessage::Expire { job_id: job.clone() },
                    _ => WorkMessage::GiveUp { job_id: job.clone(), error },
                };
                self.send(&body);
            }
            asl::Kind::Wait { .. } => {}
            asl::Kind::Fail => exec.ended = true,
        }
        self.execs.insert(job.clone(), exec);
        match model.kind {
            asl::Kind::Send { .. } => match model.next {
                Some(next) => self.enter(job, next),
                None => self.end(job, ExecutionStatus::Succeeded),
            },
            asl::Kind::Fail => self.end(job, ExecutionStatus::Failed),
            _ => {}
        }
    }

    fn end(&mut self, job: &JobId, status: ExecutionStatus) {
        if let Some(e) = self.execs.get_mut(job) {
            e.ended = true;
            e.token = None;
        }
        self.memory.finish_execution(job, status);
    }

    fn catch(&mut self, job: &JobId, error: &str) {
        let state = self.execs.get(job).map(|e| e.state).unwrap_or(asl::START);
        match asl::catch(asl::state(state), error) {
            Some(next) => {
                if let Some(e) = self.execs.get_mut(job) {
                    e.error = Some(error.to_owned());
                }
                self.enter(job, next);
            }
            None => self.end(job, ExecutionStatus::Failed),
        }
    }

    /// Moves the job's execution on while its current token has an answer.
    fn follow(&mut self, job: &JobId) {
        loop {
            let Some(token) = self.execs.get(job).filter(|e| !e.ended).and_then(|e| e.token.clone()) else { return };
            match self.memory.task_answers(&token).0 {
                Some(TaskAnswer::Success(_)) => {
                    let state = self.execs.get(job).map(|e| e.state).unwrap_or(asl::START);
                    match asl::state(state).next {
                        Some(next) => self.enter(job, next),
                        None => {
                            self.end(job, ExecutionStatus::Succeeded);
                            return;
                        }
                    }
                }
                Some(TaskAnswer::Failure { error, .. }) => self.catch(job, &error),
                None => return,
            }
        }
    }
}

// ----------------------------------------------------------- the report

/// DynamoDB's throughput limits per partition, in units per second.
const PARTITION_WRITES: f64 = 1_000.0;
const PARTITION_READS: f64 = 3_000.0;

impl ScaleReport {
    /// A partition key as printed: the hot tenant's key named, a rate limit
    /// window's start shown as `{minute}`, a long hash cut.
    fn shown(&self, key: &str) -> String {
        let mut shown = key.to_owned();
        for (from, to) in &self.aliases {
            shown = shown.replace(from.as_str(), to);
        }
        if shown.starts_with("RATE#") {
            if let Some(at) = shown.rfind('#') {
                shown.replace_range(at + 1.., "{minute}");
            }
        }
        match shown.char_indices().nth(48) {
            Some((cut, _)) => format!("{}…", &shown[..cut]),
            None => shown,
        }
    }

    fn per_second(&self, name: &str) -> f64 {
        self.counts.get(name).copied().unwrap_or(0) as f64 / self.window.max(1e-9)
    }

    /// The report as `simulate --scale` prints it.
    pub fn render(&self) -> String {
        let o = &self.options;
        let mut out = String::new();
        let rate = |name: &str| self.per_second(name);
        let mean = |samples: &[u64]| samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
        let most = |samples: &[u64]| samples.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "scale run (seed {}): {} users at {:.2} jobs/s in all (Poisson), the provider taking {} to {} s, \
             one hot tenant at {} create attempts/s, {} progress callback(s) per job, a poll every {} s; \
             {} s of virtual time, measured from {} s to {} s",
            o.seed,
            o.users,
            o.jobs_per_second,
            o.generation.0,
            o.generation.1,
            o.hot_user_per_second,
            o.progress_callbacks,
            o.poll_every,
            o.seconds,
            o.warmup,
            o.seconds
        );
        let _ = writeln!(
            out,
            "jobs: {:.2} created/s, {:.2} refused/s; in flight {:.0} on average (Little's law: {:.0}), {} at most; \
             waiting for a review {:.0} on average; {} executions open at the end",
            rate("jobs.created"),
            rate("jobs.refused"),
            mean(&self.in_flight),
            o.expected_in_flight(),
            most(&self.in_flight),
            mean(&self.awaiting_review),
            self.open_executions
        );
        let _ = writeln!(
            out,
            "API requests {:.1}/s: create {:.1}, status {:.1}, result {:.1}, review {:.1}, review queue {:.1}, stats {:.1}; \
             the hot tenant {:.1}; refused by the rate limits {:.1}",
            rate("api.requests"),
            rate("api.create"),
            rate("api.status"),
            rate("api.result"),
            rate("api.review"),
            rate("api.review_queue"),
            rate("api.stats"),
            rate("api.hot_user"),
            rate("api.rate_limited")
        );
        let _ = writeln!(
            out,
            "invocations/s: webhook {:.1}; worker {:.1} batches ({:.1} messages); notifier {:.1} batches ({:.1} messages)",
            rate("webhook.callbacks"),
            rate("worker.batches"),
            rate("worker.messages"),
            rate("notifier.batches"),
            rate("notifier.messages")
        );
        let _ = writeln!(
            out,
            "Step Functions/s: StartExecution {:.1}, SendTaskSuccess {:.1}, SendTaskFailure {:.1}, state transitions {:.1}; \
             SQS SendMessage/s {:.1}; S3 copies/s {:.1}",
            rate("sfn.start_execution"),
            rate("sfn.send_task_success"),
            rate("sfn.send_task_failure"),
            rate("sfn.transitions"),
            rate("sqs.send.enqueue") + rate("sqs.send.delayed") + rate("sqs.send.state_machine"),
            rate("s3.copy")
        );
        let _ = writeln!(
            out,
            "DynamoDB units per second by partition key value (writes: 1 per item up to 1 KB, 2 in a transaction; \
             reads: items; limits {PARTITION_WRITES:.0} writes and {PARTITION_READS:.0} reads per partition):"
        );
        let per = |n: u64| n as f64 / self.window.max(1e-9);
        let share = |n: u64, limit: f64| format!("{:.1}/s ({:.1} %)", per(n), per(n) / limit * 100.0);
        for place in Place::ALL {
            let total = self.tally.total(place);
            let keys = self.tally.keys(place);
            if keys == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "  {}: {:.0} writes/s and {:.0} reads/s over {} keys",
                place.name(),
                per(total.writes),
                per(total.reads),
                keys
            );
            if place == Place::Jobs {
                // Many kinds of item share the table: the busiest key of each kind.
                let mut kinds: Vec<(&str, Vec<(&str, Units)>)> = Vec::new();
                for (key, units) in self.tally.of(place) {
                    let kind = key.find('#').map_or(key, |i| &key[..=i]);
                    match kinds.iter_mut().find(|(k, _)| *k == kind) {
                        Some((_, rows)) => rows.push((key, units)),
                        None => kinds.push((kind, vec![(key, units)])),
                    }
                }
                kinds.sort_by_key(|(kind, rows)| (Reverse(rows.iter().map(|(_, u)| u.writes).max().unwrap_or(0)), *kind));
                for (kind, rows) in kinds {
                    // A rate limit window's item lives one minute: its rate is over that minute.
                    let minute = |n: u64| if kind == "RATE#" { n * self.window.max(1.0) as u64 / 60 } else { n };
                    // The busiest keys of the kind: those over one unit a second, three at most, or the first.
                    let busiest = |pick: fn(&Units) -> u64, limit: f64| {
                        let mut ranked: Vec<&(&str, Units)> = rows.iter().filter(|(_, u)| pick(u) > 0).collect();
                        ranked.sort_by(|a, b| pick(&b.1).cmp(&pick(&a.1)).then_with(|| a.0.cmp(b.0)));
                        // A key's other minutes are the same key: its busiest minute stands for it.
                        let mut names: Vec<String> = Vec::new();
                        let mut shown: Vec<String> = Vec::new();
                        for (key, units) in ranked {
                            let name = self.shown(key);
                            if names.contains(&name) {
                                continue;
                            }
                            if shown.len() == 3 || (!shown.is_empty() && per(minute(pick(units))) < 1.0) {
                                break;
                            }
                            shown.push(format!("{name} {}", share(minute(pick(units)), limit)));
                            names.push(name);
                        }
                        shown.join(", ")
                    };
                    let sum =
                        rows.iter().fold(Units::default(), |s, (_, u)| Units { reads: s.reads + u.reads, writes: s.writes + u.writes });
                    let mut line = format!(
                        "    {kind:<9} {:>6} keys, {:.0} writes/s and {:.0} reads/s in all",
                        rows.len(),
                        per(sum.writes),
                        per(sum.reads)
                    );
                    let written = busiest(|u| u.writes, PARTITION_WRITES);
                    if !written.is_empty() {
                        let _ = write!(line, "; most written {written}");
                    }
                    let read = busiest(|u| u.reads, PARTITION_READS);
                    if !read.is_empty() {
                        let _ = write!(line, "; most read {read}");
                    }
                    let _ = writeln!(out, "{line}");
                }
                continue;
            }
            for (what, pick, limit) in [
                ("most written", (|u: &Units| u.writes) as fn(&Units) -> u64, PARTITION_WRITES),
                ("most read", |u: &Units| u.reads, PARTITION_READS),
            ] {
                let rows = self.tally.top(place, o.top, pick);
                let Some(first) = rows.first() else { continue };
                if per(pick(&first.1)) < 1.0 {
                    // One key per job or per user: none carries a unit a second.
                    let _ = writeln!(out, "    {what}: {} {} (every key under 1/s)", self.shown(&first.0), share(pick(&first.1), limit));
                    continue;
                }
                let cells: Vec<String> =
                    rows.iter().map(|(key, units)| format!("{} {}", self.shown(key), share(pick(units), limit))).collect();
                let _ = writeln!(out, "    {what}: {}", cells.join(", "));
            }
        }
        for error in self.errors.iter().take(10) {
            let _ = writeln!(out, "ERROR: {error}");
        }
        out
    }
}
