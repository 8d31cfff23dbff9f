//! Breakers open on failure and close after repair; retries stay within their budget.

use super::*;

/// When a gateway's calls to a backend were failing or at risk, from the fault schedule: the
/// backend's fault knobs set (any knob; `down` when every call fails at once), the backend
/// crashed, or the link between the gateway and the backend cut or held. (from, to, down).
pub(super) fn backend_trouble(
    expect: &Expectations,
    gateway: &str,
    backend: &str,
) -> Vec<(Duration, Duration, bool)> {
    let mut windows = Vec::new();
    let mut knobs: Option<(Duration, bool)> = None;
    let mut link: Option<Duration> = None;
    let on_link =
        |a: &str, b: &str| (a == gateway && b == backend) || (a == backend && b == gateway);
    for (at, fault) in &expect.faults {
        match fault {
            Fault::Backend { host, faults } if host == backend => {
                if let Some((from, down)) = knobs.take() {
                    windows.push((from, *at, down));
                }
                if *faults != mock_backends::FaultSettings::default() {
                    knobs = Some((*at, faults.down || faults.error_rate >= 1.0));
                }
            }
            Fault::Crash(host) if host == backend => link = link.or(Some(*at)),
            Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) | Fault::Hold(a, b)
                if on_link(a, b) =>
            {
                link = link.or(Some(*at));
            }
            Fault::Restart(host) if host == backend => {
                if let Some(from) = link.take() {
                    windows.push((from, *at, false));
                }
            }
            Fault::Repair(a, b) | Fault::Release(a, b) if on_link(a, b) => {
                if let Some(from) = link.take() {
                    windows.push((from, *at, false));
                }
            }
            _ => {}
        }
    }
    windows.extend(knobs.map(|(from, down)| (from, Duration::MAX, down)));
    windows.extend(link.map(|from| (from, Duration::MAX, false)));
    windows
}

/// **A circuit breaker opens on failure and closes after repair.** Valid-token profile calls
/// go to Auth's `GetProfile`. While Auth is down, a gateway that receives four or more of them
/// answers at least one with 503 `circuit_open` (five failures in a row open it; each call makes
/// up to three attempts). And no gateway answers `circuit_open` when its calls to Auth have been
/// untroubled (no knob, crash, partition or hold) for longer than the longest open period plus a
/// second for a probe: the breaker closes again.
pub fn breakers_open_on_failure_and_close_after_repair(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "breakers open on failure and close after repair";
    let valid_calls = |gateway: &str| {
        trace
            .observed
            .iter()
            .filter_map(|o| match &o.what {
                Observation::Http {
                    token: "valid",
                    path: "/api/auth/profile",
                    gateway: asked,
                    sent,
                    code,
                    ..
                } if asked == gateway => Some((o.at, *sent, code.as_deref())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let mut violations = Vec::new();
    for gateway in &expect.gateways {
        let windows = backend_trouble(expect, gateway, "auth");
        let calls = valid_calls(gateway);
        for (at, sent, code) in &calls {
            let near_trouble = windows.iter().any(|(from, to, _)| {
                *sent >= *from
                    && *sent < to.saturating_add(BREAKER_OPEN_MAX + Duration::from_secs(1))
            });
            if *code == Some("circuit_open") && !near_trouble {
                violations.push(Violation::new(
                    NAME,
                    *at,
                    format!("{gateway} refused a call (circuit_open) with Auth healthy since long"),
                ));
            }
        }
        for (from, to, _) in windows.iter().filter(|(_, _, down)| *down) {
            let during: Vec<Option<&str>> = calls
                .iter()
                .filter(|(_, sent, _)| sent >= from && sent < to)
                .map(|(_, _, code)| *code)
                .collect();
            if during.len() >= 4 && !during.contains(&Some("circuit_open")) {
                violations.push(Violation::new(
                    NAME,
                    *from,
                    format!(
                        "{gateway} never opened its breaker for Auth over {} calls while Auth was down",
                        during.len()
                    ),
                ));
            }
        }
    }
    violations
}

/// Whether the workload request observed as `what` went to Project: a valid-token request to
/// one of Project's routes that Project received (its request ID is in `received`), or that the
/// gateway may have sent towards it without reaching it (refused by its open breaker, or every
/// attempt lost: the budget counts those calls too). Not: answers from the gateway's fresh cache
/// (`x-cache: hit`), requests refused before any backend call (401, 403, 429,
/// `auth_unavailable`), and other backends' routes (the `limited` client's Simulation route).
pub(super) fn reached_project(what: &Observation, received: &BTreeMap<String, u32>) -> bool {
    let Observation::Http {
        token: "valid",
        path,
        request_id,
        status,
        code,
        cache,
        ..
    } = what
    else {
        return false;
    };
    if !path.starts_with("/api/projects") {
        return false;
    }
    if received.contains_key(request_id) {
        return true;
    }
    let from_cache = cache.as_deref() == Some("hit");
    let refused_before_the_call =
        matches!(status, Some(401 | 403 | 429)) || code.as_deref() == Some("auth_unavailable");
    !from_cache && !refused_before_the_call
}

/// **Retries never exceed the budget.** The attempts Project received beyond the first of each
/// of the workload's requests number at most `retry_budget_ratio` × the workload's requests that
/// reached Project (see `reached_project`: the calls the gateways made to it, not the cache's
/// answers nor other backends' requests). In scenarios the budget's window outlasts the run and
/// has no floor, so this is the budget's own guarantee, summed over every gateway process; it is
/// checked at the backend, so a failing backend is never hit harder than its load times
/// (1 + ratio).
pub fn retries_stay_within_the_budget(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    let mut violations = Vec::new();
    for o in &trace.observed {
        let Observation::BackendAttempts { backend, attempts } = &o.what else {
            continue;
        };
        let reached = trace
            .observed
            .iter()
            .filter(|request| reached_project(&request.what, attempts))
            .count();
        let retries: u64 = attempts
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum();
        let allowed = expect.retry_budget_ratio * reached as f64;
        if retries as f64 > allowed {
            let most = attempts.values().max().copied().unwrap_or(0);
            violations.push(Violation::new(
                "retries stay within the budget",
                o.at,
                format!(
                    "{backend} received {retries} retries for {reached} requests that reached it (budget {allowed:.1}; up to {most} attempts for one request)"
                ),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::test_support::*;

    /// What Project received, as the runner records it: `per_request[n]` calls with `h-{n}`.
    fn attempts(per_request: &[u32]) -> Observation {
        Observation::BackendAttempts {
            backend: "project".to_owned(),
            attempts: per_request
                .iter()
                .enumerate()
                .map(|(n, attempts)| (format!("h-{n}"), *attempts))
                .collect(),
        }
    }

    #[test]
    fn a_breaker_that_refuses_long_after_repair_is_caught() {
        let down = Fault::Backend {
            host: "auth".to_owned(),
            faults: mock_backends::FaultSettings {
                down: true,
                ..Default::default()
            },
        };
        let healed = Fault::Backend {
            host: "auth".to_owned(),
            faults: Default::default(),
        };
        let faults = vec![(at(1_000), down), (at(3_000), healed)];
        let mut trace = Trace::default();
        for (sent, code) in [
            (1_100, "unavailable"),
            (1_600, "circuit_open"),
            (4_000, "circuit_open"),
            (9_000, "circuit_open"),
        ] {
            let what = http("/api/auth/profile", sent, Some(503), Some(code));
            trace.push(at(sent + 10), "http", what);
        }
        let violations =
            breakers_open_on_failure_and_close_after_repair(&trace, &expect(12, faults));
        // Refusing at 1.6 s (Auth down) and at 4 s (within the longest open period after the
        // repair) is right; at 9 s Auth had been healthy for six seconds.
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(9_010));
    }

    #[test]
    fn more_retries_than_the_budget_allows_are_caught() {
        let mut trace = Trace::default();
        for n in 0..10 {
            let mut what = http("/api/projects", 1_000 + n * 250, Some(200), None);
            if let Observation::Http { request_id, .. } = &mut what {
                *request_id = format!("h-{n}");
            }
            trace.push(at(1_010 + n * 250), "http", what);
        }
        // Ten requests at a ratio of 0.2: two retries are within the budget, three are not.
        let mut within = trace.clone();
        within.push(
            at(20_000),
            "runner",
            attempts(&[2, 2, 1, 1, 1, 1, 1, 1, 1, 1]),
        );
        assert!(retries_stay_within_the_budget(&within, &expect(20, Vec::new())).is_empty());
        let mut over = trace.clone();
        over.push(
            at(20_000),
            "runner",
            attempts(&[3, 2, 1, 1, 1, 1, 1, 1, 1, 1]),
        );
        let violations = retries_stay_within_the_budget(&over, &expect(20, Vec::new()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("3 retries for 10 requests"),
            "{violations:?}"
        );
    }

    #[test]
    fn requests_that_never_reached_project_do_not_widen_the_retry_budget() {
        let mut trace = Trace::default();
        let push = |trace: &mut Trace, n: u64, mut what: Observation| {
            if let Observation::Http { request_id, .. } = &mut what {
                *request_id = format!("h-{n}");
            }
            trace.push(at(1_010 + n * 100), "http", what);
        };
        // Ten Project calls that reached it, and three retries among them: over the budget (2).
        for n in 0..10 {
            push(
                &mut trace,
                n,
                http("/api/projects", n * 100, Some(200), None),
            );
        }
        // Twenty answers that never reached Project: the limited client's Simulation route,
        // template lists from the gateway's cache, a refusal before the call.
        for n in 10..20 {
            let mut limited = http(LIMITED_PATH, n * 100, Some(429), None);
            if let Observation::Http { request_id, .. } = &mut limited {
                *request_id = format!("l-{n}");
            }
            trace.push(at(1_010 + n * 100), "limited", limited);
        }
        for n in 20..29 {
            let mut cached = http("/api/projects/templates", n * 100, Some(200), None);
            if let Observation::Http { cache, .. } = &mut cached {
                *cache = Some("hit".to_owned());
            }
            push(&mut trace, n, cached);
        }
        let refused = http("/api/projects", 2_900, Some(503), Some("auth_unavailable"));
        push(&mut trace, 29, refused);
        let per_request = [2, 2, 2, 1, 1, 1, 1, 1, 1, 1];
        let mut judged = trace.clone();
        judged.push(at(20_000), "runner", attempts(&per_request));
        let violations = retries_stay_within_the_budget(&judged, &expect(20, Vec::new()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("3 retries for 10 requests"),
            "{violations:?}"
        );
        // Five calls the gateway sent towards Project without reaching it (refused by its open
        // breaker) count as calls, as the budget counts them: 15 calls allow 3 retries.
        for n in 30..35 {
            let what = http("/api/projects", n * 100, Some(503), Some("circuit_open"));
            push(&mut trace, n, what);
        }
        trace.push(at(20_000), "runner", attempts(&per_request));
        assert!(retries_stay_within_the_budget(&trace, &expect(20, Vec::new())).is_empty());
    }
}
