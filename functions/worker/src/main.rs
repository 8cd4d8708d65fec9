use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    let (resources, settings) = (videojobs_aws::Resources::from_env()?, videojobs_core::settings::Settings::from_env()?);
    let http = videojobs_providers::http_client();
    let providers = videojobs_providers::from_env(http.clone())?;
    let callback_base_url = std::env::var("WEBHOOK_BASE_URL").map_err(|_| "WEBHOOK_BASE_URL is not set")?;
    let clients = videojobs_aws::AwsClients::from_env().await;
    let worker = worker::Worker::on_aws(&clients, &resources, &settings, providers, http, callback_base_url);
    run(service_fn(|event| worker::handler(&worker, event))).await
}
