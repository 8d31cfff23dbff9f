//! Rate limits: GCRA (`governor`) per client IP, per user and per user and endpoint group, with
//! limits from config (`[rate_limit]`, `docs/security.md`). A refused request gets 429
//! `rate_limited` with `Retry-After`; every limited answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` for the tightest limit that applied.
//!
//! The client IP is the connection's peer, unless the peer is a configured trusted proxy: then it
//! is the right-most address of `X-Forwarded-For` that is not itself a trusted proxy. Time is
//! `tokio::time`, so limits run on simulated time under turmoil.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    Quota, RateLimiter, clock::Clock, middleware::StateInformationMiddleware,
    state::keyed::HashMapStateStore,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{
    auth::UserContext, error::ApiError, metrics::Metrics, proxy::MatchedRoute, server::Peer,
};

/// One limit: a steady rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Requests per second, sustained; 0 turns the limit off.
    pub per_second: f64,
    /// Requests allowed at once above the rate (at least 1).
    pub burst: u32,
}

impl Limit {
    /// No limit.
    pub const OFF: Self = Self {
        per_second: 0.0,
        burst: 1,
    };

    fn quota(&self) -> Option<Quota> {
        if self.per_second <= 0.0 {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / self.per_second).ok()?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period).map(|quota| quota.allow_burst(burst))
    }
}

/// The rate limits (`[rate_limit]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed. Default: none,
    /// so the client IP is always the connection's peer.
    pub trusted_proxies: Vec<String>,
    /// Every request on the API and WebSocket ports, per client IP. Default off.
    pub per_ip: Limit,
    /// Every authenticated request, per user. Default off.
    pub per_user: Limit,
    /// Per user and endpoint group, by gRPC service or method (as `routes.deadlines_ms`).
    /// Default: none.
    pub groups: BTreeMap<String, Limit>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            per_ip: Limit::OFF,
            per_user: Limit::OFF,
            groups: BTreeMap::new(),
        }
    }
}

impl RateLimitConfig {
    /// Checks the settings; the field and reason when invalid.
    pub fn check(&self) -> Result<(), (String, String)> {
        for proxy in &self.trusted_proxies {
            parse_net(proxy).ok_or_else(|| {
                (
                    "rate_limit.trusted_proxies".to_owned(),
                    format!("{proxy:?} is not an IP address or CIDR block"),
                )
            })?;
        }
        let limits = [
            ("per_ip".to_owned(), &self.per_ip),
            ("per_user".to_owned(), &self.per_user),
        ]
        .into_iter()
        .chain(self.groups.iter().map(|(g, l)| (format!("groups.{g}"), l)));
        for (name, limit) in limits {
            let field = format!("rate_limit.{name}");
            if !limit.per_second.is_finite() || limit.per_second < 0.0 {
                return Err((field, "per_second must be zero (off) or positive".into()));
            }
            if limit.burst == 0 {
                return Err((field, "burst must be at least 1".into()));
            }
            if limit.per_second > 0.0 && limit.quota().is_none() {
                return Err((field, "per_second is too large".into()));
            }
        }
        Ok(())
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `tokio::time` for governor: time since the limiter was made.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, TokioClock, StateInformationMiddleware>;

/// What one limit said about a request.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    limit: u32,
    remaining: u32,
    /// Until the limit is whole again (allowed) or the next request may pass (refused).
    reset: Duration,
    allowed: bool,
}

/// One keyed limit.
struct KeyedLimit<K: std::hash::Hash + Eq + Clone> {
    limiter: Keyed<K>,
    quota: Quota,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLimit<K> {
    fn new(limit: &Limit) -> Option<Self> {
        let quota = limit.quota()?;
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        let limiter = RateLimiter::hashmap_with_clock(quota, clock)
            .with_middleware::<StateInformationMiddleware>();
        Some(Self { limiter, quota })
    }

    fn check(&self, key: &K) -> Verdict {
        let limit = self.quota.burst_size().get();
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Verdict {
                    limit,
                    remaining,
                    reset: self.quota.replenish_interval() * (limit - remaining),
                    allowed: true,
                }
            }
            Err(not_until) => Verdict {
                limit,
                remaining: 0,
                reset: not_until.wait_time_from(self.limiter.clock().now()),
                allowed: false,
            },
        }
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Every configured limit, shared by the layers.
pub struct RateLimits {
    trusted: Vec<IpNet>,
    per_ip: Option<KeyedLimit<IpAddr>>,
    per_user: Option<KeyedLimit<String>>,
    /// By route label: the group's limit (groups resolved at start-up).
    groups: BTreeMap<String, Arc<KeyedLimit<String>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_ip", &self.per_ip.is_some())
            .field("per_user", &self.per_user.is_some())
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// How often keys idle long enough to be whole again are forgotten, bounding memory to the
/// clients seen recently.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

impl RateLimits {
    /// The limits of `config`; `route_groups` maps route labels to the index of their group in
    /// `config.groups` (see `app::by_route_group`). Starts the task that forgets idle keys (it
    /// ends with the limits).
    pub fn new(
        config: &RateLimitConfig,
        route_groups: BTreeMap<String, usize>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        // One limiter per configured group, shared by the group's routes: each group has a
        // budget of its own, even when two groups have equal limits.
        let limiters: Vec<Option<Arc<KeyedLimit<String>>>> = config
            .groups
            .values()
            .map(|limit| KeyedLimit::new(limit).map(Arc::new))
            .collect();
        let groups = route_groups
            .into_iter()
            .filter_map(|(label, index)| Some((label, limiters.get(index)?.clone()?)))
            .collect();
        let limits = Arc::new(Self {
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|p| parse_net(p))
                .collect(),
            per_ip: KeyedLimit::new(&config.per_ip),
            per_user: KeyedLimit::new(&config.per_user),
            groups,
            metrics,
        });
        let weak: Weak<Self> = Arc::downgrade(&limits);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FORGET_IDLE_EVERY).await;
                let Some(limits) = weak.upgrade() else { return };
                limits.forget_idle();
            }
        });
        limits
    }

    fn forget_idle(&self) {
        if let Some(limit) = &self.per_ip {
            limit.forget_idle();
        }
        if let Some(limit) = &self.per_user {
            limit.forget_idle();
        }
        for limit in self.groups.values() {
            limit.forget_idle();
        }
    }

    /// The client's IP: the peer, or through trusted proxies the right-most untrusted address of
    /// `X-Forwarded-For`. `None` when the peer is unknown (a request not from a listener).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return Some(peer);
        }
        let mut client = peer;
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // A malformed hop: nothing left of it can be believed.
                break;
            };
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
        Some(client)
    }
}

/// Refused, or the headers of the tightest limit that allowed.
fn decide(
    verdicts: impl IntoIterator<Item = (&'static str, Verdict)>,
) -> Result<Option<Verdict>, (&'static str, Verdict)> {
    let mut tightest: Option<Verdict> = None;
    for (scope, verdict) in verdicts {
        if !verdict.allowed {
            return Err((scope, verdict));
        }
        if tightest.is_none_or(|t| verdict.remaining < t.remaining) {
            tightest = Some(verdict);
        }
    }
    Ok(tightest)
}

fn add_headers(headers: &mut HeaderMap, verdict: &Verdict) {
    let seconds = |d: Duration| d.as_millis().div_ceil(1_000) as u64;
    headers.insert("ratelimit-limit", HeaderValue::from(verdict.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(verdict.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(seconds(verdict.reset)));
}

fn refuse(limits: &RateLimits, scope: &'static str, verdict: Verdict) -> Response {
    limits.metrics.count_rate_limited(scope);
    let mut response = ApiError::rate_limited(verdict.reset).into_response();
    add_headers(response.headers_mut(), &verdict);
    response
}

/// Middleware (API and WebSocket ports, before routing and authentication): the per-IP limit.
pub async fn ip_layer(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limit) = &limits.per_ip else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|info| info.0.0.ip());
    let Some(ip) = limits.client_ip(peer, request.headers()) else {
        return next.run(request).await;
    };
    let verdict = limit.check(&ip);
    if !verdict.allowed {
        return refuse(&limits, "ip", verdict);
    }
    let mut response = next.run(request).await;
    if !response.headers().contains_key("ratelimit-limit") {
        add_headers(response.headers_mut(), &verdict);
    }
    response
}

/// Middleware (after authentication): the per-user limit and the user's limit for the route's
/// group. Requests without a user (public routes) pass.
pub async fn user_layer(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(user) = request.extensions().get::<Arc<UserContext>>().cloned() else {
        return next.run(request).await;
    };
    let group = request
        .extensions()
        .get::<MatchedRoute>()
        .and_then(|matched| limits.groups.get(&matched.route.label));
    let verdicts = limits
        .per_user
        .iter()
        .map(|limit| ("user", limit.check(&user.user_id)))
        .chain(group.map(|limit| ("group", limit.check(&user.user_id))));
    match decide(verdicts) {
        Err((scope, verdict)) => refuse(&limits, scope, verdict),
        Ok(tightest) => {
            let mut response = next.run(request).await;
            if let Some(verdict) = tightest {
                // Inside the per-IP layer: the user's limits are the tighter answer here.
                add_headers(response.headers_mut(), &verdict);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> Arc<RateLimits> {
        let config = RateLimitConfig {
            trusted_proxies: trusted.iter().map(|t| (*t).to_owned()).collect(),
            per_ip: Limit {
                per_second: 1.0,
                burst: 3,
            },
            ..RateLimitConfig::default()
        };
        RateLimits::new(&config, BTreeMap::new(), Arc::new(Metrics::default()))
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn forwarded_for_is_believed_only_through_trusted_proxies() {
        let limits = limits(&["10.0.0.0/8", "192.0.2.7"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer: its header is ignored.
        let spoofed = forwarded("1.2.3.4");
        assert_eq!(
            limits.client_ip(Some(ip("203.0.113.9")), &spoofed),
            Some(ip("203.0.113.9"))
        );
        // Through two trusted proxies: the first untrusted hop from the right.
        let chain = forwarded("1.2.3.4, 198.51.100.1, 10.1.1.1");
        assert_eq!(
            limits.client_ip(Some(ip("192.0.2.7")), &chain),
            Some(ip("198.51.100.1"))
        );
        // A malformed hop stops the walk at the last good one.
        let garbage = forwarded("1.2.3.4, not-an-ip, 10.1.1.1");
        assert_eq!(
            limits.client_ip(Some(ip("10.0.0.1")), &garbage),
            Some(ip("10.1.1.1"))
        );
        // No header: the proxy itself.
        assert_eq!(
            limits.client_ip(Some(ip("10.0.0.1")), &HeaderMap::new()),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(limits.client_ip(None, &chain), None);
    }

    #[tokio::test(start_paused = true)]
    async fn gcra_allows_the_burst_then_the_rate() {
        let limit = KeyedLimit::new(&Limit {
            per_second: 2.0,
            burst: 3,
        })
        .unwrap();
        let key = "u-1".to_owned();
        let remaining: Vec<u32> = (0..3).map(|_| limit.check(&key).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limit.check(&key);
        assert!(!refused.allowed);
        assert_eq!(
            refused.reset,
            Duration::from_millis(500),
            "one more after 1/rate"
        );
        assert!(limit.check(&"u-2".to_owned()).allowed, "keys are separate");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limit.check(&key).allowed);
        assert!(!limit.check(&key).allowed);
        tokio::time::advance(Duration::from_secs(2)).await;
        let whole = limit.check(&key);
        assert_eq!((whole.allowed, whole.remaining), (true, 2));
    }

    #[test]
    fn config_rejects_bad_limits_and_proxies() {
        let mut config = RateLimitConfig::default();
        assert!(config.check().is_ok());
        config.trusted_proxies = vec!["10.0.0.0/33".into()];
        assert!(config.check().is_err());
        config.trusted_proxies = vec!["10.0.0.0/8".into(), "::1".into()];
        assert!(config.check().is_ok());
        config.per_user = Limit {
            per_second: -1.0,
            burst: 1,
        };
        assert!(config.check().is_err());
        config.per_user = Limit {
            per_second: 5.0,
            burst: 0,
        };
        assert!(config.check().is_err());
    }
}
