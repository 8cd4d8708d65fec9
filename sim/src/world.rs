//! Everything the pipeline touches, as one state the simulator owns: the
//! table's jobs, accounts and records, the buckets' objects, the queues, the
//! state machine's executions, the provider and the clients' endpoints.
//! Every collection is ordered (no hash maps): iteration order is part of a
//! replay.

use crate::asl;
use std::collections::{BTreeMap, BTreeSet};
use videojobs_core::model::lifecycle::{transition, JobStatus};
use videojobs_core::model::work::WorkMessage;

/// Simulated seconds since the run began.
pub type Secs = i64;

pub const DEADLINE_SECONDS: Secs = 900;
pub const RETENTION_SECONDS: Secs = 86_400;
/// The bucket's safety net: unkept objects go this long after the window.
pub const SAFETY_NET_SECONDS: Secs = RETENTION_SECONDS + 7 * 86_400;
/// As the template's work queue: 90 s, and five receives before the DLQ.
pub const VISIBILITY_SECONDS: Secs = 90;
pub const MAX_RECEIVES: u32 = 5;
/// The webhook's receipt lease.
pub const RECEIPT_LEASE_SECONDS: Secs = 30;

#[derive(Debug, Clone)]
pub struct JobRec {
    pub id: videojobs_core::model::ids::JobId,
    pub user: String,
    pub cost: i64,
    pub status: JobStatus,
    /// Every status the job has had, oldest first.
    pub history: Vec<JobStatus>,
    pub attempt: u32,
    pub request_id: Option<String>,
    /// The stored video's key, while the job points at it.
    pub output: Option<String>,
    /// Its output was deleted (expired or rejected) and forgotten.
    pub output_deleted: bool,
    pub webhook: bool,
    pub created_at: Secs,
    pub completed_at: Option<Secs>,
    pub task_token: Option<String>,
    /// The token of the task that waits for the review (`ReviewWaits`).
    pub review_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Debit,
    Refund,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub credits: i64,
    pub opened_with: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Pending { until: Secs },
    Done,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: u64,
    pub body: WorkMessage,
    pub visible_at: Secs,
    pub receives: u32,
    /// Received and not yet deleted.
    pub in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueName {
    Work,
    Notify,
}

#[derive(Debug, Clone, Default)]
pub struct Queue {
    pub messages: BTreeMap<u64, Message>,
}

#[derive(Debug, Clone)]
pub struct Execution {
    pub state: &'static str,
    /// The token of the task it waits on, in a token state.
    pub token: Option<String>,
    /// When the current state times out or its wait ends.
    pub timer: Option<Secs>,
    pub ended: bool,
    /// The error a catch put at `$.error` (the give_up message's `error`).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeds,
    /// The file it serves is not a playable video.
    Unusable,
    Fails,
    /// The provider forgets the request (a poll answers 404).
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderState {
    Running,
    Succeeded,
    Unusable,
    Failed,
    Canceled,
    Lost,
}

#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub job: videojobs_core::model::ids::JobId,
    pub state: ProviderState,
    pub finishes_at: Secs,
    pub outcome: Outcome,
}

/// A callback the provider will deliver (again, after a failed answer).
#[derive(Debug, Clone)]
pub struct Callback {
    pub at: Secs,
    pub event_id: String,
    pub request_id: String,
    /// `None`: progress; `Some(state)`: finished so.
    pub finished: Option<ProviderState>,
    pub tries: u32,
}

#[derive(Debug, Clone, Default)]
pub struct World {
    pub now: Secs,
    pub jobs: BTreeMap<String, JobRec>,
    /// Job ids in creation order.
    pub order: Vec<String>,
    pub accounts: BTreeMap<String, Account>,
    pub ledger: Vec<(String, String, Entry, i64)>,
    pub idempotency: BTreeMap<(String, String), String>,
    pub receipts: BTreeMap<String, Receipt>,
    pub owners: BTreeMap<String, String>,
    pub early: BTreeSet<String>,
    /// Object key → kept (approved) or not.
    pub objects: BTreeMap<String, (bool, Secs)>,
    pub queues: BTreeMap<QueueName, Queue>,
    pub next_message: u64,
    pub executions: BTreeMap<String, Execution>,
    pub next_token: u64,
    pub requests: BTreeMap<String, ProviderRequest>,
    pub callbacks: Vec<Callback>,
    pub next_event: u64,
    /// `(job, status, webhook-id)` of every delivered notification.
    pub delivered: Vec<(String, JobStatus, String)>,
    /// The worker's record that a notification was delivered.
    pub notified: BTreeSet<(String, &'static str)>,
    /// The run is draining: no more faults from the outside.
    pub calm: bool,
    /// Failed deliveries so far per `(job, status)`: a client fails a few times at most.
    pub client_failures: BTreeMap<(String, &'static str), u32>,
    pub dead_letters: Vec<String>,
    /// Invariant breaches seen as they happened (a stale submission), with
    /// the known gap they are, if one.
    pub breaches: Vec<(String, Option<&'static str>)>,
    /// What the handlers did that a verbose replay shows (provider calls,
    /// status changes), drained into the trace after every step.
    pub log: Vec<String>,
    /// `(job, attempt)`s a copy resumed (see `GAP_RESUMED_DUPLICATE`).
    pub resumed_attempts: BTreeSet<(String, u32)>,
    /// Notifications a status change owes, and those of them queued.
    pub owed_notifications: BTreeSet<(String, &'static str)>,
    pub queued_notifications: BTreeSet<(String, &'static str)>,
}

/// A number of seconds in the execution's input (`WorkflowInput`).
fn input(path: &str) -> Secs {
    match path {
        "$.retention_seconds" => RETENTION_SECONDS,
        _ => DEADLINE_SECONDS,
    }
}

/// Why a conditional write was refused: where the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Applied,
    StatusWas(JobStatus),
    NotFound,
}

impl World {
    pub fn job(&self, id: &str) -> Option<&JobRec> {
        self.jobs.get(id)
    }

    /// `change_status`: moves the job from `from` to `to` if it is still in
    /// `from` (and in attempt `fence`, when given), refunding in the same
    /// write when the lifecycle says so.
    pub fn change_status(&mut self, id: &str, from: JobStatus, to: JobStatus, fence: Option<u32>, set_attempt: Option<u32>) -> Change {
        let Ok(t) = transition(from, to) else { return Change::StatusWas(from) };
        let Some(job) = self.jobs.get_mut(id) else { return Change::NotFound };
        if job.status != from || fence.is_some_and(|n| job.attempt != n) {
            return Change::StatusWas(job.status);
        }
        job.status = to;
        job.history.push(to);
        let attempt = set_attempt.unwrap_or(job.attempt);
        self.log.push(format!("  store: {id} {from} -> {to} (attempt {attempt})"));
        if let Some(n) = set_attempt {
            job.attempt = n;
        }
        if t.refunds_credits {
            let (user, cost) = (job.user.clone(), job.cost);
            if let Some(account) = self.accounts.get_mut(&user) {
                account.credits += cost;
            }
            self.ledger.push((id.to_owned(), user, Entry::Refund, cost));
        }
        Change::Applied
    }

    pub fn enqueue(&mut self, queue: QueueName, body: WorkMessage, delay: Secs) {
        self.next_message += 1;
        let id = self.next_message;
        let message = Message { id, body, visible_at: self.now + delay, receives: 0, in_flight: false };
        self.queues.entry(queue).or_default().messages.insert(id, message);
    }

    pub fn queue(&mut self, queue: QueueName) -> &mut Queue {
        self.queues.entry(queue).or_default()
    }

    pub fn new_token(&mut self, job: &str) -> String {
        self.next_token += 1;
        format!("tok-{job}-{}", self.next_token)
    }

    /// Enters `state` of the job's execution: sends its message, arms its timer.
    pub fn enter(&mut self, job: &str, state: &'static str) {
        let model = asl::state(state);
        let mut token = None;
        let mut timer = None;
        let mut ended = false;
        let id = self.jobs.get(job).map(|j| j.id.clone());
        let Some(id) = id else { return };
        match model.kind {
            asl::Kind::WaitForToken { message, timeout, .. } => {
                let t = self.new_token(job);
                let body = match message {
                    "submit" => WorkMessage::Submit { job_id: id, task_token: Some(t.clone()), attempt: None },
                    "await_review" => WorkMessage::AwaitReview { job_id: id, task_token: t.clone() },
                    _ => WorkMessage::Poll { job_id: id, task_token: Some(t.clone()), round: None },
                };
                self.enqueue(QueueName::Work, body, 0);
                token = Some(t);
                timer = Some(
                    self.now
                        + match timeout {
                            asl::Timeout::Path(path) => input(path),
                            asl::Timeout::Seconds(s) => s as Secs,
                        },
                );
            }
            asl::Kind::Send { message } => {
                let error = self.executions.get(job).and_then(|e| e.error.clone());
                let body = match message {
                    "expire" => WorkMessage::Expire { job_id: id },
                    _ => WorkMessage::GiveUp { job_id: id, error },
                };
                self.enqueue(QueueName::Work, body, 0);
            }
            asl::Kind::Wait { seconds_path } => timer = Some(self.now + input(seconds_path)),
            asl::Kind::Fail => ended = true,
        }
        let error = self.executions.get(job).and_then(|e| e.error.clone());
        self.executions.insert(job.to_owned(), Execution { state, token, timer, ended, error });
        if let asl::Kind::Send { .. } = model.kind {
            match model.next {
                Some(next) => self.enter(job, next),
                None => self.end(job),
            }
        }
    }

    fn end(&mut self, job: &str) {
        if let Some(e) = self.executions.get_mut(job) {
            e.ended = true;
            e.token = None;
            e.timer = None;
        }
    }

    /// `StartExecution`, named by the job: a second start changes nothing.
    pub fn start_execution(&mut self, job: &str) {
        if !self.executions.contains_key(job) {
            self.enter(job, asl::START);
        }
    }

    pub fn stop_execution(&mut self, job: &str) {
        self.end(job);
    }

    /// A task's answer: `Err(error)` fails it with that error's name. An
    /// answer to a token no execution waits on is ignored, as AWS does.
    pub fn answer(&mut self, token: &str, outcome: Result<(), &str>) {
        let Some((job, state)) =
            self.executions.iter().find(|(_, e)| !e.ended && e.token.as_deref() == Some(token)).map(|(j, e)| (j.clone(), e.state))
        else {
            return;
        };
        let model = asl::state(state);
        match outcome {
            Ok(()) => match model.next {
                Some(next) => self.enter(&job, next),
                None => self.end(&job),
            },
            Err(error) => self.catch(&job, model, error),
        }
    }

    fn catch(&mut self, job: &str, model: &asl::State, error: &str) {
        match asl::catch(model, error) {
            Some(next) => {
                // `ResultPath: $.error`: the give_up message reads the error's name.
                if let Some(e) = self.executions.get_mut(job) {
                    e.error = Some(error.to_owned());
                }
                self.enter(job, next)
            }
            None => self.end(job),
        }
    }

    /// Fires the execution's timer: a token state times out, a wait ends.
    pub fn fire_timer(&mut self, job: &str) {
        let Some(e) = self.executions.get(job).filter(|e| !e.ended) else { return };
        let model = asl::state(e.state);
        match model.kind {
            asl::Kind::WaitForToken { .. } => self.catch(job, model, "States.Timeout"),
            _ => match model.next {
                Some(next) => self.enter(job, next),
                None => self.end(job),
            },
        }
    }

    pub fn new_event_id(&mut self) -> String {
        self.next_event += 1;
        format!("evt{}", self.next_event)
    }
}
