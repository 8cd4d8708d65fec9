//! `local-provider`: the local video provider on `LOCAL_PROVIDER_ADDR`
//! (default 127.0.0.1:4010), signing callbacks with `LOCAL_PROVIDER_WEBHOOK_SECRET`.
//! It fetches source images from public addresses only, unless
//! `LOCAL_PROVIDER_ALLOW_LOOPBACK_IMAGES=true` (the local stack, whose S3 is on loopback).
//! Its API takes `LOCAL_PROVIDER_TOKEN` as a bearer token, and it serves files
//! only through signed links that expire after an hour.

use videojobs_core::model::notification::LoopbackPorts;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::var("LOCAL_PROVIDER_ADDR").unwrap_or_else(|_| "127.0.0.1:4010".into());
    let secret = std::env::var("LOCAL_PROVIDER_WEBHOOK_SECRET").map_err(|_| "LOCAL_PROVIDER_WEBHOOK_SECRET is not set")?;
    let dir = std::env::var("LOCAL_PROVIDER_DIR").unwrap_or_else(|_| ".local/provider".into());
    // Source images from loopback over http (the local stack's S3) only when told.
    let local_images = std::env::var("LOCAL_PROVIDER_ALLOW_LOOPBACK_IMAGES").is_ok_and(|v| v == "true" || v == "1");
    // Any loopback port: the source images are presigned GETs from the emulator's S3.
    let loopback = if local_images { LoopbackPorts::range(1, u16::MAX) } else { LoopbackPorts::NONE };
    let image_policy = videojobs_core::model::notification::WebhookPolicy { allow_http: local_images, loopback };
    let secret = videojobs_core::model::signing::WebhookSecret::parse(&secret)?;
    // Every API call takes this token, and files are served only through links that expire.
    let token = std::env::var("LOCAL_PROVIDER_TOKEN")
        .ok()
        .filter(|t| t.len() >= 16)
        .ok_or("LOCAL_PROVIDER_TOKEN is not set (16 characters or more)")?;
    let config = local_provider::Config { dir: dir.into(), secret, image_policy, token: Some(token) };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let handle = local_provider::spawn(listener, config)?;
    println!("local provider listening on {}", handle.base_url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
