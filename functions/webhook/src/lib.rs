//! `webhook`: providers' callbacks on the function URL, one path per provider
//! (`POST /webhooks/{provider}`). It answers within a second or two. What a
//! callback does is decided in `videojobs_core::services::callbacks`; this
//! crate reads the request, calls [`receive`] and answers:
//!
//! | outcome | answer |
//! |---|---|
//! | unknown provider | `404` |
//! | body over 256 KiB | `413` |
//! | bad, missing or stale signature | `401` |
//! | body not understood (signature good) | `400` |
//! | a delivery seen before | `200 {"duplicate": true}` |
//! | a delivery being applied right now | `409` (the provider retries) |
//! | a request id no job owns yet | `202 {"matched": false}` |
//! | applied (progress, finished, or late and ignored) | `200` |
//! | storage failed | `503` (the provider retries) |

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use serde_json::json;
use std::collections::HashMap;
use tracing::Instrument;
use videojobs_api::{json_response, path_segments};
use videojobs_aws::Provide;
use videojobs_core::ports::Providers;
pub use videojobs_core::services::callbacks::{receive, receive_with, CallbackOutcome, Callbacks};

/// The provider a callback is addressed to, from `/webhooks/{provider}`.
pub fn provider_of(request: &Request) -> Option<&str> {
    match path_segments(request).as_slice() {
        ["webhooks", provider] => Some(provider),
        _ => None,
    }
}

/// Verifies the callback with `providers` alone, and reaches for the
/// storage behind `callbacks` (built when first needed) only for one that
/// verified: a forged or misaddressed callback builds no AWS client.
pub async fn handler(providers: &Providers, callbacks: &impl Provide<Callbacks>, request: Request) -> Result<Response<Body>, Error> {
    let provider = provider_of(&request).unwrap_or("").to_owned();
    let span = tracing::info_span!("callback", provider, request_id = tracing::field::Empty, job_id = tracing::field::Empty);
    let headers: HashMap<String, String> =
        request.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))).collect();
    let outcome = receive_with(providers, || callbacks.get(), &provider, &headers, request.body().as_ref()).instrument(span).await;
    Ok(answer(&outcome))
}

/// The HTTP answer to each outcome (the only place they are decided).
pub fn answer(outcome: &CallbackOutcome) -> Response<Body> {
    let error = |code: &str, message: &str| json!({"error": {"code": code, "message": message}});
    let (status, body) = match outcome {
        CallbackOutcome::UnknownProvider => (StatusCode::NOT_FOUND, error("unknown_provider", "no such provider")),
        CallbackOutcome::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, error("body_too_large", "the callback body is too large")),
        CallbackOutcome::BadSignature => (StatusCode::UNAUTHORIZED, error("bad_signature", "the signature did not verify")),
        CallbackOutcome::Malformed => (StatusCode::BAD_REQUEST, error("malformed", "the callback was not understood")),
        CallbackOutcome::Unmatched => (StatusCode::ACCEPTED, json!({"received": true, "matched": false})),
        CallbackOutcome::Duplicate => (StatusCode::OK, json!({"received": true, "duplicate": true})),
        CallbackOutcome::InProgress => (StatusCode::CONFLICT, error("in_progress", "this delivery is being applied; retry later")),
        CallbackOutcome::Applied => (StatusCode::OK, json!({"received": true, "duplicate": false})),
        CallbackOutcome::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, error("unavailable", "try again")),
    };
    json_response(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use videojobs_aws::OnFirstEvent;

    /// The local provider, with a secret the tests' callbacks are not signed with.
    fn providers() -> Providers {
        let settings = |name: &str| match name {
            "LOCAL_PROVIDER_URL" => Some("http://127.0.0.1:9".to_owned()),
            "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()),
            _ => None,
        };
        videojobs_providers::from_lookup(settings, videojobs_providers::http_client_on_first_use()).expect("the local provider")
    }

    fn post(path: &str, body: &str) -> Request {
        lambda_http::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", "1")
            .header("webhook-signature", "v1,Zm9yZ2Vk")
            .body(Body::from(body))
            .expect("a request")
    }

    #[tokio::test]
    async fn forged_and_misaddressed_callbacks_are_answered_without_building_the_storage() {
        // Arrange: storage that fails the test if it is ever built.
        let callbacks = OnFirstEvent::new(|| -> Callbacks { panic!("the storage was built for a callback that needs none") });
        let providers = providers();

        // Act
        let forged = handler(&providers, &callbacks, post("/webhooks/local", r#"{"request_id":"r1"}"#)).await.expect("an answer");
        let unknown = handler(&providers, &callbacks, post("/webhooks/nobody", "{}")).await.expect("an answer");
        let elsewhere = handler(&providers, &callbacks, post("/no/such/route", "{}")).await.expect("an answer");

        // Assert
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        assert_eq!((unknown.status(), elsewhere.status()), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    }
}
