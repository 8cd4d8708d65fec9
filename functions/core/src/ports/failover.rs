use crate::model::error::StoreError;
use crate::model::ids::JobId;
use crate::model::job::JobEvent;
use crate::model::request::ProviderName;
use async_trait::async_trait;

/// Moves a job that no provider has accepted to another provider.
#[async_trait]
pub trait ProviderSwitch: Send + Sync {
    /// Sets the job's provider to `to` and keeps `event`, only if the job is
    /// still `submitted` with `from` and no provider request; `false` otherwise.
    async fn switch_provider(&self, id: &JobId, from: &ProviderName, to: &ProviderName, event: &JobEvent) -> Result<bool, StoreError>;
}
