//! `GET /review`: the reviewers' page (and the admins' stats view), plain
//! HTML, CSS and JavaScript embedded in the binary. It holds no data and no
//! secret: the reviewer types their key into it, and it calls the API on the
//! same origin with that key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const HTML: &str = include_str!("../assets/review.html");
const STYLE: &str = include_str!("../assets/review.css");
const SCRIPT: &str = include_str!("../assets/review.js");

/// The page and its Content-Security-Policy, built once per instance.
struct Page {
    html: String,
    policy: String,
}

pub(crate) fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", STANDARD.encode(Sha256::digest(text.as_bytes())))
}

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = HTML.replace("/*STYLE*/", STYLE).replace("/*SCRIPT*/", SCRIPT);
        // Only this page's own script and style run; it talks only to its own
        // origin; videos play from presigned S3 URLs (https, or the local
        // emulator on the loopback address).
        let policy = format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             media-src https: http://127.0.0.1:* http://localhost:*; img-src 'self' data: https: http://127.0.0.1:* http://localhost:*; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_hash(SCRIPT),
            csp_hash(STYLE)
        );
        Page { html, policy }
    })
}

pub fn review_page() -> Response<Body> {
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
    fn the_page_embeds_its_script_and_style_and_allows_only_those() {
        let response = review_page();
        assert_eq!(response.status(), StatusCode::OK);
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(policy.contains(&csp_hash(SCRIPT)) && policy.contains(&csp_hash(STYLE)), "{policy}");
        assert!(!policy.contains("unsafe-inline"));
        let Body::Text(html) = response.body() else { panic!("a text body") };
        assert!(html.contains(SCRIPT) && html.contains(STYLE));
        assert!(!html.contains("/*SCRIPT*/") && !html.contains("/*STYLE*/"));
        // The script's hash covers the text between the tags exactly.
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
    }

    #[test]
    fn the_script_writes_text_not_markup() {
        // Everything from the API goes into the page as text.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
        assert!(!SCRIPT.contains("document.write") && !SCRIPT.contains("eval("));
    }
}
