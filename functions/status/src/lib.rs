//! `status`: every read of a job and every user decision on one
//! (`GET …/status`, `…/result`, `…/events`, `…/children`, the listings, `DELETE` to cancel),
//! the caller's own account (`GET /videos/account`) and their webhook signing
//! secret (`GET /videos/webhook-secret`, `POST /videos/webhook-secret/rotate`)
//! with a signed test delivery (`POST /videos/webhook-test`);
//! reviews (`POST …/review`, `GET /videos/review/queue`) and the review page
//! (`GET /review`); the figures (`GET /videos/stats`: what a frontend may show
//! for any key, everything for admins); for admins `POST /videos/admin/keys|credits`,
//! `GET /videos/admin/keys` and `DELETE /videos/admin/keys/{key_id}`;
//! and the API's own description (`GET /openapi.json`) with its page (`GET /docs`).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Error, Request, Response};
use tracing::Instrument;
use videojobs_api::{error_response, json_body, path_segments, presented_key, query_param, respond};
use videojobs_aws::Provide;
use videojobs_core::model::admin::{GrantRequest, NewKeyRequest};
use videojobs_core::model::listing::JobFilter;
use videojobs_core::model::notification::endpoints::ResumeRequest;
use videojobs_core::model::notification::log::{FailedDeliveriesFilter, RecoverRequest, RedeliverRequest};
use videojobs_core::model::request::InvalidRequest;
use videojobs_core::model::review::ReviewRequest;
use videojobs_core::ports::PageRequest;
use videojobs_core::services::Services;
use videojobs_core::AppError;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

pub mod docs;
pub mod page;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Status(&'a str),
    Result(&'a str),
    Events(&'a str),
    Children(&'a str),
    Deliveries(&'a str),
    Redeliver(&'a str),
    FailedDeliveries,
    RecoverDeliveries,
    ResumeEndpoint,
    Cancel(&'a str),
    Active,
    List,
    Account,
    Review(&'a str),
    ReviewQueue,
    ReviewPage,
    OpenApi,
    DocsPage,
    WebhookSecret,
    RotateWebhookSecret,
    WebhookTest,
    Stats,
    AdminKeys,
    AdminListKeys,
    AdminRevokeKey(&'a str),
    AdminCredits,
}

fn route(request: &Request) -> Option<Route<'_>> {
    let method = request.method();
    match (method, path_segments(request).as_slice()) {
        (&Method::GET, ["videos", "jobs"]) => Some(Route::List),
        (&Method::GET, ["videos", "account"]) => Some(Route::Account),
        (&Method::GET, ["videos", "jobs", "active"]) => Some(Route::Active),
        (&Method::GET, ["videos", "jobs", id, "status"]) => Some(Route::Status(id)),
        (&Method::GET, ["videos", "jobs", id, "result"]) => Some(Route::Result(id)),
        (&Method::GET, ["videos", "jobs", id, "events"]) => Some(Route::Events(id)),
        (&Method::GET, ["videos", "jobs", id, "children"]) => Some(Route::Children(id)),
        (&Method::GET, ["videos", "jobs", id, "deliveries"]) => Some(Route::Deliveries(id)),
        (&Method::POST, ["videos", "jobs", id, "redeliver"]) => Some(Route::Redeliver(id)),
        (&Method::GET, ["videos", "deliveries"]) => Some(Route::FailedDeliveries),
        (&Method::POST, ["videos", "deliveries", "redeliver"]) => Some(Route::RecoverDeliveries),
        (&Method::POST, ["videos", "webhook-endpoints", "resume"]) => Some(Route::ResumeEndpoint),
        (&Method::DELETE, ["videos", "jobs", id]) => Some(Route::Cancel(id)),
        (&Method::POST, ["videos", "jobs", id, "review"]) => Some(Route::Review(id)),
        (&Method::GET, ["videos", "review", "queue"]) => Some(Route::ReviewQueue),
        (&Method::GET, ["review"]) => Some(Route::ReviewPage),
        (&Method::GET, ["openapi.json"]) => Some(Route::OpenApi),
        (&Method::GET, ["docs"]) => Some(Route::DocsPage),
        (&Method::GET, ["videos", "webhook-secret"]) => Some(Route::WebhookSecret),
        (&Method::POST, ["videos", "webhook-secret", "rotate"]) => Some(Route::RotateWebhookSecret),
        (&Method::POST, ["videos", "webhook-test"]) => Some(Route::WebhookTest),
        (&Method::GET, ["videos", "stats"]) => Some(Route::Stats),
        (&Method::POST, ["videos", "admin", "keys"]) => Some(Route::AdminKeys),
        (&Method::GET, ["videos", "admin", "keys"]) => Some(Route::AdminListKeys),
        (&Method::DELETE, ["videos", "admin", "keys", id]) => Some(Route::AdminRevokeKey(id)),
        (&Method::POST, ["videos", "admin", "credits"]) => Some(Route::AdminCredits),
        _ => None,
    }
}

/// Whether this function serves the request (the local API dispatches on it).
pub fn serves(request: &Request) -> bool {
    route(request).is_some()
}

/// `services` are built (with their AWS clients) only once a request needs
/// them: an unknown route, the pages and the API's description are answered
/// without them.
pub async fn handler(services: &impl Provide<Services>, request: Request) -> Result<Response<Body>, Error> {
    let span = videojobs_api::request_span(&request);
    Ok(videojobs_api::within_deadline(videojobs_api::API_DEADLINE, handle(services, &request)).instrument(span).await)
}

async fn handle(services: &impl Provide<Services>, request: &Request) -> Response<Body> {
    let Some(route) = route(request) else { return error_response(&AppError::RouteNotFound) };
    // The pages and the API's description hold no data: no key.
    match route {
        Route::ReviewPage => return page::review_page(),
        Route::OpenApi => return docs::openapi_json(),
        Route::DocsPage => return docs::docs_page(),
        _ => {}
    }
    let services = services.get();
    if let Route::Status(id)
    | Route::Result(id)
    | Route::Events(id)
    | Route::Children(id)
    | Route::Deliveries(id)
    | Route::Redeliver(id)
    | Route::Cancel(id)
    | Route::Review(id) = &route
    {
        tracing::Span::current().record("job_id", *id);
    }
    // A test delivery or a manual send makes us call out: it counts as a create against the key's limits.
    let authenticated = match route {
        Route::WebhookTest | Route::Redeliver(_) | Route::RecoverDeliveries | Route::ResumeEndpoint => {
            services.authenticate_to_create(presented_key(request)).await
        }
        _ => services.authenticate(presented_key(request)).await,
    };
    let who = match authenticated {
        Ok(who) => who,
        Err(err) => return error_response(&err),
    };
    if matches!(route, Route::AdminKeys | Route::AdminListKeys | Route::AdminRevokeKey(_) | Route::AdminCredits) {
        if let Err(err) = videojobs_core::services::admin::admin_only(&who) {
            return error_response(&err);
        }
    }
    let ok = StatusCode::OK;
    match route {
        Route::Status(id) => status(services.status(&who, id).await),
        Route::Result(id) => respond(ok, services.result(&who, id).await),
        Route::Events(id) => respond(ok, services.events(&who, id).await),
        Route::Children(id) => respond(ok, services.children(&who, id).await),
        Route::Deliveries(id) => respond(ok, services.deliveries(&who, id).await),
        Route::FailedDeliveries => {
            let parsed =
                page_request(request).and_then(|page| Ok((FailedDeliveriesFilter::parse(|name| query_param(request, name))?, page)));
            match parsed {
                Ok((filter, page)) => respond(ok, services.failed_deliveries(&who, &filter, page).await),
                Err(err) => error_response(&err),
            }
        }
        Route::Redeliver(id) => {
            let body = if request.body().is_empty() { Ok(&[][..]) } else { json_body(request, services.settings.body_max_bytes) };
            match body.and_then(|b| RedeliverRequest::parse(b).map_err(AppError::from)) {
                Ok(parsed) => respond(StatusCode::ACCEPTED, services.redeliver(&who, id, parsed).await),
                Err(err) => error_response(&err),
            }
        }
        Route::ResumeEndpoint => {
            let body = json_body(request, services.settings.body_max_bytes);
            match body.and_then(|b| ResumeRequest::parse(b).map_err(AppError::from)) {
                Ok(parsed) => respond(ok, services.resume_endpoint(&who, parsed).await),
                Err(err) => error_response(&err),
            }
        }
        Route::RecoverDeliveries => {
            let body = json_body(request, services.settings.body_max_bytes);
            match body.and_then(|b| RecoverRequest::parse(b).map_err(AppError::from)) {
                Ok(parsed) => respond(StatusCode::ACCEPTED, services.recover_deliveries(&who, parsed).await),
                Err(err) => error_response(&err),
            }
        }
        Route::Cancel(id) => {
            let outcome = services.cancel(&who, id).await;
            if outcome.is_ok() {
                tracing::info!("job canceled");
            }
            respond(ok, outcome)
        }
        Route::Active => respond(ok, services.active(&who).await),
        Route::Account => respond(ok, services.account(&who).await),
        Route::WebhookSecret => respond(ok, services.webhook_secret(&who).await),
        Route::RotateWebhookSecret => respond(ok, rotate(services, request, &who).await),
        Route::WebhookTest => {
            let body = json_body(request, services.settings.body_max_bytes);
            let parsed =
                body.and_then(|b| videojobs_core::model::request::PingRequest::parse(b, &services.settings.limits).map_err(AppError::from));
            match parsed {
                Ok(ping) => respond(ok, services.ping_webhook(&who, ping).await),
                Err(err) => error_response(&err),
            }
        }
        Route::Stats => respond(ok, services.stats(&who).await),
        Route::AdminKeys => {
            let body = json_body(request, services.settings.body_max_bytes);
            let outcome = match body.and_then(|b| NewKeyRequest::parse(b).map_err(AppError::from)) {
                Ok(parsed) => services.create_key(&who, parsed).await,
                Err(err) => Err(err),
            };
            respond(StatusCode::CREATED, outcome)
        }
        Route::AdminListKeys => match page_request(request) {
            Ok(page) => respond(ok, services.list_keys(&who, page).await),
            Err(err) => error_response(&err),
        },
        Route::AdminRevokeKey(id) => respond(ok, services.revoke_key(&who, id).await),
        Route::AdminCredits => {
            let body = json_body(request, services.settings.body_max_bytes);
            let outcome = match body.and_then(|b| GrantRequest::parse(b).map_err(AppError::from)) {
                Ok(parsed) => services.grant(&who, parsed).await,
                Err(err) => Err(err),
            };
            respond(ok, outcome)
        }
        Route::List => match page_request(request).and_then(|page| Ok((job_filter(request)?, page))) {
            Ok((filter, page)) => respond(ok, services.list(&who, &filter, page).await),
            Err(err) => error_response(&err),
        },
        Route::Review(id) => respond(ok, review(services, request, &who, id).await),
        Route::ReviewQueue => match page_request(request) {
            Ok(page) => respond(ok, services.review_queue(&who, page).await),
            Err(err) => error_response(&err),
        },
        Route::ReviewPage => page::review_page(),
        Route::OpenApi => docs::openapi_json(),
        Route::DocsPage => docs::docs_page(),
    }
}

/// The status answer; an in-flight job's says when to ask again in
/// `Retry-After` (see `videojobs_core::model::estimate`).
fn status(outcome: Result<videojobs_core::model::views::StatusBody, AppError>) -> Response<Body> {
    let poll_after = outcome.as_ref().ok().and_then(|body| body.poll_after_seconds);
    let mut response = respond(StatusCode::OK, outcome);
    if let Some(seconds) = poll_after {
        response.headers_mut().insert("retry-after", seconds.into());
    }
    response
}

/// A rotation takes no body (a day's grace) or `{"grace_seconds": N}`.
async fn rotate(
    services: &Services,
    request: &Request,
    who: &videojobs_core::ports::Principal,
) -> Result<videojobs_core::model::notification::WebhookSecretBody, AppError> {
    use videojobs_core::model::notification::RotateRequest;
    let parsed = if request.body().is_empty() {
        RotateRequest::default()
    } else {
        RotateRequest::parse(json_body(request, services.settings.body_max_bytes)?)?
    };
    services.rotate_webhook_secret(who, parsed).await
}

async fn review(
    services: &Services,
    request: &Request,
    who: &videojobs_core::ports::Principal,
    id: &str,
) -> Result<videojobs_core::model::views::StatusBody, AppError> {
    // The role is checked before the body, so a user learns only that they may not review.
    if !who.role.can_review() {
        return Err(AppError::Forbidden("only a reviewer or an admin can review videos"));
    }
    let body = json_body(request, services.settings.body_max_bytes)?;
    let decision = ReviewRequest::parse(body)?;
    services.review(who, id, decision).await
}

fn job_filter(request: &Request) -> Result<JobFilter, AppError> {
    Ok(JobFilter::parse(|name| query_param(request, name))?)
}

fn page_request(request: &Request) -> Result<PageRequest, AppError> {
    let limit = match query_param(request, "limit") {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| InvalidRequest::new("limit", format!("must be a whole number from 1 to {MAX_PAGE_SIZE}")))?,
    };
    Ok(PageRequest { limit, cursor: query_param(request, "cursor").filter(|c| !c.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use videojobs_aws::OnFirstEvent;

    #[tokio::test]
    async fn an_unknown_route_and_the_apis_description_are_answered_without_building_the_services() {
        // Arrange: services that fail the test if they are ever built.
        let services = OnFirstEvent::new(|| -> Services { panic!("the services were built for a request that needs none") });
        let get = |uri: &str| lambda_http::http::Request::builder().method("GET").uri(uri).body(Body::Empty).expect("a request");

        // Act
        let unknown = handler(&services, get("/no/such/route")).await.expect("an answer");
        let described = handler(&services, get("/openapi.json")).await.expect("an answer");

        // Assert
        assert_eq!((unknown.status(), described.status()), (StatusCode::NOT_FOUND, StatusCode::OK));
    }
}
