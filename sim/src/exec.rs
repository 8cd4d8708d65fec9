//! The deterministic executor: handlers are futures polled one step at a
//! time on this thread, each step running a handler from one port call to
//! the next, the simulator choosing which handler steps next. A handler that
//! "crashes" is dropped right after the chosen write, as a process that died
//! there: nothing after that write happens, its message is not deleted.

use crate::rng::Rng;
use crate::world::World;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A port call failed (a store or a service answered 5xx): the handler's
/// error path runs, and its message comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable;

/// How a handler ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Ok,
    /// Retryable: the message comes back after its visibility timeout.
    Retry(String),
    /// Never handleable: the message goes to the dead-letter queue.
    Unusable(String),
}

/// What the handlers share: the world, the one RNG, and the crash plan.
pub struct Ctx {
    pub world: RefCell<World>,
    /// Which rules run: today's, or today's with one fix undone.
    pub rules: crate::Rules,
    pub rng: RefCell<Rng>,
    /// Percent of port calls that fail (0 once the run drains).
    pub fault_percent: Cell<u64>,
    current: Cell<usize>,
    /// Task → the write after which it dies.
    crash_after: RefCell<BTreeMap<usize, u32>>,
    writes: RefCell<BTreeMap<usize, u32>>,
    crashed: RefCell<BTreeMap<usize, bool>>,
}

/// Returns `Pending` once: the point where the simulator may run another handler.
struct YieldPoint(bool);

impl Future for YieldPoint {
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

impl Ctx {
    pub fn new(world: World, rng: Rng, rules: crate::Rules) -> Rc<Self> {
        Rc::new(Ctx {
            world: RefCell::new(world),
            rules,
            rng: RefCell::new(rng),
            fault_percent: Cell::new(0),
            current: Cell::new(0),
            crash_after: RefCell::new(BTreeMap::new()),
            writes: RefCell::new(BTreeMap::new()),
            crashed: RefCell::new(BTreeMap::new()),
        })
    }

    pub fn percent(&self, p: u64) -> bool {
        self.rng.borrow_mut().percent(p)
    }

    pub fn between(&self, lo: i64, hi: i64) -> i64 {
        self.rng.borrow_mut().between(lo, hi)
    }

    async fn step(&self) -> Result<(), Unavailable> {
        YieldPoint(false).await;
        let p = self.fault_percent.get();
        if p > 0 && self.percent(p) {
            return Err(Unavailable);
        }
        Ok(())
    }

    /// A read of the store.
    pub async fn read<T>(&self, f: impl FnOnce(&World) -> T) -> Result<T, Unavailable> {
        self.step().await?;
        Ok(f(&self.world.borrow()))
    }

    /// A write (to the store, a queue, the bucket, Step Functions): counted,
    /// and the handler dies after it if this is the write its crash plan names.
    /// A failed write either did not happen or happened and lost its answer.
    pub async fn write<T>(&self, f: impl FnOnce(&mut World) -> T) -> Result<T, Unavailable> {
        let failed = self.step().await.is_err();
        if failed && self.percent(50) {
            return Err(Unavailable);
        }
        let out = f(&mut self.world.borrow_mut());
        let task = self.current.get();
        let mut writes = self.writes.borrow_mut();
        let n = writes.entry(task).or_insert(0);
        *n += 1;
        if self.crash_after.borrow().get(&task) == Some(n) {
            self.crashed.borrow_mut().insert(task, true);
        }
        if failed {
            return Err(Unavailable);
        }
        Ok(out)
    }

    /// A call to the outside (the provider, a client's endpoint): a yield
    /// point, not a write of ours.
    pub async fn call<T>(&self, f: impl FnOnce(&mut World, &mut Rng) -> T) -> T {
        YieldPoint(false).await;
        let mut rng = self.rng.borrow_mut();
        f(&mut self.world.borrow_mut(), &mut rng)
    }
}

pub type Handler = Pin<Box<dyn Future<Output = Ended>>>;

pub struct Task {
    pub id: usize,
    pub what: Work,
    pub future: Handler,
}

/// What a running handler was started for, to settle when it ends.
#[derive(Debug, Clone)]
pub enum Work {
    Message { queue: crate::world::QueueName, id: u64 },
    Callback(crate::world::Callback),
    Api(String),
    Schedule,
}

/// How one step of a task ended.
pub enum Stepped {
    Running,
    Done(Ended),
    Crashed,
}

impl Ctx {
    /// Plans the task's death after its `n`th write (`None`: it lives).
    pub fn plan(&self, task: usize, crash_after: Option<u32>) {
        if let Some(n) = crash_after {
            self.crash_after.borrow_mut().insert(task, n);
        }
    }

    /// Runs the task to its next yield point.
    pub fn step_task(&self, task: &mut Task) -> Stepped {
        self.current.set(task.id);
        let mut cx = Context::from_waker(Waker::noop());
        let polled = task.future.as_mut().poll(&mut cx);
        let crashed = self.crashed.borrow().get(&task.id).copied().unwrap_or(false);
        let stepped = match polled {
            _ if crashed => Stepped::Crashed,
            Poll::Pending => Stepped::Running,
            Poll::Ready(ended) => Stepped::Done(ended),
        };
        if !matches!(stepped, Stepped::Running) {
            self.crash_after.borrow_mut().remove(&task.id);
            self.writes.borrow_mut().remove(&task.id);
            self.crashed.borrow_mut().remove(&task.id);
        }
        stepped
    }
}
