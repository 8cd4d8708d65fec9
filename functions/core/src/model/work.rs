//! The messages on the work queue. The state machine sends `submit`, `poll`,
//! `await_review`, `expire` and `give_up` (see
//! `infra/statemachine/job.asl.json`); the
//! webhook sends `finalize`; a cancel sends `cancel_at_provider`; a rejection
//! sends `discard_output`; a status read sends `refresh`.

use crate::model::ids::JobId;
use serde::{Deserialize, Serialize};

/// One message on the work queue; `kind` names it in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkMessage {
    /// Hand the job to its provider. The state machine's message carries the
    /// task token (answered when the video is stored) and no attempt: it is
    /// attempt 1. The worker's own retries carry `attempt` and no token (the
    /// token is read from the store). An attempt that is no longer the job's
    /// current one does nothing (see `services/pipeline/submission.rs`).
    Submit {
        /// The job to submit.
        job_id: JobId,
        /// The token of the state machine's task, on its own message only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_token: Option<String>,
        /// Which submission attempt this is; `None` is attempt 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
    },
    /// The provider says it is done (or gave up): fetch the outcome and finish.
    Finalize {
        /// The job the provider is done with.
        job_id: JobId,
    },
    /// No callback came before the deadline: ask the provider. Round 1 comes
    /// from the state machine with its task token; the worker asks again in
    /// later rounds (no token: it is read from the store) while the provider
    /// is still working, and answers the token when done or out of rounds.
    Poll {
        /// The job to ask about.
        job_id: JobId,
        /// The token of the state machine's task, on round 1 only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_token: Option<String>,
        /// Which round of asking this is; `None` is round 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        round: Option<u32>,
    },
    /// The video is stored and the retention window starts: keep the token
    /// of the task that waits for the review (its timeout is the window), so
    /// that an approval can answer it and end the execution.
    AwaitReview {
        /// The job whose video is stored.
        job_id: JobId,
        /// The token of the task that waits for the review.
        task_token: String,
    },
    /// The retention window is over: delete an output nobody approved.
    Expire {
        /// The job whose retention window ended.
        job_id: JobId,
    },
    /// The execution ran out of time or retries.
    GiveUp {
        /// The job the execution gave up on.
        job_id: JobId,
        /// The error name the state machine caught (`ProviderBusy`, `JobEnded`, …); `None` when it ran out of time.
        error: Option<String>,
    },
    /// The user canceled: tell the provider to stop.
    CancelAtProvider {
        /// The canceled job, which has a provider request.
        job_id: JobId,
    },
    /// A reviewer rejected the video: delete it now rather than at the end of
    /// the retention window.
    DiscardOutput {
        /// The rejected job.
        job_id: JobId,
    },
    /// Keep an approved video's objects (their `unreviewed` tag off), so that the bucket's
    /// safety-net lifecycle rule (for objects no job points to) never takes
    /// them. An approval now marks them itself before it commits, so nothing
    /// sends this any more; it is still handled for messages queued before.
    KeepOutput {
        /// The approved job.
        job_id: JobId,
    },
    /// A client read an in-flight job whose provider sends no progress
    /// callbacks: ask the provider where the job is (see `progress`).
    Refresh {
        /// The job that was read.
        job_id: JobId,
    },
    /// Tell the client of `status` at the job's `webhook_url` (attempt 1, 2, …).
    /// SQS delays a message 15 minutes at most: a longer wait between attempts
    /// is made of hops, each re-queued until `not_before`.
    Notify {
        /// The job to tell the client about.
        job_id: JobId,
        /// The status the client is told of.
        status: crate::model::lifecycle::JobStatus,
        /// Which delivery attempt this is, from 1.
        attempt: u32,
        /// Do not post before this: a hop of a wait longer than SQS can delay.
        #[serde(default, with = "crate::model::job::timestamp::option", skip_serializing_if = "Option::is_none")]
        not_before: Option<time::OffsetDateTime>,
        /// When the status change that queued it began. The first message is
        /// queued before the change is written, so that no crash between the
        /// two can lose it: until the job shows `status`, it waits for the
        /// change, at most [`crate::model::notification::WRITER_WINDOW`] from then.
        #[serde(default, with = "crate::model::job::timestamp::option", skip_serializing_if = "Option::is_none")]
        queued_at: Option<time::OffsetDateTime>,
        /// How many times this attempt has waited for one of its user's
        /// delivery slots: past [`crate::model::notification::SLOT_WAITS_PER_ATTEMPT`]
        /// the wait counts as a failed attempt.
        #[serde(default, skip_serializing_if = "is_zero")]
        slot_waits: u32,
    },
    /// Send the client's notification of `status` again, by hand
    /// (`POST …/redeliver`): one attempt outside the retry schedule, which it
    /// neither restarts nor moves on.
    Redeliver {
        /// The job the notification is about.
        job_id: JobId,
        /// The status the client is told of.
        status: crate::model::lifecycle::JobStatus,
        /// How many times it has waited for one of its user's delivery slots.
        #[serde(default, skip_serializing_if = "is_zero")]
        slot_waits: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkMessage {
    /// The message's kind, as logs and metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            WorkMessage::Submit { .. } => "submit",
            WorkMessage::Finalize { .. } => "finalize",
            WorkMessage::Poll { .. } => "poll",
            WorkMessage::AwaitReview { .. } => "await_review",
            WorkMessage::Expire { .. } => "expire",
            WorkMessage::GiveUp { .. } => "give_up",
            WorkMessage::CancelAtProvider { .. } => "cancel_at_provider",
            WorkMessage::DiscardOutput { .. } => "discard_output",
            WorkMessage::KeepOutput { .. } => "keep_output",
            WorkMessage::Notify { .. } => "notify",
            WorkMessage::Redeliver { .. } => "redeliver",
            WorkMessage::Refresh { .. } => "refresh",
        }
    }

    /// Whether it is a client notification: the notify function handles it,
    /// from the notification queue.
    pub fn is_notification(&self) -> bool {
        matches!(self, WorkMessage::Notify { .. } | WorkMessage::Redeliver { .. })
    }

    /// The job the message is about.
    pub fn job_id(&self) -> &JobId {
        match self {
            WorkMessage::Submit { job_id, .. }
            | WorkMessage::Finalize { job_id }
            | WorkMessage::Poll { job_id, .. }
            | WorkMessage::AwaitReview { job_id, .. }
            | WorkMessage::Expire { job_id }
            | WorkMessage::GiveUp { job_id, .. }
            | WorkMessage::CancelAtProvider { job_id }
            | WorkMessage::DiscardOutput { job_id }
            | WorkMessage::KeepOutput { job_id }
            | WorkMessage::Refresh { job_id } => job_id,
            WorkMessage::Notify { job_id, .. } | WorkMessage::Redeliver { job_id, .. } => job_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_by_kind_and_round_trip() {
        let id = JobId::generate();
        let text = format!(r#"{{"kind":"give_up","job_id":"{id}","error":"States.Timeout"}}"#);
        let parsed: WorkMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, WorkMessage::GiveUp { job_id: id.clone(), error: Some("States.Timeout".into()) });
        let submit = WorkMessage::Submit { job_id: id.clone(), task_token: Some("t".into()), attempt: None };
        let back: WorkMessage = serde_json::from_str(&serde_json::to_string(&submit).unwrap()).unwrap();
        assert_eq!(back, submit);
        assert_eq!(back.job_id(), &id);
        assert!(serde_json::from_str::<WorkMessage>(r#"{"kind":"dance","job_id":"x"}"#).is_err());
        let discard: WorkMessage = serde_json::from_str(&format!(r#"{{"kind":"discard_output","job_id":"{id}"}}"#)).unwrap();
        assert_eq!(discard, WorkMessage::DiscardOutput { job_id: id.clone() });
        assert_eq!(discard.job_id(), &id);
        let refresh: WorkMessage = serde_json::from_str(&format!(r#"{{"kind":"refresh","job_id":"{id}"}}"#)).unwrap();
        assert_eq!(refresh, WorkMessage::Refresh { job_id: id.clone() });
        assert_eq!(refresh.job_id(), &id);
        let from_state_machine = format!(r#"{{"kind":"submit","job_id":"{id}","task_token":"tok"}}"#);
        assert_eq!(
            serde_json::from_str::<WorkMessage>(&from_state_machine).unwrap(),
            WorkMessage::Submit { job_id: id.clone(), task_token: Some("tok".into()), attempt: None }
        );
        let retry = WorkMessage::Submit { job_id: id.clone(), task_token: None, attempt: Some(3) };
        let text = serde_json::to_string(&retry).unwrap();
        assert!(!text.contains("task_token"), "{text}");
        assert_eq!(serde_json::from_str::<WorkMessage>(&text).unwrap(), retry);
        let poll = format!(r#"{{"kind":"poll","job_id":"{id}","task_token":"tok"}}"#);
        assert_eq!(
            serde_json::from_str::<WorkMessage>(&poll).unwrap(),
            WorkMessage::Poll { job_id: id.clone(), task_token: Some("tok".into()), round: None }
        );
        let await_review = format!(r#"{{"kind":"await_review","job_id":"{id}","task_token":"tok"}}"#);
        let parsed: WorkMessage = serde_json::from_str(&await_review).unwrap();
        assert_eq!(parsed, WorkMessage::AwaitReview { job_id: id.clone(), task_token: "tok".into() });
        assert_eq!(parsed.job_id(), &id);
        assert!(
            serde_json::from_str::<WorkMessage>(&format!(r#"{{"kind":"await_review","job_id":"{id}"}}"#)).is_err(),
            "a wait needs its token"
        );
        let notify = format!(r#"{{"kind":"notify","job_id":"{id}","status":"completed","attempt":2}}"#);
        let parsed: WorkMessage = serde_json::from_str(&notify).unwrap();
        assert_eq!(
            parsed,
            WorkMessage::Notify {
                job_id: id.clone(),
                status: crate::JobStatus::Completed,
                attempt: 2,
                not_before: None,
                queued_at: None,
                slot_waits: 0
            }
        );
        let later = WorkMessage::Notify {
            job_id: id,
            status: crate::JobStatus::Failed,
            attempt: 5,
            not_before: Some(crate::model::job::timestamp::now()),
            queued_at: Some(crate::model::job::timestamp::now()),
            slot_waits: 3,
        };
        assert_eq!(serde_json::from_str::<WorkMessage>(&serde_json::to_string(&later).unwrap()).unwrap(), later);
    }
}
