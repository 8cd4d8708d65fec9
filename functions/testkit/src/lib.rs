//! In-memory adapters of every port of `videojobs-core`, a scripted
//! provider, and the contract suite that both they and the AWS adapters pass
//! (`contract`), so that the two cannot drift apart.
//!
//! Tests only: this crate is a dev-dependency, never linked by a function.
//!
//! One [`Memory`] holds the whole world (the jobs table and its indexes, the
//! queues, the bucket, the executions and their task tokens) behind one
//! `std::sync::Mutex`: a transaction is one critical section, and every
//! condition is checked in the critical section of its write. Time is a
//! [`VirtualClock`] the test moves; nothing here reads the wall clock,
//! sleeps, or draws a random number, so a simulator that drives it is
//! deterministic. What is modelled and what is not: `docs/LOCAL.md`.

pub mod clock;
pub mod contract;
mod dns; // and the client endpoints notifications are posted to
pub mod faults;
mod objects;
pub mod provider;
mod queues;
pub mod splitmix;
mod state;
mod store;
pub mod tally;
mod workflows;

pub use clock::VirtualClock;
pub use dns::Posted;
pub use faults::{Call, Faults, Moment};
pub use objects::{StoredObject, WebResource, RETENTION_TAG};
pub use provider::ScriptedProvider;
pub use queues::{QueueName, Received, WorkQueueHandle};
pub use workflows::{Execution, ExecutionStatus, TaskAnswer};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use videojobs_core::StoreError;

/// The in-memory world: one value implements every port (clone it freely,
/// clones share the state).
#[derive(Clone)]
pub struct Memory {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<state::State>,
    clock: VirtualClock,
    faults: Faults,
    gate: Mutex<Option<Arc<dyn Gate>>>,
}

/// A future a [`Gate`] answers with.
pub type Pause = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where a simulator takes hold of the port calls: every call awaits
/// [`Gate::before`] before it acts and [`Gate::after`] after it acted (or
/// failed), so a simulator polling the handlers' futures on its own executor
/// chooses which handler goes on at each call, and makes one "die" right
/// after a write by answering `after` with a future that never completes (the
/// handler's future is then dropped). None is installed unless a simulator
/// installs one ([`Memory::set_gate`]): a call then runs straight through.
pub trait Gate: Send + Sync {
    fn before(&self, op: &'static str) -> Pause;
    /// `acted`: the call changed the world (it succeeded, or a fault struck after it wrote).
    fn after(&self, op: &'static str, acted: bool) -> Pause;
}

impl Default for Memory {
    fn default() -> Self {
        Self::new(VirtualClock::default())
    }
}

impl Memory {
    /// A world that reads `clock` for every lease, delay, timeout and TTL.
    pub fn new(clock: VirtualClock) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state::State::default()),
                clock,
                faults: Faults::default(),
                gate: Mutex::new(None),
            }),
        }
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.shared.clock
    }

    /// Every port call from now on passes through `gate` (see [`Gate`]).
    pub fn set_gate(&self, gate: Arc<dyn Gate>) {
        *self.shared.gate.lock().unwrap_or_else(|p| p.into_inner()) = Some(gate);
    }

    fn gate(&self) -> Option<Arc<dyn Gate>> {
        self.shared.gate.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the whole world at once (a simulator's invariants).
    pub fn inspect<T>(&self, read: impl FnOnce(&Snapshot<'_>) -> T) -> T {
        let state = self.lock();
        read(&Snapshot { state: &state })
    }

    /// Where port calls are made to fail (see [`Faults`]).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// How long a write takes to reach the job indexes (`by_user`,
    /// `active_by_user`, `by_provider_request`, `review_queue`,
    /// `stuck_watch`): DynamoDB's global secondary indexes are eventually
    /// consistent. None by default; [`Memory::propagate_indexes`] catches up at once.
    pub fn set_index_lag(&self, lag: Duration) {
        self.lock().index.lag = lag;
    }

    /// Brings every index up to date with the table now, whatever the lag.
    pub fn propagate_indexes(&self) {
        self.lock().index.propagate_all();
    }

    /// Deletes every item whose TTL has passed, as DynamoDB's background
    /// sweep does some time after (never exactly at) expiry: the test says when.
    pub fn sweep_expired(&self) {
        let now = self.now();
        self.lock().sweep_expired(now);
    }

    /// The job writes as the functions have them: every status change that
    /// lands queues its client notification on [`QueueName::Notify`].
    pub fn notifying_jobs(&self) -> Arc<dyn videojobs_core::ports::JobWrites> {
        Arc::new(videojobs_core::services::notifying::NotifyingJobs::new(Arc::new(self.clone()), Arc::new(self.queue(QueueName::Notify))))
    }

    /// The API's services wired to this world alone (the work queue is
    /// [`QueueName::Work`]; DNS answers what [`Memory::resolve_to`] says).
    pub fn services(&self, settings: videojobs_core::model::settings::Settings) -> videojobs_core::services::Services {
        videojobs_core::services::Services {
            writes: self.notifying_jobs(),
            reads: Arc::new(self.clone()),
            listings: Arc::new(self.clone()),
            keys: Arc::new(self.clone()),
            accounts: Arc::new(self.clone()),
            uploads: Arc::new(self.clone()),
            media: Arc::new(self.clone()),
            workflows: Arc::new(self.clone()),
            work: Arc::new(self.queue(QueueName::Work)),
            review_queue: Arc::new(self.clone()),
            webhook_secrets: Arc::new(self.clone()),
            resolver: Arc::new(self.clone()),
            poster: Arc::new(self.clone()),
            notification_log: Arc::new(self.clone()),
            delivery_log: Arc::new(self.clone()),
            endpoints: Arc::new(self.clone()),
            redeliveries: Arc::new(self.queue(QueueName::Notify)),
            stats: Arc::new(self.clone()),
            progress: Arc::new(self.clone()),
            rate_limiter: Arc::new(self.clone()),
            kept: Arc::new(self.clone()),
            review_waits: Arc::new(self.clone()),
            tasks: Arc::new(self.clone()),
            typical_times: Arc::default(),
            settings,
        }
    }

    /// The pipeline's rules wired to this world alone, as the worker has them.
    pub fn pipeline(
        &self,
        settings: videojobs_core::model::settings::Settings,
        providers: videojobs_core::ports::Providers,
        callback_base_url: &str,
    ) -> videojobs_core::services::pipeline::Pipeline {
        videojobs_core::services::pipeline::Pipeline {
            writes: self.notifying_jobs(),
            reads: Arc::new(self.clone()),
            tokens: Arc::new(self.clone()),
            uploads: Arc::new(self.clone()),
            media: Arc::new(self.clone()),
            outputs: Arc::new(self.clone()),
            kept: Arc::new(self.clone()),
            tasks: Arc::new(self.clone()),
            review_waits: Arc::new(self.clone()),
            providers,
            switches: Arc::new(self.clone()),
            callback_base_url: callback_base_url.to_owned(),
            notifier: videojobs_core::services::pipeline::Notifier {
                secrets: Arc::new(self.clone()),
                deliveries: Arc::new(self.clone()),
                queue: Arc::new(self.queue(QueueName::Notify)),
                resolver: Arc::new(self.clone()),
                poster: Arc::new(self.clone()),
                endpoints: Arc::new(self.clone()),
            },
            stats: Arc::new(self.clone()),
            progress: Arc::new(self.clone()),
            queue: Arc::new(self.queue(QueueName::Work)),
            requests: Arc::new(self.clone()),
            dead_letters: Arc::new(self.clone()),
            workflows: Arc::new(self.clone()),
            settings,
        }
    }

    /// The provider callbacks' rules wired to this world alone, as the webhook has them.
    pub fn callbacks(&self, providers: videojobs_core::ports::Providers) -> videojobs_core::services::callbacks::Callbacks {
        videojobs_core::services::callbacks::Callbacks {
            writes: self.notifying_jobs(),
            reads: Arc::new(self.clone()),
            ledger: Arc::new(self.clone()),
            queue: Arc::new(self.queue(QueueName::Work)),
            providers,
            stats: Arc::new(self.clone()),
            progress: Arc::new(self.clone()),
            requests: Arc::new(self.clone()),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.shared.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, state::State> {
        // A test that panicked while holding the lock already failed; its state is still readable.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A call to the outside (a client's endpoint): a point where the gate
    /// may pause the caller, not a write of ours.
    async fn pause_outside(&self, op: &'static str) {
        if let Some(gate) = self.gate() {
            gate.before(op).await;
        }
    }

    /// Runs one port call through the gate, if one is installed (see [`Gate`]).
    async fn call<T>(
        &self,
        op: &'static str,
        body: impl FnOnce(&mut state::State, OffsetDateTime) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(gate) = self.gate() else { return self.call_now(op, body) };
        gate.before(op).await;
        let (result, acted) = self.call_acting(op, body);
        gate.after(op, acted).await;
        result
    }

    /// Runs one port call: the faults are consulted before and after, the
    /// body runs in one critical section with the clock's `now`.
    fn call_now<T>(
        &self,
        op: &'static str,
        body: impl FnOnce(&mut state::State, OffsetDateTime) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.call_acting(op, body).0
    }

    /// As [`Memory::call_now`], and whether the body ran to success (its
    /// effect stays, even when a fault after it loses the answer).
    fn call_acting<T>(
        &self,
        op: &'static str,
        body: impl FnOnce(&mut state::State, OffsetDateTime) -> Result<T, StoreError>,
    ) -> (Result<T, StoreError>, bool) {
        let n = match self.shared.faults.enter(op, Moment::Before) {
            Ok(n) => n,
            Err(err) => return (Err(err), false),
        };
        let now = self.now();
        let result = {
            let mut state = self.lock();
            state.index.propagate_due(now);
            body(&mut state, now)
        };
        let acted = result.is_ok();
        if acted {
            if let Err(err) = self.shared.faults.check(op, n, Moment::AfterWrite) {
                return (Err(err), true);
            }
        }
        (result, acted)
    }
}

/// The whole world read at once, under the lock (see [`Memory::inspect`]):
/// what a simulator's invariants check after every step.
pub struct Snapshot<'a> {
    state: &'a state::State,
}

impl Snapshot<'_> {
    /// Every job, in id order, and whether its credits were refunded.
    pub fn jobs(&self) -> impl Iterator<Item = (&videojobs_core::model::job::Job, bool)> {
        self.state.jobs.values().map(|stored| (&stored.job, stored.refunded))
    }

    /// The job's events, oldest first.
    pub fn events(&self, id: &videojobs_core::model::ids::JobId) -> &[videojobs_core::model::job::JobEvent] {
        self.state.events.get(id).map_or(&[], Vec::as_slice)
    }

    /// An account's credits, if it was opened.
    pub fn credits(&self, user: &videojobs_core::model::ids::UserId) -> Option<i64> {
        self.state.accounts.get(user).map(|account| account.credits)
    }

    /// Every object in the bucket, by key.
    pub fn objects(&self) -> impl Iterator<Item = (&String, &StoredObject)> {
        self.state.bucket.objects.iter()
    }

    /// The review wait's token the worker stored for the job.
    pub fn review_token(&self, id: &videojobs_core::model::ids::JobId) -> Option<&str> {
        self.state.review_tokens.get(id).map(String::as_str)
    }
}
