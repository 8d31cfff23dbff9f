//! Reports: each load process writes a [`ProcessReport`] (its goose metrics, latency histograms
//! included, in a form that merges); `loadgen report` merges every process's, adds the facts
//! the campaign script gathered (the gateways' own metrics, memory, the publisher's counts),
//! checks them against the thresholds file and writes the summary as a table, JSON and HTML.

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use anyhow::Context as _;
use goose::metrics::GooseMetrics;
use serde::{Deserialize, Serialize};

/// One request row of a process: counts and its latency histogram (goose's log-linear buckets,
/// keyed by each bucket's fastest time in microseconds: the same keys in every process).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestStats {
    /// Answered as expected.
    pub success: u64,
    /// Failed (an HTTP error status, a gRPC error, an offset gap, a lost connection).
    pub fail: u64,
    /// Slowest, in microseconds.
    pub max_us: u64,
    /// Bucket → count.
    pub buckets: BTreeMap<u64, u64>,
}

impl RequestStats {
    /// Adds `other`'s counts and histogram to these.
    pub fn merge(&mut self, other: &RequestStats) {
        self.success += other.success;
        self.fail += other.fail;
        self.max_us = self.max_us.max(other.max_us);
        for (bucket, count) in &other.buckets {
            *self.buckets.entry(*bucket).or_default() += count;
        }
    }

    /// Requests in all.
    pub fn total(&self) -> u64 {
        self.success + self.fail
    }

    /// The latency at `quantile` (0 to 1), in milliseconds: the bucket holding it (goose's
    /// buckets are within 0.8 % of the times in them).
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        let timed: u64 = self.buckets.values().sum();
        if timed == 0 {
            return 0.0;
        }
        let rank = ((quantile * timed as f64).ceil() as u64).clamp(1, timed);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return *bucket as f64 / 1_000.0;
            }
        }
        self.max_us as f64 / 1_000.0
    }
}

/// What one load process measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessReport {
    /// `http`, `ws` or `grpc`.
    pub role: String,
    /// Seconds measured (goose resets its metrics once every user has started).
    pub duration_s: f64,
    /// Users at most.
    pub users: usize,
    /// By goose's request key (`GET GET /api/projects`, `WS event`, …).
    pub requests: BTreeMap<String, RequestStats>,
}

impl ProcessReport {
    /// The report of a finished goose run.
    pub fn from_goose(role: &str, metrics: &GooseMetrics) -> Self {
        let requests = metrics
            .requests
            .iter()
            .map(|(key, aggregate)| {
                let data = &aggregate.raw_data;
                let stats = RequestStats {
                    success: aggregate.success_count as u64,
                    fail: aggregate.fail_count as u64,
                    max_us: data.maximum_time_us,
                    buckets: data
                        .times_us
                        .iter()
                        .map(|(bucket, count)| (*bucket, *count as u64))
                        .collect(),
                };
                (key.clone(), stats)
            })
            .collect();
        Self {
            role: role.to_owned(),
            duration_s: metrics.duration as f64,
            users: metrics.maximum_users,
            requests,
        }
    }
}

/// A role's requests merged over its processes, except those whose key contains `except`.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// Every request row together.
    pub all: RequestStats,
    /// Requests per second: the sum of each process's own rate.
    pub per_second: f64,
    /// Processes merged.
    pub processes: usize,
}

/// Merges the rows of `role` whose key contains `only` and not `except`.
pub fn merge(reports: &[ProcessReport], role: &str, only: &str, except: &str) -> Merged {
    let mut merged = Merged::default();
    for report in reports.iter().filter(|r| r.role == role) {
        merged.processes += 1;
        let mut process = RequestStats::default();
        for (key, stats) in &report.requests {
            if key.contains(only) && (except.is_empty() || !key.contains(except)) {
                process.merge(stats);
            }
        }
        if report.duration_s > 0.0 {
            merged.per_second += process.total() as f64 / report.duration_s;
        }
        merged.all.merge(&process);
    }
    merged
}

/// The thresholds of one profile (`ci/load-thresholds.toml`); an absent one is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// HTTP requests per second through the gateways, at least.
    pub http_requests_per_second_min: Option<f64>,
    /// HTTP p99 latency in ms, at most.
    pub http_p99_ms_max: Option<f64>,
    /// Failed HTTP requests over all, at most.
    pub http_error_rate_max: Option<f64>,
    /// WebSocket connections the gateways counted at once (their own metric), at least.
    pub ws_connections_min: Option<f64>,
    /// Events delivered per second across every connection (over the publishing time), at
    /// least.
    pub ws_events_per_second_min: Option<f64>,
    /// Deliveries over those due (every published event to every subscriber of its channel),
    /// at least.
    pub ws_delivered_fraction_min: Option<f64>,
    /// Publish-to-receive p99 in ms, at most.
    pub ws_delivery_p99_ms_max: Option<f64>,
    /// Failed deliveries (offset gaps, gap frames, lost connections) over all, at most.
    pub ws_error_rate_max: Option<f64>,
    /// Gateway memory (resident) per open WebSocket connection in KB, at most.
    pub memory_per_connection_kb_max: Option<f64>,
}

/// Reads `profile`'s thresholds from a TOML file of `[profile]` tables.
pub fn read_thresholds(path: &Path, profile: &str) -> anyhow::Result<Thresholds> {
    use figment::{
        Figment,
        providers::{Format, Toml},
    };
    Figment::from(Toml::file_exact(path))
        .focus(profile)
        .extract()
        .with_context(|| format!("thresholds [{profile}] in {}", path.display()))
}

/// The goose `--threshold` rules one load process of `role` (`http` or `ws`) checks on itself,
/// from the same thresholds the merged report checks: the latency and error bounds as they
/// stand, and for HTTP this process's share (one of `processes`) of the request rate. Each
/// process thus fails on its own when it alone misses; the merged report judges the whole.
pub fn goose_rules(t: &Thresholds, role: &str, processes: usize) -> Vec<String> {
    let percent = |rate: f64| rate * 100.0;
    let mut rules = Vec::new();
    match role {
        "http" => {
            if let Some(p99) = t.http_p99_ms_max {
                rules.push(format!("p99<={p99}ms"));
            }
            if let Some(rate) = t.http_error_rate_max {
                rules.push(format!("error-rate<={}%", percent(rate)));
            }
            if let Some(min) = t.http_requests_per_second_min {
                rules.push(format!("rps>={}", min / processes.max(1) as f64));
            }
        }
        "ws" => {
            if let Some(p99) = t.ws_delivery_p99_ms_max {
                rules.push(format!("p99<={p99}ms for {WS_EVENT}"));
            }
            if let Some(rate) = t.ws_error_rate_max {
                rules.push(format!("error-rate<={}% for {WS_EVENT}", percent(rate)));
            }
        }
        _ => {}
    }
    rules
}

/// Goose's key of the subscribers' deliveries (`record_custom_request_duration("WS", "event")`).
pub const WS_EVENT: &str = "WS event";

/// One checked figure.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What.
    pub figure: &'static str,
    /// Measured.
    pub value: f64,
    /// `>=` or `<=` and the bound, when there is one.
    pub threshold: Option<(&'static str, f64)>,
    /// Passed, or had no threshold.
    pub passed: bool,
}

fn check(figure: &'static str, value: f64, min: Option<f64>, max: Option<f64>) -> Check {
    let threshold = min.map(|m| (">=", m)).or(max.map(|m| ("<=", m)));
    let passed = min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m);
    Check {
        figure,
        value,
        threshold,
        passed,
    }
}

/// Facts the campaign script measured outside the load processes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Facts {
    /// The highest sum over gateways of `gateway_websocket_connections` seen while holding.
    pub gateway_ws_connections_max: f64,
    /// The gateways' resident memory at that moment, KB, less their resident memory before
    /// any connection.
    pub gateway_ws_memory_kb: f64,
    /// Events the publisher published.
    pub published_events: f64,
    /// Seconds it published for.
    pub publish_seconds: f64,
    /// Connections on each channel: each event is due to this many.
    pub subscribers_per_channel: f64,
    /// CPU each process group used in each phase's steady state.
    pub cpu: Vec<CpuUse>,
    /// The gateways' `gateway_event_handoff_seconds` histogram at the end of the hold, summed
    /// over the gateways: (bucket bound in seconds, `None` for `+Inf`; events at most that
    /// slow), cumulative as Prometheus gives it. The gateway's own part of the delivery latency
    /// (bus to queued for every local subscriber), beside the end-to-end figure the subscribers
    /// measure.
    pub gateway_handoff_buckets: Vec<(Option<f64>, f64)>,
}

/// The CPU one group of processes used over a phase's steady state, measured by the campaign
/// script from `/proc` (user and system time over wall time).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct CpuUse {
    /// The phase: the role of its load processes (`ws`, `http`, `grpc`).
    pub phase: String,
    /// `gateways`, `mock backends`, `redis`, `ws goose`, …, or `machine` (every CPU's busy time).
    pub group: String,
    /// Processes in the group.
    pub processes: u32,
    /// Cores busy on average (1.0 = one core all the time).
    pub cores: f64,
}

impl Facts {
    /// The gateways' handoff latency at `quantile` in milliseconds: the bound of the first
    /// bucket holding it (infinite past the last bound); `None` without samples.
    pub fn handoff_ms(&self, quantile: f64) -> Option<f64> {
        let total = self.gateway_handoff_buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        self.gateway_handoff_buckets
            .iter()
            .find(|(_, count)| *count >= quantile * total)
            .map(|(bound, _)| bound.map_or(f64::INFINITY, |seconds| seconds * 1_000.0))
    }

    /// The cores `group` used in `phase`, when measured.
    pub fn cores(&self, phase: &str, group: &str) -> Option<f64> {
        self.cpu
            .iter()
            .find(|c| c.phase == phase && c.group == group)
            .map(|c| c.cores)
    }
}

/// Every figure of a campaign with its threshold.
pub fn checks(reports: &[ProcessReport], facts: &Facts, t: &Thresholds) -> Vec<Check> {
    let mut checks = Vec::new();
    let http = merge(reports, "http", "", "login");
    if http.processes > 0 {
        let all = &http.all;
        let error_rate = all.fail as f64 / all.total().max(1) as f64;
        checks.push(check(
            "HTTP requests/s",
            http.per_second,
            t.http_requests_per_second_min,
            None,
        ));
        checks.push(check("HTTP p50 ms", all.quantile_ms(0.50), None, None));
        checks.push(check(
            "HTTP p99 ms",
            all.quantile_ms(0.99),
            None,
            t.http_p99_ms_max,
        ));
        checks.push(check(
            "HTTP error rate",
            error_rate,
            None,
            t.http_error_rate_max,
        ));
        if let Some(cores) = facts.cores("http", "gateways") {
            let per_request = cores * 1e6 / http.per_second.max(1.0);
            checks.push(check(
                "gateway CPU µs per HTTP request",
                per_request,
                None,
                None,
            ));
        }
    }
    let grpc = merge(reports, "grpc", "", "");
    if grpc.processes > 0 {
        checks.push(check("direct gRPC requests/s", grpc.per_second, None, None));
        checks.push(check(
            "direct gRPC p99 ms",
            grpc.all.quantile_ms(0.99),
            None,
            None,
        ));
        if http.processes > 0 && grpc.per_second > 0.0 {
            let ratio = http.per_second / grpc.per_second;
            checks.push(check("gateway ÷ direct throughput", ratio, None, None));
        }
    }
    let events = merge(reports, "ws", "event", "");
    if events.processes > 0 {
        let all = &events.all;
        checks.push(check(
            "WS connections (gateway metric)",
            facts.gateway_ws_connections_max,
            t.ws_connections_min,
            None,
        ));
        // Over the publishing time: goose's own duration includes the quiet end of the hold.
        let delivered = all.success as f64;
        let per_second = delivered / facts.publish_seconds.max(1.0);
        checks.push(check(
            "WS events delivered/s",
            per_second,
            t.ws_events_per_second_min,
            None,
        ));
        let due = facts.published_events * facts.subscribers_per_channel;
        checks.push(check(
            "WS deliveries / due",
            delivered / due.max(1.0),
            t.ws_delivered_fraction_min,
            None,
        ));
        checks.push(check(
            "WS delivery p50 ms",
            all.quantile_ms(0.50),
            None,
            None,
        ));
        checks.push(check(
            "WS delivery p99 ms",
            all.quantile_ms(0.99),
            None,
            t.ws_delivery_p99_ms_max,
        ));
        if let Some(p99) = facts.handoff_ms(0.99) {
            checks.push(check("gateway handoff p99 ms (≤ bucket)", p99, None, None));
        }
        let error_rate = all.fail as f64 / all.total().max(1) as f64;
        checks.push(check(
            "WS delivery error rate",
            error_rate,
            None,
            t.ws_error_rate_max,
        ));
        let per_connection = facts.gateway_ws_memory_kb / facts.gateway_ws_connections_max.max(1.0);
        checks.push(check(
            "gateway KB per WS connection",
            per_connection,
            None,
            t.memory_per_connection_kb_max,
        ));
    }
    checks
}

impl Check {
    /// The measured value: three decimals, or two significant digits when smaller (an error
    /// rate of one in a million must not print as 0.000).
    fn value_text(&self) -> String {
        if self.value != 0.0 && self.value.abs() < 0.001 {
            format!("{:.2e}", self.value)
        } else {
            format!("{:.3}", self.value)
        }
    }

    /// `>= bound`, `<= bound` or `-`.
    fn threshold_text(&self) -> String {
        self.threshold
            .map_or_else(|| "-".to_owned(), |(op, bound)| format!("{op} {bound}"))
    }

    /// `ok`, `FAILED`, or nothing without a threshold.
    fn verdict(&self) -> &'static str {
        match (self.threshold, self.passed) {
            (None, _) => "",
            (Some(_), true) => "ok",
            (Some(_), false) => "FAILED",
        }
    }
}

/// The checks as a text table.
pub fn table(checks: &[Check]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>14} {:>16}  verdict",
        "figure", "measured", "threshold"
    );
    for c in checks {
        let (value, threshold) = (c.value_text(), c.threshold_text());
        let _ = writeln!(
            out,
            "{:<34} {value:>14} {threshold:>16}  {}",
            c.figure,
            c.verdict()
        );
    }
    out
}

/// The CPU each process group used, by phase, as a text table.
pub fn cpu_table(cpu: &[CpuUse]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<16} {:>9} {:>7}",
        "phase", "group", "processes", "cores"
    );
    for c in cpu {
        let _ = writeln!(
            out,
            "{:<6} {:<16} {:>9} {:>7.2}",
            c.phase, c.group, c.processes, c.cores
        );
    }
    out
}

/// The checks and the CPU by process group as a small HTML page.
pub fn html(title: &str, checks: &[Check], cpu: &[CpuUse]) -> String {
    let mut rows = String::new();
    for c in checks {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.figure,
            c.value_text(),
            c.threshold_text().replace('<', "&lt;").replace('>', "&gt;"),
            c.verdict()
        );
    }
    let mut cpu_rows = String::new();
    for c in cpu {
        let _ = write!(
            cpu_rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            c.phase, c.group, c.processes, c.cores
        );
    }
    format!(
        "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>\
         <table border=1 cellpadding=4><tr><th>figure</th><th>measured</th><th>threshold</th>\
         <th>verdict</th></tr>{rows}</table>\
         <h2>CPU by process group (steady state of each phase)</h2>\
         <table border=1 cellpadding=4><tr><th>phase</th><th>group</th><th>processes</th>\
         <th>cores</th></tr>{cpu_rows}</table>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(success: u64, fail: u64, buckets: &[(u64, u64)]) -> RequestStats {
        RequestStats {
            success,
            fail,
            max_us: buckets.iter().map(|b| b.0).max().unwrap_or(0),
            buckets: buckets.iter().copied().collect(),
        }
    }

    #[test]
    fn processes_merge_into_one_histogram_and_the_sum_of_their_rates() {
        let process = |rows: Vec<(&str, RequestStats)>, duration_s| ProcessReport {
            role: "http".into(),
            duration_s,
            users: 10,
            requests: rows.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        };
        let reports = [
            process(
                vec![
                    ("GET GET /api/projects", stats(90, 0, &[(1_000, 90)])),
                    ("POST POST /api/auth/login", stats(10, 0, &[(50_000, 10)])),
                ],
                10.0,
            ),
            process(
                vec![("GET GET /api/projects", stats(9, 1, &[(20_000, 10)]))],
                5.0,
            ),
        ];
        let merged = merge(&reports, "http", "", "login");
        assert_eq!(merged.processes, 2);
        assert_eq!((merged.all.success, merged.all.fail), (99, 1));
        // 90 in 10 s plus 10 in 5 s.
        assert!((merged.per_second - 11.0).abs() < 1e-9);
        assert_eq!(merged.all.quantile_ms(0.50), 1.0);
        assert_eq!(
            merged.all.quantile_ms(0.95),
            20.0,
            "the slow process's tail shows"
        );
        let thresholds = Thresholds {
            http_requests_per_second_min: Some(10.0),
            http_p99_ms_max: Some(10.0),
            ..Thresholds::default()
        };
        let checks = checks(&reports, &Facts::default(), &thresholds);
        let verdict = |figure: &str| checks.iter().find(|c| c.figure == figure).unwrap().passed;
        assert!(verdict("HTTP requests/s"));
        assert!(!verdict("HTTP p99 ms"), "20 ms > 10 ms: {}", table(&checks));
    }

    #[test]
    fn goose_rules_come_from_the_thresholds_and_goose_accepts_them() {
        let thresholds = Thresholds {
            http_requests_per_second_min: Some(10_000.0),
            http_p99_ms_max: Some(10.0),
            http_error_rate_max: Some(0.0001),
            ws_delivery_p99_ms_max: Some(16.0),
            ws_error_rate_max: Some(0.0),
            ..Thresholds::default()
        };
        let http = goose_rules(&thresholds, "http", 4);
        assert_eq!(http, ["p99<=10ms", "error-rate<=0.01%", "rps>=2500"]);
        let ws = goose_rules(&thresholds, "ws", 10);
        assert_eq!(
            ws,
            ["p99<=16ms for WS event", "error-rate<=0% for WS event"]
        );
        for rule in http.iter().chain(&ws) {
            rule.parse::<goose::threshold::Threshold>()
                .unwrap_or_else(|error| panic!("goose refuses {rule:?}: {error}"));
        }
        assert!(goose_rules(&thresholds, "grpc", 1).is_empty());
        assert!(goose_rules(&Thresholds::default(), "http", 1).is_empty());
    }

    #[test]
    fn the_gateways_cpu_per_request_comes_from_the_http_phase() {
        let rows = vec![(
            "GET GET /api/projects".to_owned(),
            stats(20_000, 0, &[(1_000, 20_000)]),
        )];
        let reports = [ProcessReport {
            role: "http".into(),
            duration_s: 10.0,
            users: 10,
            requests: rows.into_iter().collect(),
        }];
        let cpu = |phase: &str, group: &str, cores| CpuUse {
            phase: phase.into(),
            group: group.into(),
            processes: 1,
            cores,
        };
        let facts = Facts {
            cpu: vec![cpu("ws", "gateways", 1.5), cpu("http", "gateways", 0.4)],
            ..Facts::default()
        };
        let checks = checks(&reports, &facts, &Thresholds::default());
        let per_request = checks
            .iter()
            .find(|c| c.figure == "gateway CPU µs per HTTP request")
            .expect("a figure when the HTTP phase's CPU was measured");
        // 0.4 cores at 2,000 requests/s: 200 µs each.
        assert!((per_request.value - 200.0).abs() < 1e-9, "{per_request:?}");
        assert!(cpu_table(&facts.cpu).contains("http   gateways"));
    }

    #[test]
    fn the_handoff_quantile_is_the_first_bucket_holding_it() {
        let facts = Facts {
            gateway_handoff_buckets: vec![
                (Some(0.001), 90.0),
                (Some(0.004), 99.0),
                (Some(0.016), 99.95),
                (None, 100.0),
            ],
            ..Facts::default()
        };
        assert_eq!(facts.handoff_ms(0.5), Some(1.0));
        assert_eq!(facts.handoff_ms(0.99), Some(4.0));
        assert_eq!(facts.handoff_ms(0.999), Some(16.0));
        assert_eq!(facts.handoff_ms(1.0), Some(f64::INFINITY));
        assert_eq!(Facts::default().handoff_ms(0.99), None);
    }
}
