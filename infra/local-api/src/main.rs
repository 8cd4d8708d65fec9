//! `local-api`: the API and the webhook on http://127.0.0.1:3000 (or
//! `LOCAL_API_ADDR`), and the worker on the work queue, against the local
//! stack the environment names.

use std::path::PathBuf;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    videojobs_aws::telemetry::init();
    let addr: std::net::SocketAddr = std::env::var("LOCAL_API_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into()).parse()?;
    let keys_file = PathBuf::from(std::env::var("DEMO_KEYS_FILE").unwrap_or_else(|_| ".local/demo-keys.json".into()));
    let resources = videojobs_aws::Resources::from_env()?;
    let mut settings = videojobs_core::model::settings::Settings::from_env()?;
    // Its own port is never a webhook's, whether LOCAL_API_ADDR said it or not.
    settings.limits.loopback_webhook_ports = settings.limits.loopback_webhook_ports.refusing([addr.port()]);
    let http = videojobs_providers::http_client();
    let providers = videojobs_providers::from_env(http.clone())?;
    let callback_base = std::env::var("WEBHOOK_BASE_URL").unwrap_or_else(|_| format!("http://{addr}"));
    // Each function signs as itself: the local gate checks its calls against its role.
    let fault_profile = std::env::var("LOCAL_FAULT_PROFILE").ok().filter(|p| !p.is_empty());
    let app = Arc::new(local_api::App::local(&resources, settings.clone(), providers, callback_base, fault_profile.as_deref()));
    // The demo accounts are an operator's setup, not a function's: the environment's credentials.
    let admin = videojobs_aws::services(&videojobs_aws::AwsClients::from_env(), &resources, settings);
    let keys = local_api::seed_demo(&admin, &keys_file).await?;
    let listener = local_api::bind(addr).await?;
    local_api::queue::spawn_pollers(&app, &resources);
    // What the template's one-minute schedule does; more often here, so that
    // a job whose execution never started is found within half a minute.
    let check_every =
        std::time::Duration::from_secs(std::env::var("CHECK_STUCK_EVERY_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30));
    let schedule = videojobs_aws::AwsClients::signing_as(local_api::queue::SCHEDULE_ROLE).sqs;
    tokio::spawn(local_api::queue::schedule_check_stuck_forever(schedule, resources.work_queue_url.clone(), check_every));
    println!("{}", local_api::banner(&format!("http://{addr}"), &keys));
    local_api::serve(listener, app).await;
    Ok(())
}
