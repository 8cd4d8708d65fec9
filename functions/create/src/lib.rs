//! `create`: `POST /videos/generate`, `POST /videos/animate`,
//! `POST /videos/uploads`, `POST /videos/batch`, and a new job from another one
//! (`POST /videos/jobs/{id}/retry` and `…/remix`). Answers at once; the video
//! is made elsewhere.

use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use tracing::Instrument;
use videojobs_api::{error_response, json_body, path_segments, presented_key, raw_json_response, respond};
use videojobs_aws::Provide;
use videojobs_core::model::request::{
    parse_cancel_after, AnimateRequest, CommonOptions, GenerateRequest, InvalidRequest, InvalidUpload, UploadRequest,
};
use videojobs_core::services::{Idempotency, JobSpec, Services};
use videojobs_core::AppError;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const REPLAY_HEADER: &str = "idempotent-replayed";
/// The client's deadline, as Replicate's API takes it (`90s`, `5m`, `1h30m`).
pub const CANCEL_AFTER_HEADER: &str = "cancel-after";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Generate,
    Animate,
    Upload,
    Retry(&'a str),
    Remix(&'a str),
    Batch,
}

fn route(request: &Request) -> Option<Route<'_>> {
    if request.method() != Method::POST {
        return None;
    }
    match path_segments(request).as_slice() {
        ["videos", "generate"] => Some(Route::Generate),
        ["videos", "animate"] => Some(Route::Animate),
        ["videos", "uploads"] => Some(Route::Upload),
        ["videos", "batch"] => Some(Route::Batch),
        ["videos", "jobs", id, "retry"] => Some(Route::Retry(id)),
        ["videos", "jobs", id, "remix"] => Some(Route::Remix(id)),
        _ => None,
    }
}

/// Whether this function serves the request (the local API dispatches on it).
pub fn serves(request: &Request) -> bool {
    route(request).is_some()
}

/// `services` are built (with their AWS clients) only once a request needs
/// them: a route this function does not have is answered without them.
pub async fn handler(services: &impl Provide<Services>, request: Request) -> Result<Response<Body>, Error> {
    let span = videojobs_api::request_span(&request);
    Ok(videojobs_api::within_deadline(videojobs_api::API_DEADLINE, handle(services, &request)).instrument(span).await)
}

async fn handle(services: &impl Provide<Services>, request: &Request) -> Response<Body> {
    let Some(route) = route(request) else { return error_response(&AppError::RouteNotFound) };
    let services = services.get();
    match route {
        Route::Upload => respond(StatusCode::CREATED, create_upload(services, request).await),
        Route::Batch => match create_batch(services, request).await {
            Ok(answers) => raw_json_response(StatusCode::OK, answers.to_string()),
            Err(err) => error_response(&err),
        },
        Route::Generate | Route::Animate | Route::Retry(_) | Route::Remix(_) => match create_job(services, request, route).await {
            Ok(accepted) => {
                tracing::Span::current().record("job_id", accepted.job_id.as_str());
                tracing::info!(replayed = accepted.replayed, "job accepted");
                let status = StatusCode::from_u16(accepted.status).unwrap_or(StatusCode::ACCEPTED);
                let mut response = raw_json_response(status, accepted.body);
                if accepted.replayed {
                    response.headers_mut().insert(REPLAY_HEADER, HeaderValue::from_static("true"));
                }
                response
            }
            Err(err) => error_response(&err),
        },
    }
}

async fn create_job(services: &Services, request: &Request, route: Route<'_>) -> Result<videojobs_core::services::Accepted, AppError> {
    let who = services.authenticate_to_create(presented_key(request)).await?;
    // A retry takes no body: the parent's request is the request.
    let body = match route {
        Route::Retry(_) => &[][..],
        _ => json_body(request, services.settings.body_max_bytes)?,
    };
    let cancel_after = cancel_after(request, route)?;
    let mut name = idempotency_route(route);
    if let Some(seconds) = cancel_after {
        // The header is part of the request a replay must match.
        name.push_str(&format!("|cancel-after={seconds}"));
    }
    let idempotency = idempotency(services, request, &name, body)?;
    let limits = &services.settings.limits;
    match route {
        Route::Animate => {
            let mut request = AnimateRequest::parse(body, limits)?;
            request.common = with_deadline(request.common, cancel_after)?;
            services.create_job(&who, JobSpec::Animate(request), idempotency).await
        }
        Route::Retry(id) => services.retry(&who, id, idempotency).await,
        Route::Remix(id) => match cancel_after {
            // The header is one more override.
            Some(seconds) => services.remix(&who, id, &with_deadline_field(body, seconds)?, idempotency).await,
            None => services.remix(&who, id, body, idempotency).await,
        },
        _ => {
            let mut request = GenerateRequest::parse(body, limits)?;
            request.common = with_deadline(request.common, cancel_after)?;
            services.create_job(&who, JobSpec::Generate(request), idempotency).await
        }
    }
}

/// The `Cancel-After` header's deadline, if there is one; a retry makes the
/// parent's request as it was, so it refuses one (remix it instead).
fn cancel_after(request: &Request, route: Route<'_>) -> Result<Option<u32>, AppError> {
    let Some(value) = request.headers().get(CANCEL_AFTER_HEADER) else { return Ok(None) };
    let invalid = |message: &str| AppError::from(InvalidRequest::new("Cancel-After", message));
    if let Route::Retry(_) = route {
        return Err(invalid("a retry makes the same request again: remix it with cancel_after_seconds for a new deadline"));
    }
    let text = value.to_str().map_err(|_| invalid("must be whole seconds or a duration such as 90s, 5m or 1h30m"))?;
    Ok(Some(parse_cancel_after(text)?))
}

fn with_deadline(common: CommonOptions, cancel_after: Option<u32>) -> Result<CommonOptions, AppError> {
    Ok(match cancel_after {
        Some(seconds) => common.with_cancel_after_header(seconds)?,
        None => common,
    })
}

/// A remix body with the header's deadline as its `cancel_after_seconds`
/// (refused when the body names another).
fn with_deadline_field(body: &[u8], seconds: u32) -> Result<Vec<u8>, AppError> {
    let mut overrides: serde_json::Map<String, serde_json::Value> = videojobs_core::model::request::parse_json(body)?;
    match overrides.get("cancel_after_seconds") {
        Some(given) if given != &serde_json::Value::from(seconds) => {
            let message = format!("is {seconds} s but the body's cancel_after_seconds is {given}: give one");
            Err(InvalidRequest::new("Cancel-After", message).into())
        }
        _ => {
            overrides.insert("cancel_after_seconds".into(), seconds.into());
            serde_json::to_vec(&overrides).map_err(|e| AppError::Internal(format!("writing a request: {e}")))
        }
    }
}

/// What an `Idempotency-Key` is fingerprinted under: the route, and for a
/// retry or a remix the parent too (one key may retry two jobs).
fn idempotency_route(route: Route<'_>) -> String {
    match route {
        Route::Animate => "animate".into(),
        Route::Retry(id) => format!("retry:{id}"),
        Route::Remix(id) => format!("remix:{id}"),
        Route::Generate | Route::Upload | Route::Batch => "generate".into(),
    }
}

fn idempotency(services: &Services, request: &Request, name: &str, body: &[u8]) -> Result<Option<Idempotency>, AppError> {
    let key = idempotency_key(request)?;
    Ok(key.map(|key| Idempotency::for_request(key, &services.settings.prompt_hash_key, name, body)))
}

/// The request's `Idempotency-Key`, if it has one.
fn idempotency_key(request: &Request) -> Result<Option<videojobs_core::model::ids::IdempotencyKey>, AppError> {
    let refused = |why: &'static str| AppError::from(InvalidRequest::new("Idempotency-Key", why));
    // A key that is there but not text (bytes past ASCII) is refused, never
    // taken for no key: the retry it guards would make a second job.
    request
        .headers()
        .get(IDEMPOTENCY_HEADER)
        .map(|value| {
            let text = value.to_str().map_err(|_| refused("must be 1 to 255 visible ASCII characters"))?;
            text.parse().map_err(|e: videojobs_core::model::ids::InvalidId| refused(e.0))
        })
        .transpose()
}

/// `POST /videos/batch`: `{"items": [{"ref", "status", "job" | "error", "replayed"}]}`,
/// one answer per item in the order given.
async fn create_batch(services: &Services, request: &Request) -> Result<serde_json::Value, AppError> {
    let body = json_body(request, services.settings.body_max_bytes)?;
    let parsed = videojobs_core::model::batch::parse(body, &services.settings.limits);
    // The key first (401 before 400); each valid item counts against the create limit.
    let who = services.authenticate_to_create_many(presented_key(request), parsed.as_ref().map_or(1, Vec::len)).await?;
    let items = parsed?;
    if request.headers().contains_key(CANCEL_AFTER_HEADER) {
        return Err(InvalidRequest::new("Cancel-After", "give a batch's deadline as cancel_after_seconds in defaults or items").into());
    }
    let key = idempotency_key(request)?;
    let answers = services.create_batch(&who, items, key.as_ref()).await?;
    let items: Vec<serde_json::Value> = answers
        .into_iter()
        .map(|(reference, outcome)| match outcome {
            Ok(accepted) => {
                let job: serde_json::Value = serde_json::from_str(&accepted.body).unwrap_or_default();
                tracing::info!(job_id = %accepted.job_id, replayed = accepted.replayed, item = %reference, "batch item accepted");
                serde_json::json!({"ref": reference, "status": accepted.status, "job": job, "replayed": accepted.replayed})
            }
            Err(err) => {
                let status = videojobs_api::status_of(&err).as_u16();
                match err.internal_detail() {
                    Some(detail) => tracing::error!(code = err.code(), detail, item = %reference, "batch item failed"),
                    None => tracing::info!(code = err.code(), status, item = %reference, "batch item refused"),
                }
                serde_json::json!({"ref": reference, "status": status, "error": videojobs_api::error_body(&err)["error"]})
            }
        })
        .collect();
    Ok(serde_json::json!({ "items": items }))
}

async fn create_upload(services: &Services, request: &Request) -> Result<videojobs_core::model::views::UploadBody, AppError> {
    let who = services.authenticate(presented_key(request)).await?;
    let body = json_body(request, services.settings.body_max_bytes)?;
    let upload = UploadRequest::parse(body, &services.settings.limits).map_err(|err| match err {
        InvalidUpload::Invalid(invalid) => AppError::InvalidRequest(invalid),
        too_large @ InvalidUpload::TooLarge { .. } => AppError::UploadTooLarge { message: too_large.to_string() },
    })?;
    services.create_upload(&who, upload).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use videojobs_aws::OnFirstEvent;

    #[tokio::test]
    async fn a_route_this_function_does_not_have_is_answered_without_building_the_services() {
        // Arrange: services that fail the test if they are ever built.
        let services = OnFirstEvent::new(|| -> Services { panic!("the services were built for a request that needs none") });
        let request = lambda_http::http::Request::builder().method("GET").uri("/no/such/route").body(Body::Empty).expect("a request");

        // Act
        let response = handler(&services, request).await.expect("an answer");

        // Assert
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
