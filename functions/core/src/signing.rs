//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), as used
//! by Replicate and by our local provider: `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` headers, an HMAC-SHA256 over
//! `{id}.{timestamp}.{body}` keyed by the base64 part of a `whsec_…` secret.
//! The signature header may carry several space-separated `v1,<base64>`
//! signatures (one per active secret during a rotation).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a webhook header is missing: {0}")]
    MissingHeader(&'static str),
    #[error("the webhook timestamp is not a number")]
    BadTimestamp,
    #[error("the webhook timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    NoMatch,
    #[error("a webhook secret is malformed")]
    BadSecret,
}

/// A `whsec_…` secret, decoded.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let bytes = STANDARD.decode(encoded).map_err(|_| SignatureError::BadSecret)?;
        if bytes.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(Self(bytes))
    }

    /// Parses a comma- or space-separated list (several secrets during rotation).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, SignatureError> {
        text.split([',', ' ']).filter(|s| !s.trim().is_empty()).map(Self::parse).collect()
    }

    /// A new random secret, in `whsec_` form.
    pub fn generate_text() -> String {
        let bytes: [u8; 24] = rand::random();
        format!("whsec_{}", STANDARD.encode(bytes))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

/// The three headers of a signed message.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a message against any of `secrets`, in constant time per
/// comparison, and its timestamp against `now` (Unix seconds).
pub fn verify(
    secrets: &[WebhookSecret],
    headers: SignedHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let id = headers.id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
    let timestamp = headers.timestamp.ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
    let signatures = headers.signature.ok_or(SignatureError::MissingHeader("webhook-signature"))?;
    let sent_at: i64 = timestamp.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if (now - sent_at).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    for candidate in signatures.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else { continue };
        let Ok(tag) = STANDARD.decode(encoded) else { continue };
        for secret in secrets {
            if secret.mac(id, timestamp.trim(), body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification and its libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers<'a>(id: &'a str, timestamp: &'a str, signature: &'a str) -> SignedHeaders<'a> {
        SignedHeaders { id: Some(id), timestamp: Some(timestamp), signature: Some(signature) }
    }

    fn spec_secret() -> Vec<WebhookSecret> {
        vec![WebhookSecret::parse(SPEC_SECRET).unwrap()]
    }

    #[test]
    fn signing_the_specification_example_gives_its_published_signature() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        assert_eq!(secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
    }

    #[test]
    fn the_specification_example_verifies_within_the_tolerance() {
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(verify(&spec_secret(), headers(SPEC_ID, &ts, SPEC_SIGNATURE), SPEC_BODY, SPEC_TIMESTAMP + 299), Ok(()));
        assert_eq!(verify(&spec_secret(), headers(SPEC_ID, &ts, SPEC_SIGNATURE), SPEC_BODY, SPEC_TIMESTAMP - 299), Ok(()));
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused_even_with_a_good_signature() {
        let ts = SPEC_TIMESTAMP.to_string();
        let h = headers(SPEC_ID, &ts, SPEC_SIGNATURE);
        assert_eq!(verify(&spec_secret(), h, SPEC_BODY, SPEC_TIMESTAMP + 301), Err(SignatureError::Stale));
        assert_eq!(verify(&spec_secret(), h, SPEC_BODY, SPEC_TIMESTAMP - 301), Err(SignatureError::Stale));
    }

    #[test]
    fn a_changed_body_id_or_timestamp_breaks_the_signature() {
        let ts = SPEC_TIMESTAMP.to_string();
        let now = SPEC_TIMESTAMP;
        let h = headers(SPEC_ID, &ts, SPEC_SIGNATURE);
        assert_eq!(verify(&spec_secret(), h, br#"{"test": 2432232315}"#, now), Err(SignatureError::NoMatch));
        assert_eq!(verify(&spec_secret(), headers("msg_other", &ts, SPEC_SIGNATURE), SPEC_BODY, now), Err(SignatureError::NoMatch));
        let later = (SPEC_TIMESTAMP + 1).to_string();
        assert_eq!(verify(&spec_secret(), headers(SPEC_ID, &later, SPEC_SIGNATURE), SPEC_BODY, now), Err(SignatureError::NoMatch));
    }

    #[test]
    fn a_body_re_signed_with_another_secret_is_refused() {
        let forger = WebhookSecret::parse(&WebhookSecret::generate_text()).unwrap();
        let forged = forger.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(verify(&spec_secret(), headers(SPEC_ID, &ts, &forged), SPEC_BODY, SPEC_TIMESTAMP), Err(SignatureError::NoMatch));
    }

    #[test]
    fn any_of_several_signatures_and_any_of_several_secrets_may_match() {
        let old = WebhookSecret::parse(&WebhookSecret::generate_text()).unwrap();
        let new = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let ts = SPEC_TIMESTAMP.to_string();
        let header = format!("v1,bm90LWl0 v2,whatever {SPEC_SIGNATURE}");
        assert_eq!(verify(&[old, new], headers(SPEC_ID, &ts, &header), SPEC_BODY, SPEC_TIMESTAMP), Ok(()));
    }

    #[test]
    fn missing_headers_and_bad_values_are_named() {
        let secrets = spec_secret();
        let none = SignedHeaders { id: None, timestamp: Some("1"), signature: Some("v1,x") };
        assert_eq!(verify(&secrets, none, b"", 1), Err(SignatureError::MissingHeader("webhook-id")));
        assert_eq!(verify(&secrets, headers("i", "soon", "v1,x"), b"", 1), Err(SignatureError::BadTimestamp));
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
        assert!(WebhookSecret::parse("whsec_").is_err());
        assert_eq!(WebhookSecret::parse_list("whsec_YWJj, whsec_ZGVm").unwrap().len(), 2);
    }
}
