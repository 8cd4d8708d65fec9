use lambda_http::{run, service_fn, Error};
use videojobs_aws::{AwsClients, Function, OnFirstEvent, Resources};

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    videojobs_providers::tls::install_crypto_provider();
    let resources = Resources::from_env()?;
    let providers = videojobs_providers::from_env(videojobs_providers::http_client_on_first_use())?;
    // The AWS clients are built by the first callback that verifies (see `OnFirstEvent`).
    let callbacks =
        OnFirstEvent::new(|| videojobs_aws::callbacks(&AwsClients::for_function(Function::Webhook), &resources, providers.clone()));
    run(service_fn(|request| webhook::handler(&providers, &callbacks, request))).await
}
