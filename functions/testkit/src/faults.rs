//! Fault injection: any port call can be made to fail with
//! `StoreError::Unavailable`, before it acts (the call never happened) or
//! after (it acted, and its answer was lost: what a timeout looks like to
//! the caller, and why everything downstream must be idempotent).
//!
//! Calls are named `Trait::method` (`"JobWrites::change_status"`,
//! `"WorkQueue::enqueue"`, …) and counted per name from 1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use videojobs_core::StoreError;

/// When an injected fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The call fails without acting.
    Before,
    /// The call acts, then fails: its effect stays, its answer is lost.
    AfterWrite,
}

/// A call as a fault's predicate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: &'static str,
    /// 1 for the first call of this name.
    pub n: u64,
}

type Predicate = Box<dyn Fn(&Call) -> bool + Send + Sync>;

struct Rule {
    moment: Moment,
    matches: Predicate,
}

#[derive(Default)]
struct Inner {
    counts: HashMap<&'static str, u64>,
    rules: Vec<Rule>,
    log: Vec<Call>,
}

/// The fault rules and the call log of one [`crate::Memory`].
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `n`th call of `op` (from 1) fails.
    pub fn fail_nth(&self, op: &'static str, n: u64, moment: Moment) {
        self.fail_when(moment, move |call| call.op == op && call.n == n);
    }

    /// Every call of `op` fails until [`Faults::clear`].
    pub fn fail_always(&self, op: &'static str, moment: Moment) {
        self.fail_when(moment, move |call| call.op == op);
    }

    /// Every call the predicate picks fails.
    pub fn fail_when(&self, moment: Moment, predicate: impl Fn(&Call) -> bool + Send + Sync + 'static) {
        self.lock().rules.push(Rule { moment, matches: Box::new(predicate) });
    }

    /// Removes every rule (the counts and the log stay).
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<Call> {
        self.lock().log.clone()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: &str) -> u64 {
        self.lock().counts.get(op).copied().unwrap_or(0)
    }

    /// Counts a call and applies the `Before` rules; answers its number.
    pub(crate) fn enter(&self, op: &'static str, moment: Moment) -> Result<u64, StoreError> {
        let n = {
            let mut inner = self.lock();
            let count = inner.counts.entry(op).or_insert(0);
            *count += 1;
            let n = *count;
            inner.log.push(Call { op, n });
            n
        };
        self.check(op, n, moment)?;
        Ok(n)
    }

    pub(crate) fn check(&self, op: &'static str, n: u64, moment: Moment) -> Result<(), StoreError> {
        let call = Call { op, n };
        let inner = self.lock();
        if inner.rules.iter().any(|rule| rule.moment == moment && (rule.matches)(&call)) {
            let when = if moment == Moment::Before { "before" } else { "after" };
            return Err(StoreError::Unavailable(format!("injected fault {when} call {n} of {op}")));
        }
        Ok(())
    }
}
