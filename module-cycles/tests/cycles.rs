//! The cycle check on two small crates written for it (`tests/fixtures/`).

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("src/lib.rs")
}

#[test]
fn modules_that_reach_each_other_are_one_cycle_with_the_edges_that_make_it() {
    let graph = module_cycles::read_crate(&fixture("tangled")).expect("the fixture reads");
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].modules, ["a", "b"]);
    let edges: Vec<(&str, &str, usize)> = cycles[0]
        .edges
        .iter()
        .map(|((from, to), locations)| (from.as_str(), to.as_str(), locations[0].line))
        .collect();
    // `a` names `b` through the root's re-export; `b`'s child names `a` inside a macro.
    assert_eq!(edges, [("a", "b", 1), ("b", "a", 2)]);
    // `c` uses both but nothing uses `c` outside tests: it is in no cycle, and `d`'s test-only use
    // of `c` is no edge.
    assert!(graph.edges.contains_key(&("c".into(), "a".into())));
    assert!(!graph.edges.contains_key(&("d".into(), "c".into())));
}

#[test]
fn layers_that_use_only_what_is_below_them_have_no_cycle() {
    let graph = module_cycles::read_crate(&fixture("layered")).expect("the fixture reads");
    assert_eq!(graph.modules.len(), 2);
    assert_eq!(graph.edges.len(), 1, "{:?}", graph.edges);
    assert!(graph.cycles().is_empty());
}

#[test]
fn a_missing_module_file_is_an_error_that_names_it() {
    let error = module_cycles::read_crate(Path::new("no/such/src/lib.rs")).unwrap_err();
    assert!(error.contains("no/such/src/lib.rs"), "{error}");
}
