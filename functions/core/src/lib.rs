//! The videojobs domain, in three layers, each importing only from the ones
//! before it (nothing here knows about AWS):
//!
//! - [`model`]: values. A job and its lifecycle, the requests that create
//!   jobs, ids and keys, what a provider says, the messages of the queue.
//!   Constructors refuse bad values; nothing here does I/O.
//! - [`ports`]: what the rules need from the outside world, one narrow trait
//!   per capability, spoken in model types. `videojobs-aws` and
//!   `videojobs-providers` implement them; `videojobs-testkit` has in-memory ones.
//! - [`services`]: the rules. The API's operations ([`services::Services`]),
//!   the pipeline's decisions ([`services::pipeline`]) and the provider
//!   callbacks' ([`services::callbacks`]), over the ports. The functions'
//!   handlers only parse their event, call one of these, and report.

pub mod model;
pub mod ports;
pub mod services;

pub use model::error::StoreError;
pub use model::lifecycle::{transition, JobStatus, Transition};
pub use services::AppError;
