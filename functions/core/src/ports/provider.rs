//! A video provider, behind one trait: the rules see only these calls and the
//! model's provider types, never a provider's wire format.

use crate::model::provider::{Callback, CallbackError, ProviderError, ProviderEvent, ProviderStatus, SubmitRequest};
use crate::model::request::ProviderName;
use async_trait::async_trait;
use std::collections::HashMap;

/// One provider's API, as the worker and the webhook use it.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The name jobs and callbacks know it by (`/webhooks/{name}`).
    fn name(&self) -> &ProviderName;
    /// Asks for a video; the provider's request id. The job id goes along as
    /// the idempotency key where the provider takes one.
    async fn submit(&self, request: &SubmitRequest) -> Result<String, ProviderError>;
    /// Where the request is now (queued, processing, done with an output, failed).
    async fn poll(&self, request_id: &str) -> Result<ProviderStatus, ProviderError>;
    /// Asks the provider to stop the request; one already finished is no error.
    async fn cancel(&self, request_id: &str) -> Result<(), ProviderError>;
    /// Checks a callback's signature and reads what it says.
    async fn verify_callback(&self, callback: &Callback<'_>) -> Result<ProviderEvent, CallbackError>;
    /// Whether it calls back while it works (queued, processing), not only
    /// when done. One that does not has its jobs' progress refreshed by
    /// polling when clients read them (`Settings::progress_refresh_providers`).
    fn sends_progress_callbacks(&self) -> bool {
        true
    }
    /// Whether a submission with an idempotency key it has seen finds the
    /// request made before (the job id is the key). One that does answers
    /// every attempt of a job with one request id.
    fn dedupes_submissions(&self) -> bool {
        false
    }
}

/// The providers a deployment has, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: HashMap<String, std::sync::Arc<dyn Provider>>,
}

impl Providers {
    /// Adds a provider, under its own name.
    pub fn with(mut self, provider: std::sync::Arc<dyn Provider>) -> Self {
        self.by_name.insert(provider.name().to_string(), provider);
        self
    }

    /// The provider named `name`, if the deployment has it.
    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<dyn Provider>> {
        self.by_name.get(name)
    }
}
