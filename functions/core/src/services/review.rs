//! A person's approval or rejection of a finished video, and the queue of
//! videos waiting for one.
//!
//! A generated video can be technically fine and still wrong (a changed
//! product, unreadable text, distorted hands, unclear rights, footage that
//! needs disclosure), so a `completed` job is "Ready for review", not "Ready to
//! use", until a reviewer approves it. A review is a status change
//! (`completed → approved | rejected`) conditioned on `completed`, so of many
//! simultaneous reviews exactly one is applied. Approving keeps the video past
//! the retention window and ends the job's execution (it answers the task
//! that waits for the review); rejecting hands the video's deletion to the
//! worker (`discard_output`) and leaves the execution to reach `Expire` at
//! the window's end, which deletes the video should that message be lost.

use crate::model::error::StoreError;
use crate::model::job::{timestamp, EventSource, Job, Review};
use crate::model::lifecycle::{transition, JobStatus};
use crate::model::request::InvalidRequest;
use crate::model::review::*;
use crate::model::views::{QueueBody, QueueEntry, StatusBody, VideoFacts};
use crate::model::work::WorkMessage;
use crate::ports::{ChangeOutcome, JobUpdate, PageRequest, Principal, StatusChange};
use crate::services::error::AppError;
use crate::services::jobs::Services;

fn forbidden_unless_reviewer(who: &Principal) -> Result<(), AppError> {
    if who.role.can_review() {
        Ok(())
    } else {
        Err(AppError::Forbidden("only a reviewer or an admin can review videos"))
    }
}

impl Services {
    /// Approves or rejects a `completed` job; exactly one of many simultaneous
    /// reviews is applied, the others are `409`.
    pub async fn review(&self, who: &Principal, id: &str, request: ReviewRequest) -> Result<StatusBody, AppError> {
        forbidden_unless_reviewer(who)?;
        let mut job = self.visible_job(who, id).await?;
        // Four eyes: whoever asked for a video does not also pass it as fit to use.
        if job.is_owned_by(&who.user_id) {
            return Err(AppError::OwnJobReview);
        }
        let refused = |status: JobStatus| AppError::WrongState {
            status,
            message: format!("{} job cannot be reviewed; only a completed one can", status.with_article()),
        };
        if job.status != JobStatus::Completed {
            return Err(refused(job.status));
        }
        let now = timestamp::now();
        if crate::services::jobs::output_has_expired(&job, now) {
            // Its video is past the retention window: there is nothing left to approve.
            return Err(AppError::Expired);
        }
        let t = transition(JobStatus::Completed, request.status()).map_err(|_| refused(job.status))?;
        let review = Review {
            decision: request.decision().to_owned(),
            reason: request.reason().map(|r| r.as_str().to_owned()),
            note: request.note().map(str::to_owned),
            reviewer_id: who.user_id.clone(),
            reviewed_at: now,
        };
        let update = JobUpdate { review: Some(review.clone()), ..JobUpdate::default() };
        let change =
            StatusChange::new(&job, t, EventSource::Reviewer, request.event_message(), request.job_error(), update).by(&who.user_id);
        if let (JobStatus::Approved, Some(artifact)) = (t.to, &job.output) {
            // Kept before the approval commits: once it has, the execution ends
            // and no `expire` comes for this video, so nothing else would stop
            // the bucket's safety net from taking it. A tag on an approval that
            // then loses the race is harmless: the rejection or expiry that won
            // deletes the objects itself.
            self.kept.keep(&artifact.object_keys()).await?;
        }
        match self.writes.change_status(&change).await? {
            ChangeOutcome::Applied => {}
            ChangeOutcome::StatusWas(now) => return Err(refused(now)),
            ChangeOutcome::NotFound => return Err(AppError::JobNotFound),
        }
        tracing::info!(job_id = %job.job_id, decision = review.decision, reason = ?review.reason, reviewer = %who.user_id, "job reviewed");
        job.status = t.to;
        job.updated_at = change.at;
        job.error = change.error.clone();
        job.review = Some(review);
        if t.to == JobStatus::Rejected {
            self.discard_output(&job).await;
        } else {
            self.end_review_wait(&job).await;
        }
        self.status_body(&job).await
    }

    /// Asks the worker to delete a rejected video. If the message cannot be
    /// sent, the retention window's `expire` deletes it later all the same.
    async fn discard_output(&self, job: &Job) {
        let message = WorkMessage::DiscardOutput { job_id: job.job_id.clone() };
        if let Err(err) = self.work.enqueue(&message).await {
            tracing::warn!(job_id = %job.job_id, error = %err, "could not ask the worker to delete the rejected video");
        }
    }

    /// Answers the task that waits for the review: the execution ends here,
    /// two state transitions in all. Best effort, after the commit: a token
    /// not stored yet is answered by the worker when it stores it (it reads
    /// the job after, and finds it approved); a failed answer leaves the
    /// execution to reach `Expire` at the window's end, which finds the job
    /// approved and leaves its video alone.
    async fn end_review_wait(&self, job: &Job) {
        let answered = async {
            let Some(token) = self.review_waits.review_token(&job.job_id).await? else { return Ok(false) };
            self.tasks.succeed(&token, &serde_json::json!({"job_id": job.job_id, "status": job.status})).await?;
            Ok::<bool, StoreError>(true)
        };
        match answered.await {
            Ok(true) => tracing::info!(job_id = %job.job_id, "review wait answered; the execution ends"),
            Ok(false) => tracing::info!(job_id = %job.job_id, "review wait not stored yet; the worker answers it"),
            Err(err) => {
                tracing::warn!(job_id = %job.job_id, error = %err, "could not answer the review wait; the execution reaches Expire")
            }
        }
    }

    /// The jobs waiting for review, oldest first, with what a reviewer needs.
    pub async fn review_queue(&self, who: &Principal, page: PageRequest) -> Result<QueueBody, AppError> {
        forbidden_unless_reviewer(who)?;
        let page = self.review_queue.waiting(&page).await.map_err(|err| match err {
            crate::ports::ListError::BadCursor => InvalidRequest::new("cursor", "is not a cursor this API gave out").into(),
            crate::ports::ListError::Store(err) => AppError::from(err),
        })?;
        let mut jobs = Vec::with_capacity(page.items.len());
        for job in &page.items {
            jobs.push(self.queue_entry(job).await?);
        }
        Ok(QueueBody { jobs, next_cursor: page.next_cursor })
    }

    async fn queue_entry(&self, job: &Job) -> Result<QueueEntry, StoreError> {
        let status = self.status_body(job).await.map_err(|err| match err {
            AppError::Unavailable(detail) => StoreError::Unavailable(detail),
            other => StoreError::Internal(other.to_string()),
        })?;
        let prompt = self.reads.prompt(&job.job_id).await?;
        let video = job.output.as_ref().map(|a| VideoFacts {
            width: a.width,
            height: a.height,
            duration_seconds: a.duration_seconds,
            mime_type: a.mime_type.clone(),
            size_bytes: a.size_bytes,
        });
        Ok(QueueEntry { status, user_id: job.user_id.to_string(), prompt, video })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ReviewRequest, InvalidRequest> {
        ReviewRequest::parse(json.as_bytes())
    }

    fn refused_field(json: &str) -> String {
        parse(json).expect_err("should be refused").field
    }

    #[test]
    fn an_approval_needs_nothing_but_the_decision() {
        assert_eq!(parse(r#"{"decision":"approve"}"#).unwrap(), ReviewRequest::Approve { reason: None, note: None });
    }

    #[test]
    fn a_note_with_a_bidi_override_or_a_zero_width_space_is_refused() {
        for note in ["ok \u{202E}evil", "fine\u{200B}", "\u{2067}x"] {
            let body = serde_json::json!({"decision": "reject", "reason": "other", "note": note}).to_string();
            assert_eq!(ReviewRequest::parse(body.as_bytes()).unwrap_err().field, "note", "{note:?}");
        }
    }

    #[test]
    fn an_approval_may_carry_a_reason_and_a_note() {
        let request = parse(r#"{"decision":"approve","reason":"needs_disclosure","note":" add the AI label "}"#).unwrap();
        assert_eq!(request, ReviewRequest::Approve { reason: Some(ReviewReason::NeedsDisclosure), note: Some("add the AI label".into()) });
        assert_eq!(request.status(), JobStatus::Approved);
        assert_eq!(request.job_error(), None);
    }

    #[test]
    fn a_rejection_with_a_reason_becomes_the_jobs_error_with_a_next_step() {
        let request = parse(r#"{"decision":"reject","reason":"unreadable_text"}"#).unwrap();
        assert_eq!(request, ReviewRequest::Reject { reason: ReviewReason::UnreadableText, note: None });
        assert_eq!(request.status(), JobStatus::Rejected);
        let error = request.job_error().unwrap();
        assert_eq!(error.code, "unreadable_text");
        assert_eq!(error.message, ReviewReason::UnreadableText.message());
        assert_eq!(error.next_step.as_deref(), Some(ReviewReason::UnreadableText.next_step()));
    }

    #[test]
    fn a_rejection_without_a_reason_is_refused_naming_reason() {
        assert_eq!(refused_field(r#"{"decision":"reject"}"#), "reason");
        assert_eq!(refused_field(r#"{"decision":"reject","note":"bad"}"#), "reason");
        assert_eq!(refused_field(r#"{"decision":"reject","reason":null}"#), "reason");
    }

    #[test]
    fn an_unknown_reason_is_refused_and_the_message_lists_the_reasons() {
        let err = parse(r#"{"decision":"reject","reason":"ugly"}"#).unwrap_err();
        assert_eq!(err.field, "reason");
        for reason in ReviewReason::ALL {
            assert!(err.message.contains(reason.as_str()), "{}", err.message);
        }
        assert_eq!(refused_field(r#"{"decision":"approve","reason":"Product_Changed"}"#), "reason");
    }

    #[test]
    fn other_needs_a_note_and_a_blank_note_is_none() {
        assert_eq!(refused_field(r#"{"decision":"reject","reason":"other"}"#), "note");
        assert_eq!(refused_field(r#"{"decision":"reject","reason":"other","note":"   "}"#), "note");
        assert_eq!(refused_field(r#"{"decision":"approve","reason":"other"}"#), "note");
        let request = parse(r#"{"decision":"reject","reason":"other","note":"logo is upside down"}"#).unwrap();
        assert_eq!(request, ReviewRequest::Reject { reason: ReviewReason::Other, note: Some("logo is upside down".into()) });
        assert_eq!(parse(r#"{"decision":"approve","note":""}"#).unwrap(), ReviewRequest::Approve { reason: None, note: None });
    }

    #[test]
    fn a_note_is_bounded_and_has_no_control_characters() {
        let long = "x".repeat(NOTE_MAX_CHARS + 1);
        assert_eq!(refused_field(&format!(r#"{{"decision":"approve","note":"{long}"}}"#)), "note");
        let longest = "é".repeat(NOTE_MAX_CHARS);
        assert!(parse(&format!(r#"{{"decision":"approve","note":"{longest}"}}"#)).is_ok());
        assert_eq!(refused_field(r#"{"decision":"approve","note":"a\u0007b"}"#), "note");
        assert!(parse(r#"{"decision":"approve","note":"line one\nline two\tend"}"#).is_ok());
    }

    #[test]
    fn the_decision_must_be_approve_or_reject() {
        assert_eq!(refused_field(r#"{"decision":"maybe"}"#), "decision");
        assert_eq!(refused_field(r#"{"decision":"APPROVE"}"#), "decision");
        assert_eq!(refused_field(r#"{"reason":"other","note":"x"}"#), "decision");
        assert_eq!(refused_field(r#"{"decision":true}"#), "decision");
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_json_are_refused() {
        assert_eq!(refused_field(r#"{"decision":"approve","score":5}"#), "score");
        assert_eq!(refused_field(r#"{"decision":"reject","reason":7}"#), "reason");
        assert_eq!(refused_field(r#"{"decision":"approve","note":["a"]}"#), "note");
        assert_eq!(refused_field(r#"{"decision":"approve""#), "body");
        assert_eq!(refused_field(r#"[]"#), "body");
        assert_eq!(refused_field(""), "body");
    }

    #[test]
    fn every_reason_round_trips_and_has_its_own_copy() {
        let mut messages = std::collections::HashSet::new();
        let mut steps = std::collections::HashSet::new();
        for reason in ReviewReason::ALL {
            assert_eq!(ReviewReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
            assert!(messages.insert(reason.message()));
            assert!(steps.insert(reason.next_step()));
            let json = format!(r#"{{"decision":"reject","reason":"{}","note":"n"}}"#, reason.as_str());
            assert_eq!(parse(&json).unwrap().reason(), Some(reason));
        }
        assert_eq!(ReviewReason::parse("nope"), None);
    }

    #[test]
    fn the_event_message_says_the_decision_reason_and_note() {
        let approve = parse(r#"{"decision":"approve"}"#).unwrap();
        assert_eq!(approve.event_message(), "Approved by a reviewer");
        let reject = parse(r#"{"decision":"reject","reason":"off_brief","note":"no boat"}"#).unwrap();
        assert_eq!(reject.event_message(), format!("Rejected by a reviewer: {} Note: no boat", ReviewReason::OffBrief.message()));
    }
}
