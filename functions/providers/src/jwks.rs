//! ED25519 public keys published as a JSON Web Key Set (RFC 7517; OKP keys,
//! RFC 8037: `{"kty": "OKP", "crv": "Ed25519", "x": <base64url>}`), fetched
//! once and kept. A signature that none of the kept keys verifies (a key the
//! provider rotated in, whose id we have not seen) fetches the set again, but
//! at most once a minute, so a forger cannot make us fetch on every request;
//! the set is also fetched again after a day. Time is the callback's `now`, so
//! tests move it.

use crate::HttpClient;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use std::sync::Mutex;

/// The shortest time between two fetches.
pub const MIN_REFRESH_SECONDS: i64 = 60;
/// How long a fetched set is trusted without a refresh.
pub const MAX_AGE_SECONDS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no published key verifies the signature")]
    NoMatch,
    #[error("the provider's keys could not be fetched: {0}")]
    Unavailable(String),
}

#[derive(Default)]
struct Cache {
    keys: Vec<VerifyingKey>,
    /// When the set was last asked for (even if the fetch failed).
    fetched_at: Option<i64>,
}

pub struct KeySet {
    url: String,
    http: HttpClient,
    cache: Mutex<Cache>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
}

/// The ED25519 keys of a JWKS document; keys of other kinds are skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    let set: Jwks = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
        .filter_map(|k| URL_SAFE_NO_PAD.decode(k.x.trim_end_matches('=')).ok())
        .filter_map(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .filter_map(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .collect())
}

impl KeySet {
    pub fn new(url: impl Into<String>, http: HttpClient) -> Self {
        Self { url: url.into(), http, cache: Mutex::new(Cache::default()) }
    }

    /// Verifies `signature` over `message` with any published key (strict
    /// ED25519: no malleable or small-order signatures).
    pub async fn verify(&self, message: &[u8], signature: &Signature, now: i64) -> Result<(), KeyError> {
        let (keys, fetched_at) = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            (cache.keys.clone(), cache.fetched_at)
        };
        let stale = fetched_at.is_none_or(|at| now - at >= MAX_AGE_SECONDS);
        // An empty set is refreshed under the same limit: forgeries must not make us fetch on every request.
        let keys = if (keys.is_empty() || stale) && self.may_refresh(now) { self.refresh(now).await.unwrap_or(keys) } else { keys };
        if keys.iter().any(|key| key.verify_strict(message, signature).is_ok()) {
            return Ok(());
        }
        if !self.may_refresh(now) {
            return Err(if keys.is_empty() { KeyError::Unavailable("no keys yet".into()) } else { KeyError::NoMatch });
        }
        let keys = self.refresh(now).await?;
        if keys.iter().any(|key| key.verify_strict(message, signature).is_ok()) {
            Ok(())
        } else {
            Err(KeyError::NoMatch)
        }
    }

    fn may_refresh(&self, now: i64) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.fetched_at.is_none_or(|at| now - at >= MIN_REFRESH_SECONDS)
    }

    /// Fetches the set; the attempt counts against the rate limit even when it fails.
    async fn refresh(&self, now: i64) -> Result<Vec<VerifyingKey>, KeyError> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).fetched_at = Some(now);
        let response = self.http.get().get(&self.url).send().await.map_err(|e| KeyError::Unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(KeyError::Unavailable(format!("HTTP {}", response.status().as_u16())));
        }
        let body = response.bytes().await.map_err(|e| KeyError::Unavailable(e.to_string()))?;
        let keys = parse_jwks(&body).map_err(KeyError::Unavailable)?;
        if keys.is_empty() {
            return Err(KeyError::Unavailable("the set has no ED25519 key".into()));
        }
        tracing::info!(keys = keys.len(), "provider signing keys fetched");
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).keys = keys.clone();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn bytes<const N: usize>(hex_text: &str) -> [u8; N] {
        hex::decode(hex_text).unwrap().try_into().unwrap()
    }

    // RFC 8032, section 7.1: TEST 1, TEST 2 and TEST 3 (secret key, public key, message, signature).
    const RFC8032: [(&str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    #[test]
    fn the_rfc_8032_test_vectors_sign_and_verify_as_published() {
        for (secret, public, message, signature) in RFC8032 {
            let signing = SigningKey::from_bytes(&bytes::<32>(secret));
            let message = hex::decode(message).unwrap();
            let expected = Signature::from_bytes(&bytes::<64>(signature));
            assert_eq!(signing.verifying_key().to_bytes(), bytes::<32>(public));
            assert_eq!(signing.sign(&message), expected);
            let key = VerifyingKey::from_bytes(&bytes::<32>(public)).unwrap();
            assert!(key.verify_strict(&message, &expected).is_ok());
            let mut altered = message.clone();
            altered.push(0);
            assert!(key.verify_strict(&altered, &expected).is_err());
        }
    }

    #[test]
    fn a_jwks_yields_its_ed25519_keys_and_skips_the_rest() {
        let public = URL_SAFE_NO_PAD.encode(bytes::<32>(RFC8032[0].1));
        let body = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": public, "kid": "k1", "use": "sig"},
            {"kty": "RSA", "n": "xyz", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "too-short"},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].to_bytes(), bytes::<32>(RFC8032[0].1));
        assert!(parse_jwks(b"[]").is_err());
    }
}
