//! No crate of the workspace has an import cycle between its top-level modules: each crate
//! reads as layers, leaves first. A module "uses" another when its code names it through
//! `crate::` (an item the crate root re-exports with `pub use m::...` counts as `m`'s; any
//! other item reached as `crate::X` counts as the root's), when the root names it as `m::`,
//! and a top-level module's `super::x` is read as `crate::x`. Comments and `#[cfg(test)]` code
//! are left out (a test may reach anywhere): a file is read up to its first `#[cfg(test)]`,
//! so test code goes at the end of a file, as it does throughout this workspace. Cycles
//! between the submodules of one module are not checked.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use regex::Regex;

const ROOT: &str = "<root>";

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Each file's text without comment lines, cut at its first `#[cfg(test)]`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names at the top level of a `{...}` group (`a, b::{c, d}, E as F` gives a, b, E).
fn top_level_names(group: &str) -> Vec<String> {
    let (mut depth, mut current, mut names) = (0, String::new(), Vec::new());
    for ch in group.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    names.push(current);
    names
        .iter()
        // `a::b`, `a as b`: the first name is the one used.
        .filter_map(|n| n.split("::").next()?.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The module graph of the crate whose sources are `files` (paths relative to `src/`).
fn graph(files: &BTreeMap<String, String>) -> Graph {
    let root_file = if files.contains_key("lib.rs") {
        "lib.rs"
    } else {
        "main.rs"
    };
    let root = code(&files[root_file]);
    let modules: BTreeSet<String> = Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)")
        .unwrap()
        .captures_iter(&root)
        .map(|c| c[1].to_owned())
        .collect();
    let mut reexported = BTreeMap::new();
    for c in Regex::new(r"(?s)pub use (\w+)::([^;]+);")
        .unwrap()
        .captures_iter(&root)
    {
        if !modules.contains(&c[1]) {
            continue;
        }
        let body = c[2].trim().trim_start_matches('{').trim_end_matches('}');
        for name in top_level_names(body) {
            reexported.insert(name, c[1].to_owned());
        }
        if let Some(last) = c[2].rsplit("::").next() {
            reexported.insert(last.trim().to_owned(), c[1].to_owned());
        }
    }
    let path_ref = Regex::new(r"crate::(\w+)").unwrap();
    let group_ref = Regex::new(r"(?s)crate::\{(.*?)\};").unwrap();
    let bare_ref = Regex::new(r"\b(\w+)::").unwrap();
    let super_ref = Regex::new(r"\bsuper::(\w+)").unwrap();
    let mut graph = Graph::new();
    for (rel, text) in files {
        let module = if rel == "lib.rs" || rel == "main.rs" {
            ROOT.to_owned()
        } else {
            rel.split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned()
        };
        if rel.ends_with("tests.rs") || (module != ROOT && !modules.contains(&module)) {
            continue;
        }
        let text = code(text);
        let mut names: BTreeSet<String> = path_ref
            .captures_iter(&text)
            .map(|c| c[1].to_owned())
            .collect();
        for c in group_ref.captures_iter(&text) {
            names.extend(top_level_names(&c[1]));
        }
        if module == ROOT {
            names.extend(
                bare_ref
                    .captures_iter(&text)
                    .map(|c| c[1].to_owned())
                    .filter(|n| modules.contains(n)),
            );
        }
        let mut uses: BTreeSet<String> = names
            .into_iter()
            .filter(|n| n != "self" && n != "super")
            .map(|n| {
                if modules.contains(&n) {
                    n
                } else {
                    reexported
                        .get(&n)
                        .cloned()
                        .unwrap_or_else(|| ROOT.to_owned())
                }
            })
            .collect();
        // In `a.rs` or `a/mod.rs`, `super::` is the root: `super::b::X` uses `b` (or, for an
        // item of the root's own, the root).
        if module != ROOT && (!rel.contains('/') || *rel == format!("{module}/mod.rs")) {
            for c in super_ref.captures_iter(&text) {
                uses.insert(if modules.contains(&c[1]) {
                    c[1].to_owned()
                } else {
                    reexported
                        .get(&c[1])
                        .cloned()
                        .unwrap_or_else(|| ROOT.to_owned())
                });
            }
        }
        uses.remove(&module);
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

/// The cycles of `graph`: each strongly connected component of more than one module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for (m, from_m) in &reaches {
        let component: Vec<String> = reaches
            .iter()
            .filter(|(other, from_other)| from_m.contains(**other) && from_other.contains(*m))
            .map(|(other, _)| (*other).clone())
            .collect();
        if component.len() > 1 && !found.contains(&component) {
            found.push(component);
        }
    }
    found
}

fn sources(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(src)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

fn workspace_crates() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap();
    Regex::new(r#""([^"]+)""#)
        .unwrap()
        .captures_iter(members)
        .map(|c| root.join(&c[1]))
        .collect()
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let crates = workspace_crates();
    assert!(crates.len() >= 10, "the workspace's members: {crates:?}");
    let mut found = Vec::new();
    for dir in crates {
        let graph = graph(&sources(&dir.join("src")));
        assert!(graph.len() > 1, "{}: no modules read", dir.display());
        for cycle in cycles(&graph) {
            found.push(format!("{}: {}", dir.display(), cycle.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_cycle_through_a_reexport_and_through_the_root() {
    let files = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    };
    // a uses b's item through the root's re-export; b uses a.
    let through_reexport = files(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub use b::Thing;\n"),
        ("a.rs", "use crate::Thing;\n"),
        ("b.rs", "use crate::{a::helper as h};\n"),
    ]);
    assert_eq!(
        cycles(&graph(&through_reexport)),
        vec![vec!["a".to_owned(), "b".to_owned()]]
    );
    // The root defines what a module uses, and uses that module.
    let through_root = files(&[
        (
            "lib.rs",
            "pub mod a;\npub struct State;\nfn f() { a::run(); }\n",
        ),
        ("a.rs", "use crate::State;\n// use crate::nothing::here;\n"),
    ]);
    assert_eq!(
        cycles(&graph(&through_root)),
        vec![vec![ROOT.to_owned(), "a".to_owned()]]
    );
    // A sibling reached through `super::`, from `a.rs` and from `b/mod.rs`.
    let through_super = files(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use super::b::X;\n"),
        ("b/mod.rs", "mod inner;\nuse super::a::Y;\n"),
    ]);
    assert_eq!(
        cycles(&graph(&through_super)),
        vec![vec!["a".to_owned(), "b".to_owned()]]
    );
    // Test code and comments do not count.
    let tests_only = files(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::{b::x, Missing as M};\n"),
        (
            "b.rs",
            "// crate::a\n#[cfg(test)]\nmod tests { use crate::a::y; }\n",
        ),
    ]);
    assert!(cycles(&graph(&tests_only)).is_empty());
}
