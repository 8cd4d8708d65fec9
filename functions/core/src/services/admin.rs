//! Admin endpoints: `POST /videos/admin/keys` (a new API key, shown once,
//! optionally expiring), `GET /videos/admin/keys` (every key by its public
//! id, never the secret), `DELETE /videos/admin/keys/{key_id}` (revoked: 401
//! from the next request on) and `POST /videos/admin/credits` (credits added
//! to an account). Requests are parsed into types that cannot hold a bad value.

use crate::model::admin::*;
use crate::model::ids::{ApiKey, KeyId, Role};
use crate::model::request::InvalidRequest;
use crate::ports::{KeyRecord, Page, PageRequest, Principal};
use crate::services::error::AppError;
use crate::services::jobs::Services;

/// Refuses anyone but an admin (before their request is even read).
pub fn admin_only(who: &Principal) -> Result<(), AppError> {
    if who.role == Role::Admin {
        Ok(())
    } else {
        Err(AppError::Forbidden("only an admin can do this"))
    }
}

impl Services {
    /// A new key for `user_id` with `role`; the account is opened if new. The
    /// key is returned once and only its hash is stored.
    pub async fn create_key(&self, who: &Principal, request: NewKeyRequest) -> Result<CreatedKeyBody, AppError> {
        admin_only(who)?;
        let key = ApiKey::generate();
        let principal = Principal { user_id: request.user_id.clone(), role: request.role };
        let label = if request.label.is_empty() { format!("created by {}", who.user_id) } else { request.label };
        let now = crate::model::job::timestamp::now();
        let expires_at = request.expires_in_days.map(|days| now + time::Duration::days(i64::from(days)));
        let record = KeyRecord::new(principal, label, now, expires_at);
        // The account first: a key never exists without one.
        let opened = self.accounts.open_account(&request.user_id, request.credits).await?;
        if !opened && request.credits > 0 {
            self.accounts.grant_credits(&request.user_id, request.credits).await?;
        }
        self.keys.save_key_record(&key.hash(), &record).await?;
        tracing::info!(new_key_id = %record.key_id, user_id = %request.user_id, role = request.role.as_str(), opened, by = %who.user_id, "API key created");
        Ok(CreatedKeyBody {
            api_key: key.expose().to_owned(),
            key_id: record.key_id,
            user_id: request.user_id,
            role: request.role,
            expires_at: expires_at.map(crate::model::job::timestamp::format),
        })
    }

    /// Every key, oldest first, by public id: never a secret.
    pub async fn list_keys(&self, who: &Principal, page: PageRequest) -> Result<KeysBody, AppError> {
        admin_only(who)?;
        let Page { items, next_cursor } = self.keys.list_keys(&page).await.map_err(|err| match err {
            crate::ports::ListError::BadCursor => InvalidRequest::new("cursor", "is not a cursor this API gave out").into(),
            crate::ports::ListError::Store(err) => AppError::from(err),
        })?;
        let now = crate::model::job::timestamp::now();
        Ok(KeysBody { keys: items.iter().map(|record| KeyView::of(record, now)).collect(), next_cursor })
    }

    /// Revokes a key by its public id: its next request answers 401.
    pub async fn revoke_key(&self, who: &Principal, key_id: &str) -> Result<KeyView, AppError> {
        admin_only(who)?;
        let id: KeyId = key_id.parse().map_err(|_| AppError::KeyNotFound)?;
        let now = crate::model::job::timestamp::now();
        let record = self.keys.revoke_key(&id, now).await?.ok_or(AppError::KeyNotFound)?;
        tracing::info!(revoked_key_id = %id, user_id = %record.principal.user_id, by = %who.user_id, "API key revoked");
        Ok(KeyView::of(&record, now))
    }

    /// Adds credits to an existing account.
    pub async fn grant(&self, who: &Principal, request: GrantRequest) -> Result<AdminAccountBody, AppError> {
        admin_only(who)?;
        if self.accounts.account(&request.user_id).await?.is_none() {
            return Err(InvalidRequest::new("user_id", "has no account; create a key for it first").into());
        }
        let account = self.accounts.grant_credits(&request.user_id, request.credits).await?;
        tracing::info!(user_id = %request.user_id, credits = request.credits, by = %who.user_id, "credits granted");
        Ok(AdminAccountBody { user_id: account.user_id, credits: account.credits, active_jobs: account.active_jobs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> Result<NewKeyRequest, InvalidRequest> {
        NewKeyRequest::parse(body.as_bytes())
    }

    fn grant(body: &str) -> Result<GrantRequest, InvalidRequest> {
        GrantRequest::parse(body.as_bytes())
    }

    #[test]
    fn a_key_request_takes_a_user_a_role_and_optionally_a_label_and_credits() {
        let minimal = key(r#"{"user_id":"ann","role":"reviewer"}"#).unwrap();
        assert_eq!(
            minimal,
            NewKeyRequest {
                user_id: "ann".parse().unwrap(),
                role: Role::Reviewer,
                label: String::new(),
                credits: 0,
                expires_in_days: None
            }
        );
        let expiring = key(r#"{"user_id":"ann","role":"user","expires_in_days":30}"#).unwrap();
        assert_eq!(expiring.expires_in_days, Some(30));
        let full = key(r#"{"user_id":"bo-1","role":"user","label":"  laptop ","credits":250}"#).unwrap();
        assert_eq!((full.label.as_str(), full.credits, full.role), ("laptop", 250, Role::User));
    }

    #[test]
    fn a_key_request_names_the_field_it_refuses() {
        for (body, field) in [
            (r#"{"role":"user"}"#, "user_id"),
            (r#"{"user_id":"ann"}"#, "role"),
            (r#"{"user_id":"has space","role":"user"}"#, "user_id"),
            (r#"{"user_id":"","role":"user"}"#, "user_id"),
            (r#"{"user_id":"ann","role":"root"}"#, "role"),
            (r#"{"user_id":"ann","role":"user","credits":-1}"#, "credits"),
            (r#"{"user_id":"ann","role":"user","credits":1000001}"#, "credits"),
            (r#"{"user_id":"ann","role":"user","credits":1.5}"#, "credits"),
            (r#"{"user_id":"ann","role":"user","label":"a\nb"}"#, "label"),
            (r#"{"user_id":"ann","role":"user","label":"a\u202eb"}"#, "label"),
            (r#"{"user_id":"ann","role":"user","expires_in_days":0}"#, "expires_in_days"),
            (r#"{"user_id":"ann","role":"user","expires_in_days":3651}"#, "expires_in_days"),
            (r#"{"user_id":"ann","role":"user","color":"red"}"#, "color"),
            (r#"not json"#, "body"),
        ] {
            let err = key(body).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err:?}");
        }
        let long = format!(r#"{{"user_id":"ann","role":"user","label":"{}"}}"#, "x".repeat(101));
        assert_eq!(key(&long).unwrap_err().field, "label");
    }

    #[test]
    fn a_grant_takes_a_user_and_a_positive_amount() {
        assert_eq!(grant(r#"{"user_id":"ann","credits":5}"#).unwrap(), GrantRequest { user_id: "ann".parse().unwrap(), credits: 5 });
        assert!(grant(r#"{"user_id":"ann","credits":1000000}"#).is_ok());
        for (body, field) in [
            (r#"{"user_id":"ann","credits":0}"#, "credits"),
            (r#"{"user_id":"ann","credits":-5}"#, "credits"),
            (r#"{"user_id":"ann","credits":1000001}"#, "credits"),
            (r#"{"user_id":"ann","credits":"5"}"#, "credits"),
            (r#"{"user_id":"ann"}"#, "credits"),
            (r#"{"credits":5}"#, "user_id"),
            (r#"{"user_id":"a/b","credits":5}"#, "user_id"),
            (r#"{"user_id":"ann","credits":5,"extra":1}"#, "extra"),
        ] {
            assert_eq!(grant(body).unwrap_err().field, field, "{body}");
        }
    }
}
