//! Client notifications over HTTPS (the `NotificationPoster` port): to the
//! checked address only, with no proxy and no redirect followed.

use std::time::Duration;
use videojobs_core::model::notification::Destination;
use videojobs_core::ports::NotificationPoster;

/// How long a client endpoint gets to connect and to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpsPoster;

#[async_trait::async_trait]
impl NotificationPoster for HttpsPoster {
    async fn post(&self, destination: &Destination, id: &str, unix_timestamp: i64, signature: &str, body: Vec<u8>) -> Result<u16, String> {
        let builder = videojobs_providers::pinned_to(destination).connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT);
        let client = builder.build().map_err(|e| format!("building the client: {e}"))?;
        let response = client
            .post(destination.url.clone())
            .header("content-type", "application/json")
            .header("user-agent", "videojobs-notifier/1")
            .header("webhook-id", id)
            .header("webhook-timestamp", unix_timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| videojobs_core::model::redact::error(&e))?;
        Ok(response.status().as_u16())
    }
}
