//! The life of a job, top to bottom.
//!
//! ```text
//! queued → submitted → processing → completed → approved
//!                                             → rejected
//! queued | submitted | retrying | processing → failed | canceled | expired
//! submitted → retrying → submitted      (a retried provider submission)
//! completed → expired                    (not reviewed within the retention window)
//! ```
//!
//! [`transition`] is the only place that decides whether a job may move from one
//! status to another, and what that move costs: whether the user gets their
//! credits back and whether the job frees one of the user's in-flight slots.
//! Storage applies the answer with a write conditioned on the status the job
//! leaves, so two writers racing for the same move cannot both win.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted and paid for; not yet handed to a provider.
    Queued,
    /// Being handed to the provider, or accepted by it and not yet generating.
    Submitted,
    /// A submission failed for a passing reason (busy, 5xx, network); it is tried again.
    Retrying,
    /// The provider reports that it is generating the video.
    Processing,
    /// The video is stored and waits for a reviewer.
    Completed,
    /// A reviewer passed the video: it is kept and ready to use.
    Approved,
    /// A reviewer refused the video; it is deleted.
    Rejected,
    /// The provider or the pipeline could not make a video; the credits come back.
    Failed,
    /// The owner or an admin canceled the job while it was in flight; the credits come back.
    Canceled,
    /// The job ran out of time before its video was ready (the credits come back), or its video was not
    /// reviewed within the retention window and is deleted.
    Expired,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 10] = [
        JobStatus::Queued,
        JobStatus::Submitted,
        JobStatus::Retrying,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Approved,
        JobStatus::Rejected,
        JobStatus::Failed,
        JobStatus::Canceled,
        JobStatus::Expired,
    ];

    /// The status as the API and the store write it: `queued`, `submitted`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Submitted => "submitted",
            JobStatus::Retrying => "retrying",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Approved => "approved",
            JobStatus::Rejected => "rejected",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Expired => "expired",
        }
    }

    /// The status as a noun phrase's start, with its article: "an approved", "a queued".
    pub fn with_article(self) -> String {
        let article = if self.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {}", self.as_str())
    }

    /// The status written as `text`; `None` for a word that is not one.
    pub fn parse(value: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }

    /// The copy a person sees.
    pub fn label(self) -> &'static str {
        match self {
            JobStatus::Queued => "Waiting to start",
            JobStatus::Submitted | JobStatus::Retrying | JobStatus::Processing => "Generating video",
            JobStatus::Completed => "Ready for review",
            JobStatus::Approved => "Ready to use",
            JobStatus::Rejected => "Needs changes",
            JobStatus::Failed => "Generation failed",
            JobStatus::Canceled => "Canceled",
            JobStatus::Expired => "Expired",
        }
    }

    /// A terminal job never changes status again.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Approved | JobStatus::Rejected | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired)
    }

    /// Still being generated: counts against the user's cap on active jobs, is
    /// listed by `GET /videos/jobs/active`, and can be canceled.
    pub fn is_in_flight(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Submitted | JobStatus::Retrying | JobStatus::Processing)
    }

    /// Progress shown for a status when the provider has said nothing finer.
    pub fn progress_floor(self) -> u8 {
        match self {
            JobStatus::Queued => 0,
            JobStatus::Submitted | JobStatus::Retrying => 5,
            JobStatus::Processing => 10,
            JobStatus::Completed | JobStatus::Approved | JobStatus::Rejected => 100,
            JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired => 0,
        }
    }

    fn successors(self) -> &'static [JobStatus] {
        use JobStatus::*;
        match self {
            Queued => &[Submitted, Failed, Canceled, Expired],
            Submitted => &[Processing, Retrying, Failed, Canceled, Expired],
            Retrying => &[Submitted, Failed, Canceled, Expired],
            Processing => &[Completed, Failed, Canceled, Expired],
            Completed => &[Approved, Rejected, Expired],
            Approved | Rejected | Failed | Canceled | Expired => &[],
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An allowed move, with what it implies for the user's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The status the job leaves; the write is conditional on it.
    pub from: JobStatus,
    /// The status the job enters.
    pub to: JobStatus,
    /// Give the job's cost back: the user never got a video.
    pub refunds_credits: bool,
    /// The job stops counting against the user's cap on in-flight jobs.
    pub frees_slot: bool,
}

/// A move the lifecycle does not allow, such as `approved → queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} job cannot become {to}", .from.with_article())]
pub struct TransitionRefused {
    /// The status the job is in.
    pub from: JobStatus,
    /// The status it may not enter from there.
    pub to: JobStatus,
}

/// Decides whether a job may move from `from` to `to`.
pub fn transition(from: JobStatus, to: JobStatus) -> Result<Transition, TransitionRefused> {
    if !from.successors().contains(&to) {
        return Err(TransitionRefused { from, to });
    }
    let gave_up = matches!(to, JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired);
    Ok(Transition { from, to, refunds_credits: gave_up && from.is_in_flight(), frees_slot: from.is_in_flight() && !to.is_in_flight() })
}

/// Whether a job now `current` has been `status` at some point, as far as
/// the lifecycle alone can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// It is `status` now, or every way to `current` goes through `status`.
    Yes,
    /// It is not `status`, and can never be: no path leads there from `current`.
    Never,
    /// It may still get there.
    NotYet,
    /// It may or may not have passed `status` on the way (an `expired` job
    /// may have been `completed`, a `processing` one `retrying`): only its
    /// history can say.
    Perhaps,
}

/// Where a job now `current` stands with respect to `status`.
pub fn passed(current: JobStatus, status: JobStatus) -> Passed {
    if current == status {
        Passed::Yes
    } else if reaches(current, status, None) {
        Passed::NotYet
    } else if !reaches(status, current, None) {
        Passed::Never
    } else if status == JobStatus::Queued || !reaches(JobStatus::Queued, current, Some(status)) {
        // Every way from the start (`queued`) to `current` goes through `status`.
        Passed::Yes
    } else {
        Passed::Perhaps
    }
}

/// Can a job get from `from` to `to` in one or more moves, never entering `avoiding`?
fn reaches(from: JobStatus, to: JobStatus, avoiding: Option<JobStatus>) -> bool {
    let mut seen = vec![from];
    let mut next = vec![from];
    while let Some(status) = next.pop() {
        for &successor in status.successors() {
            if Some(successor) == avoiding || seen.contains(&successor) {
                continue;
            }
            if successor == to {
                return true;
            }
            seen.push(successor);
            next.push(successor);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    const ALLOWED: &[(JobStatus, JobStatus)] = &[
        (Queued, Submitted),
        (Submitted, Processing),
        (Processing, Completed),
        (Completed, Approved),
        (Completed, Rejected),
        (Completed, Expired),
        (Submitted, Retrying),
        (Retrying, Submitted),
        (Queued, Failed),
        (Queued, Canceled),
        (Queued, Expired),
        (Submitted, Failed),
        (Submitted, Canceled),
        (Submitted, Expired),
        (Retrying, Failed),
        (Retrying, Canceled),
        (Retrying, Expired),
        (Processing, Failed),
        (Processing, Canceled),
        (Processing, Expired),
    ];

    #[test]
    fn every_pair_of_statuses_is_allowed_exactly_when_the_design_lists_it() {
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                let listed = ALLOWED.contains(&(from, to));
                assert_eq!(transition(from, to).is_ok(), listed, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_refused_move_names_both_statuses() {
        let refused = transition(Approved, Queued).unwrap_err();
        assert_eq!(refused.to_string(), "an approved job cannot become queued");
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(transition(from, to).is_err(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn no_status_moves_to_itself() {
        for status in JobStatus::ALL {
            assert!(transition(status, status).is_err(), "{status}");
        }
    }

    #[test]
    fn giving_up_on_an_in_flight_job_refunds_and_frees_its_slot() {
        for from in [Queued, Submitted, Retrying, Processing] {
            for to in [Failed, Canceled, Expired] {
                let t = transition(from, to).unwrap();
                assert!(t.refunds_credits, "{from} -> {to}");
                assert!(t.frees_slot, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn completing_frees_the_slot_but_keeps_the_credits() {
        let t = transition(Processing, Completed).unwrap();
        assert!(t.frees_slot);
        assert!(!t.refunds_credits);
    }

    #[test]
    fn expiring_an_unreviewed_video_refunds_nothing() {
        let t = transition(Completed, Expired).unwrap();
        assert!(!t.refunds_credits);
        assert!(!t.frees_slot);
    }

    #[test]
    fn moves_between_in_flight_statuses_keep_credits_and_slot() {
        for (from, to) in [(Queued, Submitted), (Submitted, Retrying), (Retrying, Submitted), (Submitted, Processing)] {
            let t = transition(from, to).unwrap();
            assert!(!t.refunds_credits && !t.frees_slot, "{from} -> {to}");
        }
    }

    #[test]
    fn reviews_cost_nothing_and_free_nothing() {
        for to in [Approved, Rejected] {
            let t = transition(Completed, to).unwrap();
            assert!(!t.refunds_credits && !t.frees_slot);
        }
    }

    #[test]
    fn only_a_job_with_a_video_shows_full_progress() {
        for status in [Completed, Approved, Rejected] {
            assert_eq!(status.progress_floor(), 100);
        }
        for status in [Queued, Failed, Canceled, Expired] {
            assert_eq!(status.progress_floor(), 0);
        }
        assert!(Processing.progress_floor() > Submitted.progress_floor());
    }

    #[test]
    fn a_status_takes_the_article_its_sound_needs() {
        let phrases: Vec<String> = JobStatus::ALL.iter().map(|s| s.with_article()).collect();
        assert_eq!(
            phrases,
            [
                "a queued",
                "a submitted",
                "a retrying",
                "a processing",
                "a completed",
                "an approved",
                "a rejected",
                "a failed",
                "a canceled",
                "an expired"
            ]
        );
    }

    #[test]
    fn labels_follow_the_design_copy() {
        assert_eq!(Queued.label(), "Waiting to start");
        for s in [Submitted, Retrying, Processing] {
            assert_eq!(s.label(), "Generating video");
        }
        assert_eq!(Completed.label(), "Ready for review");
        assert_eq!(Approved.label(), "Ready to use");
        assert_eq!(Rejected.label(), "Needs changes");
        assert_eq!(Failed.label(), "Generation failed");
        assert_eq!(Canceled.label(), "Canceled");
        assert_eq!(Expired.label(), "Expired");
    }

    #[test]
    fn exactly_five_statuses_are_terminal_and_four_in_flight() {
        assert_eq!(JobStatus::ALL.iter().filter(|s| s.is_terminal()).count(), 5);
        assert_eq!(JobStatus::ALL.iter().filter(|s| s.is_in_flight()).count(), 4);
        assert!(!Completed.is_terminal() && !Completed.is_in_flight());
    }

    #[test]
    fn status_names_round_trip_through_text_and_json() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(JobStatus::parse("Queued"), None);
        assert_eq!(JobStatus::parse(""), None);
    }
    #[test]
    fn a_job_has_passed_a_status_it_is_in_or_that_every_way_to_its_status_goes_through() {
        assert_eq!(passed(Completed, Completed), Passed::Yes);
        assert_eq!(passed(Approved, Completed), Passed::Yes);
        assert_eq!(passed(Rejected, Completed), Passed::Yes);
        assert_eq!(passed(Processing, Submitted), Passed::Yes);
        assert_eq!(passed(Completed, Queued), Passed::Yes);
    }

    #[test]
    fn a_job_still_moving_towards_a_status_has_not_passed_it_yet() {
        assert_eq!(passed(Queued, Completed), Passed::NotYet);
        assert_eq!(passed(Processing, Canceled), Passed::NotYet);
        assert_eq!(passed(Completed, Expired), Passed::NotYet);
        assert_eq!(passed(Retrying, Submitted), Passed::NotYet);
    }

    #[test]
    fn a_job_on_another_branch_never_passed_the_status() {
        assert_eq!(passed(Failed, Completed), Passed::Never);
        assert_eq!(passed(Canceled, Completed), Passed::Never);
        assert_eq!(passed(Approved, Rejected), Passed::Never);
        assert_eq!(passed(Expired, Canceled), Passed::Never);
    }

    #[test]
    fn only_the_history_says_whether_an_expired_job_was_completed() {
        assert_eq!(passed(Expired, Completed), Passed::Perhaps);
        assert_eq!(passed(Expired, Processing), Passed::Perhaps);
    }

    #[test]
    fn every_pair_of_statuses_gets_an_answer_consistent_with_the_moves() {
        for current in JobStatus::ALL {
            for status in JobStatus::ALL {
                let pair = format!("{current} / {status}");
                match passed(current, status) {
                    Passed::Yes => assert!(current == status || reaches(status, current, None), "{pair}"),
                    Passed::NotYet => assert!(!current.is_terminal() && reaches(current, status, None), "{pair}"),
                    Passed::Never => assert!(!reaches(current, status, None) && !reaches(status, current, None), "{pair}"),
                    Passed::Perhaps => assert!(reaches(status, current, None) && reaches(Queued, current, Some(status)), "{pair}"),
                }
            }
        }
    }
}
