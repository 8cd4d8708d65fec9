//! What must hold after every step of a run, when it has settled, and at its end.
//!
//! A breach is either a bug or one of the known gaps below: a gap the rules
//! have today, whose fix is not small, kept visible by a test of its own
//! (`sim/tests/seeds.rs`) that replays a seed showing it.

use crate::world::*;
use std::collections::BTreeMap;
use videojobs_core::model::lifecycle::{transition, JobStatus};

/// A status change's notification is queued by a write of its own after
/// the change (`NotifyingJobs`): a writer that dies in between, or a queue
/// that refuses three times, loses it.
pub const GAP_NOTIFICATION_NOT_QUEUED: &str = "notification-not-queued";
/// A duplicate `submit` that reads the attempt mid-way resumes it while the
/// copy it takes for dead is alive; when one of the two records a retry and
/// the next attempt takes over, the other still calls the provider.
pub const GAP_RESUMED_DUPLICATE: &str = "resumed-duplicate-reaches-provider";

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub what: String,
    /// The known gap this is, if one.
    pub gap: Option<&'static str>,
}

impl From<String> for Broken {
    fn from(what: String) -> Self {
        Broken { what, gap: None }
    }
}

/// After every step.
pub fn each_step(w: &World) -> Result<(), Broken> {
    if let Some((what, gap)) = w.breaches.first() {
        return Err(Broken { what: what.clone(), gap: *gap });
    }
    if let Some(body) = w.dead_letters.first() {
        return Err(format!("a message went to the dead-letter queue: {body}").into());
    }
    let mut balance: BTreeMap<&str, i64> = w.accounts.iter().map(|(u, a)| (u.as_str(), a.opened_with)).collect();
    let mut debits: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut refunds: BTreeMap<&str, u32> = BTreeMap::new();
    for (job, user, entry, amount) in &w.ledger {
        let b = balance.entry(user.as_str()).or_default();
        match entry {
            Entry::Debit => {
                *b -= amount;
                debits.entry(job.as_str()).or_default().push(*amount);
            }
            Entry::Refund => {
                *b += amount;
                *refunds.entry(job.as_str()).or_default() += 1;
            }
        }
    }
    for (user, account) in &w.accounts {
        let expected = balance.get(user.as_str()).copied().unwrap_or_default();
        if account.credits != expected || account.credits < 0 {
            return Err(format!("credits of {user} not conserved: {} held, {expected} by the ledger", account.credits).into());
        }
    }
    for (id, job) in &w.jobs {
        for pair in job.history.windows(2) {
            if transition(pair[0], pair[1]).is_err() {
                return Err(format!("job {id} moved backwards or sideways: {:?}", job.history).into());
            }
        }
        if job.history.last() != Some(&job.status) {
            return Err(format!("job {id} is {} but its history ends {:?}", job.status, job.history.last()).into());
        }
        if debits.get(id.as_str()).map(Vec::as_slice) != Some(&[job.cost]) {
            return Err(format!("job {id} was debited {:?}, not once its cost {}", debits.get(id.as_str()), job.cost).into());
        }
        let refunded = refunds.get(id.as_str()).copied().unwrap_or(0);
        let owed = u32::from(job.history.windows(2).any(|p| transition(p[0], p[1]).is_ok_and(|t| t.refunds_credits)));
        if refunded != owed {
            return Err(format!("job {id} ({:?}) was refunded {refunded} times, owed {owed}", job.history).into());
        }
        if job.status == JobStatus::Approved && !job.output.as_ref().is_some_and(|key| w.objects.contains_key(key)) {
            return Err(format!("approved job {id} has no video (output {:?})", job.output).into());
        }
        if let Some(key) = &job.output {
            if !w.objects.contains_key(key) && !matches!(job.status, JobStatus::Expired | JobStatus::Rejected) {
                return Err(format!("job {id} is {} and points at {key}, which was deleted", job.status).into());
            }
        }
        if job.output_deleted && !matches!(job.status, JobStatus::Expired | JobStatus::Rejected) {
            return Err(format!("job {id} is {} but its video was deleted", job.status).into());
        }
    }
    // An approval tags the video kept before it commits: until a rejection
    // or an expiry that won the race deletes it, a kept object may belong to
    // a job that is not approved, but always to a job.
    for (key, (kept, _)) in &w.objects {
        if *kept && !w.jobs.values().any(|j| j.output.as_ref() == Some(key)) {
            return Err(format!("{key} is kept but no job points at it").into());
        }
    }
    let mut ids: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for (job, status, message) in &w.delivered {
        if *ids.entry((job.as_str(), status.as_str())).or_insert(message.as_str()) != message.as_str() {
            return Err(format!("job {job}'s {status} notification went out under two message ids").into());
        }
    }
    Ok(())
}

/// Once nothing is left to do but the retention windows' waits.
pub fn settled(w: &World) -> Result<(), Broken> {
    for (id, job) in &w.jobs {
        let waiting = w.executions.get(id).is_some_and(|e| !e.ended && e.state == "KeepForReview" && e.timer.is_some());
        if !(job.status.is_terminal() || (job.status == JobStatus::Completed && waiting)) {
            return Err(format!("job {id} settled {} (history {:?}) without a pending expiry", job.status, job.history).into());
        }
    }
    Ok(())
}

/// At the end, after the windows and the bucket's safety net.
pub fn at_end(w: &World) -> Result<(), Broken> {
    for (key, (kept, _)) in &w.objects {
        if !w.jobs.values().any(|j| j.output.as_ref() == Some(key)) {
            return Err(format!("{key} is in the bucket but no job points at it").into());
        }
        if *kept && !w.jobs.values().any(|j| j.status == JobStatus::Approved && j.output.as_ref() == Some(key)) {
            return Err(format!("{key} is kept but no approved job points at it").into());
        }
    }
    for (id, job) in &w.jobs {
        if !job.status.is_terminal() {
            return Err(format!("job {id} ended {} (history {:?})", job.status, job.history).into());
        }
    }
    for (id, job) in &w.jobs {
        if job.webhook {
            for status in job.history.iter().filter(|s| videojobs_core::model::notify::is_notified(**s)) {
                if !w.delivered.iter().any(|(j, s, _)| j == id && s == status) {
                    let what = format!("job {id}'s client was never told it was {status}");
                    let queued = w.queued_notifications.contains(&(id.clone(), status.as_str()));
                    return Err(Broken { what, gap: (!queued).then_some(GAP_NOTIFICATION_NOT_QUEUED) });
                }
            }
        }
    }
    Ok(())
}
