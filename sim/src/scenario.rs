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
//! `prober` (readiness of every gateway). Everything they see goes into a [`Trace`];
//! [`crate::invariants`] then judges it.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use events::{Audience, ChannelName, Publisher, RedisBus};
use futures::StreamExt;
use gateway::Config;
use http::Method;
use mock_backends::{ServiceKind, control_proto::RevokeTokenRequest};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    SimClock, TurmoilNet,
    faults::{Fault, Sabotage},
    hosts::{self, FaultKnobs, RequestLogs},
    invariants::{self, Violation},
    topology::{
        HTTP_PATHS, LIMITED_LIMIT, LIMITED_PATH, connections_max_for, fit_retry_budget_window,
        gateway_config, redis_bus_config,
    },
    trace::{Observation, Trace},
};

/// A scenario to run. Build with [`Scenario::new`] and the builder methods; [`Scenario::run`].
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    seed: u64,
    gateways: usize,
    subscribers: usize,
    subscribers_per_host: usize,
    collaborators: usize,
    revoke_at: Option<Duration>,
    limited_interval: Option<Duration>,
    duration: Duration,
    publish_interval: Duration,
    http_interval: Duration,
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

/// Shared between the client hosts and the runner (turmoil runs every host on this thread).
type SharedTrace = Arc<Mutex<Trace>>;

fn record(trace: &SharedTrace, host: &str, what: Observation) {
    let at = turmoil::sim_elapsed().unwrap_or_default();
    trace
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(at, host, what);
}

impl Scenario {
    /// A scenario with one gateway, four subscribers, 20 simulated seconds and no faults.
    pub fn new(name: impl Into<String>, seed: u64) -> Self {
        Self {
            name: name.into(),
            seed,
            gateways: 1,
            subscribers: 4,
            subscribers_per_host: 500,
            collaborators: 0,
            revoke_at: None,
            limited_interval: None,
            duration: Duration::from_secs(20),
            publish_interval: Duration::from_millis(100),
            http_interval: Duration::from_millis(250),
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
        self.subscribers = count;
        self
    }

    /// How many collaborators on `/ws/collaboration/p-1`, spread over the gateways: each keeps
    /// the presence set as `docs/protocol.md` says, and reconnects after a `gap`.
    pub fn collaborators(mut self, count: usize) -> Self {
        self.collaborators = count;
        self
    }

    /// Adds the revoker: a notification subscriber with its own token, which Auth revokes at
    /// `at`. Nothing published after the revocation may reach it.
    pub fn revocation_at(mut self, at: Duration) -> Self {
        self.revoke_at = Some(at);
        self
    }

    /// Adds the `limited` client: it asks [`LIMITED_PATH`] every `interval`, round robin over the
    /// gateways, one request at a time (each takes a few hundred simulated milliseconds, so a
    /// few a second: far above [`LIMITED_LIMIT`]); together the gateways must admit at most the limit.
    pub fn limited_client(mut self, interval: Duration) -> Self {
        self.limited_interval = Some(interval);
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
    pub fn run(mut self) -> Report {
        self.faults.sort_by_key(|(at, _)| *at);
        let seed = self.seed;
        let trace: SharedTrace = Arc::default();
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
            .simulation_duration(self.duration + Duration::from_secs(30))
            .tcp_capacity(4_096)
            .build();

        hosts::redis(&mut sim);
        let knobs = FaultKnobs::default();
        let logs = RequestLogs::default();
        // Each backend's publisher gets its own seed (epochs must differ between processes).
        for (host, kind, bus_seed) in [
            ("auth", ServiceKind::Auth, seed ^ 0xa),
            ("project", ServiceKind::Project, seed ^ 0xb),
            ("simulation", ServiceKind::Simulation, seed ^ 0xc),
        ] {
            let (knobs, logs) = (knobs.clone(), logs.clone());
            hosts::mock_backend(&mut sim, host, kind, seed, Some(bus_seed), knobs, logs);
        }
        let mut clocks = Vec::new();
        for (index, name) in self.gateway_names().into_iter().enumerate() {
            let clock = SimClock::new();
            clocks.push((name.clone(), clock.clone()));
            let instance_seed = seed.wrapping_add(index as u64 + 1);
            hosts::gateway(
                &mut sim,
                &name,
                self.gateway_config(instance_seed),
                instance_seed,
                clock,
            );
        }
        let mut hosts: Vec<String> = ["redis", "auth", "project", "simulation"]
            .map(str::to_owned)
            .into();
        hosts.extend(self.gateway_names());
        hosts.extend(self.spawn_clients(&mut sim, &trace));

        let mut pending: std::collections::VecDeque<(Duration, Fault)> =
            self.faults.iter().cloned().collect();
        let mut failure = None;
        loop {
            while pending.front().is_some_and(|(at, _)| sim.elapsed() >= *at) {
                let Some((_, fault)) = pending.pop_front() else {
                    break;
                };
                // The runner is outside every host, where `sim_elapsed` has no answer.
                trace.lock().unwrap_or_else(|p| p.into_inner()).push(
                    sim.elapsed(),
                    "runner",
                    Observation::Fault(format!("{fault:?}")),
                );
                inject_fault(&mut sim, &hosts, &clocks, &knobs, &fault);
            }
            match sim.step() {
                Ok(true) => break,
                Ok(false) => {}
                Err(error) => {
                    failure = Some(error.to_string());
                    break;
                }
            }
        }
        let simulated = sim.elapsed();
        drop(sim);
        let attempts = workload_attempts(&logs, "project");
        trace.lock().unwrap_or_else(|p| p.into_inner()).push(
            simulated,
            "runner",
            Observation::BackendAttempts {
                backend: "project".to_owned(),
                attempts,
            },
        );
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
            seed,
            trace,
            violations,
            simulated,
        }
    }

    /// The connections the workload may hold on one gateway, as [`connections_max_for`] counts
    /// them: every WebSocket client (subscribers, collaborators, the revoker), and one HTTP
    /// connection for each of the `http` and `limited` clients and each client host's login.
    fn connections_max(&self) -> usize {
        let revoker = usize::from(self.revoke_at.is_some());
        let websockets = self.subscribers + self.collaborators + revoker;
        let subscriber_hosts = self.subscribers.div_ceil(self.subscribers_per_host.max(1));
        let logins = subscriber_hosts + usize::from(self.collaborators > 0) + revoker;
        let http_clients = 1 + usize::from(self.limited_interval.is_some()) + logins;
        connections_max_for(websockets, http_clients)
    }

    /// A gateway's configuration in this scenario: [`gateway_config`] with the connections cap
    /// its workload needs, its retry budget's window fitted to the run, and the sabotage if any.
    fn gateway_config(&self, seed: u64) -> Config {
        let mut config = gateway_config(seed, self.connections_max());
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

    fn expectations(&self) -> invariants::Expectations {
        invariants::Expectations {
            // The budget the gateways are meant to have, whatever a sabotage gave them.
            retry_budget_ratio:
                gateway_config(self.seed, self.connections_max()).backends["project"]
                    .retry
                    .budget_ratio,
            duration: self.duration,
            gateways: self.gateway_names(),
            faults: self.faults.clone(),
            // Validation (1 s), a shared rate-limit decision (0.3 s), the backend call (1 s),
            // and scheduling slack.
            http_deadline: Duration::from_millis(2_600),
            revoke_at: self.revoke_at,
            shared_limit: self.limited_interval.map(|_| invariants::SharedLimit {
                limit: LIMITED_LIMIT,
                retry_interval: Duration::from_millis(
                    gateway_config(self.seed, self.connections_max())
                        .rate_limit
                        .shared_retry_interval_ms,
                ),
            }),
        }
    }

    /// Starts the client hosts; returns their names.
    fn spawn_clients(&self, sim: &mut turmoil::Sim<'_>, trace: &SharedTrace) -> Vec<String> {
        let mut names: Vec<String> = ["publisher", "http", "prober"].map(str::to_owned).into();
        let gateways = self.gateway_names();
        let end = self.duration;
        let seed = self.seed;

        let publisher_trace = trace.clone();
        let interval = self.publish_interval;
        sim.client("publisher", async move {
            let bus = RedisBus::new(TurmoilNet, redis_bus_config(seed ^ 0x9b1))?;
            let channel = ChannelName::parse("user:u-1")?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut ticks = tokio::time::interval(interval);
            // Stop publishing two seconds before the end, so the end state can be judged.
            for seq in 0u64.. {
                ticks.tick().await;
                if turmoil::sim_elapsed().unwrap_or_default() + Duration::from_secs(2) >= end {
                    break;
                }
                // Every fifth event is addressed to someone else: u-1 must never see it.
                let audience = (seq % 5 == 4).then(|| Audience {
                    users: vec!["u-9".to_owned()],
                    roles: Vec::new(),
                });
                let data = serde_json::value::to_raw_value(&json!({ "seq": seq }))?;
                let started = turmoil::sim_elapsed().unwrap_or_default();
                if let Ok(event) = bus.publish(&channel, audience.clone(), data).await {
                    record(
                        &publisher_trace,
                        "publisher",
                        Observation::Published {
                            started,
                            channel: event.channel.clone(),
                            epoch: event.epoch.clone(),
                            offset: event.offset,
                            audience: audience.map(|a| a.users),
                        },
                    );
                }
            }
            Ok(())
        });

        let http_trace = trace.clone();
        let http_gateways = gateways.clone();
        let http_interval = self.http_interval;
        sim.client("http", async move {
            let Some(token) = login_retrying(&http_gateways[0], end, &http_trace, "http").await
            else {
                return Ok(());
            };
            let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.bm90LWEtc2lnbmF0dXJl";
            let mut round = 0usize;
            while turmoil::sim_elapsed().unwrap_or_default() < end {
                let gateway = &http_gateways[round % http_gateways.len()];
                round += 1;
                let asks = HTTP_PATHS
                    .into_iter()
                    .map(|path| ("valid", token.as_str(), path))
                    .chain([("invalid", forged, HTTP_PATHS[0])]);
                for (number, (kind, token, path)) in asks.enumerate() {
                    let sent = turmoil::sim_elapsed().unwrap_or_default();
                    let request_id = format!("h-{round}-{number}");
                    let answer = crate::client::http_with_id(
                        &format!("{gateway}:8000"),
                        Method::GET,
                        path,
                        Some(token),
                        "",
                        Some(&request_id),
                    )
                    .await
                    .ok();
                    record(
                        &http_trace,
                        "http",
                        http_observation(kind, path, request_id, gateway, sent, answer),
                    );
                }
                tokio::time::sleep(http_interval).await;
            }
            Ok(())
        });

        let prober_trace = trace.clone();
        let prober_gateways = gateways.clone();
        sim.client("prober", async move {
            // One prober per gateway, so a gateway that does not answer never delays the others'
            // samples.
            let probers: Vec<_> = prober_gateways
                .into_iter()
                .map(|gateway| tokio::spawn(probe_readiness(gateway, end, prober_trace.clone())))
                .collect();
            for prober in probers {
                let _ = prober.await;
            }
            Ok(())
        });

        let hosts = self.subscribers.div_ceil(self.subscribers_per_host.max(1));
        for host_index in 0..hosts {
            let first = host_index * self.subscribers_per_host;
            let last = (first + self.subscribers_per_host).min(self.subscribers);
            let host = format!("subscribers-{}", host_index + 1);
            names.push(host.clone());
            let host_trace = trace.clone();
            let host_gateways = gateways.clone();
            let sabotage = self.sabotage;
            sim.client(host.clone(), async move {
                let token = login_retrying(&host_gateways[0], end, &host_trace, &host).await;
                let Some(token) = token else {
                    return Ok(());
                };
                let mut tasks = Vec::new();
                for subscriber in first..last {
                    let gateway = host_gateways[subscriber % host_gateways.len()].clone();
                    let endpoint = if subscriber % 2 == 0 {
                        "/ws/notifications"
                    } else {
                        "/ws/simulation/s-2"
                    };
                    tasks.push(tokio::spawn(subscribe(SubscriberPlan {
                        subscriber,
                        host: host.clone(),
                        address: format!("{gateway}:8001"),
                        path: format!("{endpoint}?access_token={token}"),
                        end,
                        trace: host_trace.clone(),
                        drop_event: match sabotage {
                            Some(Sabotage::DropEvent(n)) if subscriber == 0 => Some(n),
                            _ => None,
                        },
                        reconnect_on_gap: false,
                    })));
                }
                for task in tasks {
                    let _ = task.await;
                }
                Ok(())
            });
        }
        names.extend(self.spawn_collaborators(sim, trace));
        names.extend(self.spawn_revoker(sim, trace));
        names.extend(self.spawn_limited(sim, trace));
        names
    }

    /// The `limited` client: GET [`LIMITED_PATH`] every `limited_interval`, round robin over the
    /// gateways, recorded as [`Observation::Http`] (so it is held to every HTTP invariant too).
    fn spawn_limited(&self, sim: &mut turmoil::Sim<'_>, trace: &SharedTrace) -> Option<String> {
        let interval = self.limited_interval?;
        let gateways = self.gateway_names();
        let (end, trace) = (self.duration, trace.clone());
        sim.client("limited", async move {
            let Some(token) = login_retrying(&gateways[0], end, &trace, "limited").await else {
                return Ok(());
            };
            let mut round = 0usize;
            while turmoil::sim_elapsed().unwrap_or_default() + Duration::from_secs(1) < end {
                let gateway = &gateways[round % gateways.len()];
                round += 1;
                let sent = turmoil::sim_elapsed().unwrap_or_default();
                let request_id = format!("l-{round}");
                let answer = crate::client::http_with_id(
                    &format!("{gateway}:8000"),
                    Method::GET,
                    LIMITED_PATH,
                    Some(&token),
                    "",
                    Some(&request_id),
                )
                .await
                .ok();
                record(
                    &trace,
                    "limited",
                    http_observation("valid", LIMITED_PATH, request_id, gateway, sent, answer),
                );
                tokio::time::sleep(interval).await;
            }
            Ok(())
        });
        Some("limited".to_owned())
    }

    /// Collaborators get the subscriber numbers after the subscribers'.
    fn spawn_collaborators(
        &self,
        sim: &mut turmoil::Sim<'_>,
        trace: &SharedTrace,
    ) -> Option<String> {
        if self.collaborators == 0 {
            return None;
        }
        let (first, count) = (self.subscribers, self.collaborators);
        let gateways = self.gateway_names();
        let (end, trace) = (self.duration, trace.clone());
        sim.client("collaborators", async move {
            let Some(token) = login_retrying(&gateways[0], end, &trace, "collaborators").await
            else {
                return Ok(());
            };
            let mut tasks = Vec::new();
            for subscriber in first..first + count {
                let gateway = &gateways[subscriber % gateways.len()];
                tasks.push(tokio::spawn(subscribe(SubscriberPlan {
                    subscriber,
                    host: "collaborators".to_owned(),
                    address: format!("{gateway}:8001"),
                    path: format!("/ws/collaboration/p-1?access_token={token}"),
                    end,
                    trace: trace.clone(),
                    drop_event: None,
                    reconnect_on_gap: true,
                })));
            }
            for task in tasks {
                let _ = task.await;
            }
            Ok(())
        });
        Some("collaborators".to_owned())
    }

    /// The revoker is the last subscriber number: it subscribes to `user:u-1` with its own token,
    /// asks Auth (through the control plane) to revoke that token at `revoke_at`, then records
    /// [`Observation::Revoked`] once it sees the revocation on `auth:revocations` (live, or in history).
    fn spawn_revoker(&self, sim: &mut turmoil::Sim<'_>, trace: &SharedTrace) -> Option<String> {
        let revoke_at = self.revoke_at?;
        let subscriber = self.subscribers + self.collaborators;
        let gateways = self.gateway_names();
        let (end, seed, trace) = (self.duration, self.seed, trace.clone());
        sim.client("revoker", async move {
            let gateway = &gateways[subscriber % gateways.len()];
            let Some(token) = login_retrying(gateway, end, &trace, "revoker").await else {
                return Ok(());
            };
            let token_id = crate::client::token_id(&token).ok_or("a token without jti")?;
            let subscription = tokio::spawn(subscribe(SubscriberPlan {
                subscriber,
                host: "revoker".to_owned(),
                address: format!("{gateway}:8001"),
                path: format!("/ws/notifications?access_token={token}"),
                end,
                trace: trace.clone(),
                drop_event: None,
                reconnect_on_gap: false,
            }));
            // The revocation is seen live (as the gateways see it) or in history (if it was
            // published while this client's subscription was down); Redis may also lose it in a
            // crash after delivering it, so history alone is not enough. The subscription starts
            // long before the revocation: one opened with it could miss it live, and a Redis crash
            // right after would then take it from history too (seed 500158).
            let revocations = RedisBus::new(TurmoilNet, redis_bus_config(seed ^ 0x7e0))?;
            let mut live = events::EventBus::subscribe(&revocations, &ChannelName::revocations());
            let wait = revoke_at.saturating_sub(turmoil::sim_elapsed().unwrap_or_default());
            tokio::time::sleep(wait).await;
            let mut control = crate::client::control("auth:9000")?;
            let mut revoked = false;
            let mut seen = false;
            while !seen && turmoil::sim_elapsed().unwrap_or_default() < end {
                if !revoked {
                    let request = RevokeTokenRequest {
                        token_id: token_id.clone(),
                    };
                    revoked = control.revoke_token(request).await.is_ok();
                    if revoked {
                        let what = Observation::RevocationAcknowledged { subscriber };
                        record(&trace, "revoker", what);
                    }
                }
                let poll = tokio::time::sleep(Duration::from_millis(100));
                tokio::select! {
                    biased;
                    message = live.next() => {
                        seen = matches!(message, Some(events::BusMessage::Event { event, .. })
                            if event.data.get().contains(&token_id));
                    }
                    () = poll => {
                        if revoked
                            && let Ok(history) = events::EventBus::history(
                                &revocations,
                                &ChannelName::revocations(),
                                0,
                            )
                            .await
                        {
                            seen = history
                                .events
                                .iter()
                                .any(|event| event.data.get().contains(&token_id));
                        }
                    }
                }
            }
            if seen {
                record(
                    &trace,
                    "revoker",
                    Observation::Revoked {
                        subscriber,
                        token_id,
                    },
                );
            }
            let _ = subscription.await;
            Ok(())
        });
        Some("revoker".to_owned())
    }
}

/// How long the prober waits for a readiness answer, as a load balancer's probe would; past it
/// the probe is recorded as unanswered.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the prober waits between two probes of one gateway.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Probes `/health/ready` of `gateway` until `end`, recording every probe, answered or not.
async fn probe_readiness(gateway: String, end: Duration, trace: SharedTrace) {
    while turmoil::sim_elapsed().unwrap_or_default() < end {
        let sent = turmoil::sim_elapsed().unwrap_or_default();
        let address = format!("{gateway}:8002");
        let probe = crate::client::http(&address, Method::GET, "/health/ready", None, "");
        let bus_healthy = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok((_, report))) => report["dependencies"]["event_bus"]["healthy"].as_bool(),
            Ok(Err(_)) | Err(_) => None,
        };
        let what = Observation::Readiness {
            gateway: gateway.clone(),
            sent,
            bus_healthy,
        };
        record(&trace, "prober", what);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// What the trace keeps of a workload request sent at `sent` and its answer (`None`: none came).
fn http_observation(
    token: &'static str,
    path: &'static str,
    request_id: String,
    gateway: &str,
    sent: Duration,
    answer: Option<crate::client::Answer>,
) -> Observation {
    Observation::Http {
        token,
        path,
        request_id,
        gateway: gateway.to_owned(),
        sent,
        status: answer.as_ref().map(|answer| answer.status.as_u16()),
        code: answer
            .as_ref()
            .and_then(|answer| answer.body["error"]["code"].as_str().map(str::to_owned)),
        cache: answer.and_then(|answer| answer.x_cache),
    }
}

/// Logs in as alice, retrying until the gateway and Auth answer or the run ends; a login that
/// never succeeds is recorded as [`Observation::LoginFailed`] by `host` (the invariants count it:
/// the host's workload never ran).
async fn login_retrying(
    gateway: &str,
    end: Duration,
    trace: &SharedTrace,
    host: &str,
) -> Option<String> {
    while turmoil::sim_elapsed().unwrap_or_default() < end {
        if let Ok(token) = crate::client::login(&format!("{gateway}:8000"), "alice").await {
            return Some(token);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let what = Observation::LoginFailed {
        gateway: gateway.to_owned(),
    };
    record(trace, host, what);
    None
}

struct SubscriberPlan {
    subscriber: usize,
    host: String,
    address: String,
    path: String,
    end: Duration,
    trace: SharedTrace,
    drop_event: Option<usize>,
    /// Reconnect after a `gap` (collaborators: their presence set may be stale after one).
    reconnect_on_gap: bool,
}

/// A connection that sends nothing (not even the gateway's pings, every second here) for this
/// long is taken for dead: a crashed gateway never closes it.
const SILENCE: Duration = Duration::from_secs(4);

/// One logical subscriber: connects, records every frame, and after any disconnect reconnects
/// with its resume point (the last offset and epoch it holds), until the run ends.
async fn subscribe(plan: SubscriberPlan) {
    let SubscriberPlan {
        subscriber,
        host,
        address,
        path,
        end,
        trace,
        drop_event,
        reconnect_on_gap,
    } = plan;
    let gateway = address.split(':').next().unwrap_or_default().to_owned();
    record(
        &trace,
        &host,
        Observation::ClientStarted {
            subscriber,
            gateway,
        },
    );
    let mut resume: Option<(u64, String)> = None;
    let mut welcome: Option<(u64, String)> = None;
    let mut events_seen = 0usize;
    let until = tokio::time::Instant::now()
        + end.saturating_sub(turmoil::sim_elapsed().unwrap_or_default());
    while tokio::time::Instant::now() < until {
        let path = match &resume {
            Some((offset, epoch)) => format!("{path}&since={offset}&epoch={epoch}"),
            None => path.clone(),
        };
        let socket = crate::client::websocket(&address, &path).await;
        let mut socket = match socket {
            Ok(socket) => socket,
            Err(_) => {
                record(
                    &trace,
                    &host,
                    Observation::Disconnected {
                        subscriber,
                        code: None,
                    },
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        record(
            &trace,
            &host,
            Observation::Connected {
                subscriber,
                resumed: resume.is_some(),
            },
        );
        let mut code = None;
        loop {
            let deadline = until.min(tokio::time::Instant::now() + SILENCE);
            let Ok(Some(message)) = tokio::time::timeout_at(deadline, socket.next()).await else {
                break;
            };
            match message {
                Ok(Message::Text(text)) => {
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    match frame["type"].as_str() {
                        Some("welcome") => {
                            welcome = Some((
                                frame["latest_offset"].as_u64().unwrap_or(0),
                                frame["epoch"].as_str().unwrap_or_default().to_owned(),
                            ));
                            if resume.is_none() {
                                resume = welcome.clone();
                            }
                        }
                        Some("event") => {
                            events_seen += 1;
                            if drop_event == Some(events_seen) {
                                continue;
                            }
                            resume = Some((
                                frame["offset"].as_u64().unwrap_or(0),
                                frame["epoch"].as_str().unwrap_or_default().to_owned(),
                            ));
                        }
                        Some("gap") => match frame["to_offset"].as_u64() {
                            Some(to) => {
                                if let Some((_, epoch)) = resume.clone() {
                                    resume = Some((to, epoch));
                                }
                            }
                            // The epoch changed: what follows starts the new epoch, which the
                            // welcome named; resume from its beginning until an event arrives.
                            None => {
                                resume = welcome.clone().map(|(_, epoch)| (0, epoch));
                            }
                        },
                        _ => {}
                    }
                    let gap = frame["type"] == "gap";
                    record(
                        &trace,
                        &host,
                        Observation::Frame {
                            subscriber,
                            frame: checked_fields(frame),
                        },
                    );
                    if gap && reconnect_on_gap {
                        break;
                    }
                }
                Ok(Message::Close(close)) => {
                    code = close.map(|c| u16::from(c.code));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if tokio::time::Instant::now() >= until {
            break;
        }
        record(
            &trace,
            &host,
            Observation::Disconnected { subscriber, code },
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the invariants read of a frame: its protocol fields, and of an event's data only the
/// workload's `seq` or a presence change's action and connection. (A scale run keeps millions of
/// frames; payloads would dominate memory.)
fn checked_fields(mut frame: Value) -> Value {
    if let Some(fields) = frame.as_object_mut() {
        fields.remove("connection_id");
        if let Some(data) = fields.remove("data") {
            if let Some(seq) = data.get("seq") {
                fields.insert("data".to_owned(), json!({ "seq": seq }));
            } else if data["type"] == "presence" {
                let change = json!({
                    "type": "presence",
                    "action": data["action"],
                    "member": { "connection": data["member"]["connection"] },
                });
                fields.insert("data".to_owned(), change);
            }
        }
    }
    frame
}

fn inject_fault(
    sim: &mut turmoil::Sim<'_>,
    hosts: &[String],
    clocks: &[(String, SimClock)],
    knobs: &FaultKnobs,
    fault: &Fault,
) {
    match fault {
        Fault::Partition(a, b) => sim.partition(a.as_str(), b.as_str()),
        Fault::PartitionOneWay(a, b) => sim.partition_oneway(a.as_str(), b.as_str()),
        Fault::Repair(a, b) => {
            sim.repair(a.as_str(), b.as_str());
        }
        Fault::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
        Fault::Release(a, b) => sim.release(a.as_str(), b.as_str()),
        // A crashed host vanishes: it is cut from every other host before its runtime is dropped,
        // so the connections it held send nothing (no FIN, no RST; peers notice by silence and
        // timeouts, as after a power loss). This also keeps runs deterministic: tokio drops a
        // runtime's tasks in an order that depends on process-wide task IDs, and every segment
        // those drops sent would draw latency from the seeded RNG in that order.
        Fault::Crash(host) => {
            for other in hosts.iter().filter(|other| *other != host) {
                sim.partition(host.as_str(), other.as_str());
            }
            sim.crash(host.as_str());
        }
        Fault::Restart(host) => {
            sim.bounce(host.as_str());
            for other in hosts.iter().filter(|other| *other != host) {
                sim.repair(host.as_str(), other.as_str());
            }
        }
        Fault::Backend { host, faults } => {
            let knobs = knobs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(knob) = knobs.get(host)
                && let Err(error) = knob.set(*faults)
            {
                tracing::warn!(%host, %error, "fault knobs refused");
            }
        }
        Fault::ClockSkew { host, ms } => {
            if let Some((_, clock)) = clocks.iter().find(|(name, _)| name == host) {
                clock.set_skew_ms(*ms);
            }
        }
    }
}

/// How many calls `backend` received with each of the HTTP workload's request IDs (`h-...`),
/// over every start of the backend.
fn workload_attempts(logs: &RequestLogs, backend: &str) -> std::collections::BTreeMap<String, u32> {
    let logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    let mut attempts = std::collections::BTreeMap::new();
    for log in logs.get(backend).into_iter().flatten() {
        for id in log.recent() {
            if id.starts_with("h-") {
                *attempts.entry(id).or_insert(0) += 1;
            }
        }
    }
    attempts
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
