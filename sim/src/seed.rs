//! Seeds: every run draws all randomness from one seed, and a failing run prints the command that
//! replays it. Tests that should cover new ground on every run (the generated campaign, the
//! determinism check) draw a fresh seed unless `SIM_SEED` names one, and announce it.

/// The environment variable that fixes the seed of a simulation test.
pub const SEED_VAR: &str = "SIM_SEED";

/// The seed to run with: `SIM_SEED` when set, otherwise `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var(SEED_VAR)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A seed drawn for this run, different on every run: std's per-process random hasher keys,
/// which come from the operating system (wall-clock time and global RNGs are banned here). Kept
/// below 10⁹, short enough to type back.
pub fn fresh() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 1_000_000_000
}

/// `SIM_SEED` when set (a replay), otherwise a [`fresh`] seed; and whether it was drawn.
pub fn seed_or_fresh() -> (u64, bool) {
    match std::env::var(SEED_VAR)
        .ok()
        .and_then(|value| value.parse().ok())
    {
        Some(seed) => (seed, false),
        None => (fresh(), true),
    }
}

/// Writes `line` to the process's standard error even when the test harness captures the test's
/// output (it captures `print!` and `eprint!` only), so a passing CI run still shows which seeds
/// it ran and how to run them again.
pub fn announce(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The line a failing run prints so anyone can replay it exactly.
pub fn replay_hint(seed: u64, test_binary: &str, test_name: &str) -> String {
    format!(
        "simulation failed with seed {seed}; replay with: \
         {SEED_VAR}={seed} cargo test -p sim --test {test_binary} -- --exact {test_name}"
    )
}

/// Runs `run(seed)`; if it panics, prints how to replay it, then lets the panic go on.
pub fn replayable(seed: u64, test_binary: &str, test_name: &str, run: impl FnOnce(u64)) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed)));
    if let Err(panic) = outcome {
        eprintln!("{}", replay_hint(seed, test_binary, test_name));
        std::panic::resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_seeds_differ_from_draw_to_draw_and_stay_short() {
        let draws: std::collections::BTreeSet<u64> = (0..20).map(|_| fresh()).collect();
        assert!(draws.len() > 15, "{draws:?}");
        assert!(draws.iter().all(|seed| *seed < 1_000_000_000));
    }
}
