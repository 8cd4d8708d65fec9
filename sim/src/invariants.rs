//! What must hold after every step of a run, when it has settled, and at its end.

use crate::world::*;
use std::collections::BTreeMap;
use videojobs_core::model::lifecycle::{transition, JobStatus};

/// After every step.
pub fn each_step(w: &World) -> Result<(), String> {
    if let Some(breach) = w.breaches.first() {
        return Err(breach.clone());
    }
    if let Some(body) = w.dead_letters.first() {
        return Err(format!("a message went to the dead-letter queue: {body}"));
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
            return Err(format!("credits of {user} not conserved: {} held, {expected} by the ledger", account.credits));
        }
    }
    for (id, job) in &w.jobs {
        for pair in job.history.windows(2) {
            if transition(pair[0], pair[1]).is_err() {
                return Err(format!("job {id} moved backwards or sideways: {:?}", job.history));
            }
        }
        if job.history.last() != Some(&job.status) {
            return Err(format!("job {id} is {} but its history ends {:?}", job.status, job.history.last()));
        }
        if debits.get(id.as_str()).map(Vec::as_slice) != Some(&[job.cost]) {
            return Err(format!("job {id} was debited {:?}, not once its cost {}", debits.get(id.as_str()), job.cost));
        }
        let refunded = refunds.get(id.as_str()).copied().unwrap_or(0);
        let owed = u32::from(job.history.windows(2).any(|p| transition(p[0], p[1]).is_ok_and(|t| t.refunds_credits)));
        if refunded != owed {
            return Err(format!("job {id} ({:?}) was refunded {refunded} times, owed {owed}", job.history));
        }
        if job.status == JobStatus::Approved && !job.output.as_ref().is_some_and(|key| w.objects.contains_key(key)) {
            return Err(format!("approved job {id} has no video (output {:?})", job.output));
        }
        if let Some(key) = &job.output {
            if !w.objects.contains_key(key) && !matches!(job.status, JobStatus::Expired | JobStatus::Rejected) {
                return Err(format!("job {id} is {} and points at {key}, which was deleted", job.status));
            }
        }
        if job.output_deleted && !matches!(job.status, JobStatus::Expired | JobStatus::Rejected) {
            return Err(format!("job {id} is {} but its video was deleted", job.status));
        }
    }
    for (key, (kept, _)) in &w.objects {
        if *kept && !w.jobs.values().any(|j| j.status == JobStatus::Approved && j.output.as_ref() == Some(key)) {
            return Err(format!("{key} is kept but no approved job points at it"));
        }
    }
    let mut ids: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for (job, status, message) in &w.delivered {
        if *ids.entry((job.as_str(), status.as_str())).or_insert(message.as_str()) != message.as_str() {
            return Err(format!("job {job}'s {status} notification went out under two message ids"));
        }
    }
    Ok(())
}

/// Once nothing is left to do but the retention windows' waits.
pub fn settled(w: &World) -> Result<(), String> {
    for (id, job) in &w.jobs {
        let waiting = w.executions.get(id).is_some_and(|e| !e.ended && e.state == "KeepForReview" && e.timer.is_some());
        if !(job.status.is_terminal() || (job.status == JobStatus::Completed && waiting)) {
            return Err(format!("job {id} settled {} (history {:?}) without a pending expiry", job.status, job.history));
        }
    }
    Ok(())
}

/// At the end, after the windows and the bucket's safety net.
pub fn at_end(w: &World) -> Result<(), String> {
    for (id, job) in &w.jobs {
        if !job.status.is_terminal() {
            return Err(format!("job {id} ended {} (history {:?})", job.status, job.history));
        }
        if job.webhook {
            for status in job.history.iter().filter(|s| videojobs_core::model::notify::is_notified(**s)) {
                if !w.delivered.iter().any(|(j, s, _)| j == id && s == status) {
                    return Err(format!("job {id}'s client was never told it was {status}"));
                }
            }
        }
    }
    for key in w.objects.keys() {
        if !w.jobs.values().any(|j| j.output.as_ref() == Some(key)) {
            return Err(format!("{key} is in the bucket but no job points at it"));
        }
    }
    Ok(())
}
