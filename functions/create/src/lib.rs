//! `create`: `POST /videos/generate`, `POST /videos/animate`,
//! `POST /videos/uploads`, and a new job from another one
//! (`POST /videos/jobs/{id}/retry` and `…/remix`). Answers at once; the video
//! is made elsewhere.

use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use tracing::Instrument;
use videojobs_api::{error_response, json_body, path_segments, presented_key, raw_json_response, respond};
use videojobs_aws::Provide;
use videojobs_core::model::request::{AnimateRequest, GenerateRequest, InvalidUpload, UploadRequest};
use videojobs_core::services::{Idempotency, JobSpec, Services};
use videojobs_core::AppError;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const REPLAY_HEADER: &str = "idempotent-replayed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Generate,
    Animate,
    Upload,
    Retry(&'a str),
    Remix(&'a str),
}

fn route(request: &Request) -> Option<Route<'_>> {
    if request.method() != Method::POST {
        return None;
    }
    match path_segments(request).as_slice() {
        ["videos", "generate"] => Some(Route::Generate),
        ["videos", "animate"] => Some(Route::Animate),
        ["videos", "uploads"] => Some(Route::Upload),
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
    let idempotency = idempotency(services, request, &idempotency_route(route), body)?;
    let limits = &services.settings.limits;
    match route {
        Route::Animate => services.create_job(&who, JobSpec::Animate(AnimateRequest::parse(body, limits)?), idempotency).await,
        Route::Retry(id) => services.retry(&who, id, idempotency).await,
        Route::Remix(id) => services.remix(&who, id, body, idempotency).await,
        _ => services.create_job(&who, JobSpec::Generate(GenerateRequest::parse(body, limits)?), idempotency).await,
    }
}

/// What an `Idempotency-Key` is fingerprinted under: the route, and for a
/// retry or a remix the parent too (one key may retry two jobs).
fn idempotency_route(route: Route<'_>) -> String {
    match route {
        Route::Animate => "animate".into(),
        Route::Retry(id) => format!("retry:{id}"),
        Route::Remix(id) => format!("remix:{id}"),
        Route::Generate | Route::Upload => "generate".into(),
    }
}

fn idempotency(services: &Services, request: &Request, name: &str, body: &[u8]) -> Result<Option<Idempotency>, AppError> {
    let refused = |why: &'static str| AppError::from(videojobs_core::model::request::InvalidRequest::new("Idempotency-Key", why));
    // A key that is there but not text (bytes past ASCII) is refused, never
    // taken for no key: the retry it guards would make a second job.
    request
        .headers()
        .get(IDEMPOTENCY_HEADER)
        .map(|value| {
            let text = value.to_str().map_err(|_| refused("must be 1 to 255 visible ASCII characters"))?;
            let key = text.parse().map_err(|e: videojobs_core::model::ids::InvalidId| refused(e.0))?;
            Ok::<_, AppError>(Idempotency::for_request(key, &services.settings.prompt_hash_key, name, body))
        })
        .transpose()
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
