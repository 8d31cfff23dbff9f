//! The Auth service: demo users, access tokens (JWT), refresh tokens, revocation, signing-key
//! rotation with a JWKS, and the permission table every other backend asks.
//!
//! - `keys`: the signing keys (Ed25519 from the seeded RNG, or the HS256 secret).
//! - `store`: refresh tokens, issued and revoked token IDs and permission grants, each bounded.
//!
//! Revocations (of a token by [`AuthBackend::revoke_token`], of a permission by
//! [`AuthBackend::revoke_permission`]) are published on `auth:revocations` when events are
//! published, so every gateway drops what the revocation no longer allows.
//!
//! Token expiry is checked against the injected [`Clock`](seams::Clock), never the system clock:
//! jsonwebtoken's own `exp`/`nbf` checks are turned off because they read `SystemTime::now`,
//! which a simulation cannot move.

mod keys;
mod store;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jsonwebtoken::{Header, Validation, errors::ErrorKind};
use proto::auth::v1::{
    CheckPermissionRequest, CheckPermissionResponse, GetJwksRequest, GetProfileRequest,
    GrantPermissionRequest, GrantPermissionResponse, Jwk, Jwks, LoginRequest, Profile,
    RefreshRequest, TokenPair, UserContext, ValidateTokenRequest, auth_service_server::AuthService,
};
use rand::{RngCore, rngs::SmallRng};
use seams::SharedClock;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use events::ChannelKind;

use self::{
    keys::KeyRing,
    store::{Action, BoundedMap, Permissions},
};
use crate::{
    config::{AuthConfig, ConfigError, ServiceKind},
    demo,
    faults::Faults,
    metadata::Caller,
    publish::EventSink,
    request_log::RequestLog,
};

/// The `iss` claim of every token.
pub const ISSUER: &str = "mock-auth";
/// The `aud` claim of every token.
pub const AUDIENCE: &str = "simulation-platform";
/// Clock skew tolerated on `exp` and `nbf`, in seconds. Small: Auth and its callers share a
/// clock in tests and simulation, and production skew is corrected by NTP.
pub const CLOCK_LEEWAY_SECONDS: i64 = 5;

/// What went wrong setting up or driving Auth from its handle.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Rotation was asked of HS256, whose one key is the configured secret.
    #[error("signing keys rotate only with EdDSA")]
    RotationUnsupported,
    /// A generated Ed25519 key could not be encoded as PKCS#8.
    #[error("could not encode an Ed25519 key: {0}")]
    KeyEncoding(String),
    /// jsonwebtoken refused a key or could not sign.
    #[error("JWT error: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// No user has that username.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// A permission action other than `read` or `write`.
    #[error("unknown action {0:?} (expected read or write)")]
    UnknownAction(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why a token was rejected; the message of the UNAUTHENTICATED status ValidateToken returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a JWT, or one with missing or malformed claims or the wrong algorithm.
    #[error("malformed token")]
    Malformed,
    /// Its `kid` names no key Auth still holds.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not match.
    #[error("invalid signature")]
    BadSignature,
    /// Issued by someone else or for someone else.
    #[error("wrong issuer or audience")]
    WrongIssuerOrAudience,
    /// Past its `exp` (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// Before its `nbf` (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// Its `jti` was revoked.
    #[error("token revoked")]
    Revoked,
    /// Its subject is not a known user.
    #[error("unknown user")]
    UnknownUser,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User ID.
    pub sub: String,
    /// Username.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Unique token ID, for revocation.
    pub jti: String,
    /// Always [`ISSUER`].
    pub iss: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
}

/// A user Auth knows.
#[derive(Debug, Clone)]
struct User {
    id: String,
    username: String,
    display_name: String,
    email: String,
    roles: Vec<String>,
    password: String,
}

impl User {
    fn is_admin(&self) -> bool {
        self.roles
            .iter()
            .any(|role| role == crate::metadata::ADMIN_ROLE)
    }
}

/// The Auth backend: a cheap, cloneable handle on its state, which also implements the gRPC
/// service. Tests use the handle to rotate keys, revoke tokens and mint tokens directly.
#[derive(Clone)]
pub struct AuthBackend {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    clock: SharedClock,
    token_ttl_seconds: i64,
    refresh_ttl_seconds: i64,
    /// Fixed after start-up; a handful, so looked up by scanning.
    users: Vec<User>,
    state: Mutex<AuthState>,
    faults: Faults,
    requests: RequestLog,
    events: EventSink,
}

struct AuthState {
    keys: KeyRing,
    /// Signing-key seeds, token IDs and refresh tokens.
    rng: SmallRng,
    refresh_tokens: BoundedMap<RefreshToken>,
    revoked: BoundedMap<()>,
    /// Token ID → user ID of issued access tokens, so a revocation can name the user.
    issued: BoundedMap<String>,
    permissions: Permissions,
}

#[derive(Debug)]
struct RefreshToken {
    user_id: String,
    expires_at: i64,
}

impl std::fmt::Debug for AuthBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBackend")
            .field("current_kid", &self.current_kid())
            .finish_non_exhaustive()
    }
}

impl AuthBackend {
    /// An Auth backend with the demo users and permissions, its keys and tokens drawn from
    /// `seed`, its time from `clock`, remembering `request_log_len_max` request IDs, publishing
    /// revocations to `events`.
    pub fn new(
        config: &AuthConfig,
        seed: u64,
        clock: SharedClock,
        request_log_len_max: usize,
        events: EventSink,
    ) -> Result<Self, AuthError> {
        let faults = Faults::seeded(config.faults, seed, ServiceKind::Auth)?;
        let mut rng = crate::rng::stream(seed, "auth");
        let keys = KeyRing::new(
            config.jwt_algorithm,
            &config.hs256_secret,
            config.signing_keys_max,
            &mut rng,
        )?;
        let mut permissions = Permissions::new(config.permissions_max);
        for (user_id, resource, action) in demo::permissions() {
            let action = Action::parse(action).expect("demo permissions use known actions");
            // A table configured smaller than the demo grants keeps what fits: the limit guards
            // against run-time growth, not the handful of seeded rows.
            let _ = permissions.grant(&user_id, &resource, action);
        }
        let users = demo::USERS
            .iter()
            .map(|user| User {
                id: user.id.to_owned(),
                username: user.username.to_owned(),
                display_name: user.display_name.to_owned(),
                email: user.email.to_owned(),
                roles: user.roles.iter().map(|role| (*role).to_owned()).collect(),
                password: demo::DEMO_PASSWORD.to_owned(),
            })
            .collect();
        Ok(Self {
            inner: Arc::new(AuthInner {
                clock,
                token_ttl_seconds: seconds(config.token_ttl_seconds),
                refresh_ttl_seconds: seconds(config.refresh_ttl_seconds),
                users,
                state: Mutex::new(AuthState {
                    keys,
                    rng,
                    refresh_tokens: BoundedMap::new(config.refresh_tokens_max),
                    revoked: BoundedMap::new(config.revoked_tokens_max),
                    issued: BoundedMap::new(config.issued_tokens_max),
                    permissions,
                }),
                faults,
                requests: RequestLog::new(request_log_len_max),
                events,
            }),
        })
    }

    /// The fault knobs of this backend.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The request IDs this backend received.
    pub fn request_log(&self) -> &RequestLog {
        &self.inner.requests
    }

    /// The `kid` new tokens are signed with.
    pub fn current_kid(&self) -> String {
        self.state().keys.current().kid.clone()
    }

    /// Makes a new signing key current and returns its `kid`. Tokens signed by the previous keys
    /// keep verifying until [`AuthConfig::signing_keys_max`] newer keys push them out.
    pub fn rotate_signing_key(&self) -> Result<String, AuthError> {
        let mut state = self.state();
        let AuthState { keys, rng, .. } = &mut *state;
        let kid = keys.rotate(rng)?;
        tracing::info!(%kid, "rotated signing key");
        Ok(kid)
    }

    /// Revokes the token with ID `jti`: ValidateToken rejects it from now on. Publishes
    /// `token_revoked` on `auth:revocations` (with the user, when Auth still remembers whose
    /// token it was); the publish is begun before this returns and finished in the background.
    pub fn revoke_token(&self, jti: &str) {
        let user_id = {
            let mut state = self.state();
            state.revoked.insert(jti.to_owned(), ());
            state.issued.get(jti).cloned()
        };
        tracing::debug!(token_id = %jti, user_id = ?user_id, "token revoked");
        self.inner.events.publish_detached_until_taken(
            ChannelKind::AuthRevocations,
            "",
            &RevocationEvent::TokenRevoked {
                token_id: jti,
                user_id: user_id.as_deref(),
            },
        );
    }

    /// Takes `action` (`read` or `write`) on `resource` away from `user_id`. Revoking `read`
    /// also revokes `write`, which implies it; revoking `write` leaves a `read` grant in place.
    /// Admins keep their access (the role allows everything). Publishes `permission_revoked` on
    /// `auth:revocations`, whether or not a grant was held, begun before this returns.
    pub fn revoke_permission(
        &self,
        user_id: &str,
        resource: &str,
        action: &str,
    ) -> Result<(), AuthError> {
        let parsed =
            Action::parse(action).ok_or_else(|| AuthError::UnknownAction(action.to_owned()))?;
        self.state().permissions.revoke(user_id, resource, parsed);
        tracing::debug!(%user_id, %resource, %action, "permission revoked");
        self.inner.events.publish_detached_until_taken(
            ChannelKind::AuthRevocations,
            "",
            &RevocationEvent::PermissionRevoked {
                user_id,
                resource,
                action,
            },
        );
        Ok(())
    }

    /// An access token for the demo user `username`, as Login would issue.
    pub fn issue_token_for(&self, username: &str) -> Result<String, AuthError> {
        let user = self
            .user_by_name(username)
            .ok_or_else(|| AuthError::UnknownUser(username.to_owned()))?;
        self.issue_access_token(user)
    }

    /// The claims Login would put in a new access token for the demo user `username`, for tests
    /// that change one of them and sign the result with [`AuthBackend::sign_claims`].
    pub fn claims_for(&self, username: &str) -> Result<Claims, AuthError> {
        let user = self
            .user_by_name(username)
            .ok_or_else(|| AuthError::UnknownUser(username.to_owned()))?;
        let now = self.inner.clock.now_unix_seconds();
        let jti = {
            let mut state = self.state();
            let jti = random_hex(&mut state.rng, 16);
            state.issued.insert(jti.clone(), user.id.clone());
            jti
        };
        Ok(Claims {
            sub: user.id.clone(),
            name: user.username.clone(),
            roles: user.roles.clone(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(self.inner.token_ttl_seconds),
            jti,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        })
    }

    /// Signs `claims` with the current key, whatever they say: a validly signed token that is
    /// otherwise wrong (expired, not yet valid, another audience...), for tests of its refusal.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, AuthError> {
        let (kid, key, algorithm) = {
            let state = self.state();
            let current = state.keys.current();
            (
                current.kid.clone(),
                current.encoding.clone(),
                state.keys.algorithm(),
            )
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(kid);
        Ok(jsonwebtoken::encode(&header, claims, &key)?)
    }

    /// Checks an access token: signature by a kept key, issuer, audience, `exp` and `nbf` against
    /// the injected clock, revocation. Returns who it belongs to.
    pub fn validate_token(&self, token: &str) -> Result<UserContext, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        let kid = header.kid.ok_or(TokenRejection::UnknownKey)?;
        let (key, algorithm) = {
            let state = self.state();
            let key = state.keys.find(&kid).ok_or(TokenRejection::UnknownKey)?;
            (key.decoding.clone(), state.keys.algorithm())
        };

        let mut validation = Validation::new(algorithm);
        // Time is checked below against our clock; see the module docs.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    TokenRejection::WrongIssuerOrAudience
                }
                _ => TokenRejection::Malformed,
            })?
            .claims;

        let now = self.inner.clock.now_unix_seconds();
        if now >= claims.exp.saturating_add(CLOCK_LEEWAY_SECONDS) {
            return Err(TokenRejection::Expired);
        }
        if claims.nbf > now.saturating_add(CLOCK_LEEWAY_SECONDS) {
            return Err(TokenRejection::NotYetValid);
        }
        if self.state().revoked.contains_key(&claims.jti) {
            return Err(TokenRejection::Revoked);
        }
        if self.user_by_id(&claims.sub).is_none() {
            return Err(TokenRejection::UnknownUser);
        }
        Ok(UserContext {
            user_id: claims.sub,
            username: claims.name,
            roles: claims.roles,
            expires_at_unix_seconds: claims.exp,
            token_id: claims.jti,
        })
    }

    /// The public keys that verify tokens (empty with HS256, whose key is secret).
    pub fn jwks(&self) -> Jwks {
        let state = self.state();
        let keys = state
            .keys
            .keys()
            .filter_map(|key| {
                let x = key.public_x.clone()?;
                Some(Jwk {
                    kty: "OKP".to_owned(),
                    kid: key.kid.clone(),
                    alg: "EdDSA".to_owned(),
                    key_use: "sig".to_owned(),
                    crv: "Ed25519".to_owned(),
                    x,
                })
            })
            .collect();
        Jwks { keys }
    }

    fn state(&self) -> MutexGuard<'_, AuthState> {
        // The state stays consistent across a panic (every change is one insert or remove), so
        // a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn user_by_name(&self, username: &str) -> Option<&User> {
        self.inner
            .users
            .iter()
            .find(|user| user.username == username)
    }

    fn user_by_id(&self, user_id: &str) -> Option<&User> {
        self.inner.users.iter().find(|user| user.id == user_id)
    }

    fn issue_access_token(&self, user: &User) -> Result<String, AuthError> {
        let claims = self.claims_for(&user.username)?;
        self.sign_claims(&claims)
    }

    fn issue_token_pair(&self, user: &User) -> Result<TokenPair, Status> {
        let access_token = self.issue_access_token(user).map_err(|error| {
            tracing::error!(%error, "could not sign an access token");
            Status::internal("could not issue a token")
        })?;
        let expires_at = self
            .inner
            .clock
            .now_unix_seconds()
            .saturating_add(self.inner.refresh_ttl_seconds);
        let refresh_token = {
            let mut state = self.state();
            let token = format!("rt-{}", random_hex(&mut state.rng, 32));
            state.refresh_tokens.insert(
                token.clone(),
                RefreshToken {
                    user_id: user.id.clone(),
                    expires_at,
                },
            );
            token
        };
        Ok(TokenPair {
            access_token,
            refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in_seconds: self.inner.token_ttl_seconds,
        })
    }
}

#[tonic::async_trait]
impl AuthService for AuthBackend {
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        let LoginRequest { username, password } = request.into_inner();
        let user = self
            .user_by_name(&username)
            .filter(|user| user.password == password)
            .ok_or_else(|| Status::unauthenticated("invalid username or password"))?;
        Ok(Response::new(self.issue_token_pair(user)?))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        let token = request.into_inner().refresh_token;
        // Removed on use: each refresh token works once, and the reply carries its successor.
        let entry = self
            .state()
            .refresh_tokens
            .remove(&token)
            .ok_or_else(|| Status::unauthenticated("invalid refresh token"))?;
        if self.inner.clock.now_unix_seconds() >= entry.expires_at {
            return Err(Status::unauthenticated("refresh token expired"));
        }
        let user = self
            .user_by_id(&entry.user_id)
            .ok_or_else(|| Status::unauthenticated("unknown user"))?;
        Ok(Response::new(self.issue_token_pair(user)?))
    }

    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user = self
            .user_by_id(&caller.user_id)
            .ok_or_else(|| Status::not_found("unknown user"))?;
        Ok(Response::new(Profile {
            user_id: user.id.clone(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            roles: user.roles.clone(),
        }))
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<UserContext>, Status> {
        let token = request.into_inner().token;
        match AuthBackend::validate_token(self, &token) {
            Ok(context) => Ok(Response::new(context)),
            Err(rejection) => Err(Status::unauthenticated(rejection.to_string())),
        }
    }

    async fn check_permission(
        &self,
        request: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        let CheckPermissionRequest {
            user_id,
            resource,
            action,
        } = request.into_inner();
        let action = parse_grant(&user_id, &resource, &action)?;
        let allowed = match self.user_by_id(&user_id) {
            None => false,
            Some(user) if user.is_admin() => true,
            Some(user) => self.state().permissions.allows(&user.id, &resource, action),
        };
        Ok(Response::new(CheckPermissionResponse { allowed }))
    }

    async fn grant_permission(
        &self,
        request: Request<GrantPermissionRequest>,
    ) -> Result<Response<GrantPermissionResponse>, Status> {
        let GrantPermissionRequest {
            user_id,
            resource,
            action,
        } = request.into_inner();
        let action = parse_grant(&user_id, &resource, &action)?;
        if self.user_by_id(&user_id).is_none() {
            return Err(Status::not_found("unknown user"));
        }
        self.state()
            .permissions
            .grant(&user_id, &resource, action)
            .map_err(|_| Status::resource_exhausted("permission table full"))?;
        Ok(Response::new(GrantPermissionResponse {}))
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(self.jwks()))
    }
}

/// What Auth publishes on `auth:revocations`.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
enum RevocationEvent<'a> {
    /// A token was revoked; `userId` is left out when Auth no longer remembers the token.
    TokenRevoked {
        token_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
    },
    /// A permission was taken away.
    PermissionRevoked {
        user_id: &'a str,
        resource: &'a str,
        action: &'a str,
    },
}

/// Resource names are short (`project:p-1`); anything much longer is a caller bug.
const RESOURCE_LEN_MAX: usize = 256;

fn parse_grant(user_id: &str, resource: &str, action: &str) -> Result<Action, Status> {
    if user_id.is_empty() {
        return Err(Status::invalid_argument("user_id is required"));
    }
    if resource.is_empty() || resource.len() > RESOURCE_LEN_MAX {
        return Err(Status::invalid_argument(format!(
            "resource must be 1 to {RESOURCE_LEN_MAX} bytes"
        )));
    }
    Action::parse(action).ok_or_else(|| Status::invalid_argument("action must be read or write"))
}

fn random_hex(rng: &mut SmallRng, len_bytes: usize) -> String {
    let mut bytes = vec![0_u8; len_bytes];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn seconds(value: u64) -> i64 {
    // Validated to fit by AuthConfig::validate; saturate rather than wrap if it was skipped.
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::JwtAlgorithm;

    #[derive(Debug)]
    struct FixedClock(i64);

    impl seams::Clock for FixedClock {
        fn now_since_epoch(&self) -> Duration {
            Duration::from_secs(self.0.unsigned_abs())
        }
    }

    fn backend(config: &AuthConfig, now: i64) -> AuthBackend {
        AuthBackend::new(
            config,
            42,
            Arc::new(FixedClock(now)),
            10,
            EventSink::disabled(),
        )
        .unwrap()
    }

    #[test]
    fn issued_tokens_validate_and_carry_the_user() {
        let auth = backend(&AuthConfig::default(), 1_700_000_000);
        let token = auth.issue_token_for("alice").unwrap();
        let context = auth.validate_token(&token).unwrap();
        assert_eq!(context.user_id, "u-1");
        assert_eq!(context.roles, ["user", "admin"]);
        assert_eq!(context.expires_at_unix_seconds, 1_700_000_900);
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let config = AuthConfig::default();
        assert_eq!(
            backend(&config, 0).jwks().keys,
            backend(&config, 0).jwks().keys
        );
    }

    #[test]
    fn hs256_tokens_validate_and_publish_no_keys() {
        let config = AuthConfig {
            jwt_algorithm: JwtAlgorithm::Hs256,
            ..AuthConfig::default()
        };
        let auth = backend(&config, 1_700_000_000);
        let token = auth.issue_token_for("bob").unwrap();
        assert_eq!(auth.validate_token(&token).unwrap().username, "bob");
        assert!(auth.jwks().keys.is_empty());
        assert!(matches!(
            auth.rotate_signing_key(),
            Err(AuthError::RotationUnsupported)
        ));
    }

    #[test]
    fn tokens_of_one_backend_do_not_validate_on_another_seed() {
        let token = backend(&AuthConfig::default(), 0)
            .issue_token_for("alice")
            .unwrap();
        let other = AuthBackend::new(
            &AuthConfig::default(),
            7,
            Arc::new(FixedClock(0)),
            10,
            EventSink::disabled(),
        )
        .unwrap();
        assert_eq!(
            other.validate_token(&token),
            Err(TokenRejection::BadSignature)
        );
    }

    #[test]
    fn keys_beyond_the_limit_stop_verifying() {
        let auth = backend(&AuthConfig::default(), 1_700_000_000);
        let token = auth.issue_token_for("alice").unwrap();
        auth.rotate_signing_key().unwrap();
        auth.rotate_signing_key().unwrap();
        assert!(auth.validate_token(&token).is_ok());
        auth.rotate_signing_key().unwrap();
        assert_eq!(auth.validate_token(&token), Err(TokenRejection::UnknownKey));
        assert_eq!(auth.jwks().keys.len(), 3);
    }
}
