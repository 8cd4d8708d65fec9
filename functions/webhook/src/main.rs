use lambda_http::{run, service_fn, Error};
use std::sync::Arc;
use videojobs_aws::{AwsClients, DynamoStore, OnFirstEvent, Resources, SqsWorkQueue};

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    videojobs_providers::tls::install_crypto_provider();
    let resources = Resources::from_env()?;
    let providers = videojobs_providers::from_env(videojobs_providers::http_client_on_first_use())?;
    // The AWS clients are built on the first request (see `OnFirstEvent`).
    let webhook = OnFirstEvent::new(|| {
        let clients = AwsClients::build_from_env();
        let store = DynamoStore::new(clients.dynamodb, &resources.jobs_table, &resources.prompts_table);
        let queue = SqsWorkQueue::new(clients.sqs, &resources.work_queue_url);
        webhook::Webhook { jobs: Arc::new(store), queue: Arc::new(queue), providers: providers.clone() }
    });
    run(service_fn(|request| webhook::handler(webhook.get(), request))).await
}
