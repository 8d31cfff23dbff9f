//! Every HTTP request gets one timely answer; forged tokens always get 401; Project traffic
//! flows while Auth cannot answer.

use super::*;

/// When each gateway was down (crashed until restarted, plus a second to start listening).
pub(super) fn down_windows(expect: &Expectations) -> BTreeMap<String, Vec<(Duration, Duration)>> {
    const STARTUP: Duration = Duration::from_secs(1);
    let mut windows: BTreeMap<String, Vec<(Duration, Duration)>> = BTreeMap::new();
    let mut crashed: BTreeMap<&str, Duration> = BTreeMap::new();
    for (at, fault) in &expect.faults {
        match fault {
            Fault::Crash(host) => {
                crashed.insert(host, *at);
            }
            Fault::Restart(host) => {
                if let Some(from) = crashed.remove(host.as_str()) {
                    windows
                        .entry(host.clone())
                        .or_default()
                        .push((from, *at + STARTUP));
                }
            }
            _ => {}
        }
    }
    for (host, from) in crashed {
        windows
            .entry(host.to_owned())
            .or_default()
            .push((from, Duration::MAX));
    }
    windows
}

/// **Every HTTP request gets exactly one response, none outlives its deadline, and none is a
/// 500.** The workload never cuts a client from a gateway, so a missing or late answer is a
/// failure, unless the gateway asked was crashed (or starting again) while the request was out.
pub fn every_http_request_gets_one_timely_answer(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "every HTTP request gets one timely answer";
    let down = down_windows(expect);
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                token,
                path,
                gateway,
                sent,
                status,
                ..
            } => {
                let took = o.at.saturating_sub(*sent);
                let gateway_was_down = down.get(gateway).is_some_and(|windows| {
                    windows
                        .iter()
                        .any(|(from, to)| *sent < *to && o.at >= *from)
                });
                if gateway_was_down && status.is_none_or(|_| took > expect.http_deadline) {
                    return None;
                }
                match status {
                    None => Some(format!("{path}, {token} token, to {gateway}: no response")),
                    Some(500) => Some(format!("{path}, {token} token, to {gateway}: 500")),
                    Some(_) if took > expect.http_deadline => Some(format!(
                        "{path}, {token} token, to {gateway}: answered after {took:?}, past {:?}",
                        expect.http_deadline
                    )),
                    Some(_) => None,
                }
                .map(|detail| Violation::new(NAME, o.at, detail))
            }
            _ => None,
        })
        .collect()
}

/// **Invalid tokens get 401, even while Auth is down or partitioned.** A forged token must
/// never be let through nor turned into a 503.
pub fn forged_tokens_always_get_401(trace: &Trace) -> Vec<Violation> {
    trace
        .observed
        .iter()
        .filter_map(|o| match &o.what {
            Observation::Http {
                token: "invalid",
                gateway,
                status: Some(status),
                ..
            } if *status != 401 => Some(Violation::new(
                "invalid tokens get 401",
                o.at,
                format!("{gateway} answered {status}"),
            )),
            _ => None,
        })
        .collect()
}

/// The end of the latest start of `gateway` at or before `at` (zero when it never restarted).
pub(super) fn started_before(down: &[(Duration, Duration)], at: Duration) -> Duration {
    down.iter()
        .filter(|(_, to)| *to <= at)
        .map(|(_, to)| *to)
        .max()
        .unwrap_or_default()
}

/// When a gateway started at `start` has Auth's keys: once Auth has answered it for two seconds
/// running (the JWKS is fetched at start and retried every half second until it is).
pub(super) fn keys_known_from(start: Duration, auth: &[(Duration, Duration, bool)]) -> Duration {
    const CLEAN: Duration = Duration::from_secs(2);
    let mut from = start;
    while let Some((_, to, _)) = auth
        .iter()
        .find(|(begin, to, _)| *begin < from + CLEAN && *to > from)
    {
        from = *to;
        if from == Duration::MAX {
            return Duration::MAX;
        }
    }
    from + CLEAN
}

/// **While Auth cannot answer, valid tokens keep working on other backends' routes.** A request
/// with the workload's valid token to a Project route (`/api/projects`, and the cached
/// `/api/projects/templates`) sent to a gateway while its calls to Auth are in trouble (partition,
/// hold, crash, knobs) gets 200: the token is verified locally from Auth's keys (validations are
/// cached for one second only in scenarios, so it really is). Excused: a gateway that has not
/// yet fetched Auth's keys since it started, one whose clock was skewed, and requests while the
/// gateway was down or Project itself in trouble (or within three seconds of it, while its
/// breaker and connections recover).
pub fn project_traffic_flows_while_auth_cannot_answer(
    trace: &Trace,
    expect: &Expectations,
) -> Vec<Violation> {
    const NAME: &str = "valid tokens keep working while Auth cannot answer";
    const RECOVERY: Duration = Duration::from_secs(3);
    let down = down_windows(expect);
    let mut violations = Vec::new();
    for gateway in &expect.gateways {
        let skewed = expect
            .faults
            .iter()
            .any(|(_, fault)| matches!(fault, Fault::ClockSkew { host, .. } if host == gateway));
        if skewed {
            continue;
        }
        let auth = backend_trouble(expect, gateway, "auth");
        let project = backend_trouble(expect, gateway, "project");
        let gateway_down = down.get(gateway).cloned().unwrap_or_default();
        for o in &trace.observed {
            let Observation::Http {
                token: "valid",
                path,
                gateway: asked,
                sent,
                status,
                code,
                ..
            } = &o.what
            else {
                continue;
            };
            // Project's routes only (not Auth's profile, nor the limited client's Simulation
            // route, which refuses most requests by design).
            if asked != gateway || !path.starts_with("/api/projects") {
                continue;
            }
            let auth_in_trouble = auth.iter().any(|(from, to, _)| sent >= from && sent < to);
            let excused = gateway_down
                .iter()
                .any(|(from, to)| *from <= o.at && *to > *sent)
                || project
                    .iter()
                    .any(|(from, to, _)| *from <= o.at && to.saturating_add(RECOVERY) > *sent)
                || *sent < keys_known_from(started_before(&gateway_down, *sent), &auth);
            if auth_in_trouble && !excused && *status != Some(200) {
                violations.push(Violation::new(
                    NAME,
                    o.at,
                    format!(
                        "{gateway} answered {path} with {status:?} {code:?} while Auth could not answer"
                    ),
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::test_support::*;

    #[test]
    fn a_request_unanswered_while_its_gateway_was_down_is_excused_and_only_then() {
        let crash = vec![
            (at(1_000), Fault::Crash("gateway-1".to_owned())),
            (at(3_000), Fault::Restart("gateway-1".to_owned())),
        ];
        let mut trace = Trace::default();
        for sent in [900, 5_000] {
            trace.push(
                at(sent + 100),
                "http",
                http("/api/auth/profile", sent, None, None),
            );
        }
        let violations = every_http_request_gets_one_timely_answer(&trace, &expect(10, crash));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(5_100));
    }

    #[test]
    fn a_valid_token_refused_while_auth_is_partitioned_is_caught_unless_excused() {
        let cut = |at_ms, fault: fn(String, String) -> Fault| {
            (at(at_ms), fault("gateway-1".to_owned(), "auth".to_owned()))
        };
        let mut faults = vec![cut(6_000, Fault::Partition), cut(12_000, Fault::Repair)];
        let mut trace = Trace::default();
        for (sent, status, code) in [
            (5_000, 200, None),
            (7_000, 200, None),
            (8_000, 503, Some("auth_unavailable")),
            (13_000, 503, Some("unavailable")),
        ] {
            let what = http("/api/projects/templates", sent, Some(status), code);
            trace.push(at(sent + 1_000), "http", what);
        }
        // The 503 at 8 s is the one violation; the one at 13 s came after the repair.
        let violations =
            project_traffic_flows_while_auth_cannot_answer(&trace, &expect(20, faults.clone()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(9_000));
        // Excused while Project was in trouble too, or before the gateway could fetch Auth's keys.
        let mut with_project = faults.clone();
        with_project.push((at(7_500), Fault::Crash("project".to_owned())));
        with_project.push((at(8_500), Fault::Restart("project".to_owned())));
        with_project.sort_by_key(|(at, _)| *at);
        assert!(
            project_traffic_flows_while_auth_cannot_answer(&trace, &expect(20, with_project))
                .is_empty()
        );
        faults.insert(0, cut(1_000, Fault::Partition));
        faults.insert(1, cut(2_000, Fault::Repair));
        faults.insert(2, cut(2_500, Fault::Partition));
        faults.insert(3, cut(3_000, Fault::Repair));
        // Auth answered only from 3 s on: keys by 5 s, so 8 s is still judged.
        assert_eq!(
            project_traffic_flows_while_auth_cannot_answer(&trace, &expect(20, faults)).len(),
            1
        );
    }
}
