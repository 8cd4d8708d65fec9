//! Values: what the rules decide about, with no I/O and no ports.

pub mod admin;
pub mod batch;
pub mod change;
pub mod determinism;
pub mod emf;
pub mod error;
pub mod estimate;
pub mod failover;
pub mod ids;
pub mod image;
pub mod job;
pub mod lifecycle;
pub mod mp4;
pub mod notification;
pub mod progress;
pub mod provider;
pub mod ratelimit;
pub mod redact;
pub mod request;
pub mod review;
pub mod settings;
pub mod signing;
pub mod stats;
pub mod timestamp;
pub mod views;
pub mod work;
