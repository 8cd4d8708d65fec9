//! A reviewer's request (approve or reject, with reasons and a note) as a
//! type that refuses bad values. What the review queue shows is in `views`.

use crate::model::job::JobError;
use crate::model::lifecycle::JobStatus;
use crate::model::request::{parse_json, InvalidRequest};
use serde::{Deserialize, Serialize};

/// The longest note a reviewer may write.
pub const NOTE_MAX_CHARS: usize = 1_000;

/// Why a video was rejected (or, on an approval, what to keep in mind). The
/// code is what the API takes and what the rejection's event carries as its
/// `error_code`; the copy is what the job's owner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// `product_changed`: the product's shape, colour or details changed.
    ProductChanged,
    /// `unreadable_text`: text or a label in the video cannot be read.
    UnreadableText,
    /// `distorted_anatomy`: hands, faces or bodies are distorted.
    DistortedAnatomy,
    /// `rights_unclear`: the video may show something we have no right to use.
    RightsUnclear,
    /// `needs_disclosure`: the video needs a disclosure that it was generated.
    NeedsDisclosure,
    /// `poor_quality`: too low in quality to use.
    PoorQuality,
    /// `off_brief`: does not show what was asked for.
    OffBrief,
    /// `other`: anything else; the note must say what.
    Other,
}

impl ReviewReason {
    /// Every reason, in the order the API lists them.
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

    /// The reason's code, as the API takes it and the job's error carries it.
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

    /// The reason whose code is `code`; `None` for an unknown code.
    pub fn parse(code: &str) -> Option<ReviewReason> {
        ReviewReason::ALL.into_iter().find(|reason| reason.as_str() == code)
    }

    /// Whether generating the same request again may give a video that
    /// passes: yes for what a new render changes (quality, anatomy, text,
    /// fidelity); no for what the request itself carries (rights, a
    /// disclosure) or a reason the reviewer wrote out (`other`).
    pub fn retryable(self) -> bool {
        match self {
            ReviewReason::ProductChanged
            | ReviewReason::UnreadableText
            | ReviewReason::DistortedAnatomy
            | ReviewReason::PoorQuality
            | ReviewReason::OffBrief => true,
            ReviewReason::RightsUnclear | ReviewReason::NeedsDisclosure | ReviewReason::Other => false,
        }
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
    Approve {
        /// Something to keep in mind, such as `needs_disclosure`.
        reason: Option<ReviewReason>,
        /// The reviewer's own words, trimmed.
        note: Option<String>,
    },
    /// Needs changes, and why; `other` always comes with a note.
    Reject {
        /// Why the video needs changes.
        reason: ReviewReason,
        /// The reviewer's own words, trimmed; required with `other`.
        note: Option<String>,
    },
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

    /// `approve` or `reject`, as the job's review records it.
    pub fn decision(&self) -> &'static str {
        match self {
            ReviewRequest::Approve { .. } => "approve",
            ReviewRequest::Reject { .. } => "reject",
        }
    }

    /// The reason given, if any; always one on a rejection.
    pub fn reason(&self) -> Option<ReviewReason> {
        match self {
            ReviewRequest::Approve { reason, .. } => *reason,
            ReviewRequest::Reject { reason, .. } => Some(*reason),
        }
    }

    /// The reviewer's note, if they wrote one.
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
    pub fn event_message(&self) -> String {
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
    crate::model::request::no_format_characters("note", note)?;
    Ok(Some(note.to_owned()))
}
