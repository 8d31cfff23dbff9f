//! Local token verification from Auth's JWKS, for when Auth cannot be asked.
//!
//! Auth stays the authority: a token is verified here only when `ValidateToken` could not be
//! answered (Auth down, partitioned, too slow). Then the signature is checked against Auth's
//! public keys (fetched with `Auth.GetJwks` in the background and cached), and the issuer,
//! audience, `exp` and `nbf` against the configuration and the injected clock. A valid token's user
//! context comes from its claims; anything else is a 401, never a 503: a forged token must not
//! pass, nor look like an outage. Tokens revoked (or rejected by Auth) earlier stay rejected. An
//! unknown `kid` triggers a refresh, at most once per `jwks_refresh_min_interval_ms`.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proto::auth::v1::GetJwksRequest;
use seams::SharedClock;
use serde::Deserialize;
use tokio::{task::JoinHandle, time::Instant};

use crate::{
    auth::AuthConfig, auth::UserContext, auth::call::call_auth, backends::Backend, drain::Drain,
};

/// Most token IDs remembered as revoked or rejected (the oldest are forgotten first).
const REJECTED_IDS_MAX: usize = 100_000;

/// The claims the gateway reads from an access token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    exp: i64,
    nbf: i64,
    jti: String,
}

/// What local verification concluded.
#[derive(Debug)]
pub enum LocalVerdict {
    /// Signed by Auth, in date, not revoked: who it belongs to.
    Valid(UserContext),
    /// Not a token Auth issued or would accept now.
    Invalid(String),
    /// No keys are known yet: nothing can be concluded.
    NoKeys,
}

#[derive(Default)]
struct Keys {
    by_kid: BTreeMap<String, DecodingKey>,
    last_attempt: Option<Instant>,
}

/// Auth's public keys, and the token IDs known to be revoked.
pub struct LocalVerifier {
    auth: Backend,
    config: AuthConfig,
    clock: SharedClock,
    keys: tokio::sync::Mutex<Keys>,
    rejected: Mutex<(BTreeMap<String, ()>, VecDeque<String>)>,
}

impl std::fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVerifier").finish_non_exhaustive()
    }
}

impl LocalVerifier {
    /// A verifier fetching keys from the Auth backend.
    pub fn new(auth: Backend, config: AuthConfig, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            auth,
            config,
            clock,
            keys: tokio::sync::Mutex::new(Keys::default()),
            rejected: Mutex::new((BTreeMap::new(), VecDeque::new())),
        })
    }

    /// Fetches the JWKS now (unless `rate_limited` and the last attempt was too recent) and
    /// replaces the cached keys. Returns whether keys were fetched.
    pub async fn refresh(&self, rate_limited: bool) -> bool {
        let mut keys = self.keys.lock().await;
        let min_interval = Duration::from_millis(self.config.jwks_refresh_min_interval_ms);
        if rate_limited
            && keys
                .last_attempt
                .is_some_and(|last| last.elapsed() < min_interval)
        {
            return false;
        }
        keys.last_attempt = Some(Instant::now());
        // A refresh for an unknown `kid` carries the request that needed it, for the logs.
        let answer = call_auth(
            &self.auth,
            GetJwksRequest {},
            Duration::from_millis(self.config.validation_deadline_ms),
            |mut client, request| async move { client.get_jwks(request).await },
        )
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(status) => {
                tracing::debug!(%status, "JWKS fetch failed");
                return false;
            }
        };
        let fetched: BTreeMap<String, DecodingKey> = answer
            .keys
            .into_iter()
            .filter(|key| key.kty == "OKP" && key.crv == "Ed25519" && key.alg == "EdDSA")
            .filter_map(|key| {
                DecodingKey::from_ed_components(&key.x)
                    .ok()
                    .map(|decoding| (key.kid, decoding))
            })
            .collect();
        // An empty answer (an Auth signing with a shared secret publishes no keys) keeps nothing.
        keys.by_kid = fetched;
        true
    }

    /// Refreshes every `jwks_refresh_interval_ms`, and every `jwks_refresh_min_interval_ms` until
    /// the first success, for as long as the verifier lives and until the drain starts.
    pub fn spawn_refresh(self: &Arc<Self>, mut drain: Drain) -> JoinHandle<()> {
        let verifier: Weak<Self> = Arc::downgrade(self);
        let interval = Duration::from_millis(self.config.jwks_refresh_interval_ms);
        let retry = Duration::from_millis(self.config.jwks_refresh_min_interval_ms);
        tokio::spawn(async move {
            loop {
                let Some(current) = verifier.upgrade() else {
                    return;
                };
                let fetched = current.refresh(false).await;
                drop(current);
                tokio::select! {
                    biased;
                    () = drain.started() => return,
                    () = tokio::time::sleep(if fetched { interval } else { retry }) => {}
                }
            }
        })
    }

    /// Whether any of Auth's keys are known.
    pub async fn has_keys(&self) -> bool {
        !self.keys.lock().await.by_kid.is_empty()
    }

    /// Remembers that `token_id` is revoked (or was rejected by Auth): it stays rejected here.
    pub fn reject_token_id(&self, token_id: &str) {
        let mut guard = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        let (ids, order) = &mut *guard;
        if ids.insert(token_id.to_owned(), ()).is_none() {
            order.push_back(token_id.to_owned());
            while order.len() > REJECTED_IDS_MAX {
                if let Some(oldest) = order.pop_front() {
                    ids.remove(&oldest);
                }
            }
        }
    }

    /// Whether `token_id` is revoked (or was rejected by Auth).
    pub fn is_rejected(&self, token_id: &str) -> bool {
        let guard = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.contains_key(token_id)
    }

    /// Verifies `token` without Auth.
    pub async fn verify(&self, token: &str) -> LocalVerdict {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => return LocalVerdict::Invalid("malformed token".into()),
        };
        if header.alg != Algorithm::EdDSA {
            return LocalVerdict::Invalid(format!("algorithm {:?} is not accepted", header.alg));
        }
        let Some(kid) = header.kid else {
            return LocalVerdict::Invalid("no key id".into());
        };
        let mut key = self.keys.lock().await.by_kid.get(&kid).cloned();
        if key.is_none() && self.refresh(true).await {
            key = self.keys.lock().await.by_kid.get(&kid).cloned();
        }
        let Some(key) = key else {
            return if self.keys.lock().await.by_kid.is_empty() {
                LocalVerdict::NoKeys
            } else {
                LocalVerdict::Invalid("unknown key".into())
            };
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time is checked against the injected clock below, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(error) => return LocalVerdict::Invalid(error.to_string()),
        };
        let now = self.clock.now_unix_seconds();
        let leeway = self.config.clock_leeway_seconds;
        if now >= claims.exp.saturating_add(leeway) {
            return LocalVerdict::Invalid("token expired".into());
        }
        if claims.nbf > now.saturating_add(leeway) {
            return LocalVerdict::Invalid("token not yet valid".into());
        }
        if self.is_rejected(&claims.jti) {
            return LocalVerdict::Invalid("token revoked".into());
        }
        LocalVerdict::Valid(UserContext {
            user_id: claims.sub,
            username: claims.name,
            roles: claims.roles,
            expires_at_unix_seconds: claims.exp,
            token_id: claims.jti,
            forwarded: std::sync::OnceLock::new(),
        })
    }
}
