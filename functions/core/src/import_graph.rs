//! The import graph of a crate's source files, for the tests that keep
//! its layers in order and its files free of loops (this crate's and
//! `videojobs-aws`'s, which includes this file by its path).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each source file's module (`model::job`, `ports::job_reads`,
/// `services::pipeline`…) and the modules its non-test code names: through
/// `crate::`, `super::` or `self::`, or a child module by its bare name
/// (`submission::submit(…)`). A path names the longest module it starts
/// with, so a parent's re-export is an edge to the parent, and a child
/// that takes a type from its parent's facade closes a loop.
pub fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
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
    let mut files = Vec::new();
    walk(src, &mut files);
    let module_of = |file: &Path| -> Option<Vec<String>> {
        let relative = file.strip_prefix(src).ok()?.with_extension("");
        let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).filter(|p| p != "mod").collect();
        (parts.first().map(String::as_str) != Some("lib")).then_some(parts)
    };
    let modules: BTreeSet<Vec<String>> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        let text = std::fs::read_to_string(file).expect("source readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        // `mod child;` declares; it does not use. A comment names, it does not use.
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().trim_start_matches("pub ").starts_with("mod "))
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut named = BTreeSet::new();
        let is_ident = |c: char| c.is_alphanumeric() || c == '_';
        for (at, _) in code.match_indices("::") {
            // The whole path this `::` belongs to, from its first segment.
            let start = code[..at].rfind(|c: char| !(is_ident(c) || c == ':')).map_or(0, |i| i + 1);
            if code[start..at].contains("::") {
                continue; // not the path's first `::`
            }
            let text = code[start..].split(|c: char| !(is_ident(c) || c == ':')).next().unwrap_or("");
            let path: Vec<&str> = text.split("::").filter(|s| !s.is_empty()).collect();
            // `use super::{a, b::C}`: each item of the group is a path of its own.
            let mut group = Vec::new();
            if code[start + text.len()..].starts_with('{') {
                let inner = &code[start + text.len() + 1..];
                let (mut depth, mut item) = (0, String::new());
                for c in inner.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => group.push(std::mem::take(&mut item)),
                        _ if depth == 0 => item.push(c),
                        _ => {}
                    }
                }
                group.push(item);
            }
            let items: Vec<Vec<&str>> = if group.is_empty() {
                vec![Vec::new()]
            } else {
                group.iter().map(|i| i.trim().split("::").map(str::trim).filter(|s| !s.is_empty()).collect()).collect()
            };
            for item in items {
                let path: Vec<&str> = path.iter().copied().chain(item).collect();
                if path.is_empty() {
                    continue;
                }
                let (mut base, rest): (Vec<String>, &[&str]) = match path[0] {
                    "crate" => (Vec::new(), &path[1..]),
                    "self" => (module.clone(), &path[1..]),
                    "super" => {
                        let supers = path.iter().take_while(|s| **s == "super").count();
                        (module[..module.len().saturating_sub(supers)].to_vec(), &path[supers..])
                    }
                    child => {
                        let mut child_module = module.clone();
                        child_module.push(child.to_owned());
                        if !modules.contains(&child_module) {
                            continue;
                        }
                        (module.clone(), &path[..])
                    }
                };
                // `super::Item` and `super::*` use the parent itself.
                let mut target = modules.contains(&base).then(|| base.clone());
                for segment in rest {
                    base.push((*segment).to_owned());
                    if modules.contains(&base) {
                        target = Some(base.clone());
                    } else {
                        break;
                    }
                }
                if let Some(target) = target.filter(|t| *t != module) {
                    named.insert(target.join("::"));
                }
            }
        }
        graph.insert(module.join("::"), named);
    }
    graph
}

/// A path of imports from a module back to itself, if there is one.
pub fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    // Depth-first search for a path from each module back to itself.
    for start in graph.keys() {
        let mut stack: Vec<Vec<&String>> = vec![vec![start]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path[path.len() - 1];
            for next in graph.get(last).into_iter().flatten() {
                if next == start {
                    return Some(format!("{} -> {start}", path.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" -> ")));
                }
                if seen.insert(next) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    None
}
