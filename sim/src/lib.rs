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
pub mod scale;

pub use run::{run, small_mp4};
pub use scale::{run_scale, ScaleOptions, ScaleReport};

/// How a run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub jobs: usize,
    /// The first invariant that broke, at which step.
    pub failure: Option<String>,
    /// What happened, step by step (with `verbose`).
    pub trace: Vec<String>,
}

impl Report {
    /// Whether the run found a bug (an invariant that broke).
    pub fn found_bug(&self) -> bool {
        self.failure.is_some()
    }

    /// The command that replays this run, printed for a failing seed.
    pub fn replay_command(&self) -> String {
        format!("cargo run -p videojobs-sim --release --bin simulate -- --seed {} --verbose", self.seed)
    }
}
