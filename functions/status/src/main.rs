use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    videojobs_aws::telemetry::init();
    // Settings are checked now; the AWS clients are built by the first request that needs them.
    let services = videojobs_aws::services_on_first_event(videojobs_aws::Function::Status)?;
    run(service_fn(|request| status::handler(&services, request))).await
}
