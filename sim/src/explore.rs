//! Exploration: fault schedules generated from a seed, and campaigns over many seeds.
//!
//! Environment (all optional): `SIM_SEED` (first seed; unset, one is drawn for the run),
//! `SIM_SEEDS` (how many, default 300), `SIM_THREADS` (seeds run at once, default 2),
//! `SIM_GATEWAYS` (default 2), `SIM_SUBSCRIBERS` (default 8), `SIM_COLLABORATORS` (default 4),
//! `SIM_DURATION_S` (simulated seconds per run, default 14). Every generated run also revokes one
//! subscriber's token at two fifths of its duration, and runs the `limited` client into the limit
//! the gateways share through Redis. `cargo test -p sim` runs the defaults (CI's set: new seeds
//! on every run); `ci/sim-campaign.sh` runs thousands.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::SmallRng};

use mock_backends::FaultSettings;

use crate::{
    faults::Fault,
    scenario::{Report, Scenario},
    trace::Observation,
};

/// How long every fault schedule leaves at the end for the system to settle before the end-state
/// invariants are judged.
pub const SETTLE: Duration = Duration::from_secs(6);

/// A fault schedule drawn from `seed`: one to three faults, one after another, each healed before
/// the next and all healed [`SETTLE`] before `duration` ends. Kinds: Redis crash and restart; a
/// gateway cut from Redis (both ways, or Redis → gateway only); a gateway cut from Auth; a latency
/// spike between a gateway and Redis; a gateway's clock skewed by up to a minute either way; a
/// gateway crash and restart; the Project or Simulation backend crashing and restarting; a
/// backend's fault knobs (latency past the deadline, half its calls failing, hanging, or down).
/// Auth is faulted through its knobs, never crashed: the mock keeps revocations in memory, and
/// a real Auth would not forget them on a restart.
pub fn fault_schedule(seed: u64, gateways: usize, duration: Duration) -> Vec<(Duration, Fault)> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xfa17_5c4e_d01e);
    let start = Duration::from_secs(2);
    let window = duration.saturating_sub(start + SETTLE);
    if window < Duration::from_secs(2) {
        return Vec::new();
    }
    let count = rng.random_range(1..=3u32);
    let slot = window / count;
    let mut schedule = Vec::new();
    for index in 0..count {
        let slot_start = start + slot * index;
        // Each fault lasts from half a second to three quarters of its slot (half a second when
        // the slot is shorter than that allows).
        let longest = (slot.as_millis() as u64 * 3 / 4).max(500);
        let length = Duration::from_millis(rng.random_range(500..=longest));
        let slack = slot.saturating_sub(length).as_millis() as u64 / 2;
        let at = slot_start + Duration::from_millis(rng.random_range(0..=slack));
        let until = at + length;
        let gateway = format!("gateway-{}", rng.random_range(1..=gateways.max(1)));
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        match rng.random_range(0..9u32) {
            0 => {
                schedule.push((at, Fault::Crash("redis".into())));
                schedule.push((until, Fault::Restart("redis".into())));
            }
            1 => {
                let (a, b) = pair(&gateway, "redis");
                schedule.push((at, Fault::Partition(a.clone(), b.clone())));
                schedule.push((until, Fault::Repair(a, b)));
            }
            2 => {
                let (a, b) = pair("redis", &gateway);
                schedule.push((at, Fault::PartitionOneWay(a.clone(), b.clone())));
                schedule.push((until, Fault::Repair(a, b)));
            }
            3 => {
                let (a, b) = pair(&gateway, "auth");
                schedule.push((at, Fault::Partition(a.clone(), b.clone())));
                schedule.push((until, Fault::Repair(a, b)));
            }
            4 => {
                let (a, b) = pair(&gateway, "redis");
                schedule.push((at, Fault::Hold(a.clone(), b.clone())));
                schedule.push((until, Fault::Release(a, b)));
            }
            5 => {
                let ms = rng.random_range(-60_000..=60_000i64);
                schedule.push((
                    at,
                    Fault::ClockSkew {
                        host: gateway.clone(),
                        ms,
                    },
                ));
                schedule.push((
                    until,
                    Fault::ClockSkew {
                        host: gateway,
                        ms: 0,
                    },
                ));
            }
            6 => {
                schedule.push((at, Fault::Crash(gateway.clone())));
                schedule.push((until, Fault::Restart(gateway)));
            }
            7 => {
                let host = ["project", "simulation"][rng.random_range(0..2usize)].to_owned();
                schedule.push((at, Fault::Crash(host.clone())));
                schedule.push((until, Fault::Restart(host)));
            }
            _ => {
                let host = ["auth", "project", "simulation"][rng.random_range(0..3usize)];
                let faults = match rng.random_range(0..4u32) {
                    0 => FaultSettings {
                        latency_ms: 1_500,
                        ..FaultSettings::default()
                    },
                    1 => FaultSettings {
                        error_rate: 0.5,
                        ..FaultSettings::default()
                    },
                    2 => FaultSettings {
                        hang: true,
                        ..FaultSettings::default()
                    },
                    _ => FaultSettings {
                        down: true,
                        ..FaultSettings::default()
                    },
                };
                schedule.push((
                    at,
                    Fault::Backend {
                        host: host.to_owned(),
                        faults,
                    },
                ));
                schedule.push((
                    until,
                    Fault::Backend {
                        host: host.to_owned(),
                        faults: FaultSettings::default(),
                    },
                ));
            }
        }
    }
    schedule
}

/// One line about a run: its seed, size, trace hash and verdict, and how to replay it (the
/// scenario tests' own seeds: `SIM_SEED` with the test binary).
pub fn summary(report: &Report) -> String {
    let replay = format!(
        "SIM_SEED={} SIM_SEEDS=1 cargo test -p sim --test scenarios",
        report.seed
    );
    summary_with_replay(report, &replay)
}

/// [`summary`] with the given replay command.
pub fn summary_with_replay(report: &Report, replay: &str) -> String {
    let verdict = if report.violations.is_empty() {
        "ok".to_owned()
    } else {
        let listed: Vec<String> = report
            .violations
            .iter()
            .map(|v| format!("\n    {v}"))
            .collect();
        format!(
            "{} violation(s):{}",
            report.violations.len(),
            listed.concat()
        )
    };
    let faults: Vec<String> = report
        .trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Fault(fault) => Some(format!("{:.1}s {fault}", o.at.as_secs_f64())),
            _ => None,
        })
        .collect();
    format!(
        "scenario {:?} seed {}: {} observations over {:?} simulated, trace hash {:016x}: {verdict}\n  faults: {}\n  replay: {replay}",
        report.name,
        report.seed,
        report.trace.observed.len(),
        report.simulated,
        report.trace_hash(),
        if faults.is_empty() {
            "none".to_owned()
        } else {
            faults.join(", ")
        },
    )
}

/// What a campaign runs.
#[derive(Debug, Clone, Copy)]
pub struct CampaignSettings {
    /// The first seed.
    pub first_seed: u64,
    /// Whether the first seed was drawn for this run (no `SIM_SEED`).
    pub first_seed_drawn: bool,
    /// How many seeds.
    pub seeds: u64,
    /// How many seeds run at once, each on its own thread (a turmoil simulation is
    /// single-threaded; a run's trace does not depend on the thread it ran on).
    pub threads: usize,
    /// Gateways per run.
    pub gateways: usize,
    /// WebSocket subscribers per run.
    pub subscribers: usize,
    /// Collaborators (presence) per run.
    pub collaborators: usize,
    /// Simulated time per run.
    pub duration: Duration,
}

impl CampaignSettings {
    /// The settings from `SIM_SEED`, `SIM_SEEDS`, `SIM_THREADS`, `SIM_GATEWAYS`,
    /// `SIM_SUBSCRIBERS`, `SIM_COLLABORATORS` and `SIM_DURATION_S`, with CI's defaults: 300 seeds
    /// of 14 simulated seconds from a first seed drawn for the run, two at a time.
    pub fn from_env() -> Self {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        let (first_seed, first_seed_drawn) = crate::seed::seed_or_fresh();
        Self {
            first_seed,
            first_seed_drawn,
            seeds: number("SIM_SEEDS", 300),
            threads: number("SIM_THREADS", 2).max(1) as usize,
            gateways: number("SIM_GATEWAYS", 2) as usize,
            subscribers: number("SIM_SUBSCRIBERS", 8) as usize,
            collaborators: number("SIM_COLLABORATORS", 4) as usize,
            // 14 s leaves 6 s for one to three faults before `SETTLE`, and keeps CI's 300 seeds
            // within minutes in a debug build; `ci/sim-campaign.sh` runs 20 s.
            duration: Duration::from_secs(number("SIM_DURATION_S", 14)),
        }
    }

    /// The command that runs `seeds` seeds from `first_seed` with these settings.
    pub fn command(&self, first_seed: u64, seeds: u64) -> String {
        format!(
            "SIM_SEED={first_seed} SIM_SEEDS={seeds} SIM_GATEWAYS={} SIM_SUBSCRIBERS={} SIM_COLLABORATORS={} SIM_DURATION_S={} cargo test -p sim --test scenarios generated_fault_schedules_keep_every_invariant",
            self.gateways,
            self.subscribers,
            self.collaborators,
            self.duration.as_secs(),
        )
    }

    /// What the campaign runs and how to run the same seeds again.
    pub fn describe(&self) -> String {
        let origin = if self.first_seed_drawn {
            "drawn for this run"
        } else {
            "from SIM_SEED"
        };
        format!(
            "sim: {} generated seeds from {} ({origin}), {} at a time, {} gateways, {} subscribers, {} collaborators, {} s each; the same seeds again: {}",
            self.seeds,
            self.first_seed,
            self.threads,
            self.gateways,
            self.subscribers,
            self.collaborators,
            self.duration.as_secs(),
            self.command(self.first_seed, self.seeds),
        )
    }
}

/// Runs the generated scenario of one seed.
pub fn generated_run(settings: &CampaignSettings, seed: u64) -> Report {
    let schedule = fault_schedule(seed, settings.gateways, settings.duration);
    Scenario::new("generated", seed)
        .gateways(settings.gateways)
        .subscribers(settings.subscribers)
        .collaborators(settings.collaborators)
        .revocation_at(settings.duration * 2 / 5)
        .limited_client(Duration::from_millis(50))
        .duration(settings.duration)
        .faults(schedule)
        .run()
}

/// Runs one generated scenario per seed, `settings.threads` at a time; reports each run through
/// `progress` as it ends and returns the summaries of the failed ones (a run that panicked
/// included), in seed order. Each summary ends with the command that replays its seed alone.
pub fn campaign(settings: CampaignSettings, progress: impl Fn(&str) + Sync) -> Vec<String> {
    let next = AtomicU64::new(0);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..settings.threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= settings.seeds {
                        break;
                    }
                    let seed = settings.first_seed.wrapping_add(index);
                    let replay = settings.command(seed, 1);
                    let run = std::panic::catch_unwind(|| generated_run(&settings, seed));
                    let (line, failed) = match run {
                        Ok(report) => (
                            summary_with_replay(&report, &replay),
                            !report.violations.is_empty(),
                        ),
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("(no message)");
                            let line = format!(
                                "scenario \"generated\" seed {seed}: panicked: {message}\n  replay: {replay}"
                            );
                            (line, true)
                        }
                    };
                    progress(&line);
                    if failed {
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((seed, line));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort();
    failures.into_iter().map(|(_, line)| line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_names_its_seeds_and_the_command_that_runs_them_again() {
        let settings = CampaignSettings {
            first_seed: 41,
            first_seed_drawn: true,
            seeds: 300,
            threads: 2,
            gateways: 3,
            subscribers: 9,
            collaborators: 5,
            duration: Duration::from_secs(14),
        };
        let described = settings.describe();
        assert!(described.starts_with("sim: 300 generated seeds from 41 (drawn for this run)"));
        // Every setting that shapes a run is in the command, so it replays the same runs.
        assert!(described.ends_with(
            "SIM_SEED=41 SIM_SEEDS=300 SIM_GATEWAYS=3 SIM_SUBSCRIBERS=9 SIM_COLLABORATORS=5 \
             SIM_DURATION_S=14 cargo test -p sim --test scenarios \
             generated_fault_schedules_keep_every_invariant"
        ));
        assert!(
            settings
                .command(57, 1)
                .starts_with("SIM_SEED=57 SIM_SEEDS=1 ")
        );
    }
}
