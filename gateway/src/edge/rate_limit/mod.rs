//! Rate limits: GCRA (`governor`) per client IP, per user and per user and endpoint group, with
//! limits from config (`[rate_limit]`, `docs/security.md`). A refused request gets 429
//! `rate_limited` with `Retry-After`; every limited answer carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` for the tightest limit that applied.
//!
//! The client IP is the connection's peer, unless the peer is a configured trusted proxy: then it
//! is the right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
//!
//! - [`local`]: each instance's own limits (`governor`, on `tokio::time`, so they run on
//!   simulated time under turmoil).
//! - [`shared`]: with `rate_limit.shared`, every limit is decided in Redis by one atomic script,
//!   so all instances share each client's budget; local limits stand in while Redis does not
//!   answer.

mod local;
pub mod shared;

use local::KeyedLimit;
pub use local::Verdict;
pub use shared::{GCRA_SCRIPT, SharedCheck, SharedLimits};

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::{
    auth::UserContext,
    drain::Drain,
    field_check::{InvalidField, positive},
    ops::metrics::Metrics,
    request::Peer,
    request::error::ApiError,
    routing::MatchedRoute,
    routing::check_route_group,
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
    /// Decide every limit in Redis (the event bus's, so `event_bus.kind = "redis"`), shared by
    /// every instance, instead of per instance. Default false.
    pub shared: bool,
    /// A shared decision Redis has not made within this (dialling included) is made by the
    /// local limits. Default 50 ms.
    pub shared_timeout_ms: u64,
    /// After Redis failed to decide, limits stay local this long before Redis is asked again.
    /// Default 1,000 ms.
    pub shared_retry_interval_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            per_ip: Limit::OFF,
            per_user: Limit::OFF,
            groups: BTreeMap::new(),
            shared: false,
            shared_timeout_ms: 50,
            shared_retry_interval_ms: 1_000,
        }
    }
}

impl RateLimitConfig {
    /// Checks the `[rate_limit]` section. That it is shared only over a Redis bus is checked
    /// with the bus (`config`).
    pub fn check(&self) -> Result<(), InvalidField> {
        for proxy in &self.trusted_proxies {
            parse_net(proxy).ok_or_else(|| {
                InvalidField::new(
                    "rate_limit.trusted_proxies",
                    format!("{proxy:?} is not an IP address or CIDR block"),
                )
            })?;
        }
        for group in self.groups.keys() {
            check_route_group(&format!("rate_limit.groups.{group}"), group)?;
        }
        let limits = [
            ("per_ip".to_owned(), &self.per_ip),
            ("per_user".to_owned(), &self.per_user),
        ]
        .into_iter()
        .chain(self.groups.iter().map(|(g, l)| (format!("groups.{g}"), l)));
        for (name, limit) in limits {
            let invalid = |reason| Err(InvalidField::new(format!("rate_limit.{name}"), reason));
            if !limit.per_second.is_finite() || limit.per_second < 0.0 {
                return invalid("per_second must be zero (off) or positive");
            }
            if limit.burst == 0 {
                return invalid("burst must be at least 1");
            }
            if limit.per_second > 1_000_000.0 || (limit.per_second > 0.0 && limit.quota().is_none())
            {
                return invalid("per_second must be at most 1,000,000");
            }
        }
        positive("rate_limit.shared_timeout_ms", self.shared_timeout_ms)?;
        positive(
            "rate_limit.shared_retry_interval_ms",
            self.shared_retry_interval_ms,
        )
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A group's limit and its name (part of its Redis keys).
struct GroupLimit {
    name: String,
    limit: KeyedLimit<String>,
}

/// Every configured limit, shared by the layers.
pub struct RateLimits {
    trusted: Vec<IpNet>,
    per_ip: Option<KeyedLimit<IpAddr>>,
    per_user: Option<KeyedLimit<String>>,
    /// By route label: the group's limit (groups resolved at start-up).
    groups: BTreeMap<String, Arc<GroupLimit>>,
    /// Where limits are decided when shared through Redis.
    shared: Option<SharedLimits>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_ip", &self.per_ip.is_some())
            .field("per_user", &self.per_user.is_some())
            .field("groups", &self.groups.len())
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// How often keys idle long enough to be whole again are forgotten, bounding memory to the
/// clients seen recently.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

impl RateLimits {
    /// The limits of `config`; `route_groups` maps route labels to the index of their group in
    /// `config.groups` (see `app::by_route_group`); `shared` decides them in Redis when given.
    pub fn new(
        config: &RateLimitConfig,
        route_groups: BTreeMap<String, usize>,
        shared: Option<SharedLimits>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        // One limiter per configured group, shared by the group's routes: each group has a
        // budget of its own, even when two groups have equal limits.
        let limiters: Vec<Option<Arc<GroupLimit>>> = config
            .groups
            .iter()
            .map(|(name, limit)| {
                KeyedLimit::new(limit).map(|limit| {
                    Arc::new(GroupLimit {
                        name: name.clone(),
                        limit,
                    })
                })
            })
            .collect();
        let groups = route_groups
            .into_iter()
            .filter_map(|(label, index)| Some((label, limiters.get(index)?.clone()?)))
            .collect();
        Arc::new(Self {
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|p| parse_net(p))
                .collect(),
            per_ip: KeyedLimit::new(&config.per_ip),
            per_user: KeyedLimit::new(&config.per_user),
            groups,
            shared,
            metrics,
        })
    }

    /// Starts the task that forgets idle keys; it ends with the limits or when the drain starts.
    pub fn spawn_forgetting_idle_keys(self: &Arc<Self>, mut drain: Drain) -> JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    () = drain.started() => return,
                    () = tokio::time::sleep(FORGET_IDLE_EVERY) => {}
                }
                let Some(limits) = weak.upgrade() else { return };
                limits.forget_idle();
            }
        })
    }

    /// Prepares the Redis link of shared limits ahead of the first decision (nothing when limits
    /// are local); see [`SharedLimits::prepare`].
    pub async fn prepare_shared(&self) {
        if let Some(shared) = &self.shared {
            shared.prepare().await;
        }
    }

    /// Whether a per-IP limit is configured (else its layer need not run).
    pub fn limits_ips(&self) -> bool {
        self.per_ip.is_some()
    }

    /// Whether a per-user or group limit is configured (else its layer need not run).
    pub fn limits_users(&self) -> bool {
        self.per_user.is_some() || !self.groups.is_empty()
    }

    fn forget_idle(&self) {
        if let Some(limit) = &self.per_ip {
            limit.forget_idle();
        }
        if let Some(limit) = &self.per_user {
            limit.forget_idle();
        }
        for group in self.groups.values() {
            group.limit.forget_idle();
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

    /// The per-IP verdict for `ip`: from Redis when shared and answering, else local.
    async fn check_ip(&self, limit: &KeyedLimit<IpAddr>, ip: IpAddr) -> Verdict {
        if let Some(shared) = &self.shared {
            let check = [shared_check(limit, format!("ratelimit:{{{ip}}}:ip"))];
            if let Some(verdicts) = shared.check(&check).await {
                return verdicts[0];
            }
        }
        limit.check(&ip)
    }

    /// The user's verdicts (per user, and for the route's group), decided together: from Redis
    /// when shared and answering (charged to all or none), else local.
    async fn check_user(
        &self,
        user_id: &String,
        group: Option<&GroupLimit>,
    ) -> Vec<(&'static str, Verdict)> {
        // (scope, limit, group name); Redis keys are only formatted when limits are shared.
        let applicable: Vec<(&'static str, &KeyedLimit<String>, Option<&str>)> = self
            .per_user
            .iter()
            .map(|limit| ("user", limit, None))
            .chain(group.map(|g| ("group", &g.limit, Some(g.name.as_str()))))
            .collect();
        if applicable.is_empty() {
            return Vec::new();
        }
        if let Some(shared) = &self.shared {
            let checks: Vec<SharedCheck> = applicable
                .iter()
                .map(|(_, limit, group)| {
                    let key = match group {
                        None => format!("ratelimit:{{{user_id}}}:user"),
                        Some(group) => format!("ratelimit:{{{user_id}}}:group:{group}"),
                    };
                    shared_check(limit, key)
                })
                .collect();
            if let Some(verdicts) = shared.check(&checks).await {
                return applicable.iter().map(|a| a.0).zip(verdicts).collect();
            }
        }
        applicable
            .iter()
            .map(|(scope, limit, _)| (*scope, limit.check(user_id)))
            .collect()
    }
}

/// `limit` as a check in Redis under `key`. Keys put the client in a hash tag, so a request's
/// keys share a Redis Cluster slot.
fn shared_check<K: std::hash::Hash + Eq + Clone>(
    limit: &KeyedLimit<K>,
    key: String,
) -> SharedCheck {
    SharedCheck {
        key,
        interval: limit.interval(),
        burst: limit.burst(),
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
    let verdict = limits.check_ip(limit, ip).await;
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
        .and_then(|matched| limits.groups.get(&*matched.route.label))
        .cloned();
    let verdicts = limits.check_user(&user.user_id, group.as_deref()).await;
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
        RateLimits::new(&config, BTreeMap::new(), None, Arc::new(Metrics::default()))
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
