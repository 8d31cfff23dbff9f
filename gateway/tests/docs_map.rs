//! The docs' map of the code matches the code: every source path the docs name exists, and the
//! tree drawn in `docs/architecture.md` lists exactly the top-level entries of `gateway/src`, and
//! the error docs name every error code.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use gateway::request::error_code::ErrorCode;
use regex::Regex;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The docs that map modules: each names source files and folders in backticks.
const MAPS: &[&str] = &[
    "README.md",
    "docs/architecture.md",
    "docs/request-lifecycle.md",
    "docs/errors.md",
    "docs/resilience.md",
    "docs/security.md",
    "docs/configuration.md",
    "docs/protocol.md",
];

/// Paths the docs name that builds and tools make: they need not exist in a clone.
const GENERATED: &[&str] = &["target/", "fuzz/artifacts/"];

#[test]
fn every_source_path_the_docs_name_exists() {
    let root = repo_root();
    // A backticked path of the gateway's sources (`edge/limits.rs`, `realtime/hub/`) or of the
    // repository (`gateway/tests/aggregate.rs`, `ci/fuzz.sh`).
    let path = Regex::new(r"`([a-z_][a-z0-9_\-]*(?:/[a-z0-9_\-]+)*(?:\.rs|\.lua|/))`").unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in MAPS {
        for capture in path.captures_iter(&read(doc)) {
            let named = &capture[1];
            if GENERATED.iter().any(|prefix| named.starts_with(prefix)) {
                continue;
            }
            checked += 1;
            let exists = [root.join("gateway/src"), root.clone()]
                .iter()
                .any(|base| base.join(named).exists());
            if !exists {
                missing.push(format!("{doc}: `{named}`"));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the pattern right?"
    );
    assert!(
        missing.is_empty(),
        "paths the docs name that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_architecture_tree_lists_every_top_level_entry_of_gateway_src() {
    let doc = read("docs/architecture.md");
    let tree = doc
        .split("```text\ngateway/src/\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/architecture.md draws the tree of gateway/src in a ```text block");
    let entry = Regex::new(r"^[├└]── ([a-z_]+(?:/|\.rs))").unwrap();
    let drawn: BTreeSet<String> = tree
        .lines()
        .filter_map(|line| entry.captures(line).map(|c| c[1].to_owned()))
        .collect();
    let actual: BTreeSet<String> = fs::read_dir(repo_root().join("gateway/src"))
        .expect("gateway/src is readable")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    assert_eq!(
        drawn, actual,
        "the tree in docs/architecture.md and gateway/src differ"
    );
}

#[test]
fn every_error_code_is_documented() {
    let docs = format!("{}{}", read("docs/errors.md"), read("docs/protocol.md"));
    let undocumented: Vec<&str> = ErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .filter(|code| {
            !docs.contains(&format!("`{code}`")) && !docs.contains(&format!("\"{code}\""))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "error codes docs/errors.md and docs/protocol.md do not name: {undocumented:?}"
    );
}

#[test]
fn every_crate_map_names_exactly_its_modules() {
    // Each crate's `//!` doc lists its top-level modules as [`name`] items.
    let declared = Regex::new(r"(?m)^pub mod ([a-z_]+);").unwrap();
    let named = Regex::new(r"(?m)^//! - \[`([a-z_]+)`\]").unwrap();
    let mut mismatches = Vec::new();
    for crate_root in [
        "gateway/src/lib.rs",
        "events/src/lib.rs",
        "sim/src/lib.rs",
        "mock-backends/src/lib.rs",
    ] {
        let text = read(crate_root);
        let modules: BTreeSet<&str> = declared
            .captures_iter(&text)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        let mapped: BTreeSet<&str> = named
            .captures_iter(&text)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        if modules != mapped {
            mismatches.push(format!(
                "{crate_root}: modules not in the map {:?}, map entries that are no module {:?}",
                modules.difference(&mapped).collect::<Vec<_>>(),
                mapped.difference(&modules).collect::<Vec<_>>()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
