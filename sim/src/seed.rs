//! Seeds: every run draws all randomness from one seed, and a failing run prints the command that
//! replays it.

/// The environment variable that fixes the seed of a simulation test.
pub const SEED_VAR: &str = "SIM_SEED";

/// The seed to run with: `SIM_SEED` when set, otherwise `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var(SEED_VAR)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
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
