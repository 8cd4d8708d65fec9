use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    let services = videojobs_aws::services_from_env().await?;
    run(service_fn(|request| status::handler(&services, request))).await
}
