//! `webhook-flood-bench`: the cost of refusing forged callbacks on the public
//! webhook, at the bounds an attacker controls (body size, signature
//! candidates), through the same verification the webhook function runs
//! (the local provider's Standard Webhooks check, three secrets configured).
//! Prints a Markdown table: requests per second on one core, and the time of
//! one request.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use videojobs_core::model::provider::Callback;
use videojobs_core::model::signing::{WebhookSecret, MAX_BODY_BYTES, MAX_SIGNATURES};

const FORGED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let secrets: Vec<String> = (0..3).map(|_| WebhookSecret::generate_text()).collect();
    let lookup = |name: &str| match name {
        "LOCAL_PROVIDER_URL" => Some("http://127.0.0.1:9".to_owned()),
        "LOCAL_PROVIDER_WEBHOOK_SECRETS" => Some(secrets.join(",")),
        _ => None,
    };
    let providers = videojobs_providers::from_lookup(lookup, videojobs_providers::http_client_on_first_use()).expect("providers");
    let provider = providers.get("local").expect("the local provider").clone();
    let now = 1_800_000_000_i64;
    let cases: Vec<(&str, usize, String, String)> = vec![
        ("the issue's attack: 2 MiB, 500 candidates (refused by size)", 2 * 1024 * 1024, vec!["v1,AAAA"; 500].join(" "), now.to_string()),
        ("256 KiB, 500 candidates (refused by count)", MAX_BODY_BYTES, vec!["v1,AAAA"; 500].join(" "), now.to_string()),
        ("timestamp -9223372036854775808", MAX_BODY_BYTES, FORGED.to_owned(), "-9223372036854775808".to_owned()),
        ("the most work: 256 KiB, 8 forged candidates, 3 secrets", MAX_BODY_BYTES, [FORGED; MAX_SIGNATURES].join(" "), now.to_string()),
        ("a typical callback: 300 B, 1 forged candidate", 300, FORGED.to_owned(), now.to_string()),
    ];
    println!("| forged callback | requests/s (one core) | per request |");
    println!("|---|---:|---:|");
    for (name, size, signature, timestamp) in cases {
        let body = vec![b'x'; size];
        let headers = HashMap::from([
            ("webhook-id".to_owned(), "msg_flood".to_owned()),
            ("webhook-timestamp".to_owned(), timestamp),
            ("webhook-signature".to_owned(), signature),
        ]);
        let callback = Callback { headers: &headers, body: &body, now };
        // The webhook function refuses a body over the cap before verifying (413).
        let verify = || async {
            if callback.body.len() > MAX_BODY_BYTES {
                return;
            }
            assert!(provider.verify_callback(&callback).await.is_err(), "a forgery verified");
        };
        let started = Instant::now();
        let mut count = 0u64;
        while started.elapsed() < Duration::from_secs(2) {
            verify().await;
            count += 1;
        }
        let per = started.elapsed() / u32::try_from(count).unwrap_or(u32::MAX);
        println!("| {name} | {:.0} | {per:.1?} |", count as f64 / started.elapsed().as_secs_f64());
    }
}
