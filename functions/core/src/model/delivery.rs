//! One attempt at a client notification, as the delivery log keeps it on
//! the attempt's job event (`JobEvent::delivery`). A leaf: the job model
//! holds it, the notification model reads it.

use crate::model::ids::UserId;
use serde::{Deserialize, Serialize};

/// What started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The retry schedule: attempt 1 at the change, then the schedule's waits.
    Scheduled,
    /// The client asked (`POST …/redeliver`): outside the schedule, never restarting it.
    Manual,
}

/// Whether an attempt reached the endpoint with a 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// Anything else: another status, no answer, an address refused, no slot.
    Failed,
}

/// One attempt, as the log keeps it. No secret: the endpoint is scheme, host
/// and port only (a path or query may carry the client's token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFacts {
    /// Whose endpoint it was (the failed-deliveries index is by user).
    pub user_id: UserId,
    /// The schedule's or the client's.
    pub trigger: Trigger,
    /// The schedule's attempt number; `None` for a manual send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `scheme://host[:port]` of the `webhook_url`.
    pub endpoint: String,
    /// Delivered or failed.
    pub outcome: DeliveryOutcome,
    /// The endpoint's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Why it failed (`notify_http_500`, `notify_network`, `notify_refused_address`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// From the address check to the answer, in milliseconds.
    pub duration_ms: u64,
}
