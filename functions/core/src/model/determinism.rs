//! The two inputs a deterministic simulation must own that code otherwise
//! takes from the environment: the time and the randomness of new ids.
//!
//! Production never sets them: [`now`] reads the system clock and ids draw
//! from the operating system's randomness. A simulation runs on one thread
//! and sets both for that thread ([`simulate`]), so that one seed replays one
//! run exactly; the guard it gets back puts the thread back as it was.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use time::OffsetDateTime;

thread_local! {
    static CLOCK: Cell<Option<OffsetDateTime>> = const { Cell::new(None) };
    static ENTROPY: RefCell<Option<StdRng>> = const { RefCell::new(None) };
    /// The last id's parts on a simulated thread (a run starts afresh).
    static LAST_ID: Cell<Option<(u64, u128)>> = const { Cell::new(None) };
}

/// The last id's parts in this process, off simulated threads.
static LAST_ID_IN_PROCESS: std::sync::Mutex<Option<(u64, u128)>> = std::sync::Mutex::new(None);

/// This thread's time and ids are simulated until the guard is dropped.
#[must_use = "the simulation ends when the guard is dropped"]
pub struct Simulated(());

impl Drop for Simulated {
    fn drop(&mut self) {
        CLOCK.set(None);
        ENTROPY.with_borrow_mut(|rng| *rng = None);
        LAST_ID.set(None);
    }
}

/// Simulates this thread's clock from `start` and its ids from `seed`.
pub fn simulate(start: OffsetDateTime, seed: u64) -> Simulated {
    CLOCK.set(Some(start));
    ENTROPY.with_borrow_mut(|rng| *rng = Some(StdRng::seed_from_u64(seed)));
    LAST_ID.set(None);
    Simulated(())
}

/// Moves the simulated clock to `at` (never backwards: a later `at` only).
pub fn set_now(at: OffsetDateTime) {
    if let Some(now) = CLOCK.get() {
        CLOCK.set(Some(now.max(at)));
    }
}

/// Moves the simulated clock forward by `by`.
pub fn advance(by: std::time::Duration) {
    if let Some(now) = CLOCK.get() {
        CLOCK.set(Some(now + by));
    }
}

/// Whether this thread's clock is simulated: code that would wait moves the
/// clock instead (a simulation's executor drives no timers).
pub fn simulated() -> bool {
    CLOCK.get().is_some()
}

/// Now: the simulated time on a simulated thread, the system's otherwise.
pub fn now() -> OffsetDateTime {
    CLOCK.get().unwrap_or_else(OffsetDateTime::now_utc)
}

/// Now in whole milliseconds since 1970, as a ULID takes it.
pub fn now_millis() -> u64 {
    u64::try_from(now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// 128 random bits: from the simulation's seed on a simulated thread.
pub fn random_u128() -> u128 {
    ENTROPY.with_borrow_mut(|rng| match rng {
        Some(seeded) => seeded.random(),
        None => rand::rng().random(),
    })
}

/// The milliseconds and 80 random bits of a new ULID, monotonic within the
/// process: an id made in the same millisecond as the one before it (or
/// after the clock stepped back) is that one plus one. Ids sort in the order
/// they were made, so a listing sorted by time and then id (a user's jobs)
/// is in creation order even for jobs made within one millisecond.
pub fn ulid_parts() -> (u64, u128) {
    const RANDOM_BITS: u128 = (1 << 80) - 1;
    let next = |last: Option<(u64, u128)>| {
        let now = now_millis();
        match last {
            Some((millis, random)) if millis >= now && random < RANDOM_BITS => (millis, random + 1),
            _ => (now, random_u128() & RANDOM_BITS),
        }
    };
    if simulated() {
        let parts = next(LAST_ID.get());
        LAST_ID.set(Some(parts));
        return parts;
    }
    let mut last = LAST_ID_IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let parts = next(*last);
    *last = Some(parts);
    parts
}

/// A uniform draw in `[0, 1)`: from the simulation's seed on a simulated thread.
pub fn random_unit() -> f64 {
    // The top 53 bits: exactly the precision of an f64 in [0, 1).
    (random_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Fills `bytes` at random: from the simulation's seed on a simulated thread.
pub fn fill_random(bytes: &mut [u8]) {
    ENTROPY.with_borrow_mut(|rng| match rng {
        Some(seeded) => seeded.fill(bytes),
        None => rand::rng().fill(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_simulated_thread_reads_the_simulated_clock_and_the_system_one_after() {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        {
            let _simulated = simulate(start, 7);
            assert!(simulated());
            assert_eq!(now(), start);
            advance(Duration::from_secs(5));
            assert_eq!(now(), start + Duration::from_secs(5));
            set_now(start);
            assert_eq!(now(), start + Duration::from_secs(5), "the clock never goes back");
        }
        assert!(!simulated());
        assert!(now() > start + Duration::from_secs(1_000_000_000));
    }

    #[test]
    fn ids_made_within_one_millisecond_follow_each_other_and_a_new_millisecond_draws_afresh() {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let _simulated = simulate(start, 3);
        let first = ulid_parts();
        let second = ulid_parts();
        assert_eq!(second, (first.0, first.1 + 1));
        advance(Duration::from_millis(1));
        let third = ulid_parts();
        assert_eq!(third.0, first.0 + 1);
        assert_ne!(third.1, second.1 + 1, "a new millisecond draws new random bits");
    }

    #[test]
    fn ids_made_off_simulated_threads_sort_in_the_order_they_were_made() {
        let made: Vec<(u64, u128)> = (0..1_000).map(|_| ulid_parts()).collect();
        assert!(made.windows(2).all(|pair| pair[0] < pair[1]), "each id sorts after the one before it");
    }

    #[test]
    fn one_seed_gives_the_same_randomness_and_another_seed_another() {
        let draw = |seed| {
            let _simulated = simulate(OffsetDateTime::UNIX_EPOCH, seed);
            (random_u128(), random_u128())
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
