use lambda_http::{run, service_fn, Error};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    let resources = videojobs_aws::Resources::from_env()?;
    let providers = videojobs_providers::from_env(videojobs_providers::http_client_on_first_use())?;
    let clients = videojobs_aws::AwsClients::from_env().await;
    let store = videojobs_aws::DynamoStore::new(clients.dynamodb, &resources.jobs_table, &resources.prompts_table);
    let queue = Arc::new(videojobs_aws::SqsWorkQueue::new(clients.sqs, &resources.work_queue_url));
    let store = Arc::new(store);
    let jobs = videojobs_aws::notifying(store.clone(), queue.clone());
    let webhook = webhook::Webhook { jobs, queue, providers, stats: store };
    run(service_fn(|request| webhook::handler(&webhook, request))).await
}
