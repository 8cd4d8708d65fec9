//! The one way the code tries again: a bounded number of attempts with a
//! growing wait between them, for work that failed in a way that may pass on
//! its own (a transaction that conflicted with another, a record a moment
//! from visible, a queue that refused a send). Retries that must outlive the
//! process (a busy provider, a client endpoint) go through the queue instead.

use std::future::Future;
use std::time::Duration;

/// How many attempts, and the waits between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    /// The wait after the first attempt; the `n`th wait is `n` times it.
    pub step: Duration,
    /// Whether each wait is drawn from `[1 ms, wait]`, to spread writers racing for one item.
    pub jitter: bool,
}

impl Backoff {
    /// Waits of `step`, 2·`step`, 3·`step`…
    pub const fn linear(attempts: u32, step: Duration) -> Self {
        Self { attempts, step, jitter: false }
    }

    /// As [`Backoff::linear`], each wait drawn at random below its bound.
    pub const fn jittered(attempts: u32, step: Duration) -> Self {
        Self { attempts, step, jitter: true }
    }

    /// The wait after attempt `attempt` (0-based).
    pub fn wait(&self, attempt: u32) -> Duration {
        let bound = self.step.saturating_mul(attempt.saturating_add(1));
        if !self.jitter {
            return bound;
        }
        let millis = bound.as_millis().max(1) as f64;
        Duration::from_millis((millis * crate::model::determinism::random_unit()).ceil().max(1.0) as u64)
    }
}

/// Why an attempt did not finish the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed<E> {
    /// It may pass: try again after the wait (this error is the answer if the attempts run out).
    Retry(E),
    /// It will not pass: answer this at once.
    Stop(E),
}

/// Runs `attempt(n)` for n = 0, 1, … until it finishes, stops, or the
/// attempts run out (then the last `Retry` error is the answer).
pub async fn retry<T, E, F, Fut>(backoff: Backoff, mut attempt: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Failed<E>>>,
{
    let mut n = 0;
    loop {
        match attempt(n).await {
            Ok(done) => return Ok(done),
            Err(Failed::Stop(err)) => return Err(err),
            Err(Failed::Retry(err)) if n + 1 >= backoff.attempts => return Err(err),
            Err(Failed::Retry(_)) => {
                tokio::time::sleep(backoff.wait(n)).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn linear_waits_grow_by_one_step_and_jittered_ones_stay_below_that() {
        let linear = Backoff::linear(5, Duration::from_millis(25));
        assert_eq!(linear.wait(0), Duration::from_millis(25));
        assert_eq!(linear.wait(3), Duration::from_millis(100));
        let jittered = Backoff::jittered(5, Duration::from_millis(10));
        for n in 0..5 {
            let wait = jittered.wait(n);
            assert!(wait >= Duration::from_millis(1) && wait <= Duration::from_millis(10 * (u64::from(n) + 1)), "{wait:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn it_tries_until_done_and_no_more() {
        let tries = Cell::new(0);
        let answer: Result<u32, &str> = retry(Backoff::linear(5, Duration::from_millis(10)), |n| {
            tries.set(tries.get() + 1);
            async move {
                if n < 2 {
                    Err(Failed::Retry("busy"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(answer, Ok(2));
        assert_eq!(tries.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn it_answers_the_last_error_when_the_attempts_run_out_and_stops_at_once_when_told() {
        let tries = Cell::new(0);
        let out_of_attempts: Result<(), String> = retry(Backoff::linear(3, Duration::from_millis(10)), |n| {
            tries.set(tries.get() + 1);
            async move { Err(Failed::Retry(format!("busy {n}"))) }
        })
        .await;
        assert_eq!(out_of_attempts, Err("busy 2".to_owned()));
        assert_eq!(tries.get(), 3);
        let stopped: Result<(), &str> = retry(Backoff::linear(3, Duration::from_millis(10)), |_| async { Err(Failed::Stop("no")) }).await;
        assert_eq!(stopped, Err("no"));
    }
}
