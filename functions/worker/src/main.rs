use lambda_runtime::{run, service_fn, Error};
use videojobs_aws::{AwsClients, Function, OnFirstEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    videojobs_providers::tls::install_crypto_provider();
    let (resources, settings) = (videojobs_aws::Resources::from_env()?, videojobs_core::model::settings::Settings::from_env()?);
    // Clients (AWS and the providers' HTTPS one) are built on the first event (see `OnFirstEvent`).
    let http = videojobs_providers::http_client_on_first_use();
    let providers = videojobs_providers::from_env(http.clone())?;
    let callback_base_url = std::env::var("WEBHOOK_BASE_URL").map_err(|_| "WEBHOOK_BASE_URL is not set")?;
    let worker = OnFirstEvent::new(|| {
        let clients = AwsClients::for_function(Function::from_env_or(Function::Worker));
        videojobs_aws::pipeline(&clients, &resources, &settings, providers.clone(), callback_base_url.clone())
    });
    run(service_fn(|event| worker::handler(worker.get(), event))).await
}
