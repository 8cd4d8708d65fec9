//! A deterministic simulator of the whole pipeline (see docs/SIMULATION.md):
//! API calls, the state machine, the queues, the provider, crashes and the
//! clock, all chosen by one seeded RNG on one thread, with the invariants
//! checked after every step. One seed replays one run exactly.

pub mod asl;
pub mod core_run;
pub mod exec;
pub mod gated;
pub mod handlers;
pub mod invariants;
pub mod rng;
pub mod world;

use exec::{Ctx, Ended, Stepped, Task, Work};
use rng::Rng;
use std::rc::Rc;
use world::*;

/// How a run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub jobs: usize,
    /// The first invariant that broke, at which step (a bug, or a known gap).
    pub failure: Option<String>,
    /// The known gap the failure is (see `invariants`); `None`: a bug.
    pub known_gap: Option<&'static str>,
    /// What happened, step by step (with `verbose`).
    pub trace: Vec<String>,
}

impl Report {
    /// Whether the run found a bug (a broken invariant that is no known gap).
    pub fn found_bug(&self) -> bool {
        self.failure.is_some() && self.known_gap.is_none()
    }

    /// The command that replays this run, printed for a failing seed.
    pub fn replay_command(&self) -> String {
        format!("cargo run -p videojobs-sim --release --bin simulate -- --seed {} --verbose", self.seed)
    }
}

/// The fixes the simulator led to, each of which a run can undo to show
/// the bug its seed found (`simulate --undo-fix NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    pub undo: Option<Fix>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// A progress callback between the owner record and the request id:
    /// the submission stores the id in `processing` too, and such an
    /// attempt resumes (before: it canceled the running request).
    RequestIdInProcessing,
    /// A finalize that finds no request id yet comes back (before: it went
    /// to the dead-letter queue).
    FinalizeWaitsForRequestId,
    /// A submit copy that loses the claim to a copy still mid-way comes back
    /// (before: it succeeded, deleting the message the other copy's
    /// redelivery needed).
    LostClaimComesBack,
    /// A second completer (a concurrent finalize, refresh or poll) whose move
    /// to `completed` is refused leaves the job's video alone, and keeps it
    /// again when approved (before: it deleted the object at the fixed key,
    /// the approved job's own video).
    SecondCompleterKeepsTheVideo,
}

impl Fix {
    pub const ALL: [Fix; 4] =
        [Fix::RequestIdInProcessing, Fix::FinalizeWaitsForRequestId, Fix::LostClaimComesBack, Fix::SecondCompleterKeepsTheVideo];

    pub fn name(self) -> &'static str {
        match self {
            Fix::RequestIdInProcessing => "request-id-in-processing",
            Fix::FinalizeWaitsForRequestId => "finalize-waits-for-request-id",
            Fix::LostClaimComesBack => "lost-claim-comes-back",
            Fix::SecondCompleterKeepsTheVideo => "second-completer-keeps-the-video",
        }
    }

    pub fn parse(name: &str) -> Option<Fix> {
        Fix::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl Rules {
    /// Whether `fix` is in the rules of this run.
    pub fn has(&self, fix: Fix) -> bool {
        self.undo != Some(fix)
    }
}

/// A run stops here: every run settles long before.
const MAX_STEPS: u64 = 100_000;
const CHECK_STUCK_EVERY: Secs = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// API calls, faults and crashes.
    Chaos,
    /// No more calls or faults: everything in flight finishes; the
    /// retention windows' waits do not end yet.
    Drain,
    /// The windows end, then the bucket's safety net.
    Retention,
}

struct Sim {
    ctx: Rc<Ctx>,
    tasks: Vec<Task>,
    next_task: usize,
    phase: Phase,
    api_left: u32,
    next_check: Secs,
    verbose: bool,
    trace: Vec<String>,
    start: time::OffsetDateTime,
}

/// Runs the simulation for `seed` with today's rules.
pub fn run(seed: u64, verbose: bool) -> Report {
    run_with(seed, verbose, Rules::default())
}

/// Runs the simulation for `seed` with `rules`.
pub fn run_with(seed: u64, verbose: bool, rules: Rules) -> Report {
    let start = time::OffsetDateTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let _simulated = videojobs_core::model::determinism::simulate(start, seed);
    let mut rng = Rng::new(seed);
    let mut world = World::default();
    for user in ["alice", "bob", "carol"] {
        let credits = rng.between(3, 20);
        world.accounts.insert(user.to_owned(), Account { credits, opened_with: credits });
    }
    let api_left = rng.between(3, 14) as u32;
    let ctx = Ctx::new(world, rng, rules);
    ctx.fault_percent.set(3);
    let mut sim = Sim {
        ctx,
        tasks: Vec::new(),
        next_task: 0,
        phase: Phase::Chaos,
        api_left,
        next_check: CHECK_STUCK_EVERY,
        verbose,
        trace: Vec::new(),
        start,
    };
    let mut steps = 0;
    let (failure, known_gap) = loop {
        steps += 1;
        if steps > MAX_STEPS {
            break (Some(format!("the run did not settle in {MAX_STEPS} steps")), None);
        }
        match sim.step() {
            Ok(true) => {}
            Ok(false) => break (None, None),
            Err(broken) => break (Some(format!("step {steps}: {}", broken.what)), broken.gap),
        }
    };
    let jobs = sim.ctx.world.borrow().jobs.len();
    Report { seed, steps, jobs, failure, known_gap, trace: sim.trace }
}

impl Sim {
    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.verbose {
            let now = self.ctx.world.borrow().now;
            self.trace.push(format!("[t={now:>7}s] {}", what()));
        }
    }

    fn advance_to(&self, at: Secs) {
        let mut w = self.ctx.world.borrow_mut();
        if at > w.now {
            w.now = at;
            videojobs_core::model::determinism::set_now(self.start + std::time::Duration::from_secs(at as u64));
        }
    }

    fn spawn(&mut self, what: Work, future: exec::Handler) {
        self.next_task += 1;
        let id = self.next_task;
        let crash = if self.phase == Phase::Chaos && self.ctx.percent(10) { Some(self.ctx.between(1, 8) as u32) } else { None };
        self.ctx.plan(id, crash);
        self.tasks.push(Task { id, what, future });
    }

    /// Whatever timers are due: the provider finishing, executions' timeouts
    /// and waits, the schedule.
    fn fire_due(&mut self) {
        let now = self.ctx.world.borrow().now;
        let finished: Vec<String> = {
            let w = self.ctx.world.borrow();
            w.requests.iter().filter(|(_, r)| r.state == ProviderState::Running && r.finishes_at <= now).map(|(id, _)| id.clone()).collect()
        };
        for request in finished {
            let mut w = self.ctx.world.borrow_mut();
            let mut rng = self.ctx.rng.borrow_mut();
            let Some(r) = w.requests.get_mut(&request) else { continue };
            r.state = match r.outcome {
                Outcome::Succeeds => ProviderState::Succeeded,
                Outcome::Unusable => ProviderState::Unusable,
                Outcome::Fails => ProviderState::Failed,
                Outcome::Lost => ProviderState::Lost,
            };
            let state = r.state;
            if state != ProviderState::Lost && !rng.percent(10) {
                let event_id = w.new_event_id();
                let at = now + rng.between(0, 60);
                w.callbacks.push(Callback { at, event_id: event_id.clone(), request_id: request.clone(), finished: Some(state), tries: 0 });
                if rng.percent(15) {
                    let again = now + rng.between(0, 120);
                    w.callbacks.push(Callback { at: again, event_id, request_id: request.clone(), finished: Some(state), tries: 0 });
                }
            }
            drop((w, rng));
            self.note(|| format!("provider: {request} finished {state:?}"));
        }
        let timers: Vec<String> = {
            let w = self.ctx.world.borrow();
            w.executions
                .iter()
                .filter(|(_, e)| {
                    !e.ended && e.timer.is_some_and(|t| t <= now) && (self.phase == Phase::Retention || e.state != "KeepForReview")
                })
                .map(|(j, _)| j.clone())
                .collect()
        };
        for job in timers {
            let state = self.ctx.world.borrow().executions.get(&job).map(|e| e.state).unwrap_or("");
            self.ctx.world.borrow_mut().fire_timer(&job);
            self.note(|| format!("state machine: {job}'s {state} timer fired"));
        }
        if now >= self.next_check {
            self.next_check = now + CHECK_STUCK_EVERY;
            let queued = self.ctx.world.borrow().jobs.values().any(|j| j.status == videojobs_core::JobStatus::Queued);
            if self.phase == Phase::Chaos || queued {
                let future = Box::pin(handlers::check_stuck(self.ctx.clone()));
                self.spawn(Work::Schedule, future);
            }
        }
    }

    /// The next time something is due; `None` when nothing is.
    fn next_timer(&self) -> Option<Secs> {
        let w = self.ctx.world.borrow();
        let messages = w.queues.values().flat_map(|q| q.messages.values()).filter(|m| !m.in_flight).map(|m| m.visible_at);
        let callbacks = w.callbacks.iter().map(|c| c.at);
        let provider = w.requests.values().filter(|r| r.state == ProviderState::Running).map(|r| r.finishes_at);
        let executions = w
            .executions
            .values()
            .filter(|e| !e.ended && (self.phase == Phase::Retention || e.state != "KeepForReview"))
            .filter_map(|e| e.timer);
        let queued = w.jobs.values().any(|j| j.status == videojobs_core::JobStatus::Queued);
        let schedule = queued.then_some(self.next_check);
        messages.chain(callbacks).chain(provider).chain(executions).chain(schedule).min()
    }

    /// One step; `Ok(false)` when the run is over.
    fn step(&mut self) -> Result<bool, invariants::Broken> {
        self.fire_due();
        let now = self.ctx.world.borrow().now;
        let visible: Vec<(QueueName, u64)> = {
            let w = self.ctx.world.borrow();
            w.queues
                .iter()
                .flat_map(|(name, q)| q.messages.values().filter(|m| !m.in_flight && m.visible_at <= now).map(|m| (*name, m.id)))
                .collect()
        };
        let callbacks: Vec<usize> = {
            let w = self.ctx.world.borrow();
            w.callbacks.iter().enumerate().filter(|(_, c)| c.at <= now).map(|(i, _)| i).collect()
        };
        if self.phase == Phase::Chaos && self.api_left == 0 {
            self.phase = Phase::Drain;
            self.ctx.fault_percent.set(0);
            self.ctx.world.borrow_mut().calm = true;
            self.note(|| "the API calls are over; draining".into());
        }
        let chaos = self.phase == Phase::Chaos;
        let weights = [
            4 * self.tasks.len() as u64,
            2 * visible.len() as u64,
            2 * callbacks.len() as u64,
            if chaos && self.api_left > 0 { 2 } else { 0 },
            u64::from(chaos),
        ];
        if weights.iter().all(|w| *w == 0) {
            return self.idle();
        }
        let choice = self.ctx.rng.borrow_mut().weighted(&weights);
        match choice {
            0 => {
                let i = self.ctx.rng.borrow_mut().below(self.tasks.len() as u64) as usize;
                self.step_task(i);
            }
            1 => {
                let (queue, id) = visible[self.ctx.rng.borrow_mut().below(visible.len() as u64) as usize];
                self.receive(queue, id);
            }
            2 => {
                let i = callbacks[self.ctx.rng.borrow_mut().below(callbacks.len() as u64) as usize];
                let cb = self.ctx.world.borrow_mut().callbacks.remove(i);
                self.note(|| format!("provider: delivers callback {} for {} ({:?})", cb.event_id, cb.request_id, cb.finished));
                let future = Box::pin(handlers::callback(self.ctx.clone(), cb.clone()));
                self.spawn(Work::Callback(cb), future);
            }
            3 => self.api_call(),
            _ => {
                let by = self.ctx.between(1, 20);
                self.advance_to(now + by);
            }
        }
        let log = std::mem::take(&mut self.ctx.world.borrow_mut().log);
        for line in log {
            self.note(|| line);
        }
        invariants::each_step(&self.ctx.world.borrow())?;
        Ok(true)
    }

    /// Nothing can run now: the clock moves to the next timer, or the phase ends.
    fn idle(&mut self) -> Result<bool, invariants::Broken> {
        if let Some(at) = self.next_timer() {
            self.advance_to(at);
            return Ok(true);
        }
        match self.phase {
            Phase::Chaos | Phase::Drain => {
                invariants::settled(&self.ctx.world.borrow())?;
                self.phase = Phase::Retention;
                self.note(|| "settled; the retention windows end".into());
                Ok(true)
            }
            Phase::Retention => {
                let now = self.ctx.world.borrow().now;
                self.advance_to(now + SAFETY_NET_SECONDS);
                let mut w = self.ctx.world.borrow_mut();
                w.objects.retain(|_, (kept, _)| *kept);
                drop(w);
                let w = self.ctx.world.borrow();
                invariants::each_step(&w)?;
                invariants::at_end(&w)?;
                Ok(false)
            }
        }
    }

    fn receive(&mut self, queue: QueueName, id: u64) {
        let duplicate = self.phase == Phase::Chaos && self.ctx.percent(3);
        let body = {
            let mut w = self.ctx.world.borrow_mut();
            let Some(m) = w.queue(queue).messages.get_mut(&id) else { return };
            m.receives += 1;
            if m.receives > MAX_RECEIVES {
                let body = serde_json::to_string(&m.body).unwrap_or_default();
                w.queue(queue).messages.remove(&id);
                w.dead_letters.push(body);
                return;
            }
            // A duplicate: the message stays visible, as when SQS delivers twice.
            m.in_flight = !duplicate;
            m.body.clone()
        };
        self.note(|| {
            format!(
                "worker: receives {} (message {id}{})",
                serde_json::to_string(&body).unwrap_or_default(),
                if duplicate { ", duplicated" } else { "" }
            )
        });
        let future = Box::pin(handlers::work(self.ctx.clone(), body));
        self.spawn(Work::Message { queue, id }, future);
    }

    fn api_call(&mut self) {
        self.api_left -= 1;
        let (kind, user, job, key, flag) = {
            let mut rng = self.ctx.rng.borrow_mut();
            let w = self.ctx.world.borrow();
            let kind = rng.weighted(&[40, 15, 25, 20]);
            let user = ["alice", "bob", "carol"][rng.below(3) as usize].to_owned();
            let completed: Vec<&String> =
                w.jobs.iter().filter(|(_, j)| j.status == videojobs_core::JobStatus::Completed).map(|(id, _)| id).collect();
            let pool: Vec<&String> = if kind == 2 && !completed.is_empty() { completed } else { w.order.iter().collect() };
            let job = (!pool.is_empty()).then(|| pool[rng.below(pool.len() as u64) as usize].clone());
            let key = rng.percent(50).then(|| format!("key-{}", rng.below(3)));
            (kind, user, job, key, rng.percent(50))
        };
        let ctx = self.ctx.clone();
        let (what, future): (String, exec::Handler) = match (kind, job) {
            (1, Some(job)) => (format!("api: cancel {job}"), Box::pin(handlers::cancel(ctx, job))),
            (2, Some(job)) => {
                (format!("api: review {job} ({})", if flag { "approve" } else { "reject" }), Box::pin(handlers::review(ctx, job, flag)))
            }
            (3, Some(job)) => (format!("api: read {job}"), Box::pin(handlers::read(ctx, job))),
            _ => (format!("api: create for {user} (key {key:?}, webhook {flag})"), Box::pin(handlers::create(ctx, user, key, flag))),
        };
        self.note(|| what.clone());
        self.spawn(Work::Api(what), future);
    }

    fn step_task(&mut self, i: usize) {
        let stepped = self.ctx.step_task(&mut self.tasks[i]);
        let ended = match stepped {
            Stepped::Running => return,
            Stepped::Done(ended) => Some(ended),
            Stepped::Crashed => None,
        };
        let task = self.tasks.remove(i);
        self.note(|| format!("  {:?} ended: {}", task.what, ended.as_ref().map_or("crashed".to_owned(), |e| format!("{e:?}"))));
        let now = self.ctx.world.borrow().now;
        match task.what {
            Work::Message { queue, id } => {
                let mut w = self.ctx.world.borrow_mut();
                match ended {
                    Some(Ended::Ok) => {
                        w.queue(queue).messages.remove(&id);
                    }
                    Some(Ended::Unusable(why)) => {
                        if let Some(m) = w.queue(queue).messages.remove(&id) {
                            let body = serde_json::to_string(&m.body).unwrap_or_default();
                            w.dead_letters.push(format!("{body} ({why})"));
                        }
                    }
                    Some(Ended::Retry(_)) | None => {
                        if let Some(m) = w.queue(queue).messages.get_mut(&id) {
                            m.in_flight = false;
                            m.visible_at = now + VISIBILITY_SECONDS;
                        }
                    }
                }
            }
            Work::Callback(mut cb) => {
                // Anything but an answer of 2xx: the provider delivers it again later.
                if !matches!(ended, Some(Ended::Ok | Ended::Unusable(_))) && cb.tries < 8 {
                    cb.tries += 1;
                    cb.at = now + self.ctx.between(5, 60);
                    self.ctx.world.borrow_mut().callbacks.push(cb);
                }
            }
            Work::Api(_) | Work::Schedule => {}
        }
    }
}
