//! SQS in memory: at-least-once delivery. A received message is invisible
//! for its visibility timeout and comes back unless deleted with its latest
//! receipt handle; a delayed message is invisible until its delay is over;
//! a message received too often moves to its dead-letter queue (the
//! template's redrive policy, `maxReceiveCount: 5`).

use crate::Memory;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{DeadLetters, DelayedWorkQueue, MessageQueue, WorkQueue};
use videojobs_core::StoreError;

/// The stack's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueName {
    Work,
    Notify,
    WorkDeadLetters,
    NotifyDeadLetters,
}

impl QueueName {
    /// The dead-letter queue its redrive policy names.
    fn dead_letters(self) -> Option<QueueName> {
        match self {
            QueueName::Work => Some(QueueName::WorkDeadLetters),
            QueueName::Notify => Some(QueueName::NotifyDeadLetters),
            _ => None,
        }
    }
}

/// A message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    /// Deletes the message while it is the latest handle of its message.
    pub receipt_handle: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
    /// The `reason` attribute of a dead letter.
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    reason: Option<String>,
    visible_at: OffsetDateTime,
    receive_count: u32,
    handle: Option<String>,
}

pub(crate) struct Queues {
    queues: BTreeMap<QueueName, Vec<Message>>,
    next_id: u64,
    /// Receives after which a message goes to its dead-letter queue (0: never).
    pub max_receive_count: u32,
}

impl Default for Queues {
    fn default() -> Self {
        Self { queues: BTreeMap::new(), next_id: 0, max_receive_count: 5 }
    }
}

impl Queues {
    fn send(&mut self, queue: QueueName, body: String, reason: Option<String>, visible_at: OffsetDateTime) {
        self.next_id += 1;
        let message = Message { id: format!("msg-{}", self.next_id), body, reason, visible_at, receive_count: 0, handle: None };
        self.queues.entry(queue).or_default().push(message);
    }

    fn receive(&mut self, queue: QueueName, max: usize, visibility: Duration, now: OffsetDateTime) -> Vec<Received> {
        // Redrive first: a visible message already received too often goes to its dead-letter queue.
        if let (Some(dlq), max_count) = (queue.dead_letters(), self.max_receive_count) {
            if max_count > 0 {
                let messages = self.queues.entry(queue).or_default();
                let (dead, live): (Vec<Message>, Vec<Message>) =
                    messages.drain(..).partition(|m| m.visible_at <= now && m.receive_count >= max_count);
                *messages = live;
                for mut message in dead {
                    message.receive_count = 0;
                    message.handle = None;
                    self.queues.entry(dlq).or_default().push(message);
                }
            }
        }
        let mut visible: Vec<usize> = Vec::new();
        let messages = self.queues.entry(queue).or_default();
        for (i, message) in messages.iter().enumerate() {
            if message.visible_at <= now {
                visible.push(i);
            }
        }
        visible.sort_by_key(|&i| (messages[i].visible_at, i));
        let mut out = Vec::new();
        for i in visible.into_iter().take(max) {
            self.next_id += 1;
            let handle = format!("rh-{}", self.next_id);
            let message = &mut self.queues.entry(queue).or_default()[i];
            message.receive_count += 1;
            message.visible_at = now + visibility;
            message.handle = Some(handle.clone());
            out.push(Received {
                message_id: message.id.clone(),
                body: message.body.clone(),
                receipt_handle: handle,
                receive_count: message.receive_count,
                reason: message.reason.clone(),
            });
        }
        out
    }

    fn find(&mut self, queue: QueueName, handle: &str) -> Option<usize> {
        self.queues.get(&queue)?.iter().position(|m| m.handle.as_deref() == Some(handle))
    }
}

/// A queue's producer side, for `WorkQueue` and `DelayedWorkQueue`.
#[derive(Clone)]
pub struct WorkQueueHandle {
    memory: Memory,
    queue: QueueName,
}

impl WorkQueueHandle {
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    pub fn name(&self) -> QueueName {
        self.queue
    }
}

impl Memory {
    /// The producer of `queue`.
    pub fn queue(&self, queue: QueueName) -> WorkQueueHandle {
        WorkQueueHandle { memory: self.clone(), queue }
    }

    /// Receives up to `max` visible messages, each made invisible for `visibility`.
    pub fn receive(&self, queue: QueueName, max: usize, visibility: Duration) -> Vec<Received> {
        let now = self.now();
        self.lock().queues.receive(queue, max, visibility, now)
    }

    /// Deletes the message whose latest receipt handle this is; an older
    /// handle (the message was received again since) deletes nothing, and,
    /// as SQS, is no error. Answers whether a message was deleted.
    pub fn delete(&self, queue: QueueName, receipt_handle: &str) -> bool {
        let mut state = self.lock();
        let Some(i) = state.queues.find(queue, receipt_handle) else { return false };
        state.queues.queues.entry(queue).or_default().remove(i);
        true
    }

    /// Sets a received message's visibility timeout from now (0: visible at once).
    pub fn change_visibility(&self, queue: QueueName, receipt_handle: &str, visibility: Duration) -> bool {
        let now = self.now();
        let mut state = self.lock();
        let Some(i) = state.queues.find(queue, receipt_handle) else { return false };
        state.queues.queues.entry(queue).or_default()[i].visible_at = now + visibility;
        true
    }

    /// Makes a message visible now, as if its visibility timeout ran out
    /// (the handle it was last received with still deletes it until it is received again).
    pub fn redeliver(&self, queue: QueueName, message_id: &str) -> bool {
        let now = self.now();
        let mut state = self.lock();
        let Some(message) = state.queues.queues.entry(queue).or_default().iter_mut().find(|m| m.id == message_id) else { return false };
        message.visible_at = now;
        true
    }

    /// Puts a second copy of a message on the queue: a standard queue may
    /// deliver a message more than once even while a copy is being handled.
    pub fn duplicate(&self, queue: QueueName, message_id: &str) -> bool {
        let now = self.now();
        let mut state = self.lock();
        let Some(message) = state.queues.queues.get(&queue).and_then(|q| q.iter().find(|m| m.id == message_id)).cloned() else {
            return false;
        };
        state.queues.send(queue, message.body, message.reason, now);
        true
    }

    /// Every message on the queue, visible or not, by id and body.
    pub fn messages(&self, queue: QueueName) -> Vec<(String, String)> {
        self.lock().queues.queues.get(&queue).map(|q| q.iter().map(|m| (m.id.clone(), m.body.clone())).collect()).unwrap_or_default()
    }

    /// When the queue's next message becomes visible (`None`: it is empty),
    /// for a simulator that jumps the clock there.
    pub fn next_visible_at(&self, queue: QueueName) -> Option<OffsetDateTime> {
        self.lock().queues.queues.get(&queue).and_then(|q| q.iter().map(|m| m.visible_at).min())
    }

    /// Receives after which a message goes to its dead-letter queue (0: never).
    pub fn set_max_receive_count(&self, count: u32) {
        self.lock().queues.max_receive_count = count;
    }
}

fn body_of(message: &WorkMessage) -> Result<String, StoreError> {
    serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))
}

#[async_trait]
impl WorkQueue for WorkQueueHandle {
    async fn enqueue(&self, message: &WorkMessage) -> Result<(), StoreError> {
        let body = body_of(message)?;
        self.memory
            .call("WorkQueue::enqueue", |state, now| {
                state.queues.send(self.queue, body, None, now);
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl DelayedWorkQueue for WorkQueueHandle {
    async fn enqueue_after(&self, message: &WorkMessage, delay: Duration) -> Result<(), StoreError> {
        let body = body_of(message)?;
        // SQS delays whole seconds, 15 minutes at most (the adapter cuts it so).
        let delay = Duration::from_secs(delay.min(videojobs_core::model::notification::MAX_QUEUE_DELAY).as_secs());
        self.memory
            .call("DelayedWorkQueue::enqueue_after", |state, now| {
                state.queues.send(self.queue, body, None, now + delay);
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl DeadLetters for Memory {
    async fn dead_letter(&self, body: &str, reason: &str, queue: MessageQueue) -> Result<(), StoreError> {
        let queue = match queue {
            MessageQueue::Notifications => QueueName::NotifyDeadLetters,
            MessageQueue::Work => QueueName::WorkDeadLetters,
        };
        let reason: String = reason.chars().take(1_000).collect();
        let body = if body.is_empty() { "(empty)".to_owned() } else { body.to_owned() };
        self.call("DeadLetters::dead_letter", |state, now| {
            state.queues.send(queue, body, Some(reason), now);
            Ok(())
        })
        .await
    }
}
