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
pub mod poster;
pub mod resolver;
pub mod review_queue;
pub mod s3;
pub mod sfn;
pub mod sqs;
pub mod telemetry;
pub mod wiring;

use std::time::Duration;
use videojobs_core::model::settings::{ConfigError, Settings};
use videojobs_core::services::Services;

pub use dynamo::DynamoStore;
pub use first_event::{OnFirstEvent, Provide};
pub use outputs::S3Outputs;
pub use s3::S3Media;
pub use sfn::StepFunctions;
pub use sqs::SqsWorkQueue;
pub use wiring::{callbacks, pipeline, services};

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

/// The functions of template.yaml: each runs under its own role and within
/// its own time budget, which its AWS clients' retries and timeouts fit in
/// (docs/RELIABILITY.md, "Retries and timeouts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Create,
    Status,
    Webhook,
    Worker,
    Notify,
}

impl Function {
    pub const ALL: [Function; 5] = [Function::Create, Function::Status, Function::Webhook, Function::Worker, Function::Notify];

    /// Its logical id in template.yaml. Locally it is also the access key id
    /// the function signs with, so that the local gate checks each of its
    /// calls against this function's role.
    pub fn logical_id(self) -> &'static str {
        match self {
            Function::Create => "CreateFunction",
            Function::Status => "StatusFunction",
            Function::Webhook => "WebhookFunction",
            Function::Worker => "WorkerFunction",
            Function::Notify => "NotifyFunction",
        }
    }

    /// The function a logical id names.
    pub fn from_logical_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.logical_id() == id)
    }

    /// The function this process runs as: `FUNCTION_LOGICAL_ID` as the
    /// template sets it (the worker's binary runs as two functions), else `default`.
    pub fn from_env_or(default: Function) -> Self {
        std::env::var("FUNCTION_LOGICAL_ID").ok().and_then(|id| Self::from_logical_id(&id)).unwrap_or(default)
    }

    /// How long one AWS request of this function may take, all attempts
    /// together: inside the function's timeout with room for its own work
    /// (webhook 5 s, create and status 10 s, notify 30 s, worker 60 s with
    /// 45 s per message).
    pub fn request_budget(self) -> Duration {
        match self {
            Function::Webhook => Duration::from_millis(3_500),
            Function::Create | Function::Status => Duration::from_secs(8),
            Function::Notify => Duration::from_secs(15),
            Function::Worker => Duration::from_secs(30),
        }
    }
}

/// Retries and timeouts of one service's client (docs/RELIABILITY.md).
#[derive(Debug, Clone, Copy)]
struct ClientPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// One attempt; `None` where a body is streamed (S3 uploads of a video).
    attempt_timeout: Option<Duration>,
}

impl ClientPolicy {
    // DynamoDB throttles clear in tens of milliseconds (its SDKs start at 25 ms).
    const DYNAMODB: Self = Self {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(25),
        max_backoff: Duration::from_secs(1),
        attempt_timeout: Some(Duration::from_secs(3)),
    };
    // S3's SlowDown asks for a longer wait; parts of a video stream for long.
    const S3: Self =
        Self { max_attempts: 4, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), attempt_timeout: None };
    // Step Functions' token buckets refill per second: back off longer, try more often.
    const SFN: Self = Self {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        attempt_timeout: Some(Duration::from_secs(3)),
    };
    const SQS: Self = Self {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        // Above the pollers' 5 s long poll.
        attempt_timeout: Some(Duration::from_secs(25)),
    };

    fn retry(self) -> aws_smithy_types::retry::RetryConfig {
        aws_smithy_types::retry::RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    fn timeouts(self, budget: Option<Duration>) -> aws_smithy_types::timeout::TimeoutConfig {
        let mut timeouts = aws_smithy_types::timeout::TimeoutConfig::builder().connect_timeout(Duration::from_secs(2));
        if let Some(attempt) = self.attempt_timeout {
            timeouts = timeouts.operation_attempt_timeout(attempt);
        }
        if let Some(budget) = budget.filter(|_| self.attempt_timeout.is_some()) {
            timeouts = timeouts.operation_timeout(budget);
        }
        timeouts.build()
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

/// Who the clients sign as, and within what budget.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// An access key id to sign with instead of the environment's (the local
    /// stack's per-function identities); the secret stays the environment's.
    pub access_key_id: Option<String>,
    /// The longest one request may take, all attempts together.
    pub budget: Option<Duration>,
    /// Counts every request sent (the cost benchmark).
    pub meter: Option<metering::RequestMeter>,
}

impl AwsClients {
    /// Region, credentials and `AWS_ENDPOINT_URL` (the local stack) come from
    /// the environment, as for any AWS SDK (building does no I/O).
    pub fn from_env() -> Self {
        Self::build(ClientOptions::default())
    }

    /// A function's clients on AWS: its role's credentials from the
    /// environment, its time budget.
    pub fn for_function(function: Function) -> Self {
        Self::build(ClientOptions { budget: Some(function.request_budget()), ..ClientOptions::default() })
    }

    /// A function's clients in the local stack: signed as the function
    /// (`access_key_id` is its logical id, with `~profile` to choose a fault
    /// profile of the local gate), so each call is checked against its role.
    pub fn local_for(function: Function, fault_profile: Option<&str>) -> Self {
        Self::build(Self::local_options(function, fault_profile))
    }

    /// The options [`AwsClients::local_for`] builds with (to add a meter).
    pub fn local_options(function: Function, fault_profile: Option<&str>) -> ClientOptions {
        let access_key_id = match fault_profile {
            Some(profile) => format!("{}~{profile}", function.logical_id()),
            None => function.logical_id().to_owned(),
        };
        ClientOptions { access_key_id: Some(access_key_id), budget: Some(function.request_budget()), meter: None }
    }

    /// Clients signed as `access_key_id`: locally, a role of the template
    /// that is not a function (the schedule's).
    pub fn signing_as(access_key_id: &str) -> Self {
        Self::build(ClientOptions { access_key_id: Some(access_key_id.to_owned()), ..ClientOptions::default() })
    }

    /// Clients that count every request they send (the cost benchmark).
    pub async fn metered(meter: &metering::RequestMeter) -> Self {
        Self::build(ClientOptions { meter: Some(meter.clone()), ..ClientOptions::default() })
    }

    pub fn build(options: ClientOptions) -> Self {
        let config = sdk_config_with(options.access_key_id.as_deref());
        let s3_endpoint = service_endpoint("S3");
        // Emulators answer on one host, so buckets go in the path, not the host name.
        let path_style = config.endpoint_url().is_some() || s3_endpoint.is_some();
        let budget = options.budget;
        let mut s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(path_style)
            .retry_config(ClientPolicy::S3.retry())
            .timeout_config(ClientPolicy::S3.timeouts(budget));
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&config)
            .retry_config(ClientPolicy::DYNAMODB.retry())
            .timeout_config(ClientPolicy::DYNAMODB.timeouts(budget));
        let mut sfn = aws_sdk_sfn::config::Builder::from(&config)
            .retry_config(ClientPolicy::SFN.retry())
            .timeout_config(ClientPolicy::SFN.timeouts(budget));
        // A long poll outlasts any request budget: the queue client has none.
        let mut sqs = aws_sdk_sqs::config::Builder::from(&config)
            .retry_config(ClientPolicy::SQS.retry())
            .timeout_config(ClientPolicy::SQS.timeouts(None));
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
        if let Some(meter) = options.meter {
            s3 = s3.interceptor(meter.clone());
            dynamodb = dynamodb.interceptor(meter.clone());
            sfn = sfn.interceptor(meter.clone());
            sqs = sqs.interceptor(meter);
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
    sdk_config_with(None)
}

/// [`sdk_config_from_env`], signing as `access_key_id` when given.
fn sdk_config_with(access_key_id: Option<&str>) -> aws_types::SdkConfig {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
    let mut builder = aws_types::SdkConfig::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(EnvCredentials {
            access_key_id: access_key_id.map(str::to_owned),
        }))
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
struct EnvCredentials {
    /// In place of `AWS_ACCESS_KEY_ID` (the local stack's per-function identities).
    access_key_id: Option<String>,
}

impl aws_credential_types::provider::ProvideCredentials for EnvCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let key_id = self.access_key_id.clone().or_else(|| env("AWS_ACCESS_KEY_ID"));
        let credentials = match (key_id, env("AWS_SECRET_ACCESS_KEY")) {
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

/// What every API function's `main` does once: reads and checks settings and
/// resources now (a bad one fails the start) and builds the services, with
/// their AWS clients, when the first event that needs them arrives.
pub fn services_on_first_event(function: Function) -> Result<OnFirstEvent<Services, impl Fn() -> Services>, ConfigError> {
    let settings = Settings::from_env()?;
    let resources = Resources::from_env()?;
    Ok(OnFirstEvent::new(move || services(&AwsClients::for_function(function), &resources, settings.clone())))
}

#[cfg(test)]
#[path = "../../core/src/import_graph.rs"]
mod import_graph;

#[cfg(test)]
mod structure {
    use std::path::Path;

    #[test]
    fn no_file_imports_itself_through_others() {
        let graph = crate::import_graph::imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        assert!(graph["dynamo::progress"].contains("dynamo"), "`use super::*` uses the parent");
        assert_eq!(crate::import_graph::a_cycle(&graph), None, "an import cycle");
    }
}
