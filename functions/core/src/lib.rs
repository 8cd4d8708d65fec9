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

#![warn(missing_docs)]

pub mod model;
pub mod ports;
pub mod services;

pub use model::error::StoreError;
pub use model::lifecycle::{transition, JobStatus, Transition};
pub use services::AppError;

#[cfg(test)]
mod import_graph;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        crate::import_graph::imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
    }

    fn layer(module: &str) -> usize {
        ["model", "ports", "services"].iter().position(|l| module.starts_with(l)).expect("every module is in a layer")
    }

    #[test]
    fn layers_import_only_the_layers_before_them() {
        for (module, named) in imports() {
            for target in named {
                assert!(layer(&target) <= layer(&module), "{module} imports {target}, from a later layer");
            }
        }
    }

    #[test]
    fn the_import_graph_sees_child_modules_and_super_paths() {
        let graph = imports();
        assert!(graph["services::pipeline::dispatch"].contains("services::pipeline::submission"), "a bare child path or `super::`");
        assert!(graph["services::pipeline::submission"].contains("services::pipeline::steps"), "`super::steps`");
        assert!(graph["ports::job_reads"].contains("ports::records"), "`super::records`");
        assert!(graph["ports"].contains("ports::job_reads"), "a facade's re-export");
    }

    #[test]
    fn no_file_imports_itself_through_others() {
        assert_eq!(crate::import_graph::a_cycle(&imports()), None, "an import cycle");
    }
}
