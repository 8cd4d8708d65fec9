use lambda_runtime::{run, service_fn, Error};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    let resources = videojobs_aws::Resources::from_env()?;
    let clients = videojobs_aws::AwsClients::from_env().await;
    let store = videojobs_aws::DynamoStore::new(clients.dynamodb, resources.jobs_table, resources.prompts_table);
    let worker = worker::Worker { jobs: Arc::new(store) };
    run(service_fn(|event| worker::handler(&worker, event))).await
}
