//! Adapters from the ports of `videojobs-core` to AWS: DynamoDB, S3, Step
//! Functions (and SQS, which the worker uses). Clients are built once per
//! Lambda instance and shared by every invocation.

pub mod dynamo;
pub mod errors;
pub mod outputs;
pub mod s3;
pub mod sfn;
pub mod sqs;
pub mod telemetry;

use std::sync::Arc;
use videojobs_core::service::Services;
use videojobs_core::settings::{ConfigError, Settings};

pub use dynamo::DynamoStore;
pub use s3::S3Media;
pub use outputs::S3Outputs;
pub use sfn::StepFunctions;
pub use sqs::SqsWorkQueue;

/// The names of the resources the template creates, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub jobs_table: String,
    pub prompts_table: String,
    pub media_bucket: String,
    pub state_machine_arn: String,
    pub work_queue_url: String,
}

impl Resources {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name).filter(|v| !v.is_empty()).ok_or(ConfigError { name, problem: "is not set".into() })
        };
        Ok(Self {
            jobs_table: required("JOBS_TABLE")?,
            prompts_table: required("PROMPTS_TABLE")?,
            media_bucket: required("MEDIA_BUCKET")?,
            state_machine_arn: required("STATE_MACHINE_ARN")?,
            work_queue_url: required("WORK_QUEUE_URL")?,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// One client per AWS service, sharing one loaded configuration.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Region, credentials and `AWS_ENDPOINT_URL` (the local stack) come from
    /// the environment, as for any AWS SDK.
    pub async fn from_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // Emulators answer on one host, so buckets go in the path, not the host name.
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sfn: aws_sdk_sfn::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
        }
    }
}

/// Everything the API handlers need, wired to AWS.
pub fn services(clients: &AwsClients, resources: &Resources, settings: Settings) -> Services {
    let store = Arc::new(DynamoStore::new(
        clients.dynamodb.clone(),
        &resources.jobs_table,
        &resources.prompts_table,
    ));
    Services {
        jobs: store.clone(),
        keys: store.clone(),
        accounts: store.clone(),
        uploads: store,
        media: Arc::new(S3Media::new(clients.s3.clone(), &resources.media_bucket)),
        workflows: Arc::new(StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn)),
        work: Arc::new(SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url)),
        settings,
    }
}

/// Reads settings and resources from the environment and builds the services:
/// what every API function's `main` does once.
pub async fn services_from_env() -> Result<Services, ConfigError> {
    let settings = Settings::from_env()?;
    let resources = Resources::from_env()?;
    Ok(services(&AwsClients::from_env().await, &resources, settings))
}
