//! The response cache for configured GET routes (`[cache]`): fresh answers served without a
//! backend call, concurrent misses for one key sharing one call, `Cache-Control: no-cache`
//! honoured, and a stale answer served, marked as such, while the backend cannot answer.
//!
//! Keys are the route, the request's path and query and, for routes cached per user, the user.
//! The cache holds at most `cache.entries_max` answers; past that the oldest stored goes first.
//! Time is `tokio::time`, so it runs on simulated time under turmoil.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::{FutureExt, future::Shared};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{
    field_check::{InvalidField, positive},
    request::error::ApiError,
    routing::check_route_group,
};

/// The cache's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most answers kept; past it the oldest stored is dropped. Default 10,000.
    pub entries_max: usize,
    /// Cached route groups, by gRPC service or method (as `routes.deadlines_ms`); only their GET
    /// routes are cached. Default: none.
    pub routes: BTreeMap<String, CacheRouteConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            entries_max: 10_000,
            routes: BTreeMap::new(),
        }
    }
}

impl CacheConfig {
    /// Checks the `[cache]` section.
    pub fn check(&self) -> Result<(), InvalidField> {
        for (group, rule) in &self.routes {
            let field = format!("cache.routes.{group}");
            check_route_group(&field, group)?;
            positive(format!("{field}.ttl_ms"), rule.ttl_ms)?;
        }
        Ok(())
    }
}

/// How one route group is cached.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheRouteConfig {
    /// How long an answer is fresh.
    pub ttl_ms: u64,
    /// How long past its freshness an answer may still be served, marked stale, while the
    /// backend cannot answer (UNAVAILABLE, a deadline, an open breaker). Default 0: never.
    #[serde(default)]
    pub stale_ms: u64,
    /// Whether answers depend on the caller (then each user has their own). Default true: an
    /// answer is shared between users only when the config says it may be.
    #[serde(default = "per_user_default")]
    pub per_user: bool,
}

fn per_user_default() -> bool {
    true
}

/// What one cached route does, resolved from the config at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRule {
    /// Freshness.
    pub ttl: Duration,
    /// Staleness allowed while the backend cannot answer.
    pub stale: Duration,
    /// Keyed per user.
    pub per_user: bool,
}

impl From<CacheRouteConfig> for CacheRule {
    fn from(config: CacheRouteConfig) -> Self {
        Self {
            ttl: Duration::from_millis(config.ttl_ms),
            stale: Duration::from_millis(config.stale_ms),
            per_user: config.per_user,
        }
    }
}

/// How an answer was served, for the `x-cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From the cache, fresh.
    Hit,
    /// From the backend (and stored).
    Miss,
    /// From the cache, past its freshness, because the backend could not answer.
    Stale,
}

impl Served {
    /// The `x-cache` header value.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

/// One answer being fetched; every concurrent miss for its key awaits the same.
type Fetch = Shared<futures::future::BoxFuture<'static, Result<Bytes, ApiError>>>;

struct Entry {
    body: Bytes,
    stored: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Keys in the order they were stored (a key stored again moves to the back).
    order: VecDeque<String>,
    fetching: HashMap<String, Fetch>,
}

/// The response cache, shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct ResponseCache {
    entries_max: usize,
    /// Rules by route label.
    rules: Arc<BTreeMap<String, CacheRule>>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("routes", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// A cache for the routes in `rules` (by route label), holding at most `entries_max` answers.
    pub fn new(entries_max: usize, rules: BTreeMap<String, CacheRule>) -> Self {
        Self {
            entries_max,
            rules: Arc::new(rules),
            state: Arc::default(),
        }
    }

    /// The rule of a route, if it is cached.
    pub fn rule(&self, route_label: &str) -> Option<CacheRule> {
        self.rules.get(route_label).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers from the cache when fresh; otherwise (or with `no_cache`) runs `fetch`, shared
    /// with every concurrent miss of the same key, and stores its answer. When the fetch fails
    /// because the backend cannot answer, an answer within the stale allowance is served instead.
    pub async fn get_or_fetch(
        &self,
        key: String,
        rule: CacheRule,
        no_cache: bool,
        fetch: impl FnOnce() -> futures::future::BoxFuture<'static, Result<Bytes, ApiError>>,
    ) -> Result<(Bytes, Served, Duration), ApiError> {
        let fetching = {
            let mut state = self.lock();
            if !no_cache
                && let Some(entry) = state.entries.get(&key)
                && entry.stored.elapsed() < rule.ttl
            {
                return Ok((entry.body.clone(), Served::Hit, entry.stored.elapsed()));
            }
            match state.fetching.get(&key) {
                Some(fetching) => fetching.clone(),
                None => {
                    let fetching = fetch().shared();
                    state.fetching.insert(key.clone(), fetching.clone());
                    fetching
                }
            }
        };
        let result = fetching.clone().await;
        let mut state = self.lock();
        // Only this fetch's entry: a later one for the same key may have taken its place.
        if state
            .fetching
            .get(&key)
            .is_some_and(|current| current.ptr_eq(&fetching))
        {
            state.fetching.remove(&key);
        }
        match result {
            Ok(body) => {
                self.store(&mut state, key, body.clone());
                Ok((body, Served::Miss, Duration::ZERO))
            }
            Err(error) if error.is_backend_outage() => match state.entries.get(&key) {
                Some(entry) if entry.stored.elapsed() < rule.ttl + rule.stale => {
                    Ok((entry.body.clone(), Served::Stale, entry.stored.elapsed()))
                }
                _ => Err(error),
            },
            Err(error) => Err(error),
        }
    }

    fn store(&self, state: &mut State, key: String, body: Bytes) {
        if self.entries_max == 0 {
            return;
        }
        if state.entries.contains_key(&key) {
            state.order.retain(|k| *k != key);
        }
        while state.entries.len() >= self.entries_max && !state.entries.contains_key(&key) {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            state.entries.remove(&oldest);
        }
        state.order.push_back(key.clone());
        state.entries.insert(
            key,
            Entry {
                body,
                stored: Instant::now(),
            },
        );
    }

    /// How many answers are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::request::error_code::ErrorCode;

    fn rule(ttl_ms: u64, stale_ms: u64) -> CacheRule {
        CacheRule {
            ttl: Duration::from_millis(ttl_ms),
            stale: Duration::from_millis(stale_ms),
            per_user: true,
        }
    }

    /// A fetch that counts its calls and answers `answer` after 10 ms.
    fn fetch(
        calls: &Arc<AtomicUsize>,
        answer: Result<&'static str, ApiError>,
    ) -> impl FnOnce() -> futures::future::BoxFuture<'static, Result<Bytes, ApiError>> {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                answer.map(|text| Bytes::from_static(text.as_bytes()))
            })
        }
    }

    fn outage() -> ApiError {
        ApiError::unavailable(ErrorCode::Unavailable, "down")
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_answers_are_served_and_no_cache_forces_a_fetch() {
        let cache = ResponseCache::new(10, BTreeMap::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let r = rule(1_000, 0);
        let (_, served, _) = cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Ok("a")))
            .await
            .unwrap();
        assert_eq!(served, Served::Miss);
        let (body, served, _) = cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Ok("b")))
            .await
            .unwrap();
        assert_eq!((body.as_ref(), served), (&b"a"[..], Served::Hit));
        let (body, served, _) = cache
            .get_or_fetch("k".into(), r, true, fetch(&calls, Ok("c")))
            .await
            .unwrap();
        assert_eq!(
            (body.as_ref(), served),
            (&b"c"[..], Served::Miss),
            "no-cache fetches"
        );
        tokio::time::advance(Duration::from_millis(1_000)).await;
        let (body, _, _) = cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Ok("d")))
            .await
            .unwrap();
        assert_eq!(body.as_ref(), b"d", "expired");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_share_one_fetch() {
        let cache = ResponseCache::new(10, BTreeMap::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let r = rule(1_000, 0);
        let answers = futures::future::join_all(
            (0..5).map(|_| cache.get_or_fetch("k".into(), r, false, fetch(&calls, Ok("a")))),
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().unwrap().0.as_ref() == b"a")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_answer_covers_an_outage_within_its_allowance_only() {
        let cache = ResponseCache::new(10, BTreeMap::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let r = rule(100, 1_000);
        cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Ok("a")))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        let (body, served, age) = cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Err(outage())))
            .await
            .unwrap();
        assert_eq!((body.as_ref(), served), (&b"a"[..], Served::Stale));
        assert!(age >= Duration::from_millis(500));
        // A client error is not an outage: it is passed on, never covered.
        let invalid = ApiError::bad_request(ErrorCode::InvalidArgument, "no");
        let answer = cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Err(invalid)))
            .await;
        assert_eq!(answer.unwrap_err().code(), ErrorCode::InvalidArgument);
        tokio::time::advance(Duration::from_millis(700)).await;
        let answer = cache
            .get_or_fetch("k".into(), r, false, fetch(&calls, Err(outage())))
            .await;
        assert_eq!(
            answer.unwrap_err().code(),
            ErrorCode::Unavailable,
            "past ttl + stale"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_answer_goes_first_past_the_bound() {
        let cache = ResponseCache::new(2, BTreeMap::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let r = rule(10_000, 0);
        for key in ["a", "b", "c"] {
            cache
                .get_or_fetch(key.into(), r, false, fetch(&calls, Ok("x")))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 2);
        let (_, served, _) = cache
            .get_or_fetch("a".into(), r, false, fetch(&calls, Ok("x")))
            .await
            .unwrap();
        assert_eq!(served, Served::Miss, "a was dropped");
        let (_, served, _) = cache
            .get_or_fetch("c".into(), r, false, fetch(&calls, Ok("x")))
            .await
            .unwrap();
        assert_eq!(served, Served::Hit);
    }
}
