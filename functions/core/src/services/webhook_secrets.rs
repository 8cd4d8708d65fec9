//! The API's side of a user's webhook signing secrets (reading, rotating)
//! and the create-time check of a `webhook_url`. The rules they apply are in
//! `webhook_rules`; delivery is in `services::pipeline::delivery`.

use crate::model::ids::Principal;
use crate::model::job::timestamp;
use crate::model::notification::*;
use crate::model::request::{InvalidRequest, PingRequest};
use crate::model::signing::WebhookSecret;
use crate::services::error::AppError;
use crate::services::jobs::Services;
use crate::services::webhook_rules::{check_destination, secrets_of, signing_keys};
use url::Url;

impl Services {
    /// `GET /videos/webhook-secret`: the caller's current signing secret, made on first use.
    pub async fn webhook_secret(&self, who: &Principal) -> Result<WebhookSecretBody, AppError> {
        let secrets = secrets_of(self.webhook_secrets.as_ref(), &who.user_id).await?;
        Ok(WebhookSecretBody { secret: secrets.current, previous_secret_valid_until: None })
    }

    /// A new secret; the old one keeps signing (next to it) for the grace
    /// the request asks for. With no secret yet, the first one is made
    /// (there is nothing to keep).
    pub async fn rotate_webhook_secret(&self, who: &Principal, request: RotateRequest) -> Result<WebhookSecretBody, AppError> {
        for _ in 0..5 {
            let new = WebhookSecret::generate_text();
            let Some(current) = self.webhook_secrets.webhook_secrets(&who.user_id).await? else {
                let made = self.webhook_secrets.create_webhook_secret(&who.user_id, &new).await?;
                if made.current == new {
                    return Ok(WebhookSecretBody { secret: new, previous_secret_valid_until: None });
                }
                // A concurrent request made the first one: rotate that.
                continue;
            };
            let until = timestamp::now() + time::Duration::seconds(request.grace_seconds);
            if self.webhook_secrets.rotate_webhook_secret(&who.user_id, &current.current, &new, until).await? {
                tracing::info!(user_id = %who.user_id, "webhook secret rotated");
                return Ok(WebhookSecretBody { secret: new, previous_secret_valid_until: Some(timestamp::format(until)) });
            }
        }
        Err(AppError::Unavailable("the webhook secret kept changing during a rotation".into()))
    }

    /// `POST /videos/webhook-test`: a signed `ping` to `request.url`, under
    /// the rules a notification follows (the address checked, the same
    /// client: no redirect, the same time limits), answered with what the
    /// receiver said and how long it took. It counts as a create against the
    /// key's rate limits (it makes us call out), and records nothing.
    pub async fn ping_webhook(&self, who: &Principal, request: PingRequest) -> Result<PingAnswer, AppError> {
        let destination = check_destination(&request.url, self.settings.limits.webhook_policy(), self.resolver.as_ref())
            .await
            .map_err(|err| InvalidRequest::new("url", err.to_string()))?;
        let now = timestamp::now();
        let keys = signing_keys(self.webhook_secrets.as_ref(), &who.user_id, now).await?;
        let body = PingBody { event_type: "ping", timestamp: timestamp::format(now), message: "A test delivery from videojobs" };
        let body = serde_json::to_vec(&body).map_err(|e| AppError::Internal(format!("encoding a ping: {e}")))?;
        let id = format!("msg_ping_{}", crate::model::ids::JobId::generate().as_str().trim_start_matches("job_"));
        let signature = signature_header(&keys, &id, now.unix_timestamp(), &body);
        let started = std::time::Instant::now();
        let outcome = self.poster.post(&destination, &id, now.unix_timestamp(), &signature, body).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let url = &destination.url;
        let endpoint = format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(443));
        tracing::info!(endpoint, ok = outcome.is_ok(), duration_ms, "webhook test sent");
        Ok(match outcome {
            Ok(status) => PingAnswer {
                endpoint,
                webhook_id: id,
                delivered: (200..300).contains(&status),
                status: Some(status),
                error: None,
                duration_ms,
            },
            Err(_) => PingAnswer { endpoint, webhook_id: id, delivered: false, status: None, error: Some("unreachable"), duration_ms },
        })
    }

    /// The create-time check of a `webhook_url`: refused with `400` naming the field.
    pub async fn check_webhook_url(&self, url: &Url) -> Result<(), AppError> {
        match check_destination(url, self.settings.limits.webhook_policy(), self.resolver.as_ref()).await {
            Ok(_) => Ok(()),
            Err(err) => {
                if let DestinationError::Unresolved { detail } = &err {
                    tracing::info!(detail, "webhook_url host did not resolve");
                }
                Err(InvalidRequest::new("webhook_url", err.to_string()).into())
            }
        }
    }
}
