use super::records::{ListError, Page, PageRequest};
use crate::model::job::Job;
use async_trait::async_trait;

/// The jobs waiting for a review, oldest first (by when they completed).
#[async_trait]
pub trait ReviewQueue: Send + Sync {
    /// A page of `completed` jobs; the cursor is opaque and the adapter's own.
    async fn waiting(&self, page: &PageRequest) -> Result<Page<Job>, ListError>;
}
