//! Attacks on the deployment, each refused (issue 10): forged or oversized
//! provider callbacks, uploads that are not images, switched-on faults,
//! capability URLs in logs, inward image URLs, format characters.

use crate::helpers::{resources, settings, TestApp};
use lambda_http::http::{Method, StatusCode};
use lambda_http::Body;
use serde_json::json;
use videojobs_core::model::signing::WebhookSecret;

/// A user on the shared stack whose webhook trusts the local provider's `secret`.
async fn app_trusting(secret: &str) -> TestApp {
    let secret = secret.to_owned();
    let lookup = move |name: &str| match name {
        "LOCAL_PROVIDER_URL" => Some("http://127.0.0.1:9".to_owned()),
        "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secret.clone()),
        _ => None,
    };
    let providers = videojobs_providers::from_lookup(lookup, videojobs_providers::http_client()).expect("providers");
    TestApp::on(resources().clone(), 100, settings(), providers, "http://127.0.0.1:9".into()).await
}

fn callback(timestamp: &str, signature: &str, body: Vec<u8>) -> lambda_http::Request {
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("https://hooks.test/webhooks/local")
        .header("content-type", "application/json")
        .header("webhook-id", "evt_attack")
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(Body::Binary(body))
        .expect("a valid request")
}

#[tokio::test]
async fn a_webhook_timestamp_of_i64_min_or_any_other_non_integer_is_401_not_a_panic() {
    let secret = WebhookSecret::generate_text();
    let app = app_trusting(&secret).await;
    let body = br#"{"id":"lp_x","status":"processing","progress":10}"#.to_vec();
    let key = WebhookSecret::parse(&secret).unwrap();
    // Signed with the right secret: only the timestamp is wrong.
    let signature = key.sign("evt_attack", 0, &body);
    for timestamp in ["-9223372036854775808", "9223372036854775807", "-1", "1e9", "+5", "0"] {
        let reply = app.send(callback(timestamp, &signature, body.clone())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{timestamp}: {}", reply.body);
        assert_eq!(reply.error_code(), "bad_signature");
    }
}

#[tokio::test]
async fn a_flood_of_big_callbacks_with_many_candidates_is_answered_fast() {
    let secret = WebhookSecret::generate_text();
    let app = app_trusting(&secret).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    // The attack of the issue: 2 MiB, 500 candidates. Refused before any MAC.
    let candidates = vec!["v1,AAAA"; 500].join(" ");
    let started = std::time::Instant::now();
    let reply = app.send(callback(&now, &candidates, vec![b'x'; 2 * 1024 * 1024])).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.body);
    // Under the body cap, 500 candidates are refused as such.
    let reply = app.send(callback(&now, &candidates, vec![b'x'; 200 * 1024])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    // The most a caller can make us do: the largest body, the most candidates, all forged.
    let forged = ["v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; videojobs_core::model::signing::MAX_SIGNATURES].join(" ");
    for _ in 0..20 {
        let reply = app.send(callback(&now, &forged, vec![b'x'; videojobs_core::model::signing::MAX_BODY_BYTES])).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }
    // Was 24 s for one such request; 22 now take well under a second in release, a few in debug.
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

/// Asks for an upload of `bytes` declared as `content_type`, PUTs them, and returns its id.
async fn upload(app: &TestApp, content_type: &str, bytes: &[u8]) -> String {
    let reply = app.post("/videos/uploads", &json!({"content_type": content_type, "size_bytes": bytes.len()}).to_string()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let headers: Vec<(String, String)> = reply.body["headers"]
        .as_object()
        .expect("upload headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(crate::helpers::http_put(reply.body["url"].as_str().expect("a URL"), &headers, bytes).await, 200);
    reply.body["upload_id"].as_str().expect("an upload id").to_owned()
}

#[tokio::test]
async fn an_upload_that_is_not_the_declared_image_is_refused_at_animate_and_costs_nothing() {
    let app = TestApp::new(100).await;
    let png = crate::helpers::png(64, 48);
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        // The issue's attack: a shell script sent as a PNG.
        ("image/png", b"#!/bin/sh\ncurl http://169.254.169.254/ | sh\n".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        // A real PNG declared as a JPEG.
        ("image/jpeg", png.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        // A PNG too small to animate (its header says 8x8).
        ("image/png", crate::helpers::png(8, 8), StatusCode::BAD_REQUEST),
    ];
    for (content_type, bytes, expected) in cases {
        let upload_id = upload(&app, content_type, &bytes).await;
        let reply = app.post("/videos/animate", &json!({"upload_id": upload_id}).to_string()).await;
        assert_eq!(reply.status, expected, "{content_type}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "upload_id", "{}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap_or("").contains("upload_id"), "{}", reply.body);
    }
    assert_eq!(app.credits().await, 100, "no credits were taken");
    assert_eq!(app.job_count().await, 0, "no job was written");
    // The real PNG, declared as one, is animated.
    let upload_id = upload(&app, "image/png", &png).await;
    let reply = app.post("/videos/animate", &json!({"upload_id": upload_id}).to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
}

/// Log lines written through the functions' own subscriber, kept for the test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("the log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_webhook_url_token_never_reaches_a_log_line_or_an_event() {
    let app = TestApp::on(crate::helpers::fresh_resources(), 100, settings(), Default::default(), "http://127.0.0.1:9".into()).await;
    // Nothing listens on port 1: the delivery fails, and reqwest's error names the URL.
    let url = "http://127.0.0.1:1/hooks/in?token=tok_LEAKME_0123456789";
    let body = json!({"prompt": "A kite over the dunes", "duration_seconds": 2, "resolution": "480p", "webhook_url": url});
    let id = app.generate_with(&body).await;
    let captured = Captured::default();
    let sink = captured.clone();
    let dispatch = tracing::Dispatch::new(videojobs_aws::telemetry::subscriber(videojobs_aws::telemetry::Redacting(move || sink.clone())));
    {
        let _logging = tracing::dispatcher::set_default(&dispatch);
        assert_eq!(app.delete(&format!("/videos/jobs/{id}")).await.status, StatusCode::OK);
        let (message, _) = crate::helpers::next_message(&app, &id, "notify").await;
        let message: videojobs_core::model::work::WorkMessage = serde_json::from_value(message).expect("a work message");
        worker::handle(&app.app.worker, message).await.expect("the worker handles it");
    }
    let logs = String::from_utf8(captured.0.lock().expect("the log buffer").clone()).expect("UTF-8 logs");
    assert!(logs.contains("notification request failed"), "the failed delivery was logged: {logs}");
    assert!(logs.contains("127.0.0.1:1"), "the endpoint is named by its host and port: {logs}");
    assert!(!logs.contains("LEAKME"), "the token reached the logs: {logs}");
    let events = app.get(&format!("/videos/jobs/{id}/events")).await;
    assert!(!events.body.to_string().contains("LEAKME"), "{}", events.body);
}

#[tokio::test]
async fn local_faults_are_a_400_where_the_deployment_has_not_turned_them_on() {
    let mut deployed = settings();
    deployed.limits.allow_fault_injection = false;
    let app = TestApp::with_settings(100, deployed).await;
    for faults in [json!({"duplicate_callbacks": 2000}), json!({"submit_errors": [422]}), json!({})] {
        let body = json!({"prompt": "A kite", "duration_seconds": 1, "metadata": {"local_faults": faults}});
        let reply = app.post("/videos/generate", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], "metadata.local_faults", "{}", reply.body);
    }
    // Where they are on (the local stack), they are still bounded.
    let app = TestApp::new(100).await;
    let body = json!({"prompt": "A kite", "duration_seconds": 1, "metadata": {"local_faults": {"duplicate_callbacks": 2000}}});
    let reply = app.post("/videos/generate", &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["field"], "metadata.local_faults.duplicate_callbacks", "{}", reply.body);
    assert_eq!(app.credits().await, 100);
}

#[tokio::test]
async fn bidi_overrides_and_zero_width_characters_are_refused_in_prompts_notes_and_metadata() {
    let app = TestApp::new(100).await;
    let spoof = "invoice\u{202E}gpj.exe";
    for (body, field) in [
        (json!({"prompt": spoof}), "prompt"),
        (json!({"prompt": "A kite", "metadata": {"title": "zero\u{200B}width"}}), "metadata.title"),
        (json!({"prompt": "A kite", "metadata": {"tags": ["ok", "\u{2066}isolated"]}}), "metadata.tags"),
    ] {
        let reply = app.post("/videos/generate", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.body);
    }
    assert_eq!(app.job_count().await, 0);
    // A reviewer's note is refused the same way.
    let id = app.generate(1).await;
    let (_, reviewer) = app.another_user(0, videojobs_core::model::ids::Role::Reviewer).await;
    let note = json!({"decision": "reject", "reason": "other", "note": format!("looks fine {spoof}")});
    let reply = app.call(Method::POST, &format!("/videos/jobs/{id}/review"), Some(&reviewer), Some(&note.to_string())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["field"], "note", "{}", reply.body);
}

#[tokio::test]
async fn an_image_url_whose_name_resolves_inward_is_refused_and_costs_nothing() {
    let mut deployed = settings();
    deployed.limits.allow_loopback_webhooks = false;
    deployed.limits.allow_http_webhooks = false;
    let app = TestApp::with_settings(100, deployed).await;
    // `localhost` is no IP literal: only its resolved address tells.
    for url in ["https://localhost/cat.png", "https://LocalHost:8443/cat.png"] {
        let reply = app.post("/videos/animate", &json!({"image_url": url}).to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "image_url", "{}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap_or("").contains("loopback"), "{}", reply.body);
    }
    assert_eq!(app.credits().await, 100);
    assert_eq!(app.job_count().await, 0);
}

/// A one-route HTTP server that answers every request with `head` and `body`.
async fn canned_server(head: String, body: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let (head, body) = (head.clone(), body.clone());
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    (url, task)
}

/// Asks the local provider for a video of `image_url` and returns its final prediction.
async fn provider_render(provider: &local_provider::Handle, image_url: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let body = json!({"input": {"mode": "image", "image_url": image_url, "width": 64, "height": 64, "duration_seconds": 0.5}});
    let created: serde_json::Value = client
        .post(format!("{}/v1/predictions", provider.base_url))
        .json(&body)
        .send()
        .await
        .expect("submitted")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_str().expect("a prediction id").to_owned();
    for _ in 0..150 {
        let now: serde_json::Value =
            client.get(format!("{}/v1/predictions/{id}", provider.base_url)).send().await.expect("read").json().await.expect("JSON");
        if now["status"] == "succeeded" || now["status"] == "failed" {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("prediction {id} did not finish");
}

async fn spawn_provider(image_policy: videojobs_core::model::notify::WebhookPolicy) -> local_provider::Handle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
    let secret = WebhookSecret::parse(&WebhookSecret::generate_text()).expect("a secret");
    local_provider::spawn(listener, local_provider::Config { dir, secret, image_policy, token: None }).expect("the provider starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_provider_fetches_images_only_from_allowed_addresses_never_redirected_and_bounded() {
    let png = crate::helpers::png(64, 64);
    let ok_head = format!("HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", png.len());
    let (image_server, _image) = canned_server(ok_head, png).await;
    let image_url = format!("{image_server}/cat.png");

    // As deployed: public addresses only (http allowed here so that the address is what is refused).
    // `localhost` is loopback once resolved.
    let deployed = spawn_provider(videojobs_core::model::notify::WebhookPolicy { allow_http: true, allow_loopback: false }).await;
    for url in [image_url.clone(), image_url.replace("127.0.0.1", "localhost")] {
        let prediction = provider_render(&deployed, &url).await;
        assert_eq!(prediction["status"], "failed", "{url}: {prediction}");
        let message = prediction["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("image not fetched") && message.contains("loopback"), "{message}");
    }

    // The local stack allows loopback: the image renders...
    let local = spawn_provider(videojobs_core::model::notify::WebhookPolicy { allow_http: true, allow_loopback: true }).await;
    assert_eq!(provider_render(&local, &image_url).await["status"], "succeeded");
    // ...but a redirect (here to the metadata service) is not followed...
    let redirect =
        "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (redirecting, _redirect) = canned_server(redirect.to_owned(), Vec::new()).await;
    let prediction = provider_render(&local, &format!("{redirecting}/cat.png")).await;
    assert_eq!(prediction["status"], "failed", "{prediction}");
    assert!(prediction["error"]["message"].as_str().unwrap_or("").contains("redirects are not followed"), "{prediction}");
    // ...an image over the cap is not read into memory...
    let huge = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", local_provider::render::MAX_IMAGE_BYTES + 1);
    let (huge_server, _huge) = canned_server(huge, Vec::new()).await;
    let prediction = provider_render(&local, &format!("{huge_server}/big.png")).await;
    assert!(prediction["error"]["message"].as_str().unwrap_or("").contains("over"), "{prediction}");
    // ...and bytes that are not an image never reach an ffmpeg demuxer.
    let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n".to_vec();
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", playlist.len());
    let (playlist_server, _playlist) = canned_server(head, playlist).await;
    let prediction = provider_render(&local, &format!("{playlist_server}/cat.png")).await;
    assert!(prediction["error"]["message"].as_str().unwrap_or("").contains("not a PNG, JPEG or WebP"), "{prediction}");
}

#[tokio::test]
async fn a_raw_prompt_expires_with_its_jobs_retention_and_the_kept_hash_is_keyed() {
    let app = TestApp::new(100).await;
    let prompt = "A lighthouse at dawn";
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = app.generate_with(&json!({"prompt": prompt, "duration_seconds": 1})).await;
    let item = app
        .clients
        .dynamodb
        .get_item()
        .table_name(&app.resources.prompts_table)
        .key("job_id", aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()))
        .send()
        .await
        .expect("prompt read")
        .item
        .expect("the prompt item");
    let ttl: i64 = item.get("ttl_epoch").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).expect("a TTL on the prompt");
    let settings = &app.services.settings;
    let window = (settings.generation_timeout_seconds + settings.retention_seconds) as i64;
    assert!((before + window..=before + window + 60).contains(&ttl), "ttl {ttl}, created about {before}");
    // The job keeps an HMAC under the deployment's key: the plain SHA-256 of a guess does not match it.
    let job = app.job(&id).await;
    assert_ne!(job.prompt_hash.as_deref(), Some(videojobs_core::model::request::sha256_hex(prompt.as_bytes()).as_str()));
    assert_eq!(job.prompt_hash, Some(videojobs_core::model::request::prompt_hash(&settings.prompt_hash_key, prompt)));
}

/// Runs the `videojobs` command against `app` served on a local port.
async fn cli(app: &TestApp, key: &str, args: &[&str]) -> (i32, String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let server = tokio::spawn(local_api::serve(listener, std::sync::Arc::new(app.app.clone())));
    let run = crate::helpers::videojobs_at(&url, key, args).await;
    server.abort();
    (run.code, run.out, run.err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_keys_without_secrets_revoke_one_and_it_is_401_at_once_and_expired_keys_are_401() {
    let app = TestApp::new(100).await;
    let (_, admin) = app.another_user(0, videojobs_core::model::ids::Role::Admin).await;
    let new_user = format!("ann-{}", ulid::Ulid::new().to_string().to_lowercase());
    let created = app
        .call(
            Method::POST,
            "/videos/admin/keys",
            Some(&admin),
            Some(&json!({"user_id": new_user, "role": "user", "expires_in_days": 30}).to_string()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (secret, key_id) = (created.body["api_key"].as_str().unwrap().to_owned(), created.body["key_id"].as_str().unwrap().to_owned());
    assert!(key_id.starts_with("key_"), "{}", created.body);
    assert!(created.body["expires_at"].is_string(), "{}", created.body);
    assert_eq!(app.call(Method::GET, "/videos/account", Some(&secret), None).await.status, StatusCode::OK);

    // Listed by public id, never with the key or its hash.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/videos/admin/keys?limit=100&cursor={c}"),
            None => "/videos/admin/keys?limit=100".into(),
        };
        let page = app.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let text = page.body.to_string();
        let hash = secret.parse::<videojobs_core::model::ids::ApiKey>().expect("a key").hash();
        assert!(!text.contains(&secret) && !text.contains(hash.as_str()), "a secret was listed");
        listed.extend(page.body["keys"].as_array().cloned().unwrap_or_default());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let entry = listed.iter().find(|k| k["key_id"] == key_id.as_str()).expect("the new key is listed");
    assert_eq!((entry["state"].as_str(), entry["user_id"].as_str()), (Some("active"), Some(new_user.as_str())));
    // A user may not list or revoke keys.
    assert_eq!(app.get("/videos/admin/keys").await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.delete(&format!("/videos/admin/keys/{key_id}")).await.status, StatusCode::FORBIDDEN);

    // Revoked: the very next request is 401.
    let revoked = app.call(Method::DELETE, &format!("/videos/admin/keys/{key_id}"), Some(&admin), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["state"], "revoked");
    let refused = app.call(Method::GET, "/videos/account", Some(&secret), None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let refused = app.call(Method::POST, "/videos/generate", Some(&secret), Some(r#"{"prompt":"A kite"}"#)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(app.call(Method::DELETE, "/videos/admin/keys/key_nope", Some(&admin), None).await.status, StatusCode::NOT_FOUND);

    // A key past its expiry is 401 too.
    let expired = videojobs_core::model::ids::ApiKey::generate();
    let now = time::OffsetDateTime::now_utc();
    let principal = videojobs_core::ports::Principal { user_id: app.user.clone(), role: videojobs_core::model::ids::Role::User };
    let record =
        videojobs_core::ports::KeyRecord::new(principal, "expired", now - time::Duration::days(2), Some(now - time::Duration::seconds(1)));
    app.services.keys.save_key_record(&expired.hash(), &record).await.expect("saved");
    assert_eq!(app.call(Method::GET, "/videos/account", Some(expired.expose()), None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_keys() {
    let app = TestApp::new(100).await;
    let (_, admin) = app.another_user(0, videojobs_core::model::ids::Role::Admin).await;
    let user = format!("bo-{}", ulid::Ulid::new().to_string().to_lowercase());
    let (code, out, err) = cli(&app, &admin, &["admin", "create-key", "--user-id", &user, "--expires-in-days", "7"]).await;
    assert_eq!(code, 0, "{err}");
    let secret = out.trim().to_owned();
    let key_id = err
        .split_whitespace()
        .find(|w| w.trim_matches(|c| c == '(' || c == ')' || c == '.').starts_with("key_"))
        .expect("the key id is said")
        .trim_matches(|c| c == '(' || c == ')' || c == '.')
        .to_owned();
    assert!(err.contains("expires at"), "{err}");
    let (code, out, err) = cli(&app, &admin, &["--json", "admin", "list-keys", "--limit", "100"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&secret), "the listing shows no secret");
    let (code, out, err) = cli(&app, &admin, &["admin", "revoke-key", &key_id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(app.call(Method::GET, "/videos/account", Some(&secret), None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_key_is_rate_limited_on_requests_and_on_creates_with_retry_after_and_ratelimit_headers() {
    let mut limited = settings();
    limited.rate_limits = videojobs_core::model::ratelimit::RateLimits { requests_per_minute: 8, creates_per_minute: 2 };
    let app = TestApp::with_settings(100, limited).await;
    let (_, other) = app.another_user(100, videojobs_core::model::ids::Role::User).await;
    // Near the end of a minute the window turns over mid-test: start in a fresh one.
    let second = time::OffsetDateTime::now_utc().unix_timestamp() % 60;
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let create = json!({"prompt": "A kite", "duration_seconds": 1}).to_string();
    assert_eq!(app.post("/videos/generate", &create).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.post("/videos/generate", &create).await.status, StatusCode::ACCEPTED);
    let third = app.post("/videos/generate", &create).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.body);
    assert_eq!(third.error_code(), "rate_limited");
    let retry: u64 = third.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(third.headers["ratelimit-policy"], "\"creates\";q=2;w=60");
    assert_eq!(third.headers["ratelimit"].to_str().unwrap(), format!("\"creates\";r=0;t={retry}"));
    assert_eq!(app.credits().await, 98, "the refused create took nothing");
    // Reads still pass until the request limit (8: 3 creates so far).
    for _ in 0..5 {
        assert_eq!(app.get("/videos/account").await.status, StatusCode::OK);
    }
    let over = app.get("/videos/account").await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert_eq!(over.headers["ratelimit-policy"], "\"requests\";q=8;w=60");
    // Another key has its own budget.
    assert_eq!(app.call(Method::GET, "/videos/account", Some(&other), None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_provider_takes_a_token_from_the_worker_and_serves_files_only_through_links_that_expire() {
    let token = "tok-0123456789abcdef-local".to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
    let secret_text = WebhookSecret::generate_text();
    let secret = WebhookSecret::parse(&secret_text).expect("a secret");
    let config = local_provider::Config { token: Some(token.clone()), ..local_provider::Config::local(dir, secret) };
    let provider = local_provider::spawn(listener, config).expect("the provider starts");
    let client = reqwest::Client::new();
    let body = json!({"input": {"mode": "text", "prompt": "A kite", "width": 64, "height": 64, "duration_seconds": 0.5}});

    // Without the token: nothing is accepted, listed or configured.
    for (method, path) in [("POST", "/v1/predictions"), ("GET", "/v1/stats"), ("POST", "/v1/faults"), ("GET", "/v1/predictions/lp_x")] {
        let request = client.request(method.parse().unwrap(), format!("{}{path}", provider.base_url)).json(&body);
        assert_eq!(request.send().await.expect("answered").status(), 401, "{method} {path}");
    }
    let wrong = client.get(format!("{}/v1/stats", provider.base_url)).bearer_auth("tok-wrong").send().await.expect("answered");
    assert_eq!(wrong.status(), 401);

    // The worker's adapter sends it (LOCAL_PROVIDER_TOKEN).
    let lookup = |name: &str| match name {
        "LOCAL_PROVIDER_URL" => Some(provider.base_url.clone()),
        "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secret_text.clone()),
        "LOCAL_PROVIDER_TOKEN" => Some(token.clone()),
        _ => None,
    };
    let providers = videojobs_providers::from_lookup(lookup, videojobs_providers::http_client()).expect("providers");
    let local = providers.get("local").expect("the local provider");
    let request = videojobs_core::model::provider::SubmitRequest {
        idempotency_key: "job_token_test".into(),
        params: videojobs_core::model::job::JobParams::TextToVideo {
            duration_seconds: 1,
            aspect_ratio: videojobs_core::model::request::AspectRatio::Square,
            resolution: videojobs_core::model::request::Resolution::Sd,
        },
        prompt: Some("A kite".into()),
        image_url: None,
        callback_url: "http://127.0.0.1:9/webhooks/local".into(),
        faults: None,
    };
    let id = local.submit(&request).await.expect("submitted with the token");
    let output = loop {
        match local.poll(&id).await.expect("polled with the token") {
            videojobs_core::model::provider::ProviderStatus::Succeeded(output) => break output,
            videojobs_core::model::provider::ProviderStatus::Failed { message, .. } => panic!("render failed: {message}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };

    // The link the prediction gives works; the bare path, a tampered or a stretched expiry do not.
    assert!(output.video_url.contains("expires=") && output.video_url.contains("sig="), "{}", output.video_url);
    assert_eq!(client.get(&output.video_url).send().await.expect("answered").status(), 200);
    let bare = output.video_url.split('?').next().unwrap().to_owned();
    assert_eq!(client.get(&bare).send().await.expect("answered").status(), 403);
    let expires: i64 = output.video_url.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let stretched = output.video_url.replace(&format!("expires={expires}"), &format!("expires={}", expires + 86_400));
    assert_eq!(client.get(&stretched).send().await.expect("answered").status(), 403);
    let other_file = output.video_url.replace("video.mp4", "thumbnail.jpg");
    assert_eq!(client.get(&other_file).send().await.expect("answered").status(), 403, "a link is good for its own file only");
}
