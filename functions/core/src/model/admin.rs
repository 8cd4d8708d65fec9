//! API keys and credits as an admin handles them: the stored key record, the
//! admin's requests as types that cannot hold a bad value, and the bodies.

use crate::model::ids::{KeyId, Principal, Role, UserId};
use crate::model::request::{parse_json, InvalidRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// An API key as it is stored and as admins see it: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's public id, for logs, events and revoking it.
    pub key_id: KeyId,
    /// The user the key acts for, and with which role.
    pub principal: Principal,
    /// Free text the admin gave the key, to tell keys apart in listings.
    pub label: String,
    /// When the key was made.
    pub created_at: OffsetDateTime,
    /// After this the key answers 401.
    pub expires_at: Option<OffsetDateTime>,
    /// Once set, the key answers 401.
    pub revoked_at: Option<OffsetDateTime>,
}

impl KeyRecord {
    /// A new key's record, active from `now`.
    pub fn new(principal: Principal, label: impl Into<String>, now: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> Self {
        Self { key_id: KeyId::generate(), principal, label: label.into(), created_at: now, expires_at, revoked_at: None }
    }

    /// The record of a key made outside the API (the CLI's bootstrap, the
    /// local stack, tests): no expiry, and an id derived from the key's hash,
    /// so that saving the same key again changes nothing.
    pub fn for_key(key: &crate::model::ids::ApiKeyHash, principal: Principal, label: impl Into<String>) -> Self {
        Self { key_id: KeyId::derived_from(key), ..Self::new(principal, label, crate::model::timestamp::now(), None) }
    }

    /// `active`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

/// The most credits one request may add.
pub const MAX_CREDITS_PER_REQUEST: i64 = 1_000_000;
/// The longest a key's label may be, in characters.
pub const MAX_LABEL_CHARS: usize = 100;
/// The longest a key may be given to live, in days (ten years).
pub const MAX_EXPIRY_DAYS: u32 = 3_650;

/// `POST /videos/admin/keys`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyRequest {
    /// The account the key acts for; it is opened if new.
    pub user_id: UserId,
    /// What the key may do: `user`, `reviewer` or `admin`.
    pub role: Role,
    /// Free text to tell the key apart in listings, trimmed; empty when not given (the key is then labelled after its maker).
    pub label: String,
    /// Added to the account: its opening balance when it is new.
    pub credits: i64,
    /// The key stops working this many days after it is made (none: never).
    pub expires_in_days: Option<u32>,
}

/// `POST /videos/admin/credits`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The account to add credits to; it must exist already.
    pub user_id: UserId,
    /// Credits to add, from 1 to [`MAX_CREDITS_PER_REQUEST`].
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
    #[serde(default)]
    expires_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    user_id: String,
    credits: i64,
}

fn user_id(text: &str) -> Result<UserId, InvalidRequest> {
    text.parse().map_err(|e: crate::model::ids::InvalidId| InvalidRequest::new("user_id", e.0))
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
    /// Parses and checks the request body; names the first field that is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        let raw: NewKeyBody = parse_json(body)?;
        let role = raw.role.parse().map_err(|e: crate::model::ids::InvalidId| InvalidRequest::new("role", e.0))?;
        let label = raw.label.map(|l| l.trim().to_owned()).unwrap_or_default();
        if label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(InvalidRequest::new("label", format!("must be at most {MAX_LABEL_CHARS} characters on one line")));
        }
        crate::model::request::no_format_characters("label", &label)?;
        if raw.expires_in_days.is_some_and(|days| !(1..=MAX_EXPIRY_DAYS).contains(&days)) {
            return Err(InvalidRequest::new("expires_in_days", format!("must be a whole number from 1 to {MAX_EXPIRY_DAYS}")));
        }
        Ok(Self {
            user_id: user_id(&raw.user_id)?,
            role,
            label,
            credits: credits(raw.credits.unwrap_or(0), true)?,
            expires_in_days: raw.expires_in_days,
        })
    }
}

impl GrantRequest {
    /// Parses and checks the request body; names the first field that is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidRequest> {
        let raw: GrantBody = parse_json(body)?;
        Ok(Self { user_id: user_id(&raw.user_id)?, credits: credits(raw.credits, false)? })
    }
}

/// `201` to a new key: the only time the key is shown.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKeyBody {
    /// The key itself, in plain text: shown here once and never stored.
    pub api_key: String,
    /// Its public id: what listings, logs and revocation name.
    pub key_id: KeyId,
    /// The account the key acts for.
    pub user_id: UserId,
    /// What the key may do.
    pub role: Role,
    /// When the key stops working (RFC 3339); absent when it never expires.
    pub expires_at: Option<String>,
}

/// A key as admins see it: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// The key's public id.
    pub key_id: KeyId,
    /// The account the key acts for.
    pub user_id: UserId,
    /// What the key may do.
    pub role: Role,
    /// Free text given when the key was made, to tell keys apart.
    pub label: String,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
    /// When the key was made (RFC 3339).
    pub created_at: String,
    /// When the key stops working (RFC 3339); absent when it never expires.
    pub expires_at: Option<String>,
    /// When the key was revoked (RFC 3339); absent while it is not.
    pub revoked_at: Option<String>,
}

impl KeyView {
    /// The view of `record`, its state taken at `now`.
    pub fn of(record: &KeyRecord, now: time::OffsetDateTime) -> Self {
        use crate::model::job::timestamp::format;
        Self {
            key_id: record.key_id.clone(),
            user_id: record.principal.user_id.clone(),
            role: record.principal.role,
            label: record.label.clone(),
            state: record.state(now),
            created_at: format(record.created_at),
            expires_at: record.expires_at.map(format),
            revoked_at: record.revoked_at.map(format),
        }
    }
}

/// `GET /videos/admin/keys`: a page of keys, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct KeysBody {
    /// The keys on this page.
    pub keys: Vec<KeyView>,
    /// Pass back as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// An account as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminAccountBody {
    /// The account's user id.
    pub user_id: UserId,
    /// Its balance, in credits.
    pub credits: i64,
    /// How many of its jobs are in flight, counted against its cap on active jobs.
    pub active_jobs: u32,
}
