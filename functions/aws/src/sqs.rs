//! SQS: the work queue.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use videojobs_core::ports::WorkQueue;
use videojobs_core::work::WorkMessage;
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
impl videojobs_core::notify::DelayedWorkQueue for SqsWorkQueue {
    async fn enqueue_after(&self, message: &WorkMessage, delay: std::time::Duration) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        let seconds = delay.min(videojobs_core::notify::MAX_QUEUE_DELAY).as_secs() as i32;
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
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| store_error("SendMessage", e))?;
        Ok(())
    }
}
