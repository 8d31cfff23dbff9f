//! Client authentication: the bearer token is checked by `Auth.ValidateToken` over gRPC, and the
//! answer is cached. When Auth cannot answer, the token is verified locally against Auth's JWKS
//! (`jwks`), so valid tokens keep working and invalid ones still get 401.
//!
//! The cache is keyed by a SHA-256 of the token (tokens themselves are never stored), holds a valid
//! answer until the earlier of the token's expiry and `auth.token_cache_ttl_ms`, holds a rejection
//! for `auth.negative_cache_ttl_ms`, and never holds "Auth is unavailable". Concurrent requests with
//! the same uncached token share one call: the first inserts a pending cell, the others wait on it.
//!
//! - [`call`]: the one typed call to Auth (deadline, request ID, settling), used by all three.
//! - [`jwks`]: local verification against Auth's published keys.
//! - [`permissions`]: `CheckPermission` answers, cached briefly.

pub mod call;
pub mod jwks;
pub mod permissions;

use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use proto::auth::v1::ValidateTokenRequest;
use seams::SharedClock;
use sha2::{Digest, Sha256};
use tokio::{sync::OnceCell, time::Instant};
use tonic::{
    Code,
    metadata::{Ascii, MetadataValue},
};

use crate::{
    auth::call::call_auth,
    auth::jwks::{LocalVerdict, LocalVerifier},
    backends::Backend,
    drain::Drain,
    field_check::{InvalidField, positive},
    request::{error::ApiError, error_code::ErrorCode},
};

/// Metadata keys carrying the caller's identity to backends. Clients' own headers are never
/// forwarded, so a client cannot forge them.
pub mod user_metadata {
    /// The user's ID.
    pub const USER_ID: &str = "x-user-id";
    /// The user's login name, percent-encoded where not plain ASCII.
    pub const USER_NAME: &str = "x-user-name";
    /// The user's roles, comma-separated.
    pub const USER_ROLES: &str = "x-user-roles";
}

/// Characters escaped in metadata values: controls, non-ASCII (by the encoder), and `%` itself.
const METADATA_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// Who the caller is, as Auth said; forwarded to backends as metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserContext {
    /// Stable user ID.
    pub user_id: String,
    /// Login name.
    pub username: String,
    /// Roles, for backends' own checks.
    pub roles: Vec<String>,
    /// The token's expiry, seconds since the Unix epoch.
    pub expires_at_unix_seconds: i64,
    /// The token's unique ID (`jti`), which revocations name.
    pub token_id: String,
    /// The user as backend metadata, escaped on first use: once per validated token (which is
    /// cached), not once per request.
    pub forwarded: OnceLock<Vec<(&'static str, MetadataValue<Ascii>)>>,
}

impl UserContext {
    /// The metadata that tells a backend who the caller is: ID, name and roles, percent-escaped
    /// where not plain ASCII.
    pub fn forwarded(&self) -> &[(&'static str, MetadataValue<Ascii>)] {
        self.forwarded.get_or_init(|| {
            [
                (user_metadata::USER_ID, self.user_id.clone()),
                (user_metadata::USER_NAME, self.username.clone()),
                (user_metadata::USER_ROLES, self.roles.join(",")),
            ]
            .into_iter()
            .filter_map(|(key, value)| {
                let escaped = utf8_percent_encode(&value, METADATA_ESCAPES).to_string();
                MetadataValue::try_from(escaped)
                    .ok()
                    .map(|value| (key, value))
            })
            .collect()
        })
    }
}

/// The answer for one token.
#[derive(Debug, Clone)]
enum Verdict {
    Valid(Arc<UserContext>),
    Invalid(String),
    /// Auth could not be asked; never cached.
    Unavailable(String),
}

#[derive(Debug)]
struct Outcome {
    verdict: Verdict,
    cache_until: Instant,
}

type Slot = Arc<OnceCell<Outcome>>;

/// Validates tokens through Auth with a bounded, single-flight cache; when Auth cannot answer,
/// through the local verifier (when enabled).
#[derive(Debug)]
pub struct TokenValidator {
    auth: Backend,
    config: AuthConfig,
    clock: SharedClock,
    cache: Mutex<HashMap<[u8; 32], Slot>>,
    local: Option<Arc<LocalVerifier>>,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The header or token is not of the expected form.
    #[error("malformed bearer token")]
    Malformed,
    /// Auth rejected the token (bad signature, expired, revoked...).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Auth could not be reached or did not answer in time.
    #[error("authentication is unavailable: {0}")]
    Unavailable(String),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unavailable(_) => ApiError::unavailable(
                ErrorCode::AuthUnavailable,
                "the authentication service is unavailable",
            ),
            AuthError::Invalid(_) => ApiError::unauthenticated("the token is invalid or expired"),
            other => ApiError::unauthenticated(other.to_string()),
        }
    }
}

impl TokenValidator {
    /// A validator calling the Auth backend.
    pub fn new(auth: Backend, config: AuthConfig, clock: SharedClock) -> Self {
        let local = config
            .local_verification
            .then(|| LocalVerifier::new(auth.clone(), config.clone(), clock.clone()));
        Self {
            auth,
            config,
            clock,
            cache: Mutex::new(HashMap::new()),
            local,
        }
    }

    /// Whether local verification holds Auth's keys (false when it is off).
    pub async fn has_local_keys(&self) -> bool {
        match &self.local {
            Some(local) => local.has_keys().await,
            None => false,
        }
    }

    /// Starts keeping Auth's JWKS fresh for local verification, until the drain starts
    /// (nothing when it is off).
    pub fn spawn_jwks_refresh(&self, drain: Drain) -> Option<tokio::task::JoinHandle<()>> {
        self.local.as_ref().map(|local| local.spawn_refresh(drain))
    }

    /// Checks a token, from cache when possible.
    pub async fn validate(&self, token: &str) -> Result<Arc<UserContext>, AuthError> {
        if token.len() > self.config.token_bytes_max || !looks_like_jwt(token) {
            return Err(AuthError::Malformed);
        }
        if let Some(local) = self.local.as_ref().filter(|_| self.auth_is_down()) {
            // Every Auth instance failed its latest health check: judge locally at once rather
            // than make each request wait out a validation deadline first.
            match local.verify(token).await {
                LocalVerdict::Valid(user) => return Ok(Arc::new(user)),
                LocalVerdict::Invalid(why) => return Err(AuthError::Invalid(why)),
                LocalVerdict::NoKeys => {} // nothing to judge with: ask Auth after all
            }
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let slot = self.slot_for(key);
        let outcome = match &slot {
            Some(slot) => slot.get_or_init(|| self.ask_auth(token)).await,
            None => &self.ask_auth(token).await,
        };
        let verdict = outcome.verdict.clone();
        if let (Verdict::Unavailable(_), Some(slot)) = (&verdict, &slot) {
            self.forget(key, slot);
        }
        match verdict {
            Verdict::Valid(user) => Ok(user),
            Verdict::Invalid(reason) => Err(AuthError::Invalid(reason)),
            Verdict::Unavailable(reason) => match &self.local {
                // Auth cannot answer: judge locally rather than turn every token into a 503.
                Some(local) => match local.verify(token).await {
                    LocalVerdict::Valid(user) => Ok(Arc::new(user)),
                    LocalVerdict::Invalid(why) => Err(AuthError::Invalid(why)),
                    LocalVerdict::NoKeys => Err(AuthError::Unavailable(reason)),
                },
                None => Err(AuthError::Unavailable(reason)),
            },
        }
    }

    /// Whether Auth is known to be unreachable: every instance failed its latest health check.
    fn auth_is_down(&self) -> bool {
        !self
            .auth
            .instances()
            .iter()
            .any(|instance| instance.is_healthy())
    }

    /// The cache slot for a key: a fresh answer, a call in flight, or a new pending cell. `None`
    /// when the cache is full of live entries (the call then goes uncached).
    fn slot_for(&self, key: [u8; 32]) -> Option<Slot> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = cache.get(&key) {
            match slot.get() {
                Some(outcome) if outcome.cache_until > now => return Some(slot.clone()),
                Some(_) => {} // expired: replaced below
                None => return Some(slot.clone()),
            }
        }
        if cache.len() >= self.config.token_cache_entries_max && !cache.contains_key(&key) {
            cache.retain(|_, slot| slot.get().is_none_or(|outcome| outcome.cache_until > now));
            if cache.len() >= self.config.token_cache_entries_max {
                return None;
            }
        }
        let slot = Slot::default();
        cache.insert(key, slot.clone());
        Some(slot)
    }

    /// Drops every cached validation (revocations may have been missed), so each token's next
    /// use asks Auth again.
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether `token_id` is known here as revoked, so local verification rejects it (always
    /// false with local verification off).
    pub fn is_token_id_rejected(&self, token_id: &str) -> bool {
        self.local
            .as_ref()
            .is_some_and(|local| local.is_rejected(token_id))
    }

    /// Drops the cached validation of a revoked token, so its next use asks Auth again.
    pub fn forget_token_id(&self, token_id: &str) {
        if let Some(local) = &self.local {
            local.reject_token_id(token_id);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, slot| {
            !matches!(slot.get(), Some(Outcome { verdict: Verdict::Valid(user), .. }) if user.token_id == token_id)
        });
    }

    fn forget(&self, key: [u8; 32], slot: &Slot) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            cache.remove(&key);
        }
    }

    async fn ask_auth(&self, token: &str) -> Outcome {
        let answer = call_auth(
            &self.auth,
            ValidateTokenRequest {
                token: token.to_owned(),
            },
            Duration::from_millis(self.config.validation_deadline_ms),
            |mut client, request| async move { client.validate_token(request).await },
        )
        .await;
        let now = Instant::now();
        let negative_until = now + Duration::from_millis(self.config.negative_cache_ttl_ms);
        match answer {
            Ok(user) => {
                let ttl = Duration::from_millis(self.config.token_cache_ttl_ms);
                let now_since_epoch = self.clock.now_since_epoch();
                let Some(ttl) = valid_for(user.expires_at_unix_seconds, now_since_epoch, ttl)
                else {
                    return Outcome {
                        verdict: Verdict::Invalid("token expired".into()),
                        cache_until: negative_until,
                    };
                };
                Outcome {
                    verdict: Verdict::Valid(Arc::new(UserContext {
                        user_id: user.user_id,
                        username: user.username,
                        roles: user.roles,
                        expires_at_unix_seconds: user.expires_at_unix_seconds,
                        token_id: user.token_id,
                        forwarded: OnceLock::new(),
                    })),
                    cache_until: now + ttl,
                }
            }
            Err(status) if status.code() == Code::Unauthenticated => Outcome {
                verdict: Verdict::Invalid(status.message().to_owned()),
                cache_until: negative_until,
            },
            Err(status) => Outcome {
                verdict: Verdict::Unavailable(format!("{:?}: {}", status.code(), status.message())),
                cache_until: now,
            },
        }
    }
}

/// How long a valid answer may be cached: until the token's `exp` exactly (to the clock's
/// precision, not in whole seconds, which let an answer outlive `exp` by up to a second), and
/// at most `ttl`. `None` once `exp` has come: a JWT is not accepted on or after its `exp`.
fn valid_for(
    expires_at_unix_seconds: i64,
    now_since_epoch: Duration,
    ttl: Duration,
) -> Option<Duration> {
    let expires_at = Duration::from_secs(u64::try_from(expires_at_unix_seconds).ok()?);
    let remaining = expires_at.checked_sub(now_since_epoch)?;
    (!remaining.is_zero()).then(|| remaining.min(ttl))
}

/// Three non-empty base64url segments separated by dots: anything else is not worth a call.
fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

/// The bearer token of a request's `Authorization` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

/// Middleware: validates the token and adds the [`UserContext`] to the request's extensions;
/// answers 401 (or 503 while Auth is unreachable) otherwise.
pub async fn layer(
    State(validator): State<Arc<TokenValidator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate(&validator, &mut request).await {
        Ok(()) => next.run(request).await,
        Err(answer) => answer,
    }
}

/// Validates the request's bearer token and adds its [`UserContext`] to the request's
/// extensions, or gives the answer that refuses it (401, or 503 while Auth is unreachable).
pub async fn authenticate(
    validator: &TokenValidator,
    request: &mut Request,
) -> Result<(), Response> {
    let user = match bearer_token(request.headers()) {
        Ok(token) => validator.validate(token).await,
        Err(error) => Err(error),
    };
    match user {
        Ok(user) => {
            request.extensions_mut().insert(user);
            Ok(())
        }
        Err(error) => {
            tracing::debug!(%error, "authentication failed");
            Err(ApiError::from(error).into_response())
        }
    }
}

/// Client authentication.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The backend (a key of `backends`) whose `auth.v1.AuthService` validates tokens.
    /// Default `auth`.
    pub backend: String,
    /// gRPC methods reachable without a token, as `package.Service/Method`.
    /// Default: Auth's `Login` and `Refresh`.
    pub public_methods: Vec<String>,
    /// How long a valid token's validation is cached (never past the token's expiry).
    /// Default 30,000 ms.
    pub token_cache_ttl_ms: u64,
    /// How long a rejected token's answer is cached, so floods of one bad token cost one call.
    /// Default 5,000 ms.
    pub negative_cache_ttl_ms: u64,
    /// Most cached validations; past it, new tokens are validated without being cached.
    /// Default 100,000.
    pub token_cache_entries_max: usize,
    /// Longest bearer token accepted; longer ones get 401 without a call to Auth. Default 8,192.
    pub token_bytes_max: usize,
    /// Deadline of a `ValidateToken` call. Default 2,000 ms.
    pub validation_deadline_ms: u64,
    /// When Auth cannot answer, verify tokens locally against Auth's JWKS (valid ones pass with
    /// the user taken from the claims, others get 401). `false`: 503 while Auth is unreachable.
    /// Default `true`.
    pub local_verification: bool,
    /// The `iss` tokens must carry to be verified locally. Default `mock-auth`.
    pub issuer: String,
    /// The `aud` tokens must carry to be verified locally. Default `simulation-platform`.
    pub audience: String,
    /// Tolerance on `exp` and `nbf` in local verification, seconds. Default 5.
    pub clock_leeway_seconds: i64,
    /// How often Auth's JWKS is fetched again. Default 300,000 ms.
    pub jwks_refresh_interval_ms: u64,
    /// Least time between two fetches triggered by an unknown `kid` (and between retries until
    /// the first fetch succeeds). Default 10,000 ms.
    pub jwks_refresh_min_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            backend: "auth".to_owned(),
            public_methods: vec![
                "auth.v1.AuthService/Login".to_owned(),
                "auth.v1.AuthService/Refresh".to_owned(),
            ],
            token_cache_ttl_ms: 30_000,
            negative_cache_ttl_ms: 5_000,
            token_cache_entries_max: 100_000,
            token_bytes_max: 8_192,
            validation_deadline_ms: 2_000,
            local_verification: true,
            issuer: "mock-auth".to_owned(),
            audience: "simulation-platform".to_owned(),
            clock_leeway_seconds: 5,
            jwks_refresh_interval_ms: 300_000,
            jwks_refresh_min_interval_ms: 10_000,
        }
    }
}

impl AuthConfig {
    /// Checks the `[auth]` section. That `backend` names a configured backend is checked with
    /// the backends (`config`).
    pub fn check(&self) -> Result<(), InvalidField> {
        for method in &self.public_methods {
            if method
                .split_once('/')
                .is_none_or(|(s, m)| s.is_empty() || m.is_empty())
            {
                return Err(InvalidField::new(
                    "auth.public_methods",
                    "each entry must be package.Service/Method",
                ));
            }
        }
        positive("auth.token_cache_ttl_ms", self.token_cache_ttl_ms)?;
        positive("auth.token_bytes_max", self.token_bytes_max as u64)?;
        positive(
            "auth.jwks_refresh_interval_ms",
            self.jwks_refresh_interval_ms,
        )?;
        positive(
            "auth.jwks_refresh_min_interval_ms",
            self.jwks_refresh_min_interval_ms,
        )?;
        if self.clock_leeway_seconds < 0 {
            return Err(InvalidField::new(
                "auth.clock_leeway_seconds",
                "must not be negative",
            ));
        }
        positive("auth.validation_deadline_ms", self.validation_deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_answer_is_cached_until_exp_exactly() {
        let ttl = Duration::from_secs(60);
        // Issued late in second S with `exp` S + 2: valid 1.1 s more, not 2 (nor until S + 2.9).
        let now = Duration::from_millis(1_000_900);
        assert_eq!(
            valid_for(1_002, now, ttl),
            Some(Duration::from_millis(1_100))
        );
        assert_eq!(
            valid_for(1_002, now, Duration::from_millis(300)),
            Some(Duration::from_millis(300))
        );
        // At `exp`, and after it, the token is expired.
        assert_eq!(valid_for(1_002, Duration::from_secs(1_002), ttl), None);
        assert_eq!(
            valid_for(1_002, Duration::from_millis(1_002_001), ttl),
            None
        );
        assert_eq!(valid_for(-5, now, ttl), None);
    }

    #[test]
    fn only_three_base64url_parts_look_like_a_jwt() {
        assert!(looks_like_jwt("aGVh.cGF5_-.c2ln"));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.c=",
            "a.b.c d",
            "a.b.\u{e9}",
        ] {
            assert!(!looks_like_jwt(bad), "{bad:?}");
        }
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert!(matches!(bearer_token(&headers), Err(AuthError::Missing)));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(matches!(bearer_token(&headers), Err(AuthError::Malformed)));
        headers.insert(header::AUTHORIZATION, "bearer a.b.c".parse().unwrap());
        assert_eq!(bearer_token(&headers).unwrap(), "a.b.c");
    }
}
