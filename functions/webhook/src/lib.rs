//! `webhook`: providers' callbacks on the function URL, one path per provider
//! (`POST /webhooks/{provider}`). No provider adapter is registered yet, so
//! every callback is answered `404` and nothing is written; the pipeline
//! issue adds signature checks, receipts and forward-only application.

use lambda_http::{Body, Error, Request, Response};
use videojobs_api::{error_response, path_segments};
use videojobs_core::AppError;

/// The provider a callback is addressed to, from `/webhooks/{provider}`.
pub fn provider_of(request: &Request) -> Option<&str> {
    match path_segments(request).as_slice() {
        ["webhooks", provider] => Some(provider),
        _ => None,
    }
}

pub async fn handler(request: Request) -> Result<Response<Body>, Error> {
    let provider = provider_of(&request).unwrap_or("");
    tracing::info!(provider, "callback for a provider with no adapter");
    Ok(error_response(&AppError::RouteNotFound))
}
