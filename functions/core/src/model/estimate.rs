//! When an in-flight job should be done, and when a client should ask again.
//!
//! The expected time from creation to `completed` is the deployment's own
//! average (the stats keep it, see [`crate::model::stats`]) once enough jobs
//! have completed to mean something, and a rough figure from the video's
//! length before that. The hint to poll again follows the `Retry-After`
//! header (RFC 9110, section 10.2.3), as long-running operations of HTTP
//! APIs use it: longer while the job waits, shorter near its end, and never
//! so short that polling costs more than it tells.

use crate::model::job::Job;
use crate::model::lifecycle::JobStatus;
use time::{Duration, OffsetDateTime};

/// Completions the average needs before it replaces the rough figure.
pub const MIN_SAMPLES: i64 = 10;

/// A late job's estimate stays this far ahead of now.
const LATE_ALLOWANCE: Duration = Duration::seconds(5);

/// Bounds of the poll hint while the job waits (queued, submitted, retrying)…
const WAITING_POLL_SECONDS: (i64, i64) = (5, 30);
/// …and while it is being generated.
const PROCESSING_POLL_SECONDS: (i64, i64) = (2, 15);

/// How long jobs of this deployment take from creation to `completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypicalTime {
    /// Completions counted.
    pub samples: i64,
    /// Their average, in milliseconds.
    pub average_ms: i64,
}

impl TypicalTime {
    /// From the stats' count and sum of times to complete; `None` when too few
    /// jobs have completed for the average to say anything.
    pub fn from_counts(samples: i64, sum_ms: i64) -> Option<Self> {
        (samples >= MIN_SAMPLES && sum_ms > 0).then(|| Self { samples, average_ms: sum_ms / samples })
    }
}

/// What a status answer tells a client about an in-flight job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// When the video should be stored.
    pub completion_at: OffsetDateTime,
    /// When to ask again, in whole seconds (the `Retry-After` header).
    pub poll_after_seconds: u32,
}

/// The estimate for `job` at `now`; `None` once it is no longer in flight.
pub fn estimate(job: &Job, typical: Option<TypicalTime>, now: OffsetDateTime) -> Option<Estimate> {
    if !job.status.is_in_flight() {
        return None;
    }
    let expected = match typical {
        Some(t) => Duration::milliseconds(t.average_ms),
        None => Duration::seconds(job.params.estimated_time_seconds().into()),
    };
    let completion_at = (job.created_at + expected).max(now + LATE_ALLOWANCE);
    let remaining = (completion_at - now).whole_seconds();
    let (low, high) = match job.status {
        JobStatus::Processing => PROCESSING_POLL_SECONDS,
        _ => WAITING_POLL_SECONDS,
    };
    // A quarter of what is left: a few polls over the job's life, more near its end.
    let poll_after_seconds = (remaining / 4).clamp(low, high) as u32;
    Some(Estimate { completion_at, poll_after_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::JobId;
    use crate::model::job::JobParams;
    use crate::model::request::{AspectRatio, Resolution};

    fn job(status: JobStatus, created_seconds_ago: i64, now: OffsetDateTime) -> Job {
        let params = JobParams::TextToVideo { duration_seconds: 5, aspect_ratio: AspectRatio::Landscape, resolution: Resolution::Hd };
        let created = now - Duration::seconds(created_seconds_ago);
        let mut job = Job::accepted(JobId::generate(), "user-1".parse().unwrap(), params, "local".parse().unwrap(), 10, created);
        job.status = status;
        job
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn a_finished_job_has_no_estimate() {
        for status in
            [JobStatus::Completed, JobStatus::Approved, JobStatus::Rejected, JobStatus::Failed, JobStatus::Canceled, JobStatus::Expired]
        {
            assert_eq!(estimate(&job(status, 10, now()), None, now()), None, "{status}");
        }
    }

    #[test]
    fn without_enough_completions_the_estimate_comes_from_the_videos_length() {
        let job = job(JobStatus::Queued, 0, now());
        let e = estimate(&job, TypicalTime::from_counts(MIN_SAMPLES - 1, 1_000_000), now()).unwrap();
        assert_eq!(e.completion_at, now() + Duration::seconds(job.params.estimated_time_seconds().into()));
    }

    #[test]
    fn with_enough_completions_the_estimate_is_the_deployments_average() {
        let typical = TypicalTime::from_counts(20, 20 * 90_000);
        let e = estimate(&job(JobStatus::Submitted, 30, now()), typical, now()).unwrap();
        assert_eq!(e.completion_at, now() + Duration::seconds(60));
    }

    #[test]
    fn a_late_job_is_expected_a_little_after_now_not_in_the_past() {
        let e = estimate(&job(JobStatus::Processing, 3_600, now()), None, now()).unwrap();
        assert_eq!(e.completion_at, now() + LATE_ALLOWANCE);
        assert_eq!(e.poll_after_seconds, PROCESSING_POLL_SECONDS.0 as u32);
    }

    #[test]
    fn a_waiting_job_is_polled_less_often_than_one_near_its_end() {
        let typical = TypicalTime::from_counts(100, 100 * 600_000);
        let waiting = estimate(&job(JobStatus::Queued, 0, now()), typical, now()).unwrap();
        let near_end = estimate(&job(JobStatus::Processing, 590, now()), typical, now()).unwrap();
        assert_eq!(waiting.poll_after_seconds, WAITING_POLL_SECONDS.1 as u32);
        assert_eq!(near_end.poll_after_seconds, PROCESSING_POLL_SECONDS.0 as u32);
    }

    #[test]
    fn the_hint_stays_within_its_bounds_for_every_in_flight_status() {
        for status in [JobStatus::Queued, JobStatus::Submitted, JobStatus::Retrying, JobStatus::Processing] {
            for age in [0, 10, 60, 600, 86_400] {
                let e = estimate(&job(status, age, now()), TypicalTime::from_counts(50, 50 * 120_000), now()).unwrap();
                assert!((2..=30).contains(&e.poll_after_seconds), "{status} {age}: {}", e.poll_after_seconds);
                assert!(e.completion_at > now(), "{status} {age}");
            }
        }
    }

    #[test]
    fn too_few_or_empty_counts_give_no_typical_time() {
        assert_eq!(TypicalTime::from_counts(0, 0), None);
        assert_eq!(TypicalTime::from_counts(MIN_SAMPLES, 0), None);
        assert_eq!(TypicalTime::from_counts(MIN_SAMPLES, 10_000), Some(TypicalTime { samples: MIN_SAMPLES, average_ms: 1_000 }));
    }
}
