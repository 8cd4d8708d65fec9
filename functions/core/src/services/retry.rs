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
    /// How many attempts in all, the first included.
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
                pause(backoff.wait(n)).await;
                n += 1;
            }
        }
    }
}

/// Waits `by`, or on a simulated thread moves its clock by `by` at once: a
/// simulation polls futures on its own executor, which drives no timers.
async fn pause(by: Duration) {
    if crate::model::determinism::simulated() {
        crate::model::determinism::advance(by);
    } else {
        tokio::time::sleep(by).await;
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

    #[test]
    fn on_a_simulated_thread_a_wait_moves_the_clock_and_needs_no_timer() {
        use crate::model::determinism;
        let start = time::OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let _simulated = determinism::simulate(start, 1);
        let tries = Cell::new(0);
        // Polled once with no runtime at all: a tokio timer would panic here.
        let answer: Result<u32, &str> = futures_poll_once(retry(Backoff::linear(3, Duration::from_secs(2)), |n| {
            tries.set(tries.get() + 1);
            async move {
                if n < 2 {
                    Err(Failed::Retry("busy"))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(answer, Ok(2));
        assert_eq!(tries.get(), 3);
        assert_eq!(determinism::now(), start + Duration::from_secs(2 + 4), "the two waits, on the simulated clock");
    }

    /// Polls `future` once on this thread, with no runtime; it must be ready.
    fn futures_poll_once<T>(future: impl std::future::Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }
}
