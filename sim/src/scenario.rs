//! Scenarios: a topology, a workload, a fault schedule and a duration, run on turmoil with the
//! real gateway, the real mock backends, the real Redis client code and the simulated Redis.
//!
//! ```no_run
//! use std::time::Duration;
//! use sim::{faults::Fault, scenario::Scenario};
//!
//! let report = Scenario::new("redis restarts under two gateways", 42)
//!     .gateways(2)
//!     .subscribers(8)
//!     .duration(Duration::from_secs(30))
//!     .fault(Duration::from_secs(5), Fault::Crash("redis".into()))
//!     .fault(Duration::from_secs(8), Fault::Restart("redis".into()))
//!     .run();
//! report.assert_holds();
//! ```
//!
//! Topology: `redis` (the simulated Redis), `auth`, `project` and `simulation` (mock backends,
//! each publishing through its own Redis bus), `gateway-1`..`gateway-N`, and client hosts:
//! `subscribers-K` (WebSocket subscribers spread over the gateways, reconnecting with their
//! resume point), `collaborators` (on `/ws/collaboration/p-1`, keeping the presence set),
//! `revoker` (a subscriber whose token Auth revokes mid-run), `publisher` (events on `user:u-1`,
//! some addressed to someone else), `http` (profile calls with a valid and a forged token) and
//! `prober` (readiness of every gateway): the [`crate::workload`]. Everything they see goes into a
//! [`Trace`]; [`crate::invariants`] then judges it. Faults are applied as scheduled
//! ([`crate::faults`]).

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use gateway::Config;
use mock_backends::ServiceKind;

use crate::{
    SimClock,
    faults::{Fault, Sabotage, inject_fault},
    hosts::{self, FaultKnobs, RequestLogs},
    invariants::{self, Violation},
    topology::{LIMITED_LIMIT, fit_retry_budget_window, gateway_config},
    trace::{Observation, SharedTrace, Trace, record_at},
    workload::{self, Run, Workload},
};

/// A scenario to run. Build with [`Scenario::new`] and the builder methods; [`Scenario::run`].
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    seed: u64,
    gateways: usize,
    workload: Workload,
    duration: Duration,
    faults: Vec<(Duration, Fault)>,
    sabotage: Option<Sabotage>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// Its seed.
    pub seed: u64,
    /// Everything observed.
    pub trace: Trace,
    /// Broken invariants (none, when the run is correct).
    pub violations: Vec<Violation>,
    /// Simulated time covered.
    pub simulated: Duration,
}

impl Report {
    /// The trace's fingerprint.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Panics, listing every violation, if any invariant broke.
    pub fn assert_holds(&self) {
        if !self.violations.is_empty() {
            let listed: Vec<String> = self.violations.iter().map(|v| format!("  - {v}")).collect();
            panic!(
                "scenario {:?} (seed {}) broke {} invariant(s):\n{}",
                self.name,
                self.seed,
                self.violations.len(),
                listed.join("\n")
            );
        }
    }
}

/// The servers of a run, as the runner keeps them to fault and read them.
struct Servers {
    /// The mock backends' fault knobs, by host.
    knobs: FaultKnobs,
    /// The mock backends' request logs, by host.
    logs: RequestLogs,
    /// Each gateway's clock, by host, for clock skew.
    clocks: Vec<(String, SimClock)>,
}

impl Scenario {
    /// A scenario with one gateway, four subscribers, 20 simulated seconds and no faults.
    pub fn new(name: impl Into<String>, seed: u64) -> Self {
        Self {
            name: name.into(),
            seed,
            gateways: 1,
            workload: Workload {
                subscribers: 4,
                subscribers_per_host: 500,
                collaborators: 0,
                revoke_at: None,
                limited_interval: None,
                publish_interval: Duration::from_millis(100),
                http_interval: Duration::from_millis(250),
            },
            duration: Duration::from_secs(20),
            faults: Vec::new(),
            sabotage: None,
        }
    }

    /// How many gateway instances (`gateway-1`..).
    pub fn gateways(mut self, count: usize) -> Self {
        self.gateways = count.max(1);
        self
    }

    /// How many WebSocket subscribers, spread over the gateways (half on `user:u-1`
    /// notifications, half on simulation `s-2`, whose progress the mock Simulation publishes).
    pub fn subscribers(mut self, count: usize) -> Self {
        self.workload.subscribers = count;
        self
    }

    /// How many collaborators on `/ws/collaboration/p-1`, spread over the gateways: each keeps
    /// the presence set as `docs/protocol.md` says, and reconnects after a `gap`.
    pub fn collaborators(mut self, count: usize) -> Self {
        self.workload.collaborators = count;
        self
    }

    /// Adds the revoker: a notification subscriber with its own token, which Auth revokes at
    /// `at`. Nothing published after the revocation may reach it.
    pub fn revocation_at(mut self, at: Duration) -> Self {
        self.workload.revoke_at = Some(at);
        self
    }

    /// Adds the `limited` client: it asks [`LIMITED_PATH`](crate::topology::LIMITED_PATH) every
    /// `interval`, round robin over the gateways, one request at a time (each takes a few hundred
    /// simulated milliseconds, so a few a second: far above [`LIMITED_LIMIT`]); together the
    /// gateways must admit at most the limit.
    pub fn limited_client(mut self, interval: Duration) -> Self {
        self.workload.limited_interval = Some(interval);
        self
    }

    /// Simulated run time. Faults should be healed a few seconds before it ends: the end-state
    /// invariants (everything caught up, readiness back) are checked then.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Schedules `fault` at `at`.
    pub fn fault(mut self, at: Duration, fault: Fault) -> Self {
        self.faults.push((at, fault));
        self
    }

    /// Schedules every fault of `schedule`.
    pub fn faults(mut self, schedule: impl IntoIterator<Item = (Duration, Fault)>) -> Self {
        self.faults.extend(schedule);
        self
    }

    /// Damages the observations on purpose (for the test that proves invariants catch it).
    pub fn sabotage(mut self, sabotage: Sabotage) -> Self {
        self.sabotage = Some(sabotage);
        self
    }

    fn gateway_names(&self) -> Vec<String> {
        (1..=self.gateways)
            .map(|i| format!("gateway-{i}"))
            .collect()
    }

    /// Runs the scenario and judges its trace. A turmoil error (a host failed) is a violation.
    ///
    /// Hosts are created in a fixed order (Redis, the backends, the gateways, then the client
    /// hosts), since turmoil steps them in that order and the order is part of the trace.
    pub fn run(mut self) -> Report {
        self.faults.sort_by_key(|(at, _)| *at);
        let trace: SharedTrace = Arc::default();
        let mut sim = self.simulation();
        hosts::redis(&mut sim);
        let (knobs, logs) = self.spawn_backends(&mut sim);
        let clocks = self.spawn_gateways(&mut sim);
        let servers = Servers {
            knobs,
            logs,
            clocks,
        };
        let mut hosts: Vec<String> = ["redis", "auth", "project", "simulation"]
            .map(str::to_owned)
            .into();
        hosts.extend(self.gateway_names());
        hosts.extend(self.workload.spawn(&mut sim, &self.clients(&trace)));
        let failure = self.drive(&mut sim, &trace, &hosts, &servers);
        let simulated = sim.elapsed();
        drop(sim);
        self.judge(&trace, &servers.logs, simulated, failure)
    }

    /// The turmoil simulation, seeded with the run's seed, its epoch fixed at 2026-01-01, running
    /// 30 s past the scenario's duration so the hosts can wind down.
    fn simulation<'a>(&self) -> turmoil::Sim<'a> {
        turmoil::Builder::new()
            .rng_seed(self.seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
            .simulation_duration(self.duration + Duration::from_secs(30))
            .tcp_capacity(4_096)
            .build()
    }

    /// Starts the `auth`, `project` and `simulation` mock backends; returns their fault knobs and
    /// request logs, which each (re)start fills in.
    fn spawn_backends(&self, sim: &mut turmoil::Sim<'_>) -> (FaultKnobs, RequestLogs) {
        let seed = self.seed;
        let knobs = FaultKnobs::default();
        let logs = RequestLogs::default();
        // Each backend's publisher gets its own seed (epochs must differ between processes).
        for (host, kind, bus_seed) in [
            ("auth", ServiceKind::Auth, seed ^ 0xa),
            ("project", ServiceKind::Project, seed ^ 0xb),
            ("simulation", ServiceKind::Simulation, seed ^ 0xc),
        ] {
            let (knobs, logs) = (knobs.clone(), logs.clone());
            hosts::mock_backend(sim, host, kind, seed, Some(bus_seed), knobs, logs);
        }
        (knobs, logs)
    }

    /// Starts `gateway-1`..`gateway-N`, each with its own seed and clock; returns the clocks.
    fn spawn_gateways(&self, sim: &mut turmoil::Sim<'_>) -> Vec<(String, SimClock)> {
        let mut clocks = Vec::new();
        for (index, name) in self.gateway_names().into_iter().enumerate() {
            let clock = SimClock::new();
            clocks.push((name.clone(), clock.clone()));
            // Each gateway its own seed, from which its instance ID (in presence and request IDs)
            // comes: two instances must not share one.
            let instance_seed = self.seed.wrapping_add(index as u64 + 1);
            let config = self.gateway_config(instance_seed);
            hosts::gateway(sim, &name, config, instance_seed, clock);
        }
        clocks
    }

    /// What the client hosts share in this run.
    fn clients(&self, trace: &SharedTrace) -> Run {
        Run {
            seed: self.seed,
            end: self.duration,
            gateways: self.gateway_names(),
            trace: trace.clone(),
            sabotage: self.sabotage,
        }
    }

    /// Steps the simulation to its end, applying each scheduled fault (recorded in the trace) as
    /// its time comes. Returns turmoil's error if a host failed.
    fn drive(
        &self,
        sim: &mut turmoil::Sim<'_>,
        trace: &SharedTrace,
        hosts: &[String],
        servers: &Servers,
    ) -> Option<String> {
        let mut pending: VecDeque<(Duration, Fault)> = self.faults.iter().cloned().collect();
        loop {
            while pending.front().is_some_and(|(at, _)| sim.elapsed() >= *at) {
                let Some((_, fault)) = pending.pop_front() else {
                    break;
                };
                let what = Observation::Fault(format!("{fault:?}"));
                record_at(trace, sim.elapsed(), "runner", what);
                inject_fault(sim, hosts, &servers.clocks, &servers.knobs, &fault);
            }
            match sim.step() {
                Ok(true) => return None,
                Ok(false) => {}
                Err(error) => return Some(error.to_string()),
            }
        }
    }

    /// Closes the trace with what Project received (by request ID) and judges it: the report.
    fn judge(
        self,
        trace: &SharedTrace,
        logs: &RequestLogs,
        simulated: Duration,
        failure: Option<String>,
    ) -> Report {
        let attempts = workload::workload_attempts(logs, "project");
        let what = Observation::BackendAttempts {
            backend: "project".to_owned(),
            attempts,
        };
        record_at(trace, simulated, "runner", what);
        let trace = std::mem::take(&mut *trace.lock().unwrap_or_else(|p| p.into_inner()));
        let mut violations = invariants::check(&trace, &self.expectations());
        if let Some(failure) = failure {
            violations.push(Violation::new(
                "hosts run to completion",
                simulated,
                failure,
            ));
        }
        Report {
            name: self.name,
            seed: self.seed,
            trace,
            violations,
            simulated,
        }
    }

    /// A gateway's configuration in this scenario: [`gateway_config`] with the connections cap
    /// its workload needs ([`Workload::connections_max`]), its retry budget's window fitted to the
    /// run, and the sabotage if any.
    fn gateway_config(&self, seed: u64) -> Config {
        let mut config = gateway_config(seed, self.workload.connections_max());
        fit_retry_budget_window(&mut config, self.duration);
        match self.sabotage {
            Some(Sabotage::NoRetryBudget) => {
                if let Some(project) = config.backends.get_mut("project") {
                    project.retry.budget_ratio = 1.0;
                    project.retry.budget_min_per_second = 1_000;
                }
            }
            Some(Sabotage::NoLocalVerification) => config.auth.local_verification = false,
            Some(Sabotage::LocalLimits) => config.rate_limit.shared = false,
            Some(Sabotage::RefuseUpgrades) => config.websocket.allowed_origins.clear(),
            Some(Sabotage::DropEvent(_)) | None => {}
        }
        config
    }

    /// What the invariants need to know of this scenario.
    fn expectations(&self) -> invariants::Expectations {
        let connections_max = self.workload.connections_max();
        invariants::Expectations {
            // The budget the gateways are meant to have, whatever a sabotage gave them.
            retry_budget_ratio: gateway_config(self.seed, connections_max).backends["project"]
                .retry
                .budget_ratio,
            duration: self.duration,
            gateways: self.gateway_names(),
            faults: self.faults.clone(),
            // Validation (1 s), a shared rate-limit decision (0.3 s), the backend call (1 s),
            // and scheduling slack.
            http_deadline: Duration::from_millis(2_600),
            revoke_at: self.workload.revoke_at,
            shared_limit: self
                .workload
                .limited_interval
                .map(|_| invariants::SharedLimit {
                    limit: LIMITED_LIMIT,
                    retry_interval: Duration::from_millis(
                        gateway_config(self.seed, connections_max)
                            .rate_limit
                            .shared_retry_interval_ms,
                    ),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::CONNECTIONS_MARGIN;

    #[test]
    fn every_scenario_gateway_gets_a_cap_sized_for_its_workload() {
        let small = Scenario::new("small", 1).subscribers(8).collaborators(4);
        let cap = small.gateway_config(1).http.connections_max;
        // 8 + 4 WebSockets; the http client and two logins (subscribers, collaborators).
        assert_eq!(cap, 2 * (12 + 3) + CONNECTIONS_MARGIN);
        // The scale run: 100,000 subscribers on 200 client hosts, the revoker and the limited
        // client; all could be on one gateway, each reconnecting.
        let scale = Scenario::new("scale", 1)
            .gateways(2)
            .subscribers(100_000)
            .collaborators(4)
            .revocation_at(Duration::from_secs(4))
            .limited_client(Duration::from_millis(50));
        let cap = scale.gateway_config(1).http.connections_max;
        assert!(cap >= 2 * 100_005, "{cap}");
        // A sabotage changes other settings, never the cap.
        let sabotaged = scale.clone().sabotage(Sabotage::LocalLimits);
        assert_eq!(sabotaged.gateway_config(1).http.connections_max, cap);
    }
}
