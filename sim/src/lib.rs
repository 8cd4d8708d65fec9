//! A deterministic simulator of the whole pipeline (see docs/SIMULATION.md):
//! core's own code — the worker's messages, the webhook's callbacks, the
//! API's calls and the scheduled check — over the in-memory adapters, with
//! the state machine, the queues, the provider, crashes and the clock all
//! chosen by one seeded RNG on one thread, and the invariants checked after
//! every step. One seed replays one run exactly.

pub mod asl;
pub mod gated;
pub mod rng;
mod run;

pub use run::{run, small_mp4};

/// A status change's notification is queued by a write of its own after
/// the change (`NotifyingJobs`): a writer that dies in between, or a queue
/// that refuses three times, loses it. Not small to fix (an outbox written
/// with the change); a run that loses one this way counts as this gap.
pub const GAP_NOTIFICATION_NOT_QUEUED: &str = "notification-not-queued";

/// How a run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub jobs: usize,
    /// The first invariant that broke, at which step (a bug, or a known gap).
    pub failure: Option<String>,
    /// The known gap the failure is; `None`: a bug.
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
