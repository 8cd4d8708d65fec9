//! SQS: the work queue, the notification queue and their dead-letter queues.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use videojobs_core::model::work::WorkMessage;
use videojobs_core::ports::{MessageQueue, WorkQueue};
use videojobs_core::StoreError;

#[derive(Clone)]
pub struct SqsWorkQueue {
    client: Client,
    queue_url: String,
}

impl SqsWorkQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl videojobs_core::ports::DelayedWorkQueue for SqsWorkQueue {
    async fn enqueue_after(&self, message: &WorkMessage, delay: std::time::Duration) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        let seconds = delay.min(videojobs_core::model::notification::MAX_QUEUE_DELAY).as_secs() as i32;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(seconds)
            .send()
            .await
            .map_err(|e| store_error("SendMessage", e))?;
        Ok(())
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn enqueue(&self, message: &WorkMessage) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        self.client.send_message().queue_url(&self.queue_url).message_body(body).send().await.map_err(|e| store_error("SendMessage", e))?;
        Ok(())
    }
}

/// Sends a message that can never be handled to its queue's dead-letter
/// queue, with the reason as a message attribute.
#[derive(Clone)]
pub struct SqsDeadLetters {
    client: Client,
    work: Option<String>,
    notifications: Option<String>,
}

impl SqsDeadLetters {
    pub fn new(client: Client, resources: &crate::Resources) -> Self {
        Self { client, work: resources.work_dlq_url.clone(), notifications: resources.notify_dlq_url.clone() }
    }
}

#[async_trait]
impl videojobs_core::ports::DeadLetters for SqsDeadLetters {
    async fn dead_letter(&self, body: &str, reason: &str, queue: MessageQueue) -> Result<(), StoreError> {
        let queue = match queue {
            MessageQueue::Notifications => &self.notifications,
            MessageQueue::Work => &self.work,
        };
        let Some(queue) = queue else {
            return Err(StoreError::Internal("no dead-letter queue is configured".into()));
        };
        let reason: String = reason.chars().take(1_000).collect();
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| StoreError::Internal(format!("building the reason attribute: {e}")))?;
        self.client
            .send_message()
            .queue_url(queue)
            .message_body(if body.is_empty() { "(empty)" } else { body })
            .message_attributes("reason", attribute)
            .send()
            .await
            .map_err(|e| store_error("SendMessage", e))?;
        Ok(())
    }
}
