//! The API's side of a user's webhook signing secrets (reading, rotating)
//! and the create-time check of a `webhook_url`. The rules they apply are in
//! `webhook_rules`; delivery is in `services::pipeline::delivery`.

use crate::model::ids::Principal;
use crate::model::job::timestamp;
use crate::model::notification::*;
use crate::model::request::InvalidRequest;
use crate::model::signing::WebhookSecret;
use crate::services::error::AppError;
use crate::services::jobs::Services;
use crate::services::webhook_rules::{check_destination, secrets_of};
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
