//! The module layers of `fhir-server` (see `docs/architecture.md`): every top-level module
//! has its place in [`LAYERS`], from the bottom up, and imports only modules below it. So
//! there is no import cycle between top-level modules, and a new module must be given its
//! place before it builds here.
//!
//! SQL is written only in the store and the search planner: no other module builds `Sql`,
//! or uses sqlx or rusqlite.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules from the bottom up. A module may import those before it, never
/// one after it.
const LAYERS: &[&str] = &[
    // The bottom: pure pieces, no storage, no HTTP framework.
    "error",
    "clock",
    "config",
    "ids",
    "fhir",
    "resource",
    // The ways messages leave (SMTP): protocol clients, no storage.
    "channels",
    // Search parameters, the values indexed for them, and search planning.
    "params",
    "index",
    "search",
    // Storage (the only SQL besides the search planner), with transaction execution.
    "store",
    // The audit trail: the recorder, the sealer, AuditEvents, the chain's check.
    "audit",
    // The FHIR REST request and response, and the state requests share.
    // Who is asking and what they may do (bearer tokens, scopes, roles, accounts).
    "auth",
    "rest",
    "app",
    // Background jobs, FHIR interactions, practice rules, and operations.
    "jobs",
    "interaction",
    "workflows",
    "ops",
    // The HTTP face, and the commands.
    "http",
    "cli",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `.rs` files of module `name` (a file or a folder).
fn files_of(name: &str) -> Vec<PathBuf> {
    let file = src().join(format!("{name}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut folders = vec![src().join(name)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules a file's text names through `crate::`, also inside a
/// `crate::{a, b::c}` group.
fn modules_named(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let first = item.trim().split("::").next().unwrap_or("");
                if !first.is_empty() {
                    named.insert(first.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            named.insert(name);
        }
    }
    named
}

/// The modules `lib.rs` declares.
fn declared_modules() -> Vec<String> {
    std::fs::read_to_string(src().join("lib.rs"))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("pub mod ").or(line.strip_prefix("mod ")))
        .map(|name| name.trim_end_matches(';').to_owned())
        .collect()
}

#[test]
fn every_module_has_its_layer() {
    let unplaced: Vec<String> = declared_modules()
        .into_iter()
        .filter(|name| !LAYERS.contains(&name.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "give these modules their place in LAYERS (and docs/architecture.md): {unplaced:?}"
    );
}

#[test]
fn no_module_imports_one_above_it() {
    let mut upward = Vec::new();
    for (rank, module) in LAYERS.iter().enumerate() {
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for named in modules_named(&text) {
                let above = LAYERS[rank + 1..].contains(&named.as_str());
                if above {
                    upward.push(format!("{} imports {named}", file.display()));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports upward: {upward:#?}");
}

/// The check itself finds an upward import, in a group too.
#[test]
fn the_check_sees_grouped_and_plain_imports() {
    let named =
        modules_named("use crate::{app::App, store};\nlet x = crate::http::route::dispatch;");
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["app", "http", "store"]
    );
}

#[test]
fn sql_lives_only_in_the_store_and_the_search_planner() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut folders = vec![src.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path == src.join("store") || path == src.join("search") {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for marker in ["Sql::default()", "sqlx::", "rusqlite::"] {
                    if text.contains(marker) {
                        found.push(format!("{}: {marker}", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL outside store/ and search/: {found:?}"
    );
}
