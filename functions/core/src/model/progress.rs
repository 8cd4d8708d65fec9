//! What the provider last said about a job it is still working on (its queue
//! position, or that it is generating), shown to users as `progress_detail`.
//! Forward-only, like progress: a detail is recorded only while the job is in
//! the matching status (`queued` only while `submitted`; `processing` while
//! `submitted` or `processing`, so a late "queued" cannot follow "processing")
//! and only if it was observed after the one stored.

use crate::model::lifecycle::JobStatus;
use crate::model::timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where the provider has the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Accepted, waiting its turn.
    Queued,
    /// Being generated.
    Processing,
}

/// The provider's last word on a job in flight, kept on the job item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressDetail {
    /// Whether the provider has the job waiting or generating.
    pub stage: Stage,
    /// Jobs ahead of this one (0: next), when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// When the provider said it (callback received, or poll answered).
    #[serde(with = "timestamp")]
    pub observed_at: OffsetDateTime,
}

impl ProgressDetail {
    /// The statuses a job may be in for this detail to be recorded.
    pub fn allowed_statuses(&self) -> &'static [JobStatus] {
        match self.stage {
            Stage::Queued => &[JobStatus::Submitted],
            Stage::Processing => &[JobStatus::Submitted, JobStatus::Processing],
        }
    }

    /// Whether this detail may replace `stored` on a job in `status`: the rule
    /// the store's conditional write carries, spelled out for the tests.
    pub fn may_replace(&self, status: JobStatus, stored: Option<&ProgressDetail>) -> bool {
        self.allowed_statuses().contains(&status) && stored.is_none_or(|s| s.observed_at < self.observed_at)
    }

    /// The sentence users see.
    pub fn message(&self) -> String {
        match (self.stage, self.queue_position) {
            (Stage::Queued, Some(0)) => "Next in the provider's queue".into(),
            (Stage::Queued, Some(n)) => format!("Waiting in the provider's queue (position {n})"),
            (Stage::Queued, None) => "Waiting in the provider's queue".into(),
            (Stage::Processing, _) => "The provider is generating the video".into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::provider::ProviderStatus;

    pub(crate) fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    pub(crate) fn queued(position: Option<u32>, seconds: i64) -> ProgressDetail {
        ProgressDetail { stage: Stage::Queued, queue_position: position, observed_at: at(seconds) }
    }

    pub(crate) fn processing(seconds: i64) -> ProgressDetail {
        ProgressDetail { stage: Stage::Processing, queue_position: None, observed_at: at(seconds) }
    }

    #[test]
    fn the_message_names_the_queue_position_when_the_provider_gives_one() {
        assert_eq!(queued(Some(3), 0).message(), "Waiting in the provider's queue (position 3)");
        assert_eq!(queued(Some(0), 0).message(), "Next in the provider's queue");
        assert_eq!(queued(None, 0).message(), "Waiting in the provider's queue");
        assert_eq!(processing(0).message(), "The provider is generating the video");
    }

    #[test]
    fn only_still_working_answers_give_a_detail() {
        let now = at(0);
        assert_eq!(ProviderStatus::Queued { position: Some(2) }.progress_detail(now), Some(queued(Some(2), 0)));
        assert_eq!(ProviderStatus::Processing { percent: Some(40) }.progress_detail(now), Some(processing(0)));
        assert_eq!(ProviderStatus::Canceled.progress_detail(now), None);
        let failed = ProviderStatus::Failed { code: "x".into(), message: "y".into() };
        assert_eq!(failed.progress_detail(now), None);
    }

    #[test]
    fn a_newer_observation_replaces_an_older_one_and_never_the_reverse() {
        assert!(queued(Some(1), 2).may_replace(JobStatus::Submitted, Some(&queued(Some(3), 1))));
        assert!(!queued(Some(3), 1).may_replace(JobStatus::Submitted, Some(&queued(Some(1), 2))));
        assert!(!queued(Some(3), 1).may_replace(JobStatus::Submitted, Some(&queued(Some(1), 1))), "same instant: the first stays");
        assert!(queued(None, 0).may_replace(JobStatus::Submitted, None));
        assert!(processing(3).may_replace(JobStatus::Processing, Some(&queued(Some(1), 2))));
    }

    #[test]
    fn queued_never_follows_processing_and_no_detail_outlives_flight() {
        assert!(!queued(Some(1), 5).may_replace(JobStatus::Processing, Some(&processing(1))));
        assert!(processing(1).may_replace(JobStatus::Submitted, None));
        for status in [JobStatus::Queued, JobStatus::Retrying, JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled] {
            assert!(!processing(1).may_replace(status, None), "{status}");
            assert!(!queued(None, 1).may_replace(status, None), "{status}");
        }
    }

    #[test]
    fn a_detail_round_trips_through_json_without_an_absent_position() {
        let detail = queued(None, 0);
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json, serde_json::json!({"stage": "queued", "observed_at": "2027-01-15T08:00:00.000Z"}));
        assert_eq!(serde_json::from_value::<ProgressDetail>(json).unwrap(), detail);
    }
}
