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

use crate::error::{AppError, StoreError};
use crate::job::{timestamp, EventSource, Job, JobError, Review};
use crate::lifecycle::{transition, JobStatus};
use crate::ports::{ChangeOutcome, JobUpdate, Page, PageRequest, Principal, StatusChange};
use crate::request::{parse_json, InvalidRequest};
use crate::service::Services;
use crate::views::StatusBody;
use crate::work::WorkMessage;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The longest note a reviewer may write.
pub const NOTE_MAX_CHARS: usize = 1_000;

/// Why a video was rejected (or, on an approval, what to keep in mind). The
/// code is what the API takes and what the rejection's event carries as its
/// `error_code`; the copy is what the job's owner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    ProductChanged,
    UnreadableText,
    DistortedAnatomy,
    RightsUnclear,
    NeedsDisclosure,
    PoorQuality,
    OffBrief,
    Other,
}

impl ReviewReason {
    pub const ALL: [ReviewReason; 8] = [
        ReviewReason::ProductChanged,
        ReviewReason::UnreadableText,
        ReviewReason::DistortedAnatomy,
        ReviewReason::RightsUnclear,
        ReviewReason::NeedsDisclosure,
        ReviewReason::PoorQuality,
        ReviewReason::OffBrief,
        ReviewReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewReason::ProductChanged => "product_changed",
            ReviewReason::UnreadableText => "unreadable_text",
            ReviewReason::DistortedAnatomy => "distorted_anatomy",
            ReviewReason::RightsUnclear => "rights_unclear",
            ReviewReason::NeedsDisclosure => "needs_disclosure",
            ReviewReason::PoorQuality => "poor_quality",
            ReviewReason::OffBrief => "off_brief",
            ReviewReason::Other => "other",
        }
    }

    pub fn parse(code: &str) -> Option<ReviewReason> {
        ReviewReason::ALL.into_iter().find(|reason| reason.as_str() == code)
    }

    /// What was wrong, in the owner's words.
    pub fn message(self) -> &'static str {
        match self {
            ReviewReason::ProductChanged => "The product's shape, colour or details changed in the video.",
            ReviewReason::UnreadableText => "Text or a label in the video cannot be read.",
            ReviewReason::DistortedAnatomy => "Hands, faces or bodies in the video are distorted.",
            ReviewReason::RightsUnclear => "The video may show something we have no right to use.",
            ReviewReason::NeedsDisclosure => "The video needs a disclosure that it was generated.",
            ReviewReason::PoorQuality => "The video's quality is too low to use.",
            ReviewReason::OffBrief => "The video does not show what was asked for.",
            ReviewReason::Other => "The reviewer found a problem with the video.",
        }
    }

    /// What the owner can do about it.
    pub fn next_step(self) -> &'static str {
        match self {
            ReviewReason::ProductChanged => "Generate it again from a clear product image, and ask for less camera movement.",
            ReviewReason::UnreadableText => "Generate it again without text in the prompt, and add the text afterwards.",
            ReviewReason::DistortedAnatomy => "Generate it again with fewer people or hands in view, or a shorter video.",
            ReviewReason::RightsUnclear => "Use only images and brands you have the rights to, then generate it again.",
            ReviewReason::NeedsDisclosure => "Add an 'AI-generated' disclosure before publishing, or ask a reviewer.",
            ReviewReason::PoorQuality => "Generate it again at a higher resolution or with a simpler scene.",
            ReviewReason::OffBrief => "Make the prompt more specific and generate it again.",
            ReviewReason::Other => "Read the reviewer's note, change the request and generate it again.",
        }
    }
}

/// The reviewer's decision, with what it needs and nothing it cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewRequest {
    /// Ready to use; a reason (such as `needs_disclosure`) and a note may go with it.
    Approve { reason: Option<ReviewReason>, note: Option<String> },
    /// Needs changes, and why; `other` always comes with a note.
    Reject { reason: ReviewReason, note: Option<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

impl ReviewRequest {
    /// `{"decision": "approve" | "reject", "reason"?: code, "note"?: text}`.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        let raw: ReviewBody = parse_json(body)?;
        let note = checked_note(raw.note.as_deref())?;
        let reason = raw
            .reason
            .as_deref()
            .map(|code| {
                ReviewReason::parse(code).ok_or_else(|| {
                    let codes: Vec<&str> = ReviewReason::ALL.iter().map(|r| r.as_str()).collect();
                    InvalidRequest::new("reason", format!("'{code}' is not a reason; use one of: {}", codes.join(", ")))
                })
            })
            .transpose()?;
        if reason == Some(ReviewReason::Other) && note.is_none() {
            return Err(InvalidRequest::new("note", "is required when the reason is 'other'"));
        }
        match raw.decision.as_str() {
            "approve" => Ok(ReviewRequest::Approve { reason, note }),
            "reject" => match reason {
                Some(reason) => Ok(ReviewRequest::Reject { reason, note }),
                None => Err(InvalidRequest::new("reason", "is required to reject a video")),
            },
            other => Err(InvalidRequest::new("decision", format!("'{other}' is not a decision; use approve or reject"))),
        }
    }

    pub fn decision(&self) -> &'static str {
        match self {
            ReviewRequest::Approve { .. } => "approve",
            ReviewRequest::Reject { .. } => "reject",
        }
    }

    pub fn reason(&self) -> Option<ReviewReason> {
        match self {
            ReviewRequest::Approve { reason, .. } => *reason,
            ReviewRequest::Reject { reason, .. } => Some(*reason),
        }
    }

    pub fn note(&self) -> Option<&str> {
        match self {
            ReviewRequest::Approve { note, .. } | ReviewRequest::Reject { note, .. } => note.as_deref(),
        }
    }

    /// The status the job moves to.
    pub fn status(&self) -> JobStatus {
        match self {
            ReviewRequest::Approve { .. } => JobStatus::Approved,
            ReviewRequest::Reject { .. } => JobStatus::Rejected,
        }
    }

    /// The job's error after a rejection: its code is the reason's, so that
    /// the event's `error_code` says why (the stats count rejections by it).
    pub fn job_error(&self) -> Option<JobError> {
        match self {
            ReviewRequest::Approve { .. } => None,
            ReviewRequest::Reject { reason, .. } => Some(JobError {
                code: reason.as_str().to_owned(),
                message: reason.message().to_owned(),
                next_step: Some(reason.next_step().to_owned()),
            }),
        }
    }

    /// The event's message: what happened, in a sentence.
    fn event_message(&self) -> String {
        let head = match self {
            ReviewRequest::Approve { reason: None, .. } => "Approved by a reviewer".to_owned(),
            ReviewRequest::Approve { reason: Some(reason), .. } => {
                format!("Approved by a reviewer ({})", reason.as_str())
            }
            ReviewRequest::Reject { reason, .. } => format!("Rejected by a reviewer: {}", reason.message()),
        };
        match self.note() {
            Some(note) => format!("{head} Note: {note}"),
            None => head,
        }
    }
}

/// A note is trimmed; an empty one counts as none.
fn checked_note(note: Option<&str>) -> Result<Option<String>, InvalidRequest> {
    let Some(note) = note.map(str::trim).filter(|n| !n.is_empty()) else { return Ok(None) };
    let chars = note.chars().count();
    if chars > NOTE_MAX_CHARS {
        return Err(InvalidRequest::new("note", format!("is {chars} characters; the limit is {NOTE_MAX_CHARS}")));
    }
    if note.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(InvalidRequest::new("note", "must not contain control characters"));
    }
    crate::request::no_format_characters("note", note)?;
    Ok(Some(note.to_owned()))
}

/// The jobs waiting for a review, oldest first (by when they completed).
#[async_trait]
pub trait ReviewQueue: Send + Sync {
    /// A page of `completed` jobs; the cursor is opaque and the adapter's own.
    async fn waiting(&self, page: &PageRequest) -> Result<Page<Job>, crate::ports::ListError>;
}

/// The video's facts a reviewer weighs, beside the status body's links.
#[derive(Debug, Clone, Serialize)]
pub struct VideoFacts {
    pub width: u32,
    pub height: u32,
    pub duration_seconds: f64,
    pub mime_type: String,
    pub size_bytes: u64,
}

/// One job in `GET /videos/review/queue`: its status body, and what a reviewer
/// needs besides (the prompt, who asked, the video's facts).
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    #[serde(flatten)]
    pub status: StatusBody,
    pub user_id: String,
    /// The raw prompt: reviewers may read it (image-to-video jobs may have none).
    pub prompt: Option<String>,
    pub video: Option<VideoFacts>,
}

/// `GET /videos/review/queue`.
#[derive(Debug, Clone, Serialize)]
pub struct QueueBody {
    pub jobs: Vec<QueueEntry>,
    pub next_cursor: Option<String>,
}

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
        if crate::service::output_has_expired(&job, now) {
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
        match self.jobs.change_status(&change).await? {
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
        let prompt = self.jobs.prompt(&job.job_id).await?;
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
