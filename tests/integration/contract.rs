//! The API as a published contract: `docs/openapi.json` against the code.
//!
//! Every answer the tests get through the harness (in process or over HTTP) is
//! checked here ([`check`]): its status must be one the document lists for the
//! operation, its content type one it lists for that status, and its JSON body
//! must validate against that schema (response schemas close their objects, so
//! a field the document does not have fails too). The tests below hold the
//! document to the routes `template.yaml` declares, to every error code the
//! code can answer, and to its own examples.

use lambda_http::http::{HeaderMap, Method};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use videojobs_api::{error_response, status_of};
use videojobs_core::model::request::InvalidRequest;
use videojobs_core::{AppError, JobStatus};

/// The committed document, as the status function serves it.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(status::docs::OPENAPI_JSON).expect("docs/openapi.json is JSON"))
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The value at a JSON pointer (`#/components/…`) of the document.
fn at(pointer: &str) -> &'static Value {
    spec().pointer(pointer.trim_start_matches('#')).unwrap_or_else(|| panic!("{pointer} is not in docs/openapi.json"))
}

/// Follows `$ref`s; returns the pointer of what it ends on.
fn resolve(pointer: String) -> (String, &'static Value) {
    let mut pointer = pointer;
    loop {
        let node = at(&pointer);
        match node.get("$ref").and_then(Value::as_str) {
            Some(next) => pointer = next.to_owned(),
            None => return (pointer, node),
        }
    }
}

/// A validator for the schema at `pointer`, compiled once: the whole document
/// is the root, so its `$ref`s resolve as they are written.
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap().get(pointer) {
        return found.clone();
    }
    let mut root = spec().clone();
    // A URI fragment: the braces of a path template are percent-encoded.
    root["$ref"] = json!(pointer.replace('{', "%7B").replace('}', "%7D"));
    let compiled = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
    let compiled = Arc::new(compiled);
    cache.lock().unwrap().insert(pointer.to_owned(), compiled.clone());
    compiled
}

/// The errors of `value` against the schema at `pointer` (none: valid).
pub fn errors_against(pointer: &str, value: &Value) -> Vec<String> {
    validator(pointer).iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// The document's path template for a request path (`/videos/jobs/{job_id}/status`),
/// the literal one first where both fit (`/videos/jobs/active`).
pub fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for template in spec()["paths"].as_object().expect("paths").keys() {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut holes = 0;
        let fits = parts.iter().zip(&segments).all(|(p, s)| {
            if p.starts_with('{') && p.ends_with('}') {
                holes += 1;
                !s.is_empty()
            } else {
                p == s
            }
        });
        if fits && best.is_none_or(|(_, h)| holes < h) {
            best = Some((template.as_str(), holes));
        }
    }
    best.map(|(t, _)| t)
}

/// Checks one answer against the document; panics with what does not fit.
pub fn check(method: &Method, path: &str, status: u16, headers: &HeaderMap, body: &[u8]) {
    let method_name = method.as_str().to_ascii_lowercase();
    let operation = template_of(path)
        .map(|t| format!("#/paths/{}/{method_name}", escape(t)))
        .filter(|pointer| spec().pointer(pointer.trim_start_matches('#')).is_some());
    let Some(operation) = operation else {
        // Not an operation of the API: the only answer is "no such route".
        assert_eq!(status, 404, "{method} {path} is no operation in docs/openapi.json, yet answered {status}");
        let value: Value = serde_json::from_slice(body).expect("a JSON error");
        assert_eq!(value["error"]["code"], "route_not_found", "{method} {path}");
        let errors = errors_against("#/components/schemas/Error", &value);
        assert!(errors.is_empty(), "{method} {path} → {status}: {errors:?}\n{value}");
        return;
    };
    let responses = at(&format!("{operation}/responses"));
    let key = [status.to_string(), format!("{}XX", status / 100), "default".to_owned()]
        .into_iter()
        .find(|k| responses.get(k).is_some())
        .unwrap_or_else(|| {
            panic!("{method} {path} answered {status}, which docs/openapi.json does not list for it: {}", String::from_utf8_lossy(body))
        });
    let (response, declared) = resolve(format!("{operation}/responses/{key}"));
    let media_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    let Some(content) = declared.get("content").and_then(Value::as_object) else {
        assert!(body.is_empty(), "{method} {path} → {status} has a body the document does not declare");
        return;
    };
    let media_type = media_type.unwrap_or_else(|| panic!("{method} {path} → {status} has no Content-Type"));
    assert!(
        content.contains_key(&media_type),
        "{method} {path} → {status} is {media_type}; docs/openapi.json says {:?}",
        content.keys().collect::<Vec<_>>()
    );
    if media_type == "application/json" {
        let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{method} {path} → {status}: not JSON ({e})"));
        let pointer = format!("{response}/content/application~1json/schema");
        let errors = errors_against(&pointer, &value);
        assert!(errors.is_empty(), "{method} {path} → {status} does not follow docs/openapi.json: {errors:#?}\n{value:#}");
    }
    // Declared headers that are present must follow their schemas too.
    if let Some(declared_headers) = declared.get("headers").and_then(Value::as_object) {
        for (name, header) in declared_headers {
            let Some(value) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) else { continue };
            let schema = &header["schema"];
            if let Some(expected) = schema.get("const") {
                assert_eq!(expected, value, "{method} {path} → {status}: header {name}");
            }
        }
    }
}

// ---- the document against the code -----------------------------------------

/// `Method: X, Path: Y` of every HTTP API event in template.yaml.
fn template_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(crate::harness::repo_root().join("template.yaml")).unwrap();
    text.lines()
        .filter_map(|line| {
            let method = line.split("Method: ").nth(1)?.split(',').next()?.trim().to_ascii_lowercase();
            let rest = line.split("Path: ").nth(1)?.trim_end();
            let path = rest.strip_suffix('}').unwrap_or(rest).trim().trim_matches('"').to_owned();
            Some((method, path))
        })
        .collect()
}

fn spec_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec()["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_document_lists_every_route_the_template_deploys_and_no_other() {
    let deployed = template_routes();
    assert!(deployed.len() >= 20, "the template's routes were not read: {deployed:?}");
    let mut documented = spec_routes();
    // Providers call the webhook function's own URL, not the HTTP API.
    assert!(documented.remove(&("post".to_owned(), "/webhooks/{provider}".to_owned())));
    assert_eq!(deployed, documented, "template.yaml and docs/openapi.json disagree");
}

#[test]
fn every_error_the_code_answers_is_documented_with_its_status() {
    let errors: Vec<AppError> = vec![
        InvalidRequest::new("prompt", "x").into(),
        AppError::Unauthenticated,
        AppError::InsufficientCredits { needed: 5, balance: 0 },
        AppError::Forbidden("no"),
        AppError::OwnJobReview,
        AppError::JobNotFound,
        AppError::RouteNotFound,
        AppError::WrongState { status: JobStatus::Failed, message: "x".into() },
        AppError::Expired,
        AppError::InputsGone,
        AppError::Rejected,
        AppError::BodyTooLarge { max_bytes: 1 },
        AppError::UploadTooLarge { message: "x".into() },
        AppError::UnsupportedMediaType,
        AppError::IdempotencyConflict,
        AppError::TooManyActiveJobs { limit: 5 },
        AppError::UnsupportedImage { message: "is not a PNG, JPEG or WebP image".into() },
        AppError::KeyNotFound,
        AppError::RateLimited(videojobs_core::model::ratelimit::Limited {
            policy: videojobs_core::model::ratelimit::Policy::Creates,
            limit: 30,
            window_seconds: 60,
            retry_after_seconds: 7,
        }),
        AppError::Unavailable("x".into()),
        AppError::Internal("x".into()),
    ];
    let listed: BTreeSet<&str> = at("#/components/schemas/Error/properties/error/properties/code/enum")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut answered = BTreeSet::new();
    for err in &errors {
        let status = status_of(err).as_u16();
        // The shared answer for this status names the code, and the real body validates against it.
        let response = spec()["components"]["responses"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, r)| r["content"]["application/json"]["examples"].get(err.code()).is_some())
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| panic!("no documented response has an example of {}", err.code()));
        let body: Value = serde_json::from_slice(error_response(err).body().as_ref()).unwrap();
        let pointer = format!("#/components/responses/{response}/content/application~1json/schema");
        assert!(
            errors_against(&pointer, &body).is_empty(),
            "{} ({status}) vs {response}: {:?}",
            err.code(),
            errors_against(&pointer, &body)
        );
        let documented_status: u16 = spec()["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op.get("responses").and_then(Value::as_object))
            .flat_map(|responses| responses.iter())
            .find(|(_, r)| r.get("$ref").and_then(Value::as_str) == Some(&format!("#/components/responses/{response}")))
            .map(|(status, _)| status.parse().unwrap())
            .unwrap_or_else(|| panic!("no operation answers {response}"));
        assert_eq!(documented_status, status, "{} is documented under {documented_status} but answered with {status}", err.code());
        answered.insert(err.code());
    }
    assert_eq!(answered, listed, "the codes the document lists and the codes the code answers differ");
}

#[test]
fn every_example_in_the_document_follows_its_own_schema() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut visit = |pointer: String, schema_pointer: String, value: &Value| {
        checked += 1;
        let errors = errors_against(&schema_pointer, value);
        if !errors.is_empty() {
            failures.push(format!("{pointer}: {errors:?}"));
        }
    };
    for (name, schema) in spec()["components"]["schemas"].as_object().unwrap() {
        for (i, example) in schema.get("examples").and_then(Value::as_array).into_iter().flatten().enumerate() {
            visit(format!("schemas/{name}/examples/{i}"), format!("#/components/schemas/{name}"), example);
        }
    }
    for (name, response) in spec()["components"]["responses"].as_object().unwrap() {
        for (code, example) in response["content"]["application/json"]["examples"].as_object().unwrap() {
            visit(
                format!("responses/{name}/{code}"),
                format!("#/components/responses/{name}/content/application~1json/schema"),
                &example["value"],
            );
        }
    }
    for (path, item) in spec()["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op.get("responses").and_then(Value::as_object).into_iter().flatten() {
                let media = &response["content"]["application/json"];
                let base = format!("#/paths/{}/{method}/responses/{status}/content/application~1json", escape(path));
                if let Some(example) = media.get("example") {
                    visit(base.clone(), format!("{base}/schema"), example);
                }
                for (name, example) in media.get("examples").and_then(Value::as_object).into_iter().flatten() {
                    visit(format!("{base}/examples/{name}"), format!("{base}/schema"), &example["value"]);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(checked >= 30, "only {checked} examples checked");
}

#[test]
fn the_checker_refuses_a_body_that_drifts_from_the_document() {
    let example = at("#/components/schemas/JobStatusBody/examples/0").clone();
    let schema = "#/components/schemas/JobStatusBody";
    assert!(errors_against(schema, &example).is_empty());
    let mut extra = example.clone();
    extra["surprise"] = json!(1);
    assert!(!errors_against(schema, &extra).is_empty(), "a field the document does not have");
    let mut missing = example.clone();
    missing.as_object_mut().unwrap().remove("progress");
    assert!(!errors_against(schema, &missing).is_empty(), "a field the document requires");
    let mut wrong = example;
    wrong["status"] = json!("almost_done");
    assert!(!errors_against(schema, &wrong).is_empty(), "a status the document does not list");
    // And an answer with a status the operation does not list.
    let caught = std::panic::catch_unwind(|| {
        check(&Method::GET, "/videos/account", 418, &HeaderMap::new(), b"{}");
    });
    assert!(caught.is_err());
}

#[test]
fn request_paths_find_their_operation() {
    assert_eq!(template_of("/videos/jobs/active"), Some("/videos/jobs/active"));
    assert_eq!(template_of("/videos/jobs/job_x/status"), Some("/videos/jobs/{job_id}/status"));
    assert_eq!(template_of("/videos/jobs/job_x"), Some("/videos/jobs/{job_id}"));
    assert_eq!(template_of("/nope"), None);
}
