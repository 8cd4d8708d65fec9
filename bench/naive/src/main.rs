//! The create function as most Rust Lambda functions are written: the SDK
//! configuration from aws-config's default loader and the clients built in
//! `main`, before the runtime asks for the first event. The handler and the
//! AWS calls are the real create function's; only the building differs.

use lambda_http::{run, service_fn, Error};
use videojobs_aws::{AwsClients, Resources};
use videojobs_core::model::settings::Settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    let config = aws_config::load_from_env().await;
    let clients = AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        s3: aws_sdk_s3::Client::new(&config),
        sfn: aws_sdk_sfn::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
    };
    let services = videojobs_aws::services(&clients, &Resources::from_env()?, Settings::from_env()?);
    run(service_fn(|request| create::handler(&services, request))).await
}
