//! HTTP plumbing shared by the API functions: finding the caller's key,
//! reading a JSON body, and the one mapping from [`AppError`] to a status code
//! and an error body. Handlers stay a page long because of it.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use videojobs_core::AppError;

/// The HTTP status for each error: the only place this is decided.
pub fn status_of(err: &AppError) -> StatusCode {
    match err {
        AppError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::InsufficientCredits { .. } => StatusCode::PAYMENT_REQUIRED,
        AppError::Forbidden(_) | AppError::OwnJobReview => StatusCode::FORBIDDEN,
        AppError::JobNotFound | AppError::KeyNotFound | AppError::RouteNotFound => StatusCode::NOT_FOUND,
        AppError::WrongState { .. } => StatusCode::CONFLICT,
        AppError::Expired | AppError::Rejected | AppError::InputsGone => StatusCode::GONE,
        AppError::BodyTooLarge { .. } | AppError::UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        AppError::UnsupportedMediaType | AppError::UnsupportedImage { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        AppError::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::TooManyActiveJobs { .. } | AppError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_step: Option<String>,
}

/// `{"error": {"code", "message", "field"?, "next_step"?}}` with its status.
/// Internal details go to the log, never into the body.
pub fn error_response(err: &AppError) -> Response<Body> {
    let status = status_of(err);
    match err.internal_detail() {
        Some(detail) => tracing::error!(code = err.code(), detail, "request failed"),
        None => tracing::info!(code = err.code(), status = status.as_u16(), "request refused"),
    }
    let mut response = json_response(status, &error_envelope(err));
    if matches!(err, AppError::Unauthenticated) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let AppError::RateLimited(limited) = err {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_seconds));
        for (name, value) in videojobs_core::model::ratelimit::headers(limited) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// The error's body, `{"error": {…}}`, as [`error_response`] answers it
/// (a batch answers one per item that was refused).
pub fn error_body(err: &AppError) -> serde_json::Value {
    serde_json::to_value(error_envelope(err)).unwrap_or_default()
}

fn error_envelope(err: &AppError) -> ErrorEnvelope<'_> {
    let field = match err {
        AppError::InvalidRequest(invalid) => Some(invalid.field.as_str()),
        AppError::UnsupportedImage { .. } => Some("upload_id"),
        _ => None,
    };
    ErrorEnvelope { error: ErrorFields { code: err.code(), message: err.public_message(), field, next_step: err.next_step() } }
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => raw_json_response(status, text),
        Err(err) => error_response(&AppError::Internal(format!("serialising a response: {err}"))),
    }
}

/// A response whose JSON text is already made (an idempotent replay).
pub fn raw_json_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Renders a handler's outcome.
pub fn respond<T: Serialize>(status: StatusCode, outcome: Result<T, AppError>) -> Response<Body> {
    match outcome {
        Ok(value) => json_response(status, &value),
        Err(err) => error_response(&err),
    }
}

/// The API key from `Authorization: Bearer …` or `X-API-Key`.
pub fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    {
        return Some(bearer.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The body of a JSON request: refused when it is not JSON or too large.
pub fn json_body(request: &Request, max_bytes: usize) -> Result<&[u8], AppError> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > max_bytes {
        return Err(AppError::BodyTooLarge { max_bytes });
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(AppError::UnsupportedMediaType);
    }
    Ok(body)
}

/// How long an API request may take: inside the create and status
/// functions' 10 s timeout (template.yaml), so that a request that runs out of
/// time answers `503 unavailable` (retry with the same `Idempotency-Key`), not
/// API Gateway's own `500` for a function that timed out.
pub const API_DEADLINE: std::time::Duration = std::time::Duration::from_secs(9);

/// `respond`'s answer, or `503 unavailable` once `deadline` has passed. A
/// write already sent may still be applied: the client's retry with the same
/// `Idempotency-Key` finds it.
pub async fn within_deadline(deadline: std::time::Duration, respond: impl std::future::Future<Output = Response<Body>>) -> Response<Body> {
    match tokio::time::timeout(deadline, respond).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(deadline_ms = deadline.as_millis() as u64, "the request ran out of time");
            error_response(&AppError::Unavailable("the request ran out of time".into()))
        }
    }
}

/// The span every API request runs in; `job_id` is recorded once known.
pub fn request_span(request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        key_id = tracing::field::Empty,
        job_id = tracing::field::Empty,
    )
}

/// A header's value as text, if present and readable.
pub fn header_text<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The query string's parameters, decoded.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The path's segments after the leading slash, ignoring a trailing one.
pub fn path_segments(request: &Request) -> Vec<&str> {
    request.uri().path().trim_matches('/').split('/').filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use videojobs_core::model::request::InvalidRequest;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        let mut builder = lambda_http::http::Request::builder().uri("https://x/videos/generate?limit=5&cursor=a%2Bb");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Body::Text(body.to_owned())).unwrap()
    }

    #[test]
    fn each_error_maps_to_the_status_the_design_lists() {
        let cases: Vec<(AppError, u16)> = vec![
            (InvalidRequest::new("prompt", "x").into(), 400),
            (AppError::Unauthenticated, 401),
            (AppError::InsufficientCredits { needed: 5, balance: 0 }, 402),
            (AppError::Forbidden("no"), 403),
            (AppError::OwnJobReview, 403),
            (AppError::JobNotFound, 404),
            (AppError::KeyNotFound, 404),
            (AppError::WrongState { status: videojobs_core::JobStatus::Failed, message: "x".into() }, 409),
            (AppError::Expired, 410),
            (AppError::InputsGone, 410),
            (AppError::Rejected, 410),
            (AppError::BodyTooLarge { max_bytes: 1 }, 413),
            (AppError::UnsupportedMediaType, 415),
            (AppError::UnsupportedImage { message: "x".into() }, 415),
            (AppError::IdempotencyConflict, 422),
            (AppError::TooManyActiveJobs { limit: 5 }, 429),
            (
                AppError::RateLimited(videojobs_core::model::ratelimit::Limited {
                    policy: videojobs_core::model::ratelimit::Policy::Creates,
                    limit: 1,
                    window_seconds: 60,
                    retry_after_seconds: 7,
                }),
                429,
            ),
            (AppError::Unavailable("x".into()), 503),
            (AppError::Internal("x".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(status_of(&err).as_u16(), status, "{err:?}");
        }
    }

    #[test]
    fn an_error_body_names_the_field_and_hides_internals() {
        let response = error_response(&InvalidRequest::new("prompt", "must not be empty").into());
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["field"], "prompt");
        assert!(body["error"]["next_step"].is_string());
        let response = error_response(&AppError::Internal("secret table name".into()));
        let text = String::from_utf8(response.body().to_vec()).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_rate_limited_answer_says_when_to_come_back_in_the_ietf_headers() {
        let limited = videojobs_core::model::ratelimit::Limited {
            policy: videojobs_core::model::ratelimit::Policy::Requests,
            limit: 300,
            window_seconds: 60,
            retry_after_seconds: 12,
        };
        let response = error_response(&AppError::RateLimited(limited));
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "12");
        assert_eq!(response.headers()["ratelimit-policy"], "\"requests\";q=300;w=60");
        assert_eq!(response.headers()["ratelimit"], "\"requests\";r=0;t=12");
    }

    #[test]
    fn the_key_comes_from_bearer_or_x_api_key() {
        assert_eq!(presented_key(&request(&[("authorization", "Bearer vj_abc")], "")), Some("vj_abc"));
        assert_eq!(presented_key(&request(&[("x-api-key", " vj_abc ")], "")), Some("vj_abc"));
        assert_eq!(presented_key(&request(&[("authorization", "Basic abc")], "")), None);
        assert_eq!(presented_key(&request(&[], "")), None);
    }

    #[test]
    fn a_body_must_be_json_and_small_enough() {
        let ok = request(&[("content-type", "application/json; charset=utf-8")], "{}");
        assert_eq!(json_body(&ok, 10).unwrap(), b"{}");
        let text = request(&[("content-type", "text/plain")], "{}");
        assert_eq!(json_body(&text, 10), Err(AppError::UnsupportedMediaType));
        let missing = request(&[], "{}");
        assert_eq!(json_body(&missing, 10), Err(AppError::UnsupportedMediaType));
        let big = request(&[("content-type", "application/json")], "{\"a\":\"0123456789\"}");
        assert_eq!(json_body(&big, 10), Err(AppError::BodyTooLarge { max_bytes: 10 }));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let r = request(&[], "");
        assert_eq!(query_param(&r, "limit").as_deref(), Some("5"));
        assert_eq!(query_param(&r, "cursor").as_deref(), Some("a+b"));
        assert_eq!(query_param(&r, "nope"), None);
        assert_eq!(path_segments(&r), ["videos", "generate"]);
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_answers_503_unavailable() {
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            Response::new(Body::Empty)
        };
        let response = within_deadline(std::time::Duration::from_millis(10), slow).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "unavailable");
    }

    #[tokio::test]
    async fn a_request_inside_its_deadline_answers_as_it_would() {
        let response = within_deadline(std::time::Duration::from_secs(5), async { Response::new(Body::from("done")) }).await;
        assert_eq!(response.body().as_ref(), b"done");
    }

    /// One error of each kind. The match has no wildcard: a new variant
    /// does not compile until it is listed here, and so in the table.
    fn one_of_each() -> Vec<AppError> {
        let limited = videojobs_core::model::ratelimit::Limited {
            policy: videojobs_core::model::ratelimit::Policy::Requests,
            limit: 1,
            window_seconds: 60,
            retry_after_seconds: 1,
        };
        let all = vec![
            AppError::InvalidRequest(InvalidRequest::new("body", "x")),
            AppError::UnsupportedMediaType,
            AppError::BodyTooLarge { max_bytes: 1 },
            AppError::UploadTooLarge { message: "x".into() },
            AppError::UnsupportedImage { message: "x".into() },
            AppError::Unauthenticated,
            AppError::Forbidden("x"),
            AppError::OwnJobReview,
            AppError::InsufficientCredits { needed: 2, balance: 1 },
            AppError::JobNotFound,
            AppError::KeyNotFound,
            AppError::RouteNotFound,
            AppError::WrongState { status: videojobs_core::JobStatus::Queued, message: "x".into() },
            AppError::Expired,
            AppError::InputsGone,
            AppError::Rejected,
            AppError::IdempotencyConflict,
            AppError::TooManyActiveJobs { limit: 1 },
            AppError::RateLimited(limited),
            AppError::Unavailable("x".into()),
            AppError::Internal("x".into()),
        ];
        for err in &all {
            match err {
                AppError::InvalidRequest(_)
                | AppError::UnsupportedMediaType
                | AppError::BodyTooLarge { .. }
                | AppError::UploadTooLarge { .. }
                | AppError::UnsupportedImage { .. }
                | AppError::Unauthenticated
                | AppError::Forbidden(_)
                | AppError::OwnJobReview
                | AppError::InsufficientCredits { .. }
                | AppError::JobNotFound
                | AppError::KeyNotFound
                | AppError::RouteNotFound
                | AppError::WrongState { .. }
                | AppError::Expired
                | AppError::InputsGone
                | AppError::Rejected
                | AppError::IdempotencyConflict
                | AppError::TooManyActiveJobs { .. }
                | AppError::RateLimited(_)
                | AppError::Unavailable(_)
                | AppError::Internal(_) => {}
            }
        }
        all
    }

    /// `(status, code)` of each row of the refused requests' table in docs/ERRORS.md.
    fn documented() -> std::collections::BTreeSet<(u16, String)> {
        let doc = include_str!("../../../docs/ERRORS.md");
        let section = doc.split("## Refused requests").nth(1).expect("the section").split("\n## ").next().unwrap_or_default();
        section
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let status = cells.get(1)?.parse::<u16>().ok()?;
                Some((status, cells.get(2)?.trim_matches('`').to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_error_table_in_errors_md_lists_every_code_with_its_status() {
        let from_code: std::collections::BTreeSet<(u16, String)> =
            one_of_each().iter().map(|err| (status_of(err).as_u16(), err.code().to_owned())).collect();

        let from_docs = documented();

        let undocumented: Vec<_> = from_code.difference(&from_docs).collect();
        let stale: Vec<_> = from_docs.difference(&from_code).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "missing from docs/ERRORS.md: {undocumented:?}; no longer in the code: {stale:?}"
        );
    }
}
