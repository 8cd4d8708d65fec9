//! The rules, over the ports: the API's operations, the pipeline's decisions
//! and the provider callbacks'.

pub mod admin;
pub mod batch;
pub mod callbacks;
pub mod deliveries;
pub mod error;
pub mod estimate;
pub mod jobs;
pub mod lineage;
pub mod notifying;
pub mod pipeline;
pub mod progress;
pub mod ratelimit;
pub mod retry;
pub mod review;
pub mod stats;
pub mod webhook_rules;
pub mod webhook_secrets;

pub use error::AppError;
pub use jobs::{failure_change, workflow_input, Accepted, Idempotency, JobSpec, Services};
