//! Scenarios through the scenario API: a quiet run, determinism on several seeds, deliberately
//! broken gateways and observations caught by their invariants, and generated fault schedules
//! (`SIM_SEEDS` of them, 300 by default, from `SIM_SEED` or a seed drawn for the run;
//! `ci/sim-campaign.sh` runs thousands). Every failure prints its seed and the command that
//! replays it.

use std::time::Duration;

use mock_backends::FaultSettings;
use sim::{
    explore,
    faults::{Fault, Sabotage},
    scenario::Scenario,
    seed,
    trace::Observation,
};

#[test]
fn a_quiet_run_keeps_every_invariant() {
    let seed = seed::seed_or(1);
    let report = Scenario::new("quiet", seed)
        .gateways(2)
        .subscribers(8)
        .collaborators(4)
        .revocation_at(Duration::from_secs(5))
        .duration(Duration::from_secs(12))
        .run();
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
}

/// Several seeds, each run twice at once on two threads, give the same trace twice: seed 2 (its
/// generated schedule crashes and restarts `gateway-1`: a crash must replay too) and three new
/// ones on every run (from `SIM_SEED` when set, to replay).
#[test]
fn the_same_seed_gives_the_same_trace() {
    const TEST: &str = "the_same_seed_gives_the_same_trace";
    let (base, drawn) = seed::seed_or_fresh();
    let seeds = [2, base, base + 1, base + 2];
    seed::announce(&format!(
        "sim: determinism checked on seeds {seeds:?} ({}); again: SIM_SEED={base} cargo test -p sim --test scenarios {TEST}",
        if drawn {
            "drawn for this run"
        } else {
            "from SIM_SEED"
        },
    ));
    let run = |seed: u64| {
        Scenario::new("determinism", seed)
            .gateways(2)
            .subscribers(6)
            .collaborators(3)
            .revocation_at(Duration::from_secs(4))
            .duration(Duration::from_secs(10))
            .faults(explore::fault_schedule(seed, 2, Duration::from_secs(10)))
            .run()
    };
    for seed in seeds {
        seed::replayable(seed, "scenarios", TEST, |seed| {
            // At once on two threads: a trace depends on neither the thread nor what runs beside.
            let (first, second) = std::thread::scope(|scope| {
                let first = scope.spawn(|| run(seed));
                let second = scope.spawn(|| run(seed));
                (first.join(), second.join())
            });
            let (Ok(first), Ok(second)) = (first, second) else {
                panic!("seed {seed}: a run panicked");
            };
            assert!(!first.trace.observed.is_empty());
            assert_eq!(
                first.trace_hash(),
                second.trace_hash(),
                "seed {seed} gave two different traces ({} and {} observations)",
                first.trace.observed.len(),
                second.trace.observed.len()
            );
        });
    }
}

#[test]
fn a_lost_event_is_caught_and_its_run_replays() {
    let seed = seed::seed_or(3);
    let run = || {
        Scenario::new("sabotaged", seed)
            .subscribers(2)
            .duration(Duration::from_secs(8))
            .sabotage(Sabotage::DropEvent(5))
            .run()
    };
    let report = run();
    let caught: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.invariant == "delivery is ordered, complete and once")
        .collect();
    assert!(
        !caught.is_empty(),
        "a lost event must break delivery; got {:?}",
        report.violations
    );
    assert!(explore::summary(&report).contains(&format!("SIM_SEED={seed}")));
    // Replaying the seed reproduces the same run, violation included.
    let again = run();
    assert_eq!(again.trace_hash(), report.trace_hash());
    assert_eq!(again.violations, report.violations);
}

/// A gateway that refuses every WebSocket upgrade (its origin check, with the clients' origin
/// taken off its list) leaves nothing for the delivery, presence and revocation invariants to
/// judge. The served-clients invariant catches it, once for every WebSocket client.
#[test]
fn a_gateway_that_refuses_every_websocket_is_caught() {
    let seed = seed::seed_or(9);
    let report = Scenario::new("refused upgrades", seed)
        .gateways(2)
        .subscribers(4)
        .collaborators(2)
        .revocation_at(Duration::from_secs(6))
        .duration(Duration::from_secs(10))
        .sabotage(Sabotage::RefuseUpgrades)
        .run();
    eprintln!("{}", explore::summary(&report));
    let unserved: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.invariant == "every started client is served")
        .collect();
    // Four subscribers, two collaborators and the revoker (judged until its revocation).
    assert_eq!(
        unserved.len(),
        7,
        "every WebSocket client must be caught unserved; got {:?}",
        report.violations
    );
}

/// Auth refuses every call for the whole run, so the HTTP client never logs in: its valid-token
/// workload never runs, and that is a violation rather than a quiet run.
#[test]
fn a_workload_that_cannot_log_in_is_caught() {
    let seed = seed::seed_or(10);
    let down = FaultSettings {
        down: true,
        ..FaultSettings::default()
    };
    let report = Scenario::new("no login", seed)
        .subscribers(0)
        .duration(Duration::from_secs(6))
        .fault(
            Duration::from_millis(10),
            Fault::Backend {
                host: "auth".into(),
                faults: down,
            },
        )
        .run();
    eprintln!("{}", explore::summary(&report));
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.invariant == "every started client is served"
                && v.detail.starts_with("http could not log in")),
        "a login that never succeeded must be caught; got {:?}",
        report.violations
    );
}

/// CI's campaign: `SIM_SEEDS` generated fault schedules (300 by default) from a first seed drawn
/// for the run (or `SIM_SEED`), announced with the command that runs the same seeds again; every
/// failed seed is listed with the command that replays it alone.
#[test]
fn generated_fault_schedules_keep_every_invariant() {
    let settings = explore::CampaignSettings::from_env();
    seed::announce(&settings.describe());
    let failures = explore::campaign(settings, |line| eprintln!("{line}"));
    assert!(
        failures.is_empty(),
        "{} of {} seed(s) failed ({}):\n{}",
        failures.len(),
        settings.seeds,
        settings.describe(),
        failures.join("\n")
    );
}

/// The revoker's gateway (`gateway-1`) is cut from Redis while Auth revokes the token and events
/// keep being published. When the partition heals, the gateway must apply the missed revocation
/// before it replays the missed events: the revoked connection gets none of them.
#[test]
fn a_revocation_missed_during_a_partition_is_applied_before_the_replay() {
    let seed = seed::seed_or(4);
    let cut = || Fault::Partition("gateway-1".into(), "redis".into());
    let heal = || Fault::Repair("gateway-1".into(), "redis".into());
    let report = Scenario::new("revocation during a partition", seed)
        .gateways(2)
        .subscribers(2)
        .revocation_at(Duration::from_secs(4))
        .fault(Duration::from_secs(3), cut())
        .fault(Duration::from_secs(7), heal())
        .duration(Duration::from_secs(14))
        .run();
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
}

/// Found by generated seed 23572621: `gateway-1`, the revoker's, is cut from Redis's messages
/// while Auth revokes the token, and Redis crashes (losing the revocation) before the gateway has
/// read it. An epoch change of `auth:revocations` must count as revocations missed: every
/// connection is closed with 1001 and judged afresh on reconnecting. (The gateway used to carry
/// on in the new epoch, and the revoked token's connection received everything published after.)
#[test]
fn a_revocation_lost_in_a_redis_crash_closes_every_connection() {
    let seed = seed::seed_or(23_572_621);
    let report = Scenario::new("revocation lost in a Redis crash", seed)
        .gateways(2)
        .subscribers(8)
        .collaborators(4)
        .revocation_at(Duration::from_millis(5_600))
        .limited_client(Duration::from_millis(50))
        .fault(ms(2_100), Fault::Hold("gateway-2".into(), "redis".into()))
        .fault(
            ms(2_700),
            Fault::Release("gateway-2".into(), "redis".into()),
        )
        .fault(
            ms(4_200),
            Fault::PartitionOneWay("redis".into(), "gateway-1".into()),
        )
        .fault(ms(5_600), Fault::Repair("redis".into(), "gateway-1".into()))
        .fault(ms(6_100), Fault::Crash("redis".into()))
        .fault(ms(7_600), Fault::Restart("redis".into()))
        .duration(Duration::from_secs(14))
        .run();
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
    let revoker_closed = report.trace.observed.iter().any(|o| {
        o.host == "revoker"
            && matches!(
                o.what,
                Observation::Disconnected {
                    code: Some(1001),
                    ..
                }
            )
    });
    assert!(
        revoker_closed,
        "the revoked token's connection was never closed with 1001"
    );
}

/// Found by generated seed 750954610: the `limited` client asks from the start, and a gateway's
/// first shared decision had to dial Redis and load the GCRA script within the 300 ms decision
/// timeout. It rarely could, so both gateways fell back to their local limits and admitted a
/// burst each, past the shared limit. The gateways now prepare the link when they start.
#[test]
fn a_limit_shared_through_redis_holds_from_the_first_request() {
    let seed = seed::seed_or(750_954_610);
    let hang = |hang| Fault::Backend {
        host: "project".into(),
        faults: FaultSettings {
            hang,
            ..FaultSettings::default()
        },
    };
    let report = Scenario::new("a shared limit from the first request", seed)
        .gateways(2)
        .subscribers(8)
        .collaborators(4)
        .revocation_at(Duration::from_millis(5_600))
        .limited_client(Duration::from_millis(50))
        .fault(
            ms(2_100),
            Fault::Partition("gateway-1".into(), "auth".into()),
        )
        .fault(ms(3_500), Fault::Repair("gateway-1".into(), "auth".into()))
        .fault(ms(5_600), hang(true))
        .fault(ms(6_700), hang(false))
        .duration(Duration::from_secs(14))
        .run();
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Auth goes down for five seconds under two gateways: each gateway's breaker for Auth opens
/// (profile calls answered 503 `circuit_open` without calling Auth), forged tokens still get 401
/// (local verification), and the breakers close once Auth is back.
#[test]
fn a_failing_backend_opens_the_breakers_and_they_close_after_repair() {
    let seed = seed::seed_or(5);
    let down = FaultSettings {
        down: true,
        ..FaultSettings::default()
    };
    let knobs = |faults| Fault::Backend {
        host: "auth".into(),
        faults,
    };
    let report = Scenario::new("auth down", seed)
        .gateways(2)
        .subscribers(2)
        .fault(Duration::from_secs(3), knobs(down))
        .fault(Duration::from_secs(8), knobs(FaultSettings::default()))
        .duration(Duration::from_secs(16))
        .run();
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
    let refused = report
        .trace
        .observed
        .iter()
        .filter(|o| matches!(&o.what, Observation::Http { code: Some(code), .. } if code == "circuit_open"))
        .count();
    assert!(refused > 0, "the breakers never opened");
}

/// Project fails 40 % of its calls (UNAVAILABLE) for most of the run under two gateways. The gateways retry the
/// workload's safe Project calls, but never more than their budget allows, as counted by
/// Project itself; a gateway without a budget is caught.
#[test]
fn retries_against_a_failing_backend_stay_within_the_budget() {
    let seed = seed::seed_or(6);
    let failing = FaultSettings {
        error_rate: 0.4,
        ..FaultSettings::default()
    };
    let knobs = |faults| Fault::Backend {
        host: "project".into(),
        faults,
    };
    let run = |sabotage: Option<Sabotage>| {
        let mut scenario = Scenario::new("project failing", seed)
            .gateways(2)
            .subscribers(2)
            .fault(Duration::from_secs(1), knobs(failing))
            .fault(Duration::from_secs(20), knobs(FaultSettings::default()))
            .duration(Duration::from_secs(24));
        if let Some(sabotage) = sabotage {
            scenario = scenario.sabotage(sabotage);
        }
        scenario.run()
    };
    let retried = |report: &sim::scenario::Report| -> u32 {
        report
            .trace
            .observed
            .iter()
            .filter_map(|o| match &o.what {
                Observation::BackendAttempts { attempts, .. } => {
                    Some(attempts.values().map(|n| n - 1).sum::<u32>())
                }
                _ => None,
            })
            .sum()
    };
    let report = run(None);
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
    assert!(retried(&report) > 0, "no call was retried at all");

    let unbudgeted = run(Some(Sabotage::NoRetryBudget));
    let caught: Vec<_> = unbudgeted
        .violations
        .iter()
        .filter(|v| v.invariant == "retries stay within the budget")
        .collect();
    eprintln!(
        "budgeted: {} retries; unbudgeted: {} ({caught:?})",
        retried(&report),
        retried(&unbudgeted)
    );
    assert!(
        !caught.is_empty(),
        "a gateway without a budget must be caught; got {:?}",
        unbudgeted.violations
    );
}

/// `gateway-1` is cut from Auth for six seconds, then Auth's messages are held for five. Valid
/// tokens keep working there on Project's routes (verified locally from Auth's keys; the
/// template list also comes from the cache), forged ones still get 401; a gateway that cannot
/// verify locally is caught.
#[test]
fn while_auth_is_partitioned_valid_tokens_keep_working_on_other_routes() {
    let seed = seed::seed_or(7);
    let run = |sabotage: Option<Sabotage>| {
        let mut scenario = Scenario::new("auth partitioned", seed)
            .gateways(2)
            .subscribers(2)
            .fault(
                Duration::from_secs(5),
                Fault::Partition("gateway-1".into(), "auth".into()),
            )
            .fault(
                Duration::from_secs(11),
                Fault::Repair("gateway-1".into(), "auth".into()),
            )
            .fault(
                Duration::from_secs(13),
                Fault::Hold("gateway-1".into(), "auth".into()),
            )
            .fault(
                Duration::from_secs(18),
                Fault::Release("gateway-1".into(), "auth".into()),
            )
            .duration(Duration::from_secs(24));
        if let Some(sabotage) = sabotage {
            scenario = scenario.sabotage(sabotage);
        }
        scenario.run()
    };
    let report = run(None);
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
    let served = report
        .trace
        .observed
        .iter()
        .filter(|o| {
            matches!(&o.what, Observation::Http { token: "valid", path, gateway, sent, status: Some(200), .. }
                if *path != "/api/auth/profile" && gateway == "gateway-1"
                    && *sent >= Duration::from_secs(5) && *sent < Duration::from_secs(11))
        })
        .count();
    assert!(
        served >= 6,
        "only {served} Project calls served during the partition"
    );
    // While Auth's messages are held (a silent partition), its health checks fail within a
    // second; from then on tokens are judged locally at once instead of after the 1 s validation
    // deadline each. Simulated time, so this is exact, not a noisy measurement.
    let slowest = report
        .trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                token: "valid",
                path,
                gateway,
                sent,
                ..
            } if *path != "/api/auth/profile"
                && gateway == "gateway-1"
                && *sent >= Duration::from_millis(14_500)
                && *sent < Duration::from_secs(18) =>
            {
                Some(o.at - *sent)
            }
            _ => None,
        })
        .max()
        .expect("Project calls while Auth was held");
    assert!(
        slowest < Duration::from_millis(500),
        "a request waited {slowest:?} while Auth was known to be down"
    );

    let strict = run(Some(Sabotage::NoLocalVerification));
    assert!(
        strict
            .violations
            .iter()
            .any(|v| v.invariant == "valid tokens keep working while Auth cannot answer"),
        "a gateway that cannot verify locally must be caught; got {:?}",
        strict.violations
    );
}

/// Two gateways share one limit through Redis: the `limited` client, round robin over both, gets
/// at most the limit admitted in all, also while `gateway-2` is cut from Redis for three seconds
/// (then deciding alone, within its own limit). Gateways that keep their limits to themselves
/// admit about twice the limit, and are caught.
#[test]
fn a_limit_shared_through_redis_holds_across_gateways() {
    let seed = seed::seed_or(8);
    let run = |sabotage: Option<Sabotage>| {
        let mut scenario = Scenario::new("shared limit", seed)
            .gateways(2)
            .subscribers(2)
            .limited_client(Duration::from_millis(25))
            .fault(
                Duration::from_secs(8),
                Fault::Partition("gateway-2".into(), "redis".into()),
            )
            .fault(
                Duration::from_secs(11),
                Fault::Repair("gateway-2".into(), "redis".into()),
            )
            .duration(Duration::from_secs(20));
        if let Some(sabotage) = sabotage {
            scenario = scenario.sabotage(sabotage);
        }
        scenario.run()
    };
    let count = |report: &sim::scenario::Report, wanted: fn(u16) -> bool| {
        report
            .trace
            .observed
            .iter()
            .filter(|o| {
                matches!(&o.what, Observation::Http { path, status: Some(status), .. }
                    if *path == sim::topology::LIMITED_PATH && wanted(*status))
            })
            .count()
    };
    let report = run(None);
    eprintln!("{}", explore::summary(&report));
    report.assert_holds();
    let (admitted, refused) = (count(&report, |s| s == 200), count(&report, |s| s == 429));
    eprintln!("shared: {admitted} admitted, {refused} refused");
    assert!(
        admitted >= 15,
        "only {admitted} admitted: the limit allows ~20"
    );
    assert!(
        refused > 2 * admitted,
        "the client asks far above the limit"
    );

    let local = run(Some(Sabotage::LocalLimits));
    eprintln!(
        "local: {} admitted, {} refused",
        count(&local, |s| s == 200),
        count(&local, |s| s == 429)
    );
    assert!(
        local
            .violations
            .iter()
            .any(|v| v.invariant == "shared limits hold across instances"),
        "gateways that do not share their limits must be caught; got {:?}",
        local.violations
    );
}
