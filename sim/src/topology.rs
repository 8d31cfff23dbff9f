//! The simulated deployment's settings: the gateways' configuration (connection caps, the
//! breaker, the retry budget, the shared rate limit the `limited` client runs into), the Redis bus
//! settings every process uses, and the HTTP paths of the workload.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use events::RedisBusConfig;
use gateway::{Config, edge::rate_limit::Limit};

/// `0.0.0.0:port`: what every host binds.
pub fn any(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// The longest a scenario gateway's circuit breaker stays open.
pub const BREAKER_OPEN_MAX: Duration = Duration::from_secs(2);

/// The Redis bus settings every process of a scenario uses: fast detection and reconnection.
pub fn redis_bus_config(seed: u64) -> RedisBusConfig {
    RedisBusConfig {
        address: "redis:6379".to_owned(),
        command_timeout_ms: 500,
        connect_timeout_ms: 500,
        reconnect_backoff_initial_ms: 50,
        reconnect_backoff_max_ms: 400,
        keepalive_interval_ms: 200,
        rng_seed: seed,
        ..RedisBusConfig::default()
    }
}

/// Connections a scenario gateway keeps beyond what its workload needs (see [`connections_max_for`]).
pub const CONNECTIONS_MARGIN: usize = 64;

/// The `http.connections_max` for a simulated gateway whose clients hold at most `websockets`
/// WebSocket connections and `http_clients` HTTP connections (each HTTP client asks one request
/// at a time) on the API and WebSocket ports. The cap counts a WebSocket for its whole life.
/// Any of them may land on one gateway, and each may hold a second connection for a moment (a
/// client reconnecting before the gateway has seen its previous connection close), so the cap is
/// twice that, plus [`CONNECTIONS_MARGIN`]. The gateway library never reads the host's open-file
/// limit, and turmoil has none: every simulated gateway is given its cap explicitly.
pub fn connections_max_for(websockets: usize, http_clients: usize) -> usize {
    2 * (websockets + http_clients) + CONNECTIONS_MARGIN
}

/// The gateway's configuration in a scenario, with `connections_max` open connections at most
/// on its API and WebSocket ports together (see [`connections_max_for`]).
pub fn gateway_config(seed: u64, connections_max: usize) -> Config {
    let mut config = Config::default();
    config.http.connections_max = connections_max;
    config.listen.api = any(8000);
    config.listen.websocket = any(8001);
    config.listen.health = any(8002);
    config.listen.metrics = any(8003);
    // The sim's WebSocket clients present this origin, as browsers do.
    config.websocket.allowed_origins = vec![crate::client::WEBSOCKET_ORIGIN.to_owned()];
    for (name, backend) in config.backends.iter_mut() {
        backend.address = match name.as_str() {
            "auth" => "auth:9000".to_owned(),
            "project" => "project:10000".to_owned(),
            _ => "simulation:11000".to_owned(),
        };
        backend.deadline_ms = 1_000;
    }
    config.auth.validation_deadline_ms = 1_000;
    // Fetch Auth's JWKS soon after start even if Auth comes up after the gateway.
    config.auth.jwks_refresh_min_interval_ms = 500;
    config.health.check_interval_ms = 200;
    // Quick presence expiry and pings, so a run of tens of seconds sees ghosts expire and dead
    // connections noticed.
    config.websocket.presence_heartbeat_interval_ms = 500;
    config.websocket.presence_ttl_ms = 2_000;
    config.websocket.ping_interval_ms = 1_000;
    // Breakers that reopen for at most two seconds, so a run recovers within its settling time.
    for backend in config.backends.values_mut() {
        backend.breaker.open_ms = 500;
        backend.breaker.open_max_ms = BREAKER_OPEN_MAX.as_millis() as u64;
    }
    // Validations cached for a second only, so while Auth cannot answer the workload's tokens
    // really are verified locally rather than served from the cache.
    config.auth.token_cache_ttl_ms = 1_000;
    // Project's template list is cached, and served stale for ten seconds while Project is down.
    config.cache.routes.insert(
        "project.v1.ProjectService/ListTemplates".to_owned(),
        gateway::proxy::cache::CacheRouteConfig {
            ttl_ms: 1_000,
            stale_ms: 10_000,
            per_user: false,
        },
    );
    // No floor under Project's retry budget: with its window longer than the run (see
    // `fit_retry_budget_window`), its retries are then bounded by the ratio alone, which a run of
    // a few hundred requests can check. (Auth keeps the default floor, so each profile call may
    // make three attempts and a breaker opens within a few calls.)
    if let Some(project) = config.backends.get_mut("project") {
        project.retry.budget_min_per_second = 0;
    }
    config.event_bus.kind = gateway::realtime::EventBusKind::Redis;
    config.event_bus.redis = redis_bus_config(seed);
    config
        .rate_limit
        .groups
        .insert(LIMITED_GROUP.to_owned(), LIMITED_LIMIT);
    config.rate_limit.shared = true;
    // Turmoil delays each message by up to 100 ms: a Redis round trip, with a dial, needs more
    // than the default 50 ms.
    config.rate_limit.shared_timeout_ms = 300;
    config
}

/// Makes Project's retry budget window outlast a run of `duration` (plus the 30 s turmoil lets
/// it settle), so at every retry the window holds every earlier call of the process. The budget's
/// guarantee (retries in the window within `budget_ratio` × calls in the window) then bounds the
/// whole run, which `retries_stay_within_the_budget` checks. The window moves in tenths, so
/// it must be a ninth longer than what it has to cover.
pub fn fit_retry_budget_window(config: &mut Config, duration: Duration) {
    let covered = (duration + Duration::from_secs(30)).as_millis() as u64;
    if let Some(project) = config.backends.get_mut("project") {
        project.retry.budget_window_ms = covered * 10 / 9 + 1_000;
    }
}

/// The paths the workload's HTTP client asks, each with a valid token; the first also with a
/// forged one. Profile goes to Auth; the others to Project, templates through the cache.
pub const HTTP_PATHS: [&str; 3] = [
    "/api/auth/profile",
    "/api/projects/templates",
    "/api/projects",
];

/// The route group every scenario gateway limits, shared through Redis: only the `limited`
/// client calls it (GET [`LIMITED_PATH`]), so the rest of the workload is never refused.
pub const LIMITED_GROUP: &str = "simulation.v1.SimulationService/ListSimulations";

/// The path of [`LIMITED_GROUP`] the `limited` client asks.
pub const LIMITED_PATH: &str = "/api/simulations";

/// The shared limit on [`LIMITED_GROUP`], per user.
pub const LIMITED_LIMIT: Limit = Limit {
    per_second: 1.0,
    burst: 3,
};
