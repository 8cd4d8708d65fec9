#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! Integration tests: the real handlers, the real AWS SDK, moto behind it.
//! Run them with `./scripts/test`, which starts what they need.

mod harness;

mod adapter_contract;
mod approval;
mod batch;
mod cancel;
mod cli;
mod concurrency;
mod contract;
mod create;
mod deadlines;
mod deliveries;
mod event_source;
mod failover;
mod lineage;
mod load;
mod notifications;
mod pipeline;
mod progress_detail;
mod reads;
mod real_providers;
mod review;
mod review_page;
mod sample_events;
mod security;
mod state_machine;
mod stats;
mod stranded;
mod together;
