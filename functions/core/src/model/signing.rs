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

/// The largest signed body checked: a bigger one is refused before any MAC is
/// computed (a provider's callback is a few kilobytes).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The most signatures one `webhook-signature` header may carry (one per
/// secret in rotation, and room for a scheme or two more).
pub const MAX_SIGNATURES: usize = 8;

/// The longest `webhook-id` accepted (it is part of the signed text).
pub const MAX_ID_CHARS: usize = 256;

/// A `v1,` signature is 44 base64 characters; anything much longer is not one.
const MAX_SIGNATURE_CHARS: usize = 128;

/// A timestamp is up to 12 digits: Unix seconds before the year 9999.
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// Why a signed message, or a secret, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// One of the three headers is absent; holds its name.
    #[error("a webhook header is missing: {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not a plain whole number of seconds.
    #[error("the webhook timestamp is not a number")]
    BadTimestamp,
    /// `webhook-timestamp` is more than [`TOLERANCE_SECONDS`] from now, either way.
    #[error("the webhook timestamp is outside the tolerance")]
    Stale,
    /// No well-formed `v1,` signature in the header verifies under any of the secrets.
    #[error("no signature matches")]
    NoMatch,
    /// A secret is not base64 (after an optional `whsec_`), or decodes to nothing.
    #[error("a webhook secret is malformed")]
    BadSecret,
    /// The body is over [`MAX_BODY_BYTES`]; refused before any MAC is computed.
    #[error("the webhook body is over {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// The header carries more than [`MAX_SIGNATURES`] signatures.
    #[error("the webhook-signature header carries more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// `webhook-id` is empty or longer than [`MAX_ID_CHARS`].
    #[error("the webhook-id is empty or too long")]
    BadId,
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
    /// Decodes a `whsec_…` secret (the prefix is optional).
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

    /// A key for another purpose than signing webhooks, derived from this
    /// secret: the HMAC-SHA256, under it, of a domain prefix and `purpose`.
    /// What the derived key signs never verifies as a webhook under this
    /// secret, nor under a key derived for another purpose.
    pub fn derive(&self, purpose: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"videojobs/derived-key/");
        mac.update(purpose.as_bytes());
        Self(mac.finalize().into_bytes().to_vec())
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
    /// `webhook-id`: the message's id, the same on every attempt to deliver it.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`: when the message was signed, in Unix seconds.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`: one or more space-separated `v1,<base64>` signatures.
    pub signature: Option<&'a str>,
}

/// Checks a message against any of `secrets`, and its timestamp against
/// `now` (Unix seconds).
///
/// The cost is bounded before any cryptography, since anyone may call the
/// public webhook: the body, the id, the number and length of candidate
/// signatures are capped, and the timestamp must be a plain integer near
/// `now`. Then one MAC is computed per secret (not per candidate) and
/// compared with every candidate in constant time.
pub fn verify(secrets: &[WebhookSecret], headers: SignedHeaders<'_>, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let id = headers.id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
    let timestamp = headers.timestamp.ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
    let signatures = headers.signature.ok_or(SignatureError::MissingHeader("webhook-signature"))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(SignatureError::BodyTooLarge);
    }
    if id.is_empty() || id.len() > MAX_ID_CHARS {
        return Err(SignatureError::BadId);
    }
    let timestamp = timestamp.trim();
    check_timestamp(timestamp, now)?;
    let candidates: Vec<&str> = signatures.split(' ').filter(|c| !c.is_empty()).collect();
    if candidates.len() > MAX_SIGNATURES {
        return Err(SignatureError::TooManySignatures);
    }
    let tags: Vec<Vec<u8>> = candidates
        .iter()
        .filter(|c| c.len() <= MAX_SIGNATURE_CHARS)
        .filter_map(|c| c.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter(|tag| tag.len() == 32)
        .collect();
    if tags.is_empty() {
        return Err(SignatureError::NoMatch);
    }
    let mut matched = false;
    for secret in secrets {
        let expected = secret.mac(id, timestamp, body).finalize().into_bytes();
        for tag in &tags {
            matched |= constant_time_eq(&expected, tag);
        }
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// A signed message's timestamp, checked: plain digits (see below) within
/// [`TOLERANCE_SECONDS`] of `now`, either way; never an overflow.
pub fn check_timestamp(text: &str, now: i64) -> Result<i64, SignatureError> {
    let sent_at = parse_timestamp(text.trim())?;
    if now.checked_sub(sent_at).is_none_or(|age| age.unsigned_abs() > TOLERANCE_SECONDS.unsigned_abs()) {
        return Err(SignatureError::Stale);
    }
    Ok(sent_at)
}

/// Unix seconds as plain ASCII digits (no sign, no spaces), at most 12 of them.
fn parse_timestamp(text: &str) -> Result<i64, SignatureError> {
    if text.is_empty() || text.len() > MAX_TIMESTAMP_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::BadTimestamp);
    }
    text.parse().map_err(|_| SignatureError::BadTimestamp)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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
    fn what_a_derived_key_signs_does_not_verify_under_the_secret_it_came_from() {
        let secret = WebhookSecret::parse(SPEC_SECRET).unwrap();
        let links = secret.derive("file-links");
        let signature = links.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);

        let as_webhook = verify(&spec_secret(), headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), &signature), SPEC_BODY, SPEC_TIMESTAMP);
        let as_other_purpose =
            verify(&[secret.derive("other")], headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), &signature), SPEC_BODY, SPEC_TIMESTAMP);
        let as_itself =
            verify(&[secret.derive("file-links")], headers(SPEC_ID, &SPEC_TIMESTAMP.to_string(), &signature), SPEC_BODY, SPEC_TIMESTAMP);

        assert_eq!(as_webhook, Err(SignatureError::NoMatch));
        assert_eq!(as_other_purpose, Err(SignatureError::NoMatch));
        assert_eq!(as_itself, Ok(()));
        assert_ne!(signature, SPEC_SIGNATURE);
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
        assert_eq!(verify(&secrets, headers("", "1", "v1,x"), b"", 1), Err(SignatureError::BadId));
        assert!(WebhookSecret::parse("whsec_").is_err());
        assert_eq!(WebhookSecret::parse_list("whsec_YWJj, whsec_ZGVm").unwrap().len(), 2);
    }

    #[test]
    fn any_timestamp_that_is_not_a_sane_integer_is_refused_without_a_panic() {
        let secrets = spec_secret();
        for bad in [
            "-9223372036854775808",
            "9223372036854775807",
            "-1",
            "+1614265330",
            "1e9",
            "0x10",
            "",
            " ",
            "99999999999999999999",
            "1614265330.5",
            "١٦١٤٢٦٥٣٣٠",
        ] {
            let result = verify(&secrets, headers(SPEC_ID, bad, SPEC_SIGNATURE), SPEC_BODY, SPEC_TIMESTAMP);
            assert!(matches!(result, Err(SignatureError::BadTimestamp)), "{bad:?}: {result:?}");
        }
        // A well-formed timestamp far from now, and a `now` at the edge of i64, are stale, not a panic.
        let ts = SPEC_TIMESTAMP.to_string();
        assert_eq!(verify(&secrets, headers(SPEC_ID, &ts, SPEC_SIGNATURE), SPEC_BODY, i64::MIN), Err(SignatureError::Stale));
        assert_eq!(verify(&secrets, headers(SPEC_ID, &ts, SPEC_SIGNATURE), SPEC_BODY, i64::MAX), Err(SignatureError::Stale));
        assert_eq!(verify(&secrets, headers(SPEC_ID, "0", SPEC_SIGNATURE), SPEC_BODY, SPEC_TIMESTAMP), Err(SignatureError::Stale));
    }

    #[test]
    fn the_cost_is_bounded_before_any_mac_a_big_body_or_many_candidates_are_refused() {
        let secrets = spec_secret();
        let ts = SPEC_TIMESTAMP.to_string();
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        assert_eq!(verify(&secrets, headers(SPEC_ID, &ts, SPEC_SIGNATURE), &big, SPEC_TIMESTAMP), Err(SignatureError::BodyTooLarge));
        let many = ["v1,AAAA"; MAX_SIGNATURES + 1].join(" ");
        assert_eq!(verify(&secrets, headers(SPEC_ID, &ts, &many), SPEC_BODY, SPEC_TIMESTAMP), Err(SignatureError::TooManySignatures));
        // The good one among the most candidates allowed still verifies.
        let mut allowed = vec!["v1,AAAA"; MAX_SIGNATURES - 1];
        allowed.push(SPEC_SIGNATURE);
        assert_eq!(verify(&secrets, headers(SPEC_ID, &ts, &allowed.join(" ")), SPEC_BODY, SPEC_TIMESTAMP), Ok(()));
        let long_id = "i".repeat(MAX_ID_CHARS + 1);
        assert_eq!(verify(&secrets, headers(&long_id, &ts, SPEC_SIGNATURE), SPEC_BODY, SPEC_TIMESTAMP), Err(SignatureError::BadId));
    }

    #[test]
    fn the_largest_body_with_the_most_candidates_and_secrets_is_checked_quickly() {
        // One MAC per secret: 3 secrets x 256 KiB, whatever the candidates.
        let secrets: Vec<WebhookSecret> = (0..3).map(|_| WebhookSecret::parse(&WebhookSecret::generate_text()).unwrap()).collect();
        let body = vec![b'x'; MAX_BODY_BYTES];
        let forged = ["v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; MAX_SIGNATURES].join(" ");
        let ts = SPEC_TIMESTAMP.to_string();
        let started = std::time::Instant::now();
        for _ in 0..10 {
            assert_eq!(verify(&secrets, headers(SPEC_ID, &ts, &forged), &body, SPEC_TIMESTAMP), Err(SignatureError::NoMatch));
        }
        // Debug builds are slow; this still catches a MAC per candidate (8x the work).
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn constant_time_comparison_compares_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
