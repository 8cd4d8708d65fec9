//! Identifiers and secrets. Each constructor refuses a bad value, so code that
//! holds one of these types never checks it again.

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use ulid::Ulid;

/// Why a text is not a valid id, role or key; the message is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub &'static str);

macro_rules! prefixed_ulid_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What every id of this type starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, made now; ids sort by the time they were made.
            pub fn generate() -> Self {
                // Time and randomness through `determinism`, so a simulation replays its
                // ids; monotonic, so ids made in one millisecond sort in the order made.
                let (millis, random) = crate::model::determinism::ulid_parts();
                let ulid = Ulid::from_parts(millis, random);
                Self(format!("{}{}", $prefix, ulid.to_string().to_ascii_lowercase()))
            }

            /// The id as text, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(value: &str) -> Result<Self, InvalidId> {
                let body = value
                    .strip_prefix($prefix)
                    .ok_or(InvalidId(concat!("not a ", $what, " id")))?;
                // Lower case only, so that one id has one spelling in keys and URLs.
                if body.len() != 26 || body.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(InvalidId(concat!("not a ", $what, " id")));
                }
                Ulid::from_string(body).map_err(|_| InvalidId(concat!("not a ", $what, " id")))?;
                Ok(Self(value.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_ulid_id!(
    /// `job_` and a lower-case ULID: sortable by creation time, safe as a Step
    /// Functions execution name (which the job id also is).
    JobId, "job_", "job"
);
prefixed_ulid_id!(
    /// `upl_` and a lower-case ULID: a source image uploaded through a presigned PUT.
    UploadId, "upl_", "upload"
);

prefixed_ulid_id!(
    /// `key_` and a lower-case ULID: an API key's public id, safe in logs,
    /// events and admin listings (the key itself is shown once, never again).
    KeyId, "key_", "API key"
);

/// The owner of jobs, credits and API keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<Self, InvalidId> {
        let ok = (1..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidId("a user id is 1 to 64 letters, digits, '_' or '-'"))
        }
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, InvalidId> {
        value.parse()
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// The key as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl IdempotencyKey {
    /// The key of item `index` of a batch sent under this key: each item is
    /// a create of its own, replayed on its own.
    pub fn for_item(&self, index: usize) -> Result<Self, InvalidId> {
        format!("{}#{index}", self.0).parse()
    }
}

impl FromStr for IdempotencyKey {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<Self, InvalidId> {
        let ok = (1..=Self::MAX_LEN).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidId("must be 1 to 255 visible ASCII characters"))
        }
    }
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Makes jobs and reads their own.
    User,
    /// Also reads every job and approves or rejects completed ones.
    Reviewer,
    /// What a reviewer may, and also manages API keys and credits.
    Admin,
}

impl Role {
    /// The role as written in requests and records: `user`, `reviewer` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }

    /// Whether the caller may approve or reject jobs: reviewers and admins.
    pub fn can_review(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }

    /// Reviewers and admins read any job (to review it); users only their own.
    pub fn sees_every_job(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }
}

impl FromStr for Role {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<Self, InvalidId> {
        match value {
            "user" => Ok(Role::User),
            "reviewer" => Ok(Role::Reviewer),
            "admin" => Ok(Role::Admin),
            _ => Err(InvalidId("a role is user, reviewer or admin")),
        }
    }
}

/// An API key as the caller presents it. Never stored: only its [`ApiKeyHash`] is.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    const PREFIX: &'static str = "vj_";
    const SECRET_LEN: usize = 40;

    /// A new key with 40 random base62 characters (about 238 bits).
    pub fn generate() -> Self {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), Self::SECRET_LEN);
        Self(format!("{}{secret}", Self::PREFIX))
    }

    /// The key in plain text, to show its owner once; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A fast hash is enough: the key is random and long, not a password.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl FromStr for ApiKey {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<Self, InvalidId> {
        let secret = value.strip_prefix(Self::PREFIX).ok_or(InvalidId("not an API key"))?;
        if secret.len() != Self::SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidId("not an API key"));
        }
        Ok(Self(value.to_owned()))
    }
}

impl KeyId {
    /// The id of a key saved without one (keys made before ids existed, the
    /// local stack's demo keys): derived from its hash, so saving it again
    /// gives it the same id.
    pub fn derived_from(hash: &ApiKeyHash) -> Self {
        let mut bytes = [0u8; 16];
        if let Ok(decoded) = hex::decode(hash.as_str().get(..32).unwrap_or_default()) {
            let n = decoded.len().min(16);
            bytes[..n].copy_from_slice(&decoded[..n]);
        }
        Self(format!("{}{}", Self::PREFIX, Ulid::from_bytes(bytes).to_string().to_ascii_lowercase()))
    }
}

/// The stored form of an API key: hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(String);

impl ApiKeyHash {
    /// The hex digest, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Whose request it is.
    pub user_id: UserId,
    /// What the caller may do.
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_key_id_is_a_key_id_and_the_same_for_the_same_key() {
        let key = ApiKey::generate();
        let id = KeyId::derived_from(&key.hash());
        assert_eq!(id, KeyId::derived_from(&key.hash()));
        assert_eq!(id.as_str().parse::<KeyId>().unwrap(), id);
        assert_ne!(id, KeyId::derived_from(&ApiKey::generate().hash()));
        assert!(!id.as_str().contains(&key.hash().as_str()[..32]), "the id does not spell out the hash");
    }

    #[test]
    fn a_generated_job_id_parses_back_to_itself() {
        let id = JobId::generate();
        assert_eq!(id.as_str().parse::<JobId>().unwrap(), id);
        assert!(id.as_str().starts_with("job_"));
        assert_eq!(id.as_str().len(), 30);
    }

    #[test]
    fn job_ids_are_refused_without_the_prefix_or_with_a_bad_body() {
        let good = JobId::generate();
        let body = &good.as_str()[4..];
        for bad in [
            "".to_owned(),
            body.to_owned(),
            format!("upl_{body}"),
            format!("job_{}", body.to_ascii_uppercase()),
            format!("job_{}", &body[1..]),
            format!("job_{body}0"),
            "job_../../etc/passwd".to_owned(),
            "job_uuuuuuuuuuuuuuuuuuuuuuuuuu".to_owned(),
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_ids_and_job_ids_are_not_interchangeable() {
        let upload = UploadId::generate();
        assert!(upload.as_str().parse::<JobId>().is_err());
        assert_eq!(upload.as_str().parse::<UploadId>().unwrap(), upload);
    }

    #[test]
    fn job_ids_deserialize_only_when_valid() {
        let id = JobId::generate();
        let parsed: JobId = serde_json::from_str(&format!("\"{id}\"")).unwrap();
        assert_eq!(parsed, id);
        assert!(serde_json::from_str::<JobId>("\"job_nope\"").is_err());
    }

    #[test]
    fn user_ids_allow_a_safe_alphabet_only() {
        for good in ["u", "usr_demo", "A-b_9", &"x".repeat(64)] {
            assert!(good.parse::<UserId>().is_ok(), "{good}");
        }
        for bad in ["", "has space", "a#b", "ü", &"x".repeat(65)] {
            assert!(bad.parse::<UserId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_255() {
        assert!("abc-123_XYZ:./".parse::<IdempotencyKey>().is_ok());
        assert!("k".repeat(255).parse::<IdempotencyKey>().is_ok());
        for bad in ["", "with space", "tab\t", "naïve", &"k".repeat(256)] {
            assert!(bad.parse::<IdempotencyKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_generated_api_key_parses_and_hashes_stably() {
        let key = ApiKey::generate();
        let parsed: ApiKey = key.expose().parse().unwrap();
        assert_eq!(parsed.hash(), key.hash());
        assert_eq!(key.hash().as_str().len(), 64);
        assert_ne!(ApiKey::generate().hash(), key.hash());
    }

    #[test]
    fn api_keys_of_the_wrong_shape_are_refused() {
        let key = ApiKey::generate();
        let secret = &key.expose()[3..];
        for bad in [
            "".to_owned(),
            secret.to_owned(),
            format!("vj_{}", &secret[1..]),
            format!("vj_{secret}a"),
            format!("vj_{}-", &secret[1..]),
            format!("VJ_{secret}"),
        ] {
            assert!(bad.parse::<ApiKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_api_key_never_prints_its_secret() {
        let key = ApiKey::generate();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
    }

    #[test]
    fn roles_parse_and_say_what_they_allow() {
        assert_eq!("user".parse::<Role>().unwrap(), Role::User);
        assert_eq!("reviewer".parse::<Role>().unwrap(), Role::Reviewer);
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        assert!(!Role::User.can_review() && Role::Reviewer.can_review() && Role::Admin.can_review());
        assert!(!Role::User.sees_every_job() && Role::Admin.sees_every_job());
    }
}
