//! Admin endpoints: `POST /videos/admin/keys` (a new API key, shown once) and
//! `POST /videos/admin/credits` (credits added to an account). Requests are
//! parsed into types that cannot hold a bad value.

use crate::error::AppError;
use crate::ids::{ApiKey, Role, UserId};
use crate::ports::Principal;
use crate::request::{parse_json, InvalidRequest};
use crate::service::Services;
use serde::{Deserialize, Serialize};

/// The most credits one request may add.
pub const MAX_CREDITS_PER_REQUEST: i64 = 1_000_000;
pub const MAX_LABEL_CHARS: usize = 100;

/// `POST /videos/admin/keys`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyRequest {
    pub user_id: UserId,
    pub role: Role,
    pub label: String,
    /// Added to the account: its opening balance when it is new.
    pub credits: i64,
}

/// `POST /videos/admin/credits`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub user_id: UserId,
    pub credits: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    user_id: String,
    role: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    credits: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    user_id: String,
    credits: i64,
}

fn user_id(text: &str) -> Result<UserId, InvalidRequest> {
    text.parse().map_err(|e: crate::ids::InvalidId| InvalidRequest::new("user_id", e.0))
}

fn credits(value: i64, allow_zero: bool) -> Result<i64, InvalidRequest> {
    let low = if allow_zero { 0 } else { 1 };
    if (low..=MAX_CREDITS_PER_REQUEST).contains(&value) {
        Ok(value)
    } else {
        Err(InvalidRequest::new("credits", format!("must be a whole number from {low} to {MAX_CREDITS_PER_REQUEST}")))
    }
}

impl NewKeyRequest {
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        let raw: NewKeyBody = parse_json(body)?;
        let role = raw.role.parse().map_err(|e: crate::ids::InvalidId| InvalidRequest::new("role", e.0))?;
        let label = raw.label.map(|l| l.trim().to_owned()).unwrap_or_default();
        if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(InvalidRequest::new("label", format!("must be at most {MAX_LABEL_CHARS} characters on one line")));
        }
        crate::request::no_format_characters("label", &label)?;
        Ok(Self { user_id: user_id(&raw.user_id)?, role, label, credits: credits(raw.credits.unwrap_or(0), true)? })
    }
}

impl GrantRequest {
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        let raw: GrantBody = parse_json(body)?;
        Ok(Self { user_id: user_id(&raw.user_id)?, credits: credits(raw.credits, false)? })
    }
}

/// `201` to a new key: the only time the key is shown.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKeyBody {
    pub api_key: String,
    pub user_id: UserId,
    pub role: Role,
}

/// An account as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminAccountBody {
    pub user_id: UserId,
    pub credits: i64,
    pub active_jobs: u32,
}

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
        // The account first: a key never exists without one.
        let opened = self.accounts.open_account(&request.user_id, request.credits).await?;
        if !opened && request.credits > 0 {
            self.accounts.grant_credits(&request.user_id, request.credits).await?;
        }
        self.keys.save_key(&key.hash(), &principal, &label).await?;
        tracing::info!(user_id = %request.user_id, role = request.role.as_str(), opened, by = %who.user_id, "API key created");
        Ok(CreatedKeyBody { api_key: key.expose().to_owned(), user_id: request.user_id, role: request.role })
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
        assert_eq!(minimal, NewKeyRequest { user_id: "ann".parse().unwrap(), role: Role::Reviewer, label: String::new(), credits: 0 });
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
