//! The deployment's typical time to complete, for the estimates status
//! answers give (see [`crate::model::estimate`]): read from the stats'
//! counters at most once a minute per Lambda instance, so that a status read
//! costs no more reads than it did.

use crate::model::estimate::TypicalTime;
use crate::model::stats::counter;
use crate::ports::StatsStore;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one read of the counters serves the estimates.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// The typical time, read from the counters when the last read is stale.
#[derive(Debug, Default)]
pub struct TypicalTimes {
    last: Mutex<Option<(Instant, Option<TypicalTime>)>>,
}

impl TypicalTimes {
    /// The typical time as of the last read, reading the counters again when
    /// that read is older than [`REFRESH_EVERY`]. A failed read serves what
    /// was read before (or the rough figure): an estimate never fails a status read.
    pub async fn get(&self, stats: &dyn StatsStore) -> Option<TypicalTime> {
        let cached = *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, typical)) = cached {
            if at.elapsed() < REFRESH_EVERY {
                return typical;
            }
        }
        let typical = match stats.counters().await {
            Ok(counters) => {
                let get = |name: &str| counters.get(name).copied().unwrap_or(0);
                TypicalTime::from_counts(get(counter::COMPLETED_COUNT), get(counter::COMPLETED_MS_SUM))
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not read the typical time to complete; estimating from the video's length");
                cached.and_then(|(_, typical)| typical)
            }
        };
        *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((Instant::now(), typical));
        typical
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::StoreError;
    use crate::model::lifecycle::JobStatus;
    use crate::model::stats::{Counters, StuckPage};
    use std::sync::atomic::{AtomicU32, Ordering};
    use time::OffsetDateTime;

    struct CountingStats {
        reads: AtomicU32,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl StatsStore for CountingStats {
        async fn counters(&self) -> Result<Counters, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(Counters::from([(counter::COMPLETED_COUNT.to_owned(), 20), (counter::COMPLETED_MS_SUM.to_owned(), 20 * 45_000)]))
        }
        async fn stuck_jobs(&self, _: JobStatus, _: OffsetDateTime, _: u32) -> Result<StuckPage, StoreError> {
            Ok(StuckPage::default())
        }
        async fn count_duplicate_callback(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_counters_are_read_once_for_many_status_reads_within_a_minute() {
        let stats = CountingStats { reads: AtomicU32::new(0), fail: false };
        let times = TypicalTimes::default();
        for _ in 0..50 {
            assert_eq!(times.get(&stats).await, Some(TypicalTime { samples: 20, average_ms: 45_000 }));
        }
        assert_eq!(stats.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn counters_that_cannot_be_read_give_no_typical_time_and_no_error() {
        let stats = CountingStats { reads: AtomicU32::new(0), fail: true };
        assert_eq!(TypicalTimes::default().get(&stats).await, None);
    }
}
