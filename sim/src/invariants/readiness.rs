//! Readiness follows event delivery.

use super::*;

/// When each gateway's path to Redis was broken, from the fault schedule.
pub(super) fn broken_windows(expect: &Expectations) -> BTreeMap<String, Vec<(Duration, Duration)>> {
    let involves = |a: &str, b: &str, gateway: &str| {
        (a == gateway && b == "redis") || (a == "redis" && b == gateway)
    };
    let mut windows: BTreeMap<String, Vec<(Duration, Duration)>> = BTreeMap::new();
    for gateway in &expect.gateways {
        let mut open: Option<Duration> = None;
        for (at, fault) in &expect.faults {
            let (breaks, heals) = match fault {
                Fault::Crash(host) => (host == "redis" || host == gateway, false),
                Fault::Restart(host) => (false, host == "redis" || host == gateway),
                Fault::Partition(a, b) | Fault::PartitionOneWay(a, b) | Fault::Hold(a, b) => {
                    (involves(a, b, gateway), false)
                }
                Fault::Repair(a, b) | Fault::Release(a, b) => (false, involves(a, b, gateway)),
                Fault::ClockSkew { .. } | Fault::Backend { .. } => (false, false),
            };
            if breaks && open.is_none() {
                open = Some(*at);
            }
            if heals && let Some(start) = open.take() {
                windows
                    .entry(gateway.clone())
                    .or_default()
                    .push((start, *at));
            }
        }
        if let Some(start) = open {
            windows
                .entry(gateway.clone())
                .or_default()
                .push((start, expect.duration + Duration::from_secs(3_600)));
        }
    }
    windows
}

/// The stretches of the run over which a gateway's readiness is judged, from its broken windows:
/// (from, to, whether its path to Redis is broken then). Broken: from `detect` after a break
/// until the repair. Whole: from `recover` after the run's start or a repair until the next
/// break (or the run's end).
pub(super) fn readiness_stretches(
    windows: &[(Duration, Duration)],
    duration: Duration,
    detect: Duration,
    recover: Duration,
) -> Vec<(Duration, Duration, bool)> {
    let mut stretches = Vec::new();
    let mut whole_from = recover;
    for (from, to) in windows {
        if *from > whole_from {
            stretches.push((whole_from, *from, false));
        }
        stretches.push((*from + detect, (*to).min(duration), true));
        whole_from = whole_from.max(to.saturating_add(recover));
    }
    stretches.push((whole_from, duration, false));
    stretches.retain(|(from, to, _)| from < to);
    stretches
}

/// **Readiness is false whenever end-to-end delivery is broken, and true again after repair.**
/// A gateway whose path to Redis has been broken for 1.5 s must not report its event bus healthy;
/// one whose path has been whole for 3 s must report it healthy (an unanswered probe then is a
/// violation too). A probe is judged over its whole span, from sent to answered (or given up).
/// And the check must not pass for want of samples: every such stretch at least
/// [`READINESS_STRETCH_JUDGED`] long holds at least one probe of that gateway, answered or not.
pub fn readiness_follows_event_delivery(trace: &Trace, expect: &Expectations) -> Vec<Violation> {
    const NAME: &str = "readiness follows event delivery";
    const DETECT: Duration = Duration::from_millis(1_500);
    const RECOVER: Duration = Duration::from_secs(3);
    let windows = broken_windows(expect);
    let mut violations = Vec::new();
    let mut probes: BTreeMap<&str, Vec<(Duration, Duration)>> = BTreeMap::new();
    for o in &trace.observed {
        let Observation::Readiness {
            gateway,
            sent,
            bus_healthy,
        } = &o.what
        else {
            continue;
        };
        probes.entry(gateway).or_default().push((*sent, o.at));
        let gateway_windows = windows.get(gateway).map(Vec::as_slice).unwrap_or(&[]);
        let broken_long = gateway_windows
            .iter()
            .any(|(from, to)| *sent >= *from + DETECT && o.at < *to);
        let whole_long = *sent >= RECOVER
            && gateway_windows
                .iter()
                .all(|(from, to)| o.at < *from || *sent >= to.saturating_add(RECOVER));
        let detail = match bus_healthy {
            Some(true) if broken_long => Some("ready while its path to Redis is broken"),
            Some(false) if whole_long => Some("not ready although its path to Redis is whole"),
            None if whole_long => Some("no answer to its readiness probe although whole"),
            _ => None,
        };
        if let Some(detail) = detail {
            violations.push(Violation::new(NAME, o.at, format!("{gateway}: {detail}")));
        }
    }
    for gateway in &expect.gateways {
        let gateway_windows = windows.get(gateway).map(Vec::as_slice).unwrap_or(&[]);
        let sampled = probes
            .get(gateway.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (from, to, broken) in
            readiness_stretches(gateway_windows, expect.duration, DETECT, RECOVER)
        {
            let judged = to.saturating_sub(from) >= READINESS_STRETCH_JUDGED;
            let empty = !sampled
                .iter()
                .any(|(sent, answered)| *sent >= from && *answered <= to);
            if judged && empty {
                let state = if broken { "broken" } else { "whole" };
                violations.push(Violation::new(
                    NAME,
                    from,
                    format!(
                        "{gateway}: no readiness probe from {from:?} to {to:?} (path to Redis {state}), nothing to judge"
                    ),
                ));
            }
        }
    }
    violations
}

/// The shortest stretch of a run in which `readiness_follows_event_delivery` requires a probe:
/// a probe takes at most `workload::PROBE_TIMEOUT` (1 s), then the prober waits 200 ms, so any
/// stretch longer than two such cycles holds a whole probe.
pub const READINESS_STRETCH_JUDGED: Duration = Duration::from_millis(2_500);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::test_support::*;

    fn probe(trace: &mut Trace, sent_ms: u64, answered_ms: u64, bus_healthy: Option<bool>) {
        let what = Observation::Readiness {
            gateway: "gateway-1".to_owned(),
            sent: at(sent_ms),
            bus_healthy,
        };
        trace.push(at(answered_ms), "prober", what);
    }

    /// Probes every 500 ms of `[from_ms, to_ms)`, each answered 100 ms later with `answer(sent)`.
    fn probes(trace: &mut Trace, from_ms: u64, to_ms: u64, answer: impl Fn(u64) -> Option<bool>) {
        for sent in (from_ms..to_ms).step_by(500) {
            probe(trace, sent, sent + 100, answer(sent));
        }
    }

    #[test]
    fn readiness_is_judged_on_answers_and_on_probes_left_unanswered() {
        // gateway-1 cut from Redis from 5 s to 10 s, in a 20 s run.
        let faults = vec![
            (
                at(5_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (
                at(10_000),
                Fault::Repair("gateway-1".into(), "redis".into()),
            ),
        ];
        let healthy = |sent: u64| Some(!(6_500..10_000).contains(&sent));
        let mut trace = Trace::default();
        probes(&mut trace, 0, 20_000, healthy);
        assert_eq!(
            readiness_follows_event_delivery(&trace, &expect(20, faults.clone())),
            []
        );
        // A probe that got no answer while the path was whole is a failure; while broken, not.
        let mut unanswered = trace.clone();
        probe(&mut unanswered, 15_050, 16_050, None);
        probe(&mut unanswered, 7_050, 8_050, None);
        let violations = readiness_follows_event_delivery(&unanswered, &expect(20, faults.clone()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("no answer"), "{violations:?}");
        // Healthy while broken: caught.
        let mut lying = Trace::default();
        probes(&mut lying, 0, 20_000, |_| Some(true));
        let violations = readiness_follows_event_delivery(&lying, &expect(20, faults));
        assert!(!violations.is_empty());
        assert!(
            violations
                .iter()
                .all(|v| v.detail.contains("ready while its path to Redis is broken")),
            "{violations:?}"
        );
    }

    #[test]
    fn readiness_over_a_stretch_without_probes_is_a_violation() {
        let faults = vec![
            (
                at(5_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (
                at(10_000),
                Fault::Repair("gateway-1".into(), "redis".into()),
            ),
        ];
        // Probes only before the cut and after the recovery: the broken stretch (6.5 s to 10 s)
        // has none, so the check would pass for want of samples.
        let mut trace = Trace::default();
        probes(&mut trace, 0, 5_000, |_| Some(true));
        probes(&mut trace, 13_000, 20_000, |_| Some(true));
        let violations = readiness_follows_event_delivery(&trace, &expect(20, faults.clone()));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].at, at(6_500));
        assert!(violations[0].detail.contains("broken"), "{violations:?}");
        // No probe at all: every stretch is empty (whole before, broken, whole after).
        let violations = readiness_follows_event_delivery(&Trace::default(), &expect(20, faults));
        assert_eq!(violations.len(), 2, "{violations:?}");
        // A stretch shorter than READINESS_STRETCH_JUDGED is not required to hold a probe: the
        // 2 s stretch from 3 s to 5 s here.
        let late = vec![
            (
                at(5_000),
                Fault::Partition("gateway-1".into(), "redis".into()),
            ),
            (
                at(12_000),
                Fault::Repair("gateway-1".into(), "redis".into()),
            ),
        ];
        let mut trace = Trace::default();
        probes(&mut trace, 6_500, 12_000, |_| Some(false));
        probes(&mut trace, 15_000, 20_000, |_| Some(true));
        assert_eq!(
            readiness_follows_event_delivery(&trace, &expect(20, late)),
            []
        );
    }
}
