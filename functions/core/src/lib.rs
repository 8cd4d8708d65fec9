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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Each source file's module (`model::job`, `ports`, `services::pipeline`…)
    /// and the modules its non-test code names through `crate::`.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("source folder readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        // A module is a file (`model::job`, `model::notify::address`); the ports are one.
        let module_of = |file: &Path| -> Option<String> {
            let relative = file.strip_prefix(&src).ok()?.with_extension("");
            let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).filter(|p| p != "mod").collect();
            match parts.first().map(String::as_str) {
                None | Some("lib") => None,
                Some("ports") => Some("ports".to_owned()),
                Some(_) => Some(parts.join("::")),
            }
        };
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
        let mut graph = BTreeMap::new();
        for file in &files {
            let Some(module) = module_of(file) else { continue };
            let text = std::fs::read_to_string(file).expect("source readable");
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let named = graph.entry(module.clone()).or_insert_with(BTreeSet::new);
            for (at, _) in code.match_indices("crate::") {
                let path: Vec<&str> = code[at + 7..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .collect();
                // The longest prefix of the path that is a module.
                let target = if path.first() == Some(&"ports") {
                    Some("ports".to_owned())
                } else {
                    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|p| modules.contains(p))
                };
                if let Some(target) = target.filter(|t| *t != module && !module.starts_with(&format!("{t}::"))) {
                    named.insert(target);
                }
            }
        }
        graph
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
    fn no_module_imports_itself_through_others() {
        let graph = imports();
        // Depth-first search for a path from each module back to itself.
        for start in graph.keys() {
            let mut stack: Vec<Vec<&String>> = vec![vec![start]];
            let mut seen = BTreeSet::new();
            while let Some(path) = stack.pop() {
                let last = path[path.len() - 1];
                for next in graph.get(last).into_iter().flatten() {
                    assert!(next != start, "import cycle: {} -> {start}", path.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" -> "));
                    if seen.insert(next) {
                        let mut longer = path.clone();
                        longer.push(next);
                        stack.push(longer);
                    }
                }
            }
        }
    }
}
