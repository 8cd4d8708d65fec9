//! `GET /openapi.json`, the API's OpenAPI 3.1 description (`docs/openapi.json`,
//! written by hand and checked against every answer the integration tests
//! see), and `GET /docs`, a page that renders it.
//!
//! The page is a small renderer of our own (`assets/docs.*`, about 10 KB)
//! rather than Swagger UI: Swagger UI's bundle is about 1.5 MB of JavaScript,
//! which would take the status function past its 8 MB size target, and
//! loading it from a CDN would put a third party in the page. Like the
//! review page, it runs only its own script and style (by hash), talks only
//! to its own origin, and writes the document as text, never as markup.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use std::sync::OnceLock;

/// The OpenAPI document, as committed.
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json"));

const HTML: &str = include_str!("../assets/docs.html");
const STYLE: &str = include_str!("../assets/docs.css");
const SCRIPT: &str = include_str!("../assets/docs.js");

pub fn openapi_json() -> Response<Body> {
    let mut response = Response::new(Body::Text(OPENAPI_JSON.to_owned()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The same for everyone and changed only by a deployment.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Any origin may read it (a generator, an editor in another tab).
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

struct Page {
    html: String,
    policy: String,
}

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = HTML.replace("/*STYLE*/", STYLE).replace("/*SCRIPT*/", SCRIPT);
        let policy = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'none'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            crate::page::csp_hash(SCRIPT),
            crate::page::csp_hash(STYLE)
        );
        Page { html, policy }
    })
}

pub fn docs_page() -> Response<Body> {
    let page = page();
    let mut response = Response::new(Body::Text(page.html.clone()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(policy) = HeaderValue::from_str(&page.policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json_and_served_as_is() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/videos/generate"]["post"].is_object());
        let response = openapi_json();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.body().as_ref(), OPENAPI_JSON.as_bytes());
    }

    #[test]
    fn the_docs_page_runs_only_its_own_script_and_style_and_needs_no_cdn() {
        let response = docs_page();
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(policy.contains(&crate::page::csp_hash(SCRIPT)) && policy.contains(&crate::page::csp_hash(STYLE)), "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("http"), "{policy}");
        let Body::Text(html) = response.body() else { panic!("a text body") };
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        // Nothing is loaded from elsewhere, and nothing from the document becomes markup.
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
        assert!(!SCRIPT.contains("eval(") && !SCRIPT.contains("document.write"));
        assert!(SCRIPT.contains("\"/openapi.json\""));
    }
}
