//! The one place the services are wired to AWS. Every function's `main`, the
//! local stack (`infra/local-api`), the benches and the tests build their
//! services here, so a port added to a service is wired once per world (the
//! in-memory world's counterpart is `videojobs_testkit::Memory`'s
//! `services`, `pipeline` and `callbacks`). Settings are read by the caller,
//! once, and handed over whole.
//!
//! Each function gets its own clients ([`crate::AwsClients::for_function`]):
//! locally they sign as the function, so that the gate checks its calls
//! against that function's role.

use crate::poster::HttpsPoster;
use crate::{AwsClients, DynamoStore, Resources, S3Media, S3Outputs, SqsWorkQueue, StepFunctions};
use std::sync::Arc;
use videojobs_core::model::settings::Settings;
use videojobs_core::ports::{JobWrites, Providers};
use videojobs_core::services::callbacks::Callbacks;
use videojobs_core::services::notifying::NotifyingJobs;
use videojobs_core::services::pipeline::Notifier;
use videojobs_core::services::pipeline::Pipeline;
use videojobs_core::services::Services;

/// The adapters every service is made of, on one function's clients.
struct Adapters {
    store: Arc<DynamoStore>,
    work: Arc<SqsWorkQueue>,
    notifications: Arc<SqsWorkQueue>,
    media: Arc<S3Media>,
    step_functions: Arc<StepFunctions>,
}

impl Adapters {
    fn new(clients: &AwsClients, resources: &Resources) -> Self {
        Self {
            store: Arc::new(DynamoStore::new(clients.dynamodb.clone(), &resources.jobs_table, &resources.prompts_table)),
            work: Arc::new(SqsWorkQueue::new(clients.sqs.clone(), &resources.work_queue_url)),
            notifications: Arc::new(SqsWorkQueue::new(clients.sqs.clone(), &resources.notify_queue_url)),
            media: Arc::new(S3Media::new(clients.s3.clone(), &resources.media_bucket)),
            step_functions: Arc::new(StepFunctions::new(clients.sfn.clone(), &resources.state_machine_arn)),
        }
    }

    /// Job writes that queue a client notification before each status
    /// change a client asked to be told of: every writer uses these.
    fn writes(&self) -> Arc<dyn JobWrites> {
        Arc::new(NotifyingJobs::new(self.store.clone(), self.notifications.clone()))
    }
}

/// What the API functions (create, status) need.
pub fn services(clients: &AwsClients, resources: &Resources, settings: Settings) -> Services {
    let a = Adapters::new(clients, resources);
    Services {
        writes: a.writes(),
        reads: a.store.clone(),
        listings: a.store.clone(),
        keys: a.store.clone(),
        accounts: a.store.clone(),
        webhook_secrets: a.store.clone(),
        stats: a.store.clone(),
        progress: a.store.clone(),
        rate_limiter: a.store.clone(),
        review_waits: a.store.clone(),
        uploads: a.store.clone(),
        review_queue: Arc::new(crate::review_queue::DynamoReviewQueue::new(clients.dynamodb.clone(), &resources.jobs_table)),
        typical_times: Arc::default(),
        media: a.media.clone(),
        kept: a.media,
        workflows: a.step_functions.clone(),
        tasks: a.step_functions,
        work: a.work,
        resolver: Arc::new(crate::resolver::SystemResolver),
        poster: Arc::new(HttpsPoster),
        notification_log: a.store.clone(),
        delivery_log: a.store.clone(),
        endpoints: a.store.clone(),
        redeliveries: a.notifications,
        settings,
    }
}

/// What the worker needs, as the pipeline's worker or as the notifier (the
/// same binary: `clients` say which function it runs as).
pub fn pipeline(
    clients: &AwsClients,
    resources: &Resources,
    settings: &Settings,
    providers: Providers,
    callback_base_url: String,
) -> Pipeline {
    let a = Adapters::new(clients, resources);
    Pipeline {
        writes: a.writes(),
        reads: a.store.clone(),
        tokens: a.store.clone(),
        switches: a.store.clone(),
        progress: a.store.clone(),
        requests: a.store.clone(),
        review_waits: a.store.clone(),
        uploads: a.store.clone(),
        stats: a.store.clone(),
        notifier: Notifier {
            secrets: a.store.clone(),
            deliveries: a.store.clone(),
            queue: a.notifications,
            resolver: Arc::new(crate::resolver::SystemResolver),
            poster: Arc::new(HttpsPoster),
            endpoints: a.store.clone(),
        },
        queue: a.work,
        dead_letters: Arc::new(crate::sqs::SqsDeadLetters::new(clients.sqs.clone(), resources)),
        workflows: a.step_functions.clone(),
        tasks: a.step_functions,
        media: a.media.clone(),
        kept: a.media,
        outputs: Arc::new(
            S3Outputs::new(clients.s3.clone(), &resources.media_bucket).fetching_from(settings.limits.output_source_policy()),
        ),
        providers,
        callback_base_url,
        settings: settings.clone(),
    }
}

/// What the webhook function needs.
pub fn callbacks(clients: &AwsClients, resources: &Resources, providers: Providers) -> Callbacks {
    let a = Adapters::new(clients, resources);
    Callbacks {
        writes: a.writes(),
        reads: a.store.clone(),
        ledger: a.store.clone(),
        progress: a.store.clone(),
        requests: a.store.clone(),
        stats: a.store,
        queue: a.work,
        providers,
    }
}
