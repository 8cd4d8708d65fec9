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
mod state;
mod store;
mod workflows;

pub use clock::VirtualClock;
pub use dns::Posted;
pub use faults::{Call, Faults, Moment};
pub use objects::{StoredObject, WebResource};
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
}

impl Default for Memory {
    fn default() -> Self {
        Self::new(VirtualClock::default())
    }
}

impl Memory {
    /// A world that reads `clock` for every lease, delay, timeout and TTL.
    pub fn new(clock: VirtualClock) -> Self {
        Self { shared: Arc::new(Shared { state: Mutex::new(state::State::default()), clock, faults: Faults::default() }) }
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.shared.clock
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

    /// The job store as the functions have it: every status change that
    /// lands queues its client notification on [`QueueName::Notify`].
    pub fn notifying_jobs(&self) -> Arc<dyn videojobs_core::ports::JobStore> {
        Arc::new(videojobs_core::services::notifying::NotifyingJobs::new(Arc::new(self.clone()), Arc::new(self.queue(QueueName::Notify))))
    }

    /// The API's services wired to this world alone (the work queue is
    /// [`QueueName::Work`]; DNS answers what [`Memory::resolve_to`] says).
    pub fn services(&self, settings: videojobs_core::model::settings::Settings) -> videojobs_core::services::Services {
        videojobs_core::services::Services {
            jobs: self.notifying_jobs(),
            keys: Arc::new(self.clone()),
            accounts: Arc::new(self.clone()),
            uploads: Arc::new(self.clone()),
            media: Arc::new(self.clone()),
            workflows: Arc::new(self.clone()),
            work: Arc::new(self.queue(QueueName::Work)),
            review_queue: Arc::new(self.clone()),
            webhook_secrets: Arc::new(self.clone()),
            resolver: Arc::new(self.clone()),
            stats: Arc::new(self.clone()),
            progress: Arc::new(self.clone()),
            rate_limiter: Arc::new(self.clone()),
            kept: Arc::new(self.clone()),
            review_waits: Arc::new(self.clone()),
            tasks: Arc::new(self.clone()),
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
            jobs: self.notifying_jobs(),
            uploads: Arc::new(self.clone()),
            media: Arc::new(self.clone()),
            outputs: Arc::new(self.clone()),
            tasks: Arc::new(self.clone()),
            review_waits: Arc::new(self.clone()),
            providers,
            failover: settings.failover.clone(),
            switches: Arc::new(self.clone()),
            callback_base_url: callback_base_url.to_owned(),
            retention_seconds: settings.retention_seconds,
            presign_ttl_seconds: settings.presign_ttl_seconds,
            notifier: videojobs_core::services::pipeline::notify::Notifier {
                secrets: Arc::new(self.clone()),
                deliveries: Arc::new(self.clone()),
                queue: Arc::new(self.queue(QueueName::Notify)),
                resolver: Arc::new(self.clone()),
                poster: Arc::new(self.clone()),
                policy: settings.limits.webhook_policy(),
                schedule: settings.notify_retry_schedule.clone(),
            },
            stats: Arc::new(self.clone()),
            stuck_after_seconds: settings.stuck_after_seconds,
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
            jobs: self.notifying_jobs(),
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

    /// Runs one port call: the faults are consulted before and after, the
    /// body runs in one critical section with the clock's `now`.
    fn call<T>(
        &self,
        op: &'static str,
        body: impl FnOnce(&mut state::State, OffsetDateTime) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.shared.faults.enter(op, Moment::Before)?;
        let now = self.now();
        let result = {
            let mut state = self.lock();
            state.index.propagate_due(now);
            body(&mut state, now)
        };
        if result.is_ok() {
            self.shared.faults.check(op, n, Moment::AfterWrite)?;
        }
        result
    }
}
