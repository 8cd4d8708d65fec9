//! The rules, over the ports: the API's operations, the pipeline's decisions
//! and the provider callbacks'.

pub mod admin;
pub mod callbacks;
pub mod error;
pub mod jobs;
pub mod notify;
pub mod notifying;
pub mod pipeline;
pub mod progress;
pub mod ratelimit;
pub mod review;
pub mod stats;

pub use error::AppError;
pub use jobs::{failure_change, workflow_input, Accepted, Idempotency, JobSpec, Services};
