//! The videojobs domain: a job's lifecycle, the requests that create jobs, the
//! ids and keys, and the ports through which the functions reach storage and
//! the workflow engine. Nothing here knows about AWS.

pub mod admin;
pub mod determinism;
pub mod emf;
pub mod error;
pub mod failover;
pub mod ids;
pub mod image;
pub mod job;
pub mod lifecycle;
pub mod mp4;
pub mod notify;
pub mod ports;
pub mod progress;
pub mod provider;
pub mod ratelimit;
pub mod redact;
pub mod request;
pub mod review;
pub mod service;
pub mod settings;
pub mod signing;
pub mod stats;
pub mod views;
pub mod work;

pub use error::{AppError, StoreError};
pub use lifecycle::{transition, JobStatus, Transition};
