//! `module-cycles CRATE_DIR...`: reports the import cycles between the top-level modules of each
//! crate (its `src/lib.rs` and `src/main.rs`, each a crate of its own) and exits 1 when there is
//! one, 2 when a crate cannot be read.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let directories: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if directories.is_empty() {
        eprintln!("usage: module-cycles CRATE_DIR...");
        return ExitCode::from(2);
    }
    let mut found = false;
    for directory in &directories {
        let roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|root| directory.join(root))
            .filter(|root| root.exists())
            .collect();
        if roots.is_empty() {
            eprintln!("{}: no src/lib.rs or src/main.rs", directory.display());
            return ExitCode::from(2);
        }
        for root in roots {
            let graph = match module_cycles::read_crate(&root) {
                Ok(graph) => graph,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(2);
                }
            };
            let cycles = graph.cycles();
            if cycles.is_empty() {
                println!(
                    "{}: {} top-level modules, no cycle",
                    root.display(),
                    graph.modules.len()
                );
                continue;
            }
            found = true;
            for cycle in cycles {
                println!(
                    "{}: {} of {} top-level modules reach one another: {}",
                    root.display(),
                    cycle.modules.len(),
                    graph.modules.len(),
                    cycle.modules.join(", ")
                );
                for ((from, to), locations) in &cycle.edges {
                    let more = match locations.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    println!("  {from} -> {to}  {}{more}", locations[0]);
                }
            }
        }
    }
    if found {
        println!("break each cycle: move what both sides need below them, or the use upward");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
