//! The hosts every simulation is made of, set up once: the simulated Redis, a mock backend, a
//! gateway. Each binds and serves exactly as in production, on the turmoil seams.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use events::RedisBus;
use gateway::{App, Config, Listeners, Seams};
use mock_backends::{Faults, MockBackends, MockConfig, RequestLog, ServiceKind, StartOptions};
use seams::Net;

use crate::{
    SimClock, TurmoilNet,
    redis::SimRedis,
    topology::{any, redis_bus_config},
};

/// The simulated Redis on `redis:6379`. Its state lives in the host's future: a crash loses it,
/// as a Redis without persistence does.
pub fn redis(sim: &mut turmoil::Sim<'_>) {
    sim.host("redis", || async {
        let listener = TurmoilNet.bind(any(6379)).await?;
        SimRedis::new(Arc::new(SimClock::new()))
            .serve(listener)
            .await?;
        Ok(())
    });
}

/// The fault knobs of the running mock backends, by host: each (re)start registers its own, so
/// the scenario runner can turn them while the simulation runs.
pub type FaultKnobs = Arc<Mutex<BTreeMap<String, Faults>>>;

/// The request logs of the mock backends, by host, one per start (a restart begins a new one), so
/// the runner can count every call a backend received over the whole run.
pub type RequestLogs = Arc<Mutex<BTreeMap<String, Vec<RequestLog>>>>;

/// The most request IDs a scenario backend remembers: more than any run sends.
const REQUEST_LOG_LEN_MAX: usize = 1_000_000;

/// A mock backend on its host (`auth:9000`, `project:10000`, `simulation:11000`), calling Auth at
/// `auth:9000`; with `publisher_seed`, publishing events through its own Redis bus. Its fault
/// knobs go into `knobs` and its request log into `logs`, under the host's name.
pub fn mock_backend(
    sim: &mut turmoil::Sim<'_>,
    host: &str,
    kind: ServiceKind,
    seed: u64,
    publisher_seed: Option<u64>,
    knobs: FaultKnobs,
    logs: RequestLogs,
) {
    let name = host.to_owned();
    sim.host(host, move || {
        let (name, knobs, logs) = (name.clone(), knobs.clone(), logs.clone());
        async move {
            let mut config = MockConfig {
                seed,
                ..MockConfig::default()
            };
            config.server.request_log_len_max = REQUEST_LOG_LEN_MAX;
            config.auth.addr = any(9000);
            config.project.addr = any(10000);
            config.simulation.addr = any(11000);
            config.upstream.auth_addr = Some("auth:9000".to_owned());
            let options = match publisher_seed {
                Some(bus_seed) => StartOptions::with_publisher(Arc::new(RedisBus::new(
                    TurmoilNet,
                    redis_bus_config(bus_seed),
                )?)),
                None => StartOptions::default(),
            };
            let service = MockBackends::start_service_with(
                TurmoilNet,
                Arc::new(SimClock::new()),
                config,
                kind,
                options,
            )
            .await?;
            logs.lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name.clone())
                .or_default()
                .push(service.request_log().clone());
            knobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, service.faults().clone());
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// A gateway on host `name` with `config` (its event bus as the config says), wall clock `clock`.
/// Each start is a new process with its own seed, derived from `seed` and how many times the host
/// started before (so a restarted gateway has a new instance ID, as in production).
///
/// The host fails at once when `config.http.connections_max` is 0: a simulated gateway is given
/// its cap explicitly, sized for its workload (`topology::connections_max_for`), since 0 means
/// "resolve it from the open-file limit", which only the binary does.
pub fn gateway(sim: &mut turmoil::Sim<'_>, name: &str, config: Config, seed: u64, clock: SimClock) {
    let starts = Arc::new(AtomicU64::new(0));
    sim.host(name, move || {
        let (config, clock) = (config.clone(), clock.clone());
        let start = starts.fetch_add(1, Ordering::Relaxed);
        async move {
            if config.http.connections_max == 0 {
                return Err("a simulated gateway needs an explicit http.connections_max".into());
            }
            let seams = Seams {
                net: TurmoilNet,
                clock: Arc::new(clock),
                seed: seed.wrapping_add(start.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            };
            let listeners = Listeners::bind(&seams.net, &config.listen).await?;
            let bus = gateway::app::bus_from_config(&config.event_bus, &seams)?;
            let app = App::from_config(config, &seams, bus)?;
            gateway::serve(app, listeners, std::future::pending()).await?;
            Ok(())
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_gateway_without_an_explicit_connections_cap_does_not_start() {
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(5))
            .build();
        let config = Config::default();
        assert_eq!(
            config.http.connections_max, 0,
            "the default is 'resolve it'"
        );
        gateway(&mut sim, "gateway", config, 1, SimClock::new());
        sim.client("client", async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        });
        let error = sim.run().expect_err("the gateway host must fail");
        assert!(
            error.to_string().contains("explicit http.connections_max"),
            "{error}"
        );
    }
}
