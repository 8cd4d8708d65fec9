//! Failover: a job whose provider refuses it, or keeps failing to accept it,
//! moves to the deployment's fallback provider, once, and never after a
//! provider has accepted it (then the first provider is already generating,
//! and paying twice for one video is worse than waiting).
//!
//! Which refusals move the job: every refusal except those that blame the
//! request itself (the provider's content policy, a prompt too long, an image
//! it cannot read), which another provider would refuse as well, and which
//! the user must act on. A refusal of the account or the configuration
//! (a bad token, no credit, an unknown model, a model whose input schema does
//! not fit ours) moves the job: the user did nothing wrong.

use crate::model::provider::ProviderError;
use crate::model::request::ProviderName;

/// A deployment's fallback, from `FALLBACK_PROVIDER` and `FALLBACK_AFTER_ATTEMPTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The provider a job moves to; a job already there does not move.
    pub fallback: ProviderName,
    /// Transient failures to accept the job (429, 5xx, network) at the first
    /// provider before the job moves; at least 1.
    pub after_attempts: u32,
}

/// Refusal codes that blame the request, not the provider: no failover.
pub fn refusal_blames_the_request(code: &str) -> bool {
    matches!(code, "content_policy" | "nsfw" | "prompt_too_long" | "image_unreadable")
}

impl Failover {
    /// Why the job should move from `current` to the fallback after `error`,
    /// given how many earlier transient failures it had there; `None` to stay.
    /// `accepted` is whether a provider already took the job.
    pub fn reason(&self, current: &ProviderName, accepted: bool, error: &ProviderError, earlier_failures: u32) -> Option<String> {
        if accepted || current == &self.fallback {
            return None;
        }
        match error {
            ProviderError::Refused { code, .. } if !refusal_blames_the_request(code) => {
                Some(format!("'{current}' refused the job ({code})"))
            }
            ProviderError::Transient { .. } if earlier_failures + 1 >= self.after_attempts => {
                Some(format!("'{current}' failed to accept the job {} times", earlier_failures + 1))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn name(text: &str) -> ProviderName {
        text.parse().unwrap()
    }

    fn policy(after: u32) -> Failover {
        Failover { fallback: name("local"), after_attempts: after }
    }

    fn busy() -> ProviderError {
        ProviderError::Transient { message: "HTTP 503".into(), retry_after: Some(Duration::from_secs(1)) }
    }

    fn refused(code: &str) -> ProviderError {
        ProviderError::Refused { code: code.into(), message: "no".into() }
    }

    #[test]
    fn a_refusal_of_the_account_or_configuration_moves_the_job_at_once() {
        let p = policy(2);
        for code in ["unauthorized", "insufficient_credit", "model_not_found", "invalid_input"] {
            let reason = p.reason(&name("replicate"), false, &refused(code), 0);
            assert!(reason.as_deref().is_some_and(|r| r.contains("refused") && r.contains(code)), "{code}: {reason:?}");
        }
    }

    #[test]
    fn a_refusal_that_blames_the_request_keeps_the_job_where_it_is() {
        for code in ["content_policy", "nsfw", "prompt_too_long", "image_unreadable"] {
            assert_eq!(policy(2).reason(&name("replicate"), false, &refused(code), 0), None, "{code}");
        }
    }

    #[test]
    fn transient_failures_move_the_job_only_once_they_reach_the_threshold() {
        let p = policy(3);
        assert_eq!(p.reason(&name("fal"), false, &busy(), 0), None);
        assert_eq!(p.reason(&name("fal"), false, &busy(), 1), None);
        assert_eq!(p.reason(&name("fal"), false, &busy(), 2).as_deref(), Some("'fal' failed to accept the job 3 times"));
        assert!(policy(1).reason(&name("fal"), false, &busy(), 0).is_some());
    }

    #[test]
    fn an_accepted_job_or_one_already_on_the_fallback_never_moves() {
        let p = policy(1);
        assert_eq!(p.reason(&name("replicate"), true, &refused("unauthorized"), 5), None);
        assert_eq!(p.reason(&name("local"), false, &refused("unauthorized"), 5), None);
        assert_eq!(p.reason(&name("replicate"), false, &ProviderError::NotFound("x".into()), 5), None);
    }
}
