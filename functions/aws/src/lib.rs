//! Adapters from the ports of `videojobs-core` to AWS: DynamoDB, S3, Step
//! Functions (and SQS, which the worker uses). Clients are built once per
//! Lambda instance, on the first event that needs them ([`OnFirstEvent`]),
//! and shared by every invocation.

pub mod cursor;
pub mod dynamo;
// EMF lines are plain JSON; the domain emits them too, so the module lives there.
pub use videojobs_core::model::emf;
pub mod errors;
pub mod first_event;
pub mod http;
pub mod metering;
pub mod outputs;
pub mod resolver;
pub mod review_queue;
pub mod s3;
pub mod sfn;
pub mod sqs;
pub mod stats;
pub mod telemetry;

use std::sync::Arc;
use videojobs_core::model::settings::{ConfigError, Settings};
use videojobs_core::services::Services;

pub use dynamo::DynamoStore;
pub use first_event::{OnFirstEvent, Provide};
pub use outputs::S3Outputs;
pub use s3::S3Media;
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
    /// Client notifications: a queue and consumer of their own.
    pub notify_queue_url: String,
    /// The dead-letter queues, for messages that can never be handled.
    pub work_dlq_url: Option<String>,
    pub notify_dlq_url: Option<String>,
}

impl Resources {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| get(name).filter(|v| !v.is_empty()).ok_or(ConfigError { name, problem: "is not set".into() });
        Ok(Self {
            jobs_table: required("JOBS_TABLE")?,
            prompts_table: required("PROMPTS_TABLE")?,
            media_bucket: required("MEDIA_BUCKET")?,
            state_machine_arn: required("STATE_MACHINE_ARN")?,
            work_queue_url: required("WORK_QUEUE_URL")?,
            notify_queue_url: required("NOTIFY_QUEUE_URL")?,
            work_dlq_url: get("WORK_DLQ_URL").filter(|v| !v.is_empty()),
            notify_dlq_url: get("NOTIFY_DLQ_URL").filter(|v| !v.is_empty()),
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
    /// the environment, as for any AWS SDK (building does no I/O).
    pub fn from_env() -> Self {
        Self::build(None)
    }

    /// Clients that count every request they send (the cost benchmark).
    pub async fn metered(meter: &metering::RequestMeter) -> Self {
        Self::build(Some(meter))
    }

    fn build(meter: Option<&metering::RequestMeter>) -> Self {
        let config = sdk_config_from_env();
        let s3_endpoint = service_endpoint("S3");
        // Emulators answer on one host, so buckets go in the path, not the host name.
        let path_style = config.endpoint_url().is_some() || s3_endpoint.is_some();
        let mut s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(path_style);
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&config);
        let mut sfn = aws_sdk_sfn::config::Builder::from(&config);
        let mut sqs = aws_sdk_sqs::config::Builder::from(&config);
        // A service's own endpoint wins over `AWS_ENDPOINT_URL`, as in the SDK's
        // shared configuration (the cold-request bench gives each service a host).
        if let Some(url) = s3_endpoint {
            s3 = s3.endpoint_url(url);
        }
        if let Some(url) = service_endpoint("DYNAMODB") {
            dynamodb = dynamodb.endpoint_url(url);
        }
        if let Some(url) = service_endpoint("SFN") {
            sfn = sfn.endpoint_url(url);
        }
        if let Some(url) = service_endpoint("SQS") {
            sqs = sqs.endpoint_url(url);
        }
        if let Some(meter) = meter {
            s3 = s3.interceptor(meter.clone());
            dynamodb = dynamodb.interceptor(meter.clone());
            sfn = sfn.interceptor(meter.clone());
            sqs = sqs.interceptor(meter.clone());
        }
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sfn: aws_sdk_sfn::Client::from_conf(sfn.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        }
    }
}

/// The SDK configuration from the environment alone: region, the credentials
/// Lambda puts there, and `AWS_ENDPOINT_URL` (the local stack). This is all a
/// function needs, and reading nothing else (no profile files, no IMDS, no
/// SSO) keeps building the clients short.
pub fn sdk_config_from_env() -> aws_types::SdkConfig {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
    let mut builder = aws_types::SdkConfig::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(EnvCredentials))
        .http_client(http::https_client());
    if let Some(endpoint) = env("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

/// `AWS_ENDPOINT_URL_<SERVICE>` (the SDK's name for one service's endpoint), when set.
fn service_endpoint(service: &str) -> Option<String> {
    std::env::var(format!("AWS_ENDPOINT_URL_{service}")).ok().filter(|v| !v.is_empty())
}

/// Credentials read from the environment when a request is signed.
#[derive(Debug)]
struct EnvCredentials;

impl aws_credential_types::provider::ProvideCredentials for EnvCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => {
                Ok(aws_credential_types::Credentials::new(key, secret, env("AWS_SESSION_TOKEN"), None, "environment"))
            }
            _ => Err(aws_credential_types::provider::error::CredentialsError::not_loaded(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
            )),
        };
        aws_credential_types::provider::future::ProvideCredentials::ready(credentials)
    }
}

/// Everything the API handlers need, wired to AWS.
pub fn services(clients: &AwsClients, resources: &Resources, settings: Settings) -> Services {
    let store = Arc::new(DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table));
    let work = Arc::new(SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url));
    let notifications = Arc::new(SqsWorkQueue::new(clients.sqs.clone(), &resources.notify_queue_url));
    Services {
        jobs: notifying(store.clone(), notifications),
        keys: store.clone(),
        accounts: store.clone(),
        webhook_secrets: store.clone(),
        stats: store.clone(),
        progress: store.clone(),
        rate_limiter: store.clone(),
        review_waits: store.clone(),
        uploads: store,
        media: Arc::new(S3Media::new(clients.s3.clone(), &resources.media_bucket)),
        kept: Arc::new(S3Media::new(clients.s3.clone(), &resources.media_bucket)),
        workflows: Arc::new(StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn)),
        tasks: Arc::new(StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn)),
        review_queue: Arc::new(review_queue::DynamoReviewQueue::new(clients.dynamodb.clone(), &resources.jobs_table)),
        work,
        resolver: Arc::new(resolver::SystemResolver),
        settings,
    }
}

/// The job store that queues a client notification (on the notification
/// queue) after each status change a client asked to be told of: every
/// function that changes statuses uses it.
pub fn notifying(store: Arc<DynamoStore>, queue: Arc<SqsWorkQueue>) -> Arc<dyn videojobs_core::ports::JobStore> {
    Arc::new(videojobs_core::services::notifying::NotifyingJobs::new(store, queue))
}

/// What every API function's `main` does once: reads and checks settings and
/// resources now (a bad one fails the start) and builds the services, with
/// their AWS clients, when the first event that needs them arrives.
pub fn services_on_first_event() -> Result<OnFirstEvent<Services, impl Fn() -> Services>, ConfigError> {
    let settings = Settings::from_env()?;
    let resources = Resources::from_env()?;
    Ok(OnFirstEvent::new(move || services(&AwsClients::from_env(), &resources, settings.clone())))
}
