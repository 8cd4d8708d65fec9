//! One run: core's own code — `pipeline::handle`, `check_stuck`,
//! `callbacks::receive` and `Services` — over testkit's `Memory`, stepped
//! one port call at a time by the gate (`gated::Stepper`), with the
//! simulator's provider and state machine models, and the invariants over
//! the whole world (`Memory::inspect`) after every step.

use crate::gated::{Handler, Stepped, Stepper};
use crate::rng::Rng;
use crate::{asl, Report};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use videojobs_core::model::ids::{JobId, Principal, Role, UserId};
use videojobs_core::model::lifecycle::{transition, JobStatus};
use videojobs_core::model::provider::{
    Callback as ProviderCallback, CallbackError, ProviderError, ProviderEvent, ProviderOutput, ProviderStatus, SubmitRequest,
};
use videojobs_core::model::request::{GenerateRequest, ProviderName};
use videojobs_core::model::review::{ReviewReason, ReviewRequest};
use videojobs_core::model::settings::Settings;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{AccountStore, Provider, Providers, WorkQueue};
use videojobs_core::services::callbacks::{receive, CallbackOutcome, Callbacks};
use videojobs_core::services::jobs::JobSpec;
use videojobs_core::services::pipeline::{check_stuck, handle, Pipeline};
use videojobs_core::services::Services;
use videojobs_testkit::{ExecutionStatus, Memory, Moment, QueueName, TaskAnswer, VirtualClock, WebResource};

type Secs = i64;
const VISIBILITY: Duration = Duration::from_secs(90);
const CHECK_EVERY: Secs = 60;
const MAX_STEPS: u64 = 100_000;
/// The second provider, which jobs fail over to in half the runs.
const FALLBACK: &str = "backup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Succeeds,
    Unusable,
    Fails,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestState {
    Running,
    Finished(Finish),
    Canceled,
}

struct Request {
    /// The provider that took it.
    provider: String,
    state: RequestState,
    finishes_at: Secs,
    outcome: Finish,
}

struct Due {
    /// The provider whose webhook it calls.
    provider: String,
    at: Secs,
    body: String,
    tries: u32,
}

/// What the simulator's provider and its choices share with the run.
struct Model {
    rng: Rng,
    now: Secs,
    calm: bool,
    requests: BTreeMap<String, Request>,
    /// The request each provider made for an idempotency key.
    by_key: BTreeMap<(String, String), String>,
    callbacks: Vec<Due>,
    next_event: u64,
    log: Vec<String>,
    /// The submission attempt of each running `submit` handler, by task.
    attempts: BTreeMap<usize, u32>,
    /// A provider request made for an attempt that was no longer current.
    stale: Option<String>,
    /// What the notifications' invariant counts (see `Run::at_end`).
    notices: Notices,
}

/// Each notification attempt's POSTs, and the handlings that may make an
/// attempt again: one that died, ran out of time or came back, or whose
/// record of the attempt (`finish_attempt`) failed.
#[derive(Default)]
struct Notices {
    /// The `notify` message each running handler has: job, status, attempt.
    by_task: BTreeMap<usize, (JobId, JobStatus, u32)>,
    posts: BTreeMap<(JobId, &'static str, u32), u32>,
    /// Handlers whose `finish_attempt` failed.
    unrecorded: std::collections::BTreeSet<usize>,
    /// Per job: the handlings of its notifications that may be made again.
    redos: BTreeMap<JobId, u32>,
}

type Shared = Arc<Mutex<Model>>;

fn lock(model: &Shared) -> std::sync::MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|p| p.into_inner())
}

fn video_url(request: &str) -> String {
    format!("https://provider.example/{request}.mp4")
}

/// The provider: accepts, answers busy, refuses, or accepts and loses its
/// answer; finishes after a while; its callbacks are its own JSON bodies,
/// which its `verify_callback` accepts.
struct SimProvider {
    name: ProviderName,
    model: Shared,
    gate: Stepper,
    memory: Memory,
}

impl SimProvider {
    async fn outside(&self) {
        videojobs_testkit::Gate::before(&self.gate, "Provider::call").await;
    }
}

fn busy() -> ProviderError {
    ProviderError::Transient { message: "busy".into(), retry_after: None }
}

#[async_trait]
impl Provider for SimProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError> {
        self.outside().await;
        let mut m = lock(&self.model);
        let m = &mut *m;
        m.log.push(format!("  provider {}: submit {}", self.name, request.idempotency_key));
        // The invariant: no request from an attempt that a newer one replaced,
        // or that already recorded its retry.
        if let Some(n) = self.gate.running().and_then(|task| m.attempts.get(&task).copied()) {
            let current = self.memory.inspect(|s| {
                s.jobs().find(|(j, _)| j.job_id.as_str() == request.idempotency_key).map(|(j, _)| (j.submit_attempt, j.status))
            });
            if let Some((current, status)) = current.filter(|(c, s)| *c > n || (*c == n && *s == JobStatus::Retrying)) {
                m.stale.get_or_insert(format!(
                    "attempt {n} of {} asked the provider while the job was {status} at attempt {current}",
                    request.idempotency_key
                ));
            }
        }
        let key = (self.name.to_string(), request.idempotency_key.clone());
        if let Some(id) = m.by_key.get(&key) {
            return Ok(id.clone());
        }
        match m.rng.weighted(&[75, 15, 3, 7]) {
            1 => return Err(busy()),
            2 => return Err(ProviderError::Refused { code: "policy".into(), message: "refused".into() }),
            _ => {}
        }
        let id = format!("req{}", m.requests.len() + 1);
        let outcome = [Finish::Succeeds, Finish::Fails, Finish::Unusable, Finish::Lost][m.rng.weighted(&[85, 7, 3, 5])];
        let duration = [m.rng.between(5, 120), m.rng.between(120, 800), m.rng.between(900, 1_500)][m.rng.weighted(&[50, 40, 10])];
        m.requests.insert(
            id.clone(),
            Request { provider: self.name.to_string(), state: RequestState::Running, finishes_at: m.now + duration, outcome },
        );
        m.by_key.insert(key, id.clone());
        if !m.rng.percent(10) {
            let at = m.now + m.rng.between(0, 20);
            m.next_event += 1;
            let body = serde_json::json!({"event_id": format!("evt{}", m.next_event), "request_id": id, "state": "processing"});
            m.callbacks.push(Due { provider: self.name.to_string(), at, body: body.to_string(), tries: 0 });
        }
        if m.rng.weighted(&[93, 7]) == 1 {
            return Err(busy());
        }
        Ok(id)
    }

    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError> {
        self.outside().await;
        let mut m = lock(&self.model);
        if !m.calm && m.rng.percent(10) {
            return Err(busy());
        }
        status_of(&m, self.name.as_str(), request_id)
    }

    async fn cancel(&self, request_id: &str) -> Result<(), ProviderError> {
        self.outside().await;
        let mut m = lock(&self.model);
        if !m.calm && m.rng.percent(10) {
            return Err(busy());
        }
        match m.requests.get_mut(request_id).filter(|r| r.provider == self.name.as_str()) {
            Some(r) if r.state == RequestState::Running => {
                r.state = RequestState::Canceled;
                Ok(())
            }
            Some(_) => Err(ProviderError::Refused { code: "finished".into(), message: "already finished".into() }),
            None => Err(ProviderError::NotFound(request_id.to_owned())),
        }
    }

    async fn verify_callback(&self, callback: &ProviderCallback<'_>) -> Result<ProviderEvent, CallbackError> {
        let body: serde_json::Value = serde_json::from_slice(callback.body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let text = |name: &str| body.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let (Some(event_id), Some(request_id), Some(state)) = (text("event_id"), text("request_id"), text("state")) else {
            return Err(CallbackError::Malformed("event_id, request_id and state".into()));
        };
        let status = match state.as_str() {
            "processing" => ProviderStatus::Processing { percent: None },
            "succeeded" => ProviderStatus::Succeeded(ProviderOutput { video_url: video_url(&request_id), thumbnail_url: None }),
            "canceled" => ProviderStatus::Canceled,
            _ => ProviderStatus::Failed { code: "failed".into(), message: "the provider failed".into() },
        };
        Ok(ProviderEvent { event_id, request_id, status })
    }

    fn sends_progress_callbacks(&self) -> bool {
        true
    }
}

fn status_of(m: &Model, provider: &str, request_id: &str) -> Result<ProviderStatus, ProviderError> {
    match m.requests.get(request_id).filter(|r| r.provider == provider).map(|r| r.state) {
        None | Some(RequestState::Finished(Finish::Lost)) => Err(ProviderError::NotFound(request_id.to_owned())),
        Some(RequestState::Running) => Ok(ProviderStatus::Processing { percent: None }),
        Some(RequestState::Canceled) => Ok(ProviderStatus::Canceled),
        Some(RequestState::Finished(Finish::Fails)) => Ok(ProviderStatus::Failed { code: "failed".into(), message: "failed".into() }),
        Some(RequestState::Finished(_)) => {
            Ok(ProviderStatus::Succeeded(ProviderOutput { video_url: video_url(request_id), thumbnail_url: None }))
        }
    }
}

/// A one-track MP4 header the output copy's probe reads as a video.
pub fn small_mp4() -> Vec<u8> {
    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&((body.len() + 8) as u32).to_be_bytes()[..], kind, body].concat()
    }
    let mut mvhd = vec![0u8; 100];
    mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
    mvhd[16..20].copy_from_slice(&4_500u32.to_be_bytes());
    let mut tkhd = vec![0u8; 84];
    tkhd[76..80].copy_from_slice(&(1280u32 << 16).to_be_bytes());
    tkhd[80..84].copy_from_slice(&(720u32 << 16).to_be_bytes());
    let moov = boxed(b"moov", &[boxed(b"mvhd", &mvhd), boxed(b"trak", &boxed(b"tkhd", &tkhd))].concat());
    [boxed(b"ftyp", b"isom\0\0\x02\0isomiso2mp41"), moov, boxed(b"mdat", &[7u8; 64])].concat()
}

/// Polls a future that must not wait (the run's own calls: no handler is current, the gate lets them through).
fn now_or_never<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// An execution of the state machine model, over testkit's executions and tokens.
struct Exec {
    state: &'static str,
    token: Option<String>,
    timer: Option<Secs>,
    ended: bool,
    error: Option<String>,
}

enum Work {
    Message {
        queue: QueueName,
        handle: String,
    },
    Callback(Due),
    /// A client's API call.
    Api,
    /// The scheduled check (the worker function).
    Check,
}

struct Task {
    id: usize,
    what: Work,
    label: String,
    future: Handler<Ended>,
    /// When it started: Lambda stops a function at its timeout.
    started: Secs,
}

/// The functions' timeouts (template.yaml): the pipeline's worker (and its
/// scheduled check), the notifier and the webhook. A handler still running
/// after its timeout is stopped, as Lambda stops it; the leases that fence
/// its work outlast these. The API's 10 s are not applied: the clock moves
/// in steps of up to 20 s, far coarser than a call's real time, and would
/// stop most calls (a call's death after any write is simulated all the same).
const WORKER_TIMEOUT: Secs = 60;
const NOTIFIER_TIMEOUT: Secs = 30;
const WEBHOOK_TIMEOUT: Secs = 5;

#[derive(Debug)]
enum Ended {
    Ok,
    Retry(String),
    Unusable(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Chaos,
    Drain,
    Retention,
}

struct Run {
    memory: Memory,
    stepper: Stepper,
    model: Shared,
    pipeline: Arc<Pipeline>,
    callbacks: Arc<Callbacks>,
    services: Arc<Services>,
    execs: BTreeMap<JobId, Exec>,
    users: Vec<(UserId, i64)>,
    tasks: Vec<Task>,
    next_task: usize,
    phase: Phase,
    api_left: u32,
    next_check: Secs,
    start: time::OffsetDateTime,
    verbose: bool,
    trace: Vec<String>,
    faults: Arc<Mutex<(Rng, u64)>>,
    /// A breach seen while settling a handler.
    broken: Option<String>,
    /// Every status each job has had, in the order the simulator saw them.
    histories: BTreeMap<JobId, Vec<JobStatus>>,
    /// Draws the extra copies of notification messages.
    notify_copies: Rng,
}

/// Runs seed `seed` on core's own code.
pub fn run(seed: u64, verbose: bool) -> Report {
    let start = time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _simulated = videojobs_core::model::determinism::simulate(start, seed);
    let mut rng = Rng::new(seed);
    let memory = Memory::new(VirtualClock::starting_at(start));
    let stepper = Stepper::default();
    memory.set_gate(Arc::new(stepper.clone()));
    // The indexes (a GSI is eventually consistent) trail the table: by far
    // more than DynamoDB's usual second, to stress the readers. Drawn apart,
    // so that the seeds kept as regressions replay the runs they did.
    memory.set_index_lag(Duration::from_secs(Rng::new(seed ^ 0x1a6).between(0, 30) as u64));
    // Half the runs fail a job over to a second provider after 1 to 3 busy
    // answers or a refusal (drawn apart too).
    let mut failover = Rng::new(seed ^ 0xfa11);
    let fallback = failover.percent(50).then(|| FALLBACK.to_owned());
    let after_attempts = failover.between(1, 3).to_string();
    let settings = Settings::from_lookup(|name| match name {
        "FALLBACK_PROVIDER" => fallback.clone(),
        "FALLBACK_AFTER_ATTEMPTS" => Some(after_attempts.clone()),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("settings: {e}"));
    let provider = settings.default_provider.clone();
    let model: Shared = Arc::new(Mutex::new(Model {
        rng: Rng::new(seed ^ 0x5eed),
        now: 0,
        calm: false,
        requests: BTreeMap::new(),
        by_key: BTreeMap::new(),
        callbacks: Vec::new(),
        next_event: 0,
        log: Vec::new(),
        attempts: BTreeMap::new(),
        stale: None,
        notices: Notices::default(),
    }));
    let sim_provider =
        |name: ProviderName| Arc::new(SimProvider { name, model: model.clone(), gate: stepper.clone(), memory: memory.clone() });
    let fallback_name: ProviderName = FALLBACK.parse().unwrap_or_else(|_| panic!("a provider name"));
    let providers = Providers::default().with(sim_provider(provider.clone())).with(sim_provider(fallback_name));
    let pipeline = Arc::new(memory.pipeline(settings.clone(), providers.clone(), "https://api.example"));
    let callbacks = Arc::new(memory.callbacks(providers));
    let services = Arc::new(memory.services(settings));
    memory.resolve_to("client.example", vec![std::net::IpAddr::from([93, 184, 216, 34])]);
    memory.endpoint_answers("https://client.example/hook", Some(200));
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let user: UserId = name.parse().unwrap_or_else(|_| panic!("a user id"));
        let credits = rng.between(20, 120);
        let _ = now_or_never(memory.open_account(&user, credits));
        let _ = now_or_never(videojobs_core::ports::WebhookSecrets::create_webhook_secret(
            &memory,
            &user,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ));
        users.push((user, credits));
    }
    // Faults strike only inside a handler, never the run's own calls.
    let faults = Arc::new(Mutex::new((Rng::new(seed ^ 0xfa17), 3u64)));
    for moment in [Moment::Before, Moment::AfterWrite] {
        let (faults, stepper, model) = (faults.clone(), stepper.clone(), model.clone());
        memory.faults().fail_when(moment, move |call| {
            let Some(task) = stepper.running() else {
                return false;
            };
            let mut f = faults.lock().unwrap_or_else(|p| p.into_inner());
            let p = f.1;
            if call.op == "NotificationPoster::post" {
                // A client's endpoint fails now and then while the calls last.
                let fails = moment == Moment::Before && p > 0 && f.0.percent(30);
                if moment == Moment::Before && !fails {
                    let mut m = lock(&model);
                    if let Some((job, status, attempt)) = m.notices.by_task.get(&task).cloned() {
                        *m.notices.posts.entry((job, status.as_str(), attempt)).or_default() += 1;
                    }
                }
                return fails;
            }
            let fails = p > 0 && f.0.percent(p) && f.0.percent(50);
            if fails && moment == Moment::Before && call.op == "NotificationLog::finish_attempt" {
                lock(&model).notices.unrecorded.insert(task);
            }
            fails
        });
    }
    let api_left = rng.between(3, 14) as u32;
    lock(&model).rng = rng;
    let mut run = Run {
        memory,
        stepper,
        model,
        pipeline,
        callbacks,
        services,
        execs: BTreeMap::new(),
        users,
        tasks: Vec::new(),
        next_task: 0,
        phase: Phase::Chaos,
        api_left,
        next_check: CHECK_EVERY,
        start,
        verbose,
        trace: Vec::new(),
        faults,
        broken: None,
        histories: BTreeMap::new(),
        notify_copies: Rng::new(seed ^ 0xc0b1),
    };
    let mut steps = 0;
    let failure = loop {
        steps += 1;
        if steps > MAX_STEPS {
            break Some(format!("the run did not settle in {MAX_STEPS} steps"));
        }
        match run.step() {
            Ok(true) => {}
            Ok(false) => break None,
            Err(broken) => break Some(format!("step {steps}: {broken}")),
        }
    };
    let jobs = run.memory.inspect(|s| s.jobs().count());
    Report { seed, steps, jobs, failure, trace: run.trace }
}

impl Run {
    fn rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut lock(&self.model).rng)
    }

    fn now(&self) -> Secs {
        lock(&self.model).now
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.verbose {
            let now = self.now();
            self.trace.push(format!("[t={now:>7}s] {}", what()));
        }
    }

    fn advance_to(&self, at: Secs) {
        let mut m = lock(&self.model);
        if at > m.now {
            m.now = at;
            self.memory.clock().advance_to(self.start + Duration::from_secs(at as u64));
        }
    }

    fn secs(&self, at: time::OffsetDateTime) -> Secs {
        (at - self.start).whole_seconds()
    }

    fn spawn(&mut self, what: Work, label: String, future: Handler<Ended>) {
        self.next_task += 1;
        let id = self.next_task;
        if self.phase == Phase::Chaos && self.rng(|r| r.percent(10)) {
            let n = self.rng(|r| r.between(1, 8)) as u32;
            self.stepper.crash_after(id, n);
        }
        self.note(|| label.clone());
        let started = self.now();
        self.tasks.push(Task { id, what, label, future, started });
    }

    fn send(&self, message: &WorkMessage) {
        let queue = self.memory.queue(QueueName::Work);
        let _ = now_or_never(queue.enqueue(message));
    }

    /// Enters `state` of the job's execution.
    fn enter(&mut self, job: &JobId, state: &'static str) {
        let model = asl::state(state);
        let error = self.execs.get(job).and_then(|e| e.error.clone());
        let mut exec = Exec { state, token: None, timer: None, ended: false, error: error.clone() };
        let now = self.now();
        match model.kind {
            asl::Kind::WaitForToken { message, timeout, .. } => {
                let token = self.memory.issue_task_token(job);
                let body = match message {
                    "submit" => WorkMessage::Submit { job_id: job.clone(), task_token: Some(token.clone()), attempt: None },
                    "await_review" => WorkMessage::AwaitReview { job_id: job.clone(), task_token: token.clone() },
                    _ => WorkMessage::Poll { job_id: job.clone(), task_token: Some(token.clone()), round: None },
                };
                self.send(&body);
                exec.token = Some(token);
                exec.timer = Some(
                    now + match timeout {
                        asl::Timeout::Path("$.retention_seconds") => self.pipeline.settings.retention_seconds as Secs,
                        asl::Timeout::Path(_) => 900,
                        asl::Timeout::Seconds(s) => s as Secs,
                    },
                );
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
        self.note(|| format!("state machine: {job} enters {state}"));
        self.execs.insert(job.clone(), exec);
        if let asl::Kind::Send { .. } = model.kind {
            match model.next {
                Some(next) => self.enter(job, next),
                None => self.end(job, ExecutionStatus::Succeeded),
            }
        } else if model.kind == asl::Kind::Fail {
            self.end(job, ExecutionStatus::Failed);
        }
    }

    fn end(&mut self, job: &JobId, status: ExecutionStatus) {
        if let Some(e) = self.execs.get_mut(job) {
            e.ended = true;
            e.token = None;
            e.timer = None;
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

    /// New executions, answered tokens, stopped executions.
    fn follow_executions(&mut self) {
        let jobs: Vec<JobId> = self.memory.inspect(|s| s.jobs().map(|(j, _)| j.job_id.clone()).collect());
        for job in jobs {
            let Some(execution) = self.memory.execution(&job) else { continue };
            if !self.execs.contains_key(&job) {
                self.enter(&job, asl::START);
                continue;
            }
            if execution.status == ExecutionStatus::Aborted {
                if let Some(e) = self.execs.get_mut(&job).filter(|e| !e.ended) {
                    e.ended = true;
                    e.token = None;
                    e.timer = None;
                }
                continue;
            }
            let Some(token) = self.execs.get(&job).filter(|e| !e.ended).and_then(|e| e.token.clone()) else { continue };
            match self.memory.task_answers(&token).0 {
                Some(TaskAnswer::Success(_)) => {
                    let state = self.execs.get(&job).map(|e| e.state).unwrap_or(asl::START);
                    match asl::state(state).next {
                        Some(next) => self.enter(&job, next),
                        None => self.end(&job, ExecutionStatus::Succeeded),
                    }
                }
                Some(TaskAnswer::Failure { error, .. }) => self.catch(&job, &error),
                None => {}
            }
        }
    }

    fn fire_due(&mut self) {
        let now = self.now();
        let finished: Vec<String> = {
            let m = lock(&self.model);
            m.requests.iter().filter(|(_, r)| r.state == RequestState::Running && r.finishes_at <= now).map(|(id, _)| id.clone()).collect()
        };
        for request in finished {
            let mut m = lock(&self.model);
            let m = &mut *m;
            let Some(r) = m.requests.get_mut(&request) else { continue };
            r.state = RequestState::Finished(r.outcome);
            let (outcome, provider) = (r.outcome, r.provider.clone());
            let bytes = if outcome == Finish::Unusable { b"not a video".to_vec() } else { small_mp4() };
            self.memory.serve(&video_url(&request), WebResource::Body { bytes, sha256: None });
            if outcome != Finish::Lost && !m.rng.percent(10) {
                m.next_event += 1;
                let state = if outcome == Finish::Fails { "failed" } else { "succeeded" };
                let body =
                    serde_json::json!({"event_id": format!("evt{}", m.next_event), "request_id": request, "state": state}).to_string();
                let at = now + m.rng.between(0, 60);
                m.callbacks.push(Due { provider: provider.clone(), at, body: body.clone(), tries: 0 });
                if m.rng.percent(15) {
                    let again = now + m.rng.between(0, 120);
                    m.callbacks.push(Due { provider, at: again, body, tries: 0 });
                }
            }
            m.log.push(format!("provider: {request} finished {outcome:?}"));
        }
        let timers: Vec<JobId> = self
            .execs
            .iter()
            .filter(|(_, e)| {
                !e.ended && e.timer.is_some_and(|t| t <= now) && (self.phase == Phase::Retention || e.state != "KeepForReview")
            })
            .map(|(j, _)| j.clone())
            .collect();
        for job in timers {
            self.note(|| format!("state machine: {job}'s timer fired"));
            self.catch(&job, "States.Timeout");
        }
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            let queued = self.memory.inspect(|s| s.jobs().any(|(j, _)| j.status == JobStatus::Queued));
            if self.phase == Phase::Chaos || queued {
                let pipeline = self.pipeline.clone();
                let future: Handler<Ended> = Box::pin(async move {
                    match check_stuck(&pipeline).await {
                        Ok(_) => Ended::Ok,
                        Err(e) => Ended::Retry(e.to_string()),
                    }
                });
                self.spawn(Work::Check, "schedule: check_stuck".into(), future);
            }
        }
    }

    fn next_timer(&self) -> Option<Secs> {
        let m = lock(&self.model);
        let queues = [QueueName::Work, QueueName::Notify].into_iter().filter_map(|q| self.memory.next_visible_at(q)).map(|t| self.secs(t));
        let callbacks = m.callbacks.iter().map(|c| c.at);
        let provider = m.requests.values().filter(|r| r.state == RequestState::Running).map(|r| r.finishes_at);
        let execs = self
            .execs
            .values()
            .filter(|e| !e.ended && (self.phase == Phase::Retention || e.state != "KeepForReview"))
            .filter_map(|e| e.timer);
        let queued = self.memory.inspect(|s| s.jobs().any(|(j, _)| j.status == JobStatus::Queued));
        let now = m.now;
        queues.map(move |t| t.max(now + 1)).chain(callbacks).chain(provider).chain(execs).chain(queued.then_some(self.next_check)).min()
    }

    fn step(&mut self) -> Result<bool, String> {
        self.fire_due();
        let now = self.now();
        self.stop_timed_out(now);
        let due: Vec<usize> = lock(&self.model).callbacks.iter().enumerate().filter(|(_, c)| c.at <= now).map(|(i, _)| i).collect();
        let visible = [QueueName::Work, QueueName::Notify]
            .into_iter()
            .filter(|q| self.memory.next_visible_at(*q).is_some_and(|t| self.secs(t) <= now))
            .collect::<Vec<_>>();
        if self.phase == Phase::Chaos && self.api_left == 0 {
            self.phase = Phase::Drain;
            lock(&self.model).calm = true;
            self.faults.lock().unwrap_or_else(|p| p.into_inner()).1 = 0;
            self.note(|| "the API calls are over; draining".into());
        }
        let chaos = self.phase == Phase::Chaos;
        let weights = [
            4 * self.tasks.len() as u64,
            2 * visible.len() as u64,
            2 * due.len() as u64,
            if chaos && self.api_left > 0 { 2 } else { 0 },
            u64::from(chaos),
        ];
        if weights.iter().all(|w| *w == 0) {
            return self.idle();
        }
        match self.rng(|r| r.weighted(&weights)) {
            0 => {
                let i = self.rng(|r| r.below(self.tasks.len() as u64)) as usize;
                self.step_task(i);
            }
            1 => {
                let queue = visible[self.rng(|r| r.below(visible.len() as u64)) as usize];
                self.receive(queue);
            }
            2 => {
                let i = due[self.rng(|r| r.below(due.len() as u64)) as usize];
                let cb = lock(&self.model).callbacks.remove(i);
                let callbacks = self.callbacks.clone();
                let (name, body) = (cb.provider.clone(), cb.body.clone());
                let future: Handler<Ended> = Box::pin(async move {
                    match receive(&callbacks, &name, &HashMap::new(), body.as_bytes()).await {
                        CallbackOutcome::Applied | CallbackOutcome::Duplicate | CallbackOutcome::Unmatched => Ended::Ok,
                        CallbackOutcome::InProgress => Ended::Retry("in progress".into()),
                        other => Ended::Retry(format!("{other:?}")),
                    }
                });
                let label = format!("provider: delivers {}", cb.body);
                self.spawn(Work::Callback(cb), label, future);
            }
            3 => self.api_call(),
            _ => {
                let by = self.rng(|r| r.between(1, 20));
                self.advance_to(now + by);
            }
        }
        self.follow_executions();
        let log = std::mem::take(&mut lock(&self.model).log);
        for line in log {
            self.note(|| line);
        }
        self.each_step()?;
        Ok(true)
    }

    fn idle(&mut self) -> Result<bool, String> {
        if let Some(at) = self.next_timer() {
            self.advance_to(at.max(self.now() + 1));
            self.follow_executions();
            return Ok(true);
        }
        match self.phase {
            Phase::Chaos | Phase::Drain => {
                self.settled()?;
                self.phase = Phase::Retention;
                self.note(|| "settled; the retention windows end".into());
                Ok(true)
            }
            Phase::Retention => {
                let now = self.now();
                self.advance_to(now + self.pipeline.settings.retention_seconds as Secs + 7 * 86_400);
                // The bucket's safety net: objects still tagged unreviewed go.
                let unkept: Vec<String> =
                    self.memory.inspect(|s| s.objects().filter(|(_, o)| o.unreviewed()).map(|(k, _)| k.clone()).collect());
                let _ = now_or_never(videojobs_core::ports::OutputStore::delete(&self.memory, &unkept));
                self.each_step()?;
                self.at_end()?;
                Ok(false)
            }
        }
    }

    fn receive(&mut self, queue: QueueName) {
        let batch = self.memory.receive(queue, 1, VISIBILITY);
        for message in batch {
            if self.phase == Phase::Chaos && self.rng(|r| r.percent(3)) {
                self.memory.duplicate(queue, &message.message_id);
            }
            // Notifications get copies far more often, to try the one-chain
            // rule (drawn apart, so that the kept seeds replay their runs).
            if self.phase == Phase::Chaos && queue == QueueName::Notify && self.notify_copies.percent(25) {
                self.memory.duplicate(queue, &message.message_id);
            }
            let body = message.body.clone();
            let pipeline = self.pipeline.clone();
            let future: Handler<Ended> = Box::pin(async move {
                let parsed: WorkMessage = match serde_json::from_str(&body) {
                    Ok(parsed) => parsed,
                    Err(e) => return Ended::Unusable(e.to_string()),
                };
                match handle(&pipeline, parsed).await {
                    Ok(()) => Ended::Ok,
                    Err(e) if e.is_retryable() => Ended::Retry(e.to_string()),
                    Err(e) => Ended::Unusable(e.to_string()),
                }
            });
            let label = format!("worker: receives {} (receive {})", message.body, message.receive_count);
            match serde_json::from_str(&message.body) {
                Ok(WorkMessage::Submit { attempt, .. }) => {
                    lock(&self.model).attempts.insert(self.next_task + 1, attempt.unwrap_or(1).max(1));
                }
                Ok(WorkMessage::Notify { job_id, status, attempt, .. }) => {
                    lock(&self.model).notices.by_task.insert(self.next_task + 1, (job_id, status, attempt));
                }
                _ => {}
            }
            self.spawn(Work::Message { queue, handle: message.receipt_handle }, label, future);
        }
    }

    fn api_call(&mut self) {
        self.api_left -= 1;
        let kind = self.rng(|r| r.weighted(&[40, 15, 25, 20]));
        let (user, _) = self.users[self.rng(|r| r.below(3)) as usize].clone();
        let jobs: Vec<(JobId, JobStatus)> = self.memory.inspect(|s| s.jobs().map(|(j, _)| (j.job_id.clone(), j.status)).collect());
        let completed: Vec<&(JobId, JobStatus)> = jobs.iter().filter(|(_, s)| *s == JobStatus::Completed).collect();
        let pool: Vec<&(JobId, JobStatus)> = if kind == 2 && !completed.is_empty() { completed } else { jobs.iter().collect() };
        let job = (!pool.is_empty()).then(|| pool[self.rng(|r| r.below(pool.len() as u64)) as usize].0.clone());
        let key = self.rng(|r| r.percent(50).then(|| r.below(3)));
        let flag = self.rng(|r| r.percent(50));
        let services = self.services.clone();
        let admin = Principal { user_id: user.clone(), role: Role::Admin };
        let (label, future): (String, Handler<Ended>) = match (kind, job) {
            (1, Some(job)) => (format!("api: cancel {job}"), Box::pin(async move { api(services.cancel(&admin, job.as_str()).await) })),
            (2, Some(job)) => {
                let request = if flag {
                    ReviewRequest::Approve { reason: None, note: None }
                } else {
                    ReviewRequest::Reject { reason: ReviewReason::OffBrief, note: None }
                };
                // A reviewer reviews others' jobs only.
                let reviewer = Principal { user_id: "rita".parse().unwrap_or_else(|_| panic!("a user id")), role: Role::Reviewer };
                (
                    format!("api: review {job} (approve {flag})"),
                    Box::pin(async move { api(services.review(&reviewer, job.as_str(), request).await) }),
                )
            }
            (3, Some(job)) => (format!("api: read {job}"), Box::pin(async move { api(services.status(&admin, job.as_str()).await) })),
            _ => {
                let mut body = serde_json::json!({"prompt": "a paper boat", "duration_seconds": 5});
                if flag {
                    body["webhook_url"] = "https://client.example/hook".into();
                }
                let bytes = body.to_string().into_bytes();
                let label = format!("api: create for {user} (key {key:?}, webhook {flag})");
                let who = Principal { user_id: user.clone(), role: Role::User };
                let future: Handler<Ended> = Box::pin(async move {
                    let limits = &services.settings.limits;
                    let request = match GenerateRequest::parse(&bytes, limits) {
                        Ok(request) => request,
                        Err(e) => return Ended::Unusable(format!("{e:?}")),
                    };
                    let idempotency = key.map(|k| videojobs_core::services::jobs::Idempotency {
                        key: format!("key-{k}").parse().unwrap_or_else(|_| panic!("an idempotency key")),
                        fingerprint: format!("POST /videos/generate:{}", String::from_utf8_lossy(&bytes)),
                        legacy_fingerprint: None,
                    });
                    api(services.create_job(&who, JobSpec::Generate(request), idempotency).await)
                });
                (label, future)
            }
        };
        self.spawn(Work::Api, label, future);
    }

    /// Stops the handlers that ran past their function's timeout. Like a
    /// crash: a message comes back after its visibility timeout, and the
    /// provider delivers a callback again (it got no answer).
    fn stop_timed_out(&mut self, now: Secs) {
        let timed_out = |task: &Task| {
            let timeout = match task.what {
                Work::Message { queue: QueueName::Notify, .. } => NOTIFIER_TIMEOUT,
                Work::Message { .. } | Work::Check => WORKER_TIMEOUT,
                Work::Callback(_) => WEBHOOK_TIMEOUT,
                Work::Api => return false,
            };
            now - task.started > timeout
        };
        while let Some(i) = self.tasks.iter().position(timed_out) {
            let task = self.tasks.remove(i);
            self.note(|| format!("  {} stopped at its timeout", task.label));
            self.notice_ended(task.id, false);
            if let Work::Callback(cb) = task.what {
                self.deliver_again(cb);
            }
        }
    }

    /// The provider got no success for a callback: it delivers it again
    /// later, up to eight more times.
    fn deliver_again(&mut self, mut cb: Due) {
        if cb.tries < 8 {
            cb.tries += 1;
            cb.at = self.now() + self.rng(|r| r.between(5, 60));
            lock(&self.model).callbacks.push(cb);
        }
    }

    /// A notify handler ended: one that did not end well, or could not
    /// record its attempt, leaves that attempt to be made again.
    fn notice_ended(&mut self, task: usize, ok: bool) {
        let mut m = lock(&self.model);
        let unrecorded = m.notices.unrecorded.remove(&task);
        if let Some((job, _, _)) = m.notices.by_task.remove(&task) {
            if !ok || unrecorded {
                *m.notices.redos.entry(job).or_default() += 1;
            }
        }
    }

    fn step_task(&mut self, i: usize) {
        let id = self.tasks[i].id;
        let stepped = self.stepper.step(id, &mut self.tasks[i].future);
        let ended = match stepped {
            Stepped::Running => return,
            Stepped::Done(ended) => Some(ended),
            Stepped::Crashed => None,
        };
        let task = self.tasks.remove(i);
        self.note(|| format!("  {} ended: {}", task.label, ended.as_ref().map_or("crashed".to_owned(), Ended::describe)));
        self.notice_ended(task.id, matches!(ended, Some(Ended::Ok)));
        match (task.what, ended) {
            (Work::Message { queue, handle }, Some(Ended::Ok)) => {
                self.memory.delete(queue, &handle);
            }
            (Work::Message { .. }, Some(Ended::Unusable(why))) => {
                lock(&self.model).log.push(format!("BUG: a message could not be handled: {why}"));
                self.broken = Some(format!("a message went to the dead-letter queue: {}: {why}", task.label));
            }
            (Work::Callback(cb), ended) if !matches!(ended, Some(Ended::Ok)) => self.deliver_again(cb),
            _ => {}
        }
    }
}

impl Ended {
    fn describe(&self) -> String {
        match self {
            Ended::Ok => "ok".into(),
            Ended::Retry(why) => format!("comes back ({why})"),
            Ended::Unusable(why) => format!("unusable ({why})"),
        }
    }
}

fn api<T>(answer: Result<T, videojobs_core::services::AppError>) -> Ended {
    match answer {
        Ok(_) => Ended::Ok,
        Err(e) => Ended::Retry(format!("{e:?}")),
    }
}

impl Run {
    /// After every step, over the whole world read at once.
    fn each_step(&mut self) -> Result<(), String> {
        if let Some(stale) = lock(&self.model).stale.take() {
            return Err(stale);
        }
        if let Some(broken) = self.broken.take() {
            return Err(broken);
        }
        let dead = self.memory.messages(QueueName::WorkDeadLetters).len() + self.memory.messages(QueueName::NotifyDeadLetters).len();
        if dead > 0 {
            return Err(format!("{dead} message(s) in a dead-letter queue: {:?}", self.memory.messages(QueueName::WorkDeadLetters)));
        }
        let users = self.users.clone();
        let histories = &mut self.histories;
        self.memory.inspect(|s| {
            for (user, opened) in &users {
                let mut expected = *opened;
                for (job, refunded) in s.jobs().filter(|(j, _)| &j.user_id == user) {
                    expected -= i64::from(job.cost_credits);
                    if refunded {
                        expected += i64::from(job.cost_credits);
                    }
                }
                let held = s.credits(user).unwrap_or_default();
                if held != expected || held < 0 {
                    return Err(format!("credits of {user} not conserved: {held} held, {expected} by the jobs"));
                }
            }
            let objects: BTreeMap<&String, bool> = s.objects().map(|(k, o)| (k, !o.unreviewed())).collect();
            for (job, refunded) in s.jobs() {
                let id = &job.job_id;
                // The history as the simulator saw it change, step by step (a
                // step makes one write at most): in write order, whatever the
                // events' own times (a change's time is when it was made, not
                // when it landed).
                let history = histories.entry(id.clone()).or_default();
                if history.last() != Some(&job.status) {
                    if let Some(&from) = history.last() {
                        if transition(from, job.status).is_err() {
                            return Err(format!("job {id} moved backwards or sideways: {history:?} then {}", job.status));
                        }
                    }
                    history.push(job.status);
                }
                let owed = history.windows(2).any(|p| transition(p[0], p[1]).is_ok_and(|t| t.refunds_credits));
                if refunded != owed {
                    return Err(format!("job {id} ({history:?}) refunded {refunded}, owed {owed}"));
                }
                let keys = job.output.as_ref().map(|o| o.object_keys()).unwrap_or_default();
                if job.status == JobStatus::Approved && (keys.is_empty() || keys.iter().any(|k| !objects.contains_key(k))) {
                    return Err(format!("approved job {id} has no video (output {keys:?})"));
                }
                if keys.iter().any(|k| !objects.contains_key(k)) && !matches!(job.status, JobStatus::Expired | JobStatus::Rejected) {
                    return Err(format!("job {id} is {} and points at a deleted video", job.status));
                }
            }
            for (key, kept) in &objects {
                let owner = s.jobs().any(|(j, _)| j.output.as_ref().is_some_and(|o| o.object_keys().contains(key)));
                if *kept && !owner {
                    return Err(format!("{key} is untagged (kept) but no job points at it"));
                }
            }
            Ok(())
        })
    }

    /// Once only the retention windows are left.
    fn settled(&self) -> Result<(), String> {
        let waiting: Vec<JobId> = self
            .execs
            .iter()
            .filter(|(_, e)| !e.ended && e.state == "KeepForReview" && e.timer.is_some())
            .map(|(j, _)| j.clone())
            .collect();
        self.memory.inspect(|s| {
            for (job, _) in s.jobs() {
                if !(job.status.is_terminal() || (job.status == JobStatus::Completed && waiting.contains(&job.job_id))) {
                    return Err(format!("job {} settled {} without a pending expiry", job.job_id, job.status));
                }
            }
            Ok(())
        })
    }

    /// At the end, after the windows and the bucket's safety net.
    fn at_end(&mut self) -> Result<(), String> {
        self.memory.inspect(|s| {
            for (key, object) in s.objects() {
                let owners: Vec<JobStatus> = s
                    .jobs()
                    .filter(|(j, _)| j.output.as_ref().is_some_and(|o| o.object_keys().contains(key)))
                    .map(|(j, _)| j.status)
                    .collect();
                if owners.is_empty() {
                    return Err(format!("{key} is in the bucket but no job points at it"));
                }
                if !object.unreviewed() && !owners.contains(&JobStatus::Approved) {
                    return Err(format!("{key} is untagged (kept) but no approved job points at it"));
                }
            }
            for (job, _) in s.jobs() {
                if !job.status.is_terminal() {
                    return Err(format!("job {} ended {}", job.job_id, job.status));
                }
            }
            Ok(())
        })?;
        // Every status a client is told of was delivered at least once, and
        // no client was told of a status its job never had.
        let posted = self.memory.posted();
        let delivered: std::collections::BTreeSet<&str> =
            posted.iter().filter(|p| (200..300).contains(&p.status)).map(|p| p.id.as_str()).collect();
        let histories = &self.histories;
        let owed: BTreeMap<String, (JobId, JobStatus)> = self.memory.inspect(|s| {
            s.jobs()
                .filter(|(j, _)| j.webhook_url.is_some())
                .flat_map(|(j, _)| histories.get(&j.job_id).into_iter().flatten().map(|status| (j.job_id.clone(), *status)))
                .filter(|(_, status)| videojobs_core::model::notification::is_notified(*status))
                .map(|(job, status)| (videojobs_core::model::notification::message_id(&job, status), (job, status)))
                .collect()
        });
        // One chain per job and status, each attempt posted once, but for
        // the handlings that may make theirs again; none past the schedule.
        let attempts = self.pipeline.settings.notify_retry_schedule.attempts();
        {
            let m = lock(&self.model);
            let mut extra: BTreeMap<&JobId, u32> = BTreeMap::new();
            for ((job, status, attempt), count) in &m.notices.posts {
                if *attempt > attempts {
                    return Err(format!("job {job}'s client was posted attempt {attempt} of {status}, past the schedule's {attempts}"));
                }
                *extra.entry(job).or_default() += count - 1;
            }
            for (job, extra) in extra {
                let allowed = m.notices.redos.get(job).copied().unwrap_or(0);
                if extra > allowed {
                    return Err(format!(
                        "job {job}'s notifications posted {extra} attempts twice, with {allowed} handlings that could make one again"
                    ));
                }
            }
        }
        if let Some(stray) = posted.iter().find(|p| !owed.contains_key(&p.id)) {
            return Err(format!("a client was told {} of a status its job never had", stray.id));
        }
        for (id, (job, status)) in &owed {
            if !delivered.contains(id.as_str()) {
                return Err(format!("job {job}'s client was never told it was {status}"));
            }
        }
        Ok(())
    }
}
