//! The time every in-memory adapter reads: moved only by the test, or (for
//! tests that run the handlers in real time, where the core reads the system
//! clock) following the system's time.
//!
//! On a thread whose time the core simulates (`determinism::simulate`,
//! started at the same instant), the core's clock follows this one, so that
//! the times the services stamp and the times the adapters compare agree.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// A clock shared by clones; it starts at 2026-01-01T00:00:00Z unless told.
#[derive(Clone, Debug)]
pub struct VirtualClock {
    now: Arc<Mutex<OffsetDateTime>>,
    follows_the_system: bool,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::starting_at(time::macros::datetime!(2026-01-01 00:00:00 UTC))
    }
}

impl VirtualClock {
    pub fn starting_at(at: OffsetDateTime) -> Self {
        Self { now: Arc::new(Mutex::new(at)), follows_the_system: false }
    }

    /// A clock at the system's time, which still never goes back: for a
    /// world whose handlers stamp their records with the system's time (the
    /// integration tests' in-memory world), so that leases, delays and TTLs
    /// compare with the same time the records carry.
    pub fn following_the_system() -> Self {
        Self { now: Arc::new(Mutex::new(OffsetDateTime::now_utc())), follows_the_system: true }
    }

    pub fn now(&self) -> OffsetDateTime {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if self.follows_the_system {
            *now = (*now).max(OffsetDateTime::now_utc());
        }
        *now
    }

    /// Moves time forward (never back: leases and timeouts assume it).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
        videojobs_core::model::determinism::set_now(*now);
    }

    /// Moves time to `at` if it is later; an earlier `at` changes nothing.
    pub fn advance_to(&self, at: OffsetDateTime) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if at > *now {
            *now = at;
        }
        videojobs_core::model::determinism::set_now(*now);
    }
}
