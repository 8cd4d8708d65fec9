//! Core's own code, stepped one port call at a time: a [`Gate`] for
//! testkit's `Memory` that pauses the running handler before each of its
//! port calls and can make it die right after its k-th write, and an
//! executor of such handlers on this thread. What the simulator and the
//! interleaving tests (`sim/tests/pipeline.rs`) drive core's rules with.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use videojobs_testkit::{Gate, Pause};

/// Port calls that only read: the others count as writes for a crash plan.
fn is_read(op: &str) -> bool {
    let method = op.rsplit("::").next().unwrap_or(op);
    matches!(
        method,
        "job"
            | "events"
            | "jobs_of"
            | "active_jobs_of"
            | "idempotency_record"
            | "task_token"
            | "prompt"
            | "had_early_callback"
            | "account"
            | "key_for"
            | "list_keys"
            | "upload"
            | "job_for_provider_request"
            | "webhook_secrets"
            | "was_delivered"
            | "counters"
            | "stuck_jobs"
            | "waiting"
            | "review_token"
            | "object_size"
            | "read_prefix"
            | "presign_get"
            | "presign_put"
            | "resolve"
            | "post"
    )
}

#[derive(Default)]
struct Inner {
    /// The handler being polled; `None`: the caller's own calls pass straight through.
    current: Option<usize>,
    writes: BTreeMap<usize, u32>,
    crash_after: BTreeMap<usize, u32>,
    crashed: BTreeSet<usize>,
    /// The call each handler is paused before.
    paused_before: BTreeMap<usize, &'static str>,
    /// Every call each handler made, in order.
    calls: BTreeMap<usize, Vec<&'static str>>,
}

/// The gate: install it with `Memory::set_gate`.
#[derive(Clone, Default)]
pub struct Stepper {
    inner: Arc<Mutex<Inner>>,
}

/// Returns `Pending` once: where the executor may run another handler.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

impl Gate for Stepper {
    fn before(&self, op: &'static str) -> Pause {
        let mut inner = self.lock();
        let Some(task) = inner.current else { return Box::pin(std::future::ready(())) };
        inner.paused_before.insert(task, op);
        inner.calls.entry(task).or_default().push(op);
        Box::pin(YieldOnce(false))
    }

    fn after(&self, op: &'static str, acted: bool) -> Pause {
        let mut inner = self.lock();
        let Some(task) = inner.current else { return Box::pin(std::future::ready(())) };
        if acted && !is_read(op) {
            let n = inner.writes.entry(task).or_insert(0);
            *n += 1;
            let n = *n;
            if inner.crash_after.get(&task) == Some(&n) {
                // The process died right after this write: the future never goes on.
                inner.crashed.insert(task);
                return Box::pin(std::future::pending());
            }
        }
        Box::pin(std::future::ready(()))
    }
}

/// How one step of a handler ended.
#[derive(Debug)]
pub enum Stepped<T> {
    Running,
    Done(T),
    Crashed,
}

/// A handler: core's code for one message, callback or API call.
pub type Handler<T> = Pin<Box<dyn Future<Output = T>>>;

impl Stepper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handler being polled now, if any.
    pub fn running(&self) -> Option<usize> {
        self.lock().current
    }

    /// Plans the handler's death right after its `n`th write.
    pub fn crash_after(&self, task: usize, n: u32) {
        self.lock().crash_after.insert(task, n);
    }

    /// The port call the handler is paused before, if any.
    pub fn paused_before(&self, task: usize) -> Option<&'static str> {
        self.lock().paused_before.get(&task).copied()
    }

    /// Every port call the handler made so far (the one it is paused before included).
    pub fn calls(&self, task: usize) -> Vec<&'static str> {
        self.lock().calls.get(&task).cloned().unwrap_or_default()
    }

    /// Runs the handler to its next port call (or its end, or its death).
    pub fn step<T>(&self, task: usize, handler: &mut Handler<T>) -> Stepped<T> {
        self.lock().current = Some(task);
        let polled = handler.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        let mut inner = self.lock();
        inner.current = None;
        let stepped = match polled {
            _ if inner.crashed.contains(&task) => Stepped::Crashed,
            Poll::Pending => return Stepped::Running,
            Poll::Ready(out) => Stepped::Done(out),
        };
        inner.crashed.remove(&task);
        inner.crash_after.remove(&task);
        inner.writes.remove(&task);
        inner.paused_before.remove(&task);
        inner.calls.remove(&task);
        stepped
    }

    /// Steps the handler until it is paused before `op` for the `nth` time (from 1).
    /// Panics if it ends first: a test that expects an interleaving fails loudly.
    pub fn run_until_before<T: std::fmt::Debug>(&self, task: usize, handler: &mut Handler<T>, op: &str, nth: usize) {
        loop {
            match self.step(task, handler) {
                Stepped::Running => {
                    let calls = self.calls(task);
                    if calls.last() == Some(&op) && calls.iter().filter(|c| **c == op).count() == nth {
                        return;
                    }
                }
                other => panic!("the handler ended before its call {nth} of {op}: {other:?}"),
            }
        }
    }

    /// Steps the handler to its end.
    pub fn run_to_end<T: std::fmt::Debug>(&self, task: usize, handler: &mut Handler<T>) -> Stepped<T> {
        loop {
            match self.step(task, handler) {
                Stepped::Running => {}
                other => return other,
            }
        }
    }
}
