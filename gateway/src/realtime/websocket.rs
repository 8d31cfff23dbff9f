//! The WebSocket endpoints on port 8001. Everything that can refuse a client happens before the
//! upgrade, as an HTTP answer with the error shape: 401 without a valid token, 403 for a foreign
//! `Origin` or a channel the user may not read, 400 for a bad channel id or resume point.
//!
//! - `/ws/notifications`: the caller's own `user:{id}` channel.
//! - `/ws/simulation/{id}`: `simulation:{id}`, read permission on `simulation:{id}`.
//! - `/ws/collaboration/{project_id}`: `project:{id}`, read permission on `project:{id}`;
//!   publishing needs write permission.
//!
//! The token comes from `Authorization: Bearer` or the `access_token` query parameter (browsers
//! cannot set headers on WebSockets); query strings are never logged.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    Extension, Router,
    extract::{
        Path, RawQuery, State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use events::{ChannelKind, ChannelName};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

use crate::{
    auth::permissions::PermissionCache,
    auth::{self, TokenValidator},
    drain::Drain,
    ops::metrics::CloseLabels,
    realtime::WebSocketConfig,
    realtime::hub::{
        Hub, Member, ResumePoint, conflates,
        connection::{self, ConnectionContext},
        presence::PresenceTracker,
        protocol::{ServerFrame, close_code},
        queue::OutQueue,
    },
    request::{error::ApiError, error_code::ErrorCode},
    serve::connections::Admission,
};

/// What the WebSocket endpoints share.
#[derive(Debug)]
pub struct WebSocketState {
    /// The hub.
    pub hub: Arc<Hub>,
    /// Presence of this instance's collaboration connections.
    pub presence: Arc<PresenceTracker>,
    /// Token validation (shared with the HTTP path and its cache).
    pub validator: Arc<TokenValidator>,
    /// Permission checks.
    pub permissions: Arc<PermissionCache>,
    /// Limits.
    pub config: Arc<WebSocketConfig>,
    /// Changes when the gateway shuts down.
    pub shutdown: Drain,
    /// Seed for the per-connection reconnect jitter.
    pub seed: u64,
    /// Next connection ID.
    pub next_connection_id: AtomicU64,
    /// Open connections (`gateway_websocket_connections`).
    pub open_connections: Gauge,
    /// Closes the gateway sends, by code (`gateway_websocket_closes_total`).
    pub closes: Family<CloseLabels, Counter>,
}

/// One open connection, counted in `gateway_websocket_connections` while it lives (also when
/// its task is dropped at shutdown).
struct OpenConnectionGuard(Gauge);

impl OpenConnectionGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The routes of port 8001: one handler for every endpoint.
pub fn router(state: Arc<WebSocketState>) -> Router {
    Endpoint::ALL
        .into_iter()
        .fold(Router::new(), |router, endpoint| {
            router.route(endpoint.path(), get(connect).layer(Extension(endpoint)))
        })
        .with_state(state)
}

/// A WebSocket endpoint: its path, the channel its path names, its label in the metrics.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// The caller's own notifications (`user:{id}`).
    Notifications,
    /// One simulation's progress (`simulation:{id}`).
    Simulation,
    /// One project's collaboration channel (`project:{id}`).
    Collaboration,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Self::Notifications, Self::Simulation, Self::Collaboration];

    fn path(self) -> &'static str {
        match self {
            Self::Notifications => "/ws/notifications",
            Self::Simulation => "/ws/simulation/{id}",
            Self::Collaboration => "/ws/collaboration/{project_id}",
        }
    }

    /// Named as routes on port 8000 are named: method and template.
    fn label(self) -> &'static str {
        match self {
            Self::Notifications => "GET /ws/notifications",
            Self::Simulation => "GET /ws/simulation/{id}",
            Self::Collaboration => "GET /ws/collaboration/{project_id}",
        }
    }

    /// The kind of the channel whose id the path holds; the notifications endpoint names none.
    fn channel_kind(self) -> Option<ChannelKind> {
        match self {
            Self::Notifications => None,
            Self::Simulation => Some(ChannelKind::Simulation),
            Self::Collaboration => Some(ChannelKind::Project),
        }
    }
}

type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

/// The connection's place under the connection limits (absent where no limit applies, as in
/// in-process tests); the upgraded socket holds it until it closes.
type Place = Option<Extension<Admission>>;

async fn connect(
    State(state): State<Arc<WebSocketState>>,
    Extension(endpoint): Extension<Endpoint>,
    place: Place,
    id: Option<Path<String>>,
    upgrade: Upgrade,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let channel = endpoint.channel_kind().zip(id.map(|Path(id)| id));
    let mut response = match prepare(state, place, channel, upgrade, headers, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    // Named for the metrics as routes on port 8000 are named: method and template.
    response
        .extensions_mut()
        .insert(crate::ops::metrics::RouteLabel(endpoint.label().into()));
    response
}

/// The query parameters a WebSocket URL may carry.
#[derive(Debug, Default)]
struct Params {
    access_token: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
}

fn parse_params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut params = Params::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "access_token" => params.access_token = Some(value.into_owned()),
            "since" => {
                let since: u64 = value.parse().map_err(|_| {
                    ApiError::bad_request(
                        ErrorCode::InvalidArgument,
                        "since must be an offset (a number)",
                    )
                })?;
                // The next offset must exist: a client cannot have seen the largest one.
                if since.checked_add(1).is_none() {
                    return Err(ApiError::bad_request(
                        ErrorCode::InvalidArgument,
                        format!("since must be below {}", u64::MAX),
                    ));
                }
                params.since = Some(since);
            }
            "epoch" => params.epoch = Some(value.into_owned()),
            other => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidArgument,
                    format!("unknown query parameter {other:?}"),
                ));
            }
        }
    }
    if params.since.is_some() != params.epoch.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArgument,
            "since and epoch go together",
        ));
    }
    Ok(params)
}

fn origin_allowed(config: &WebSocketConfig, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    config
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
}

async fn prepare(
    state: Arc<WebSocketState>,
    place: Place,
    target: Option<(ChannelKind, String)>,
    upgrade: Upgrade,
    headers: HeaderMap,
    query: Option<String>,
) -> Result<Response, ApiError> {
    if !origin_allowed(&state.config, &headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::OriginNotAllowed,
            "this origin may not open WebSockets here",
        ));
    }
    let params = parse_params(query.as_deref())?;
    let token = match (auth::bearer_token(&headers), &params.access_token) {
        (Ok(token), _) => token.to_owned(),
        (Err(auth::AuthError::Missing), Some(token)) => token.clone(),
        (Err(error), _) => return Err(error.into()),
    };
    let user = state.validator.validate(&token).await?;
    let channel = match &target {
        None => ChannelName::new(ChannelKind::User, &user.user_id),
        Some((kind, id)) => ChannelName::new(*kind, id),
    }
    .map_err(|error| ApiError::bad_request(ErrorCode::InvalidChannel, error.to_string()))?;
    let may_publish = match channel.kind() {
        ChannelKind::User => false,
        kind => {
            let resource = channel.as_str();
            let readable = state
                .permissions
                .allowed(&user.user_id, resource, "read")
                .await
                .map_err(|_| {
                    ApiError::unavailable(
                        ErrorCode::AuthUnavailable,
                        "permissions cannot be checked now",
                    )
                })?;
            if !readable {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::PermissionDenied,
                    format!("you may not read {resource}"),
                ));
            }
            kind == ChannelKind::Project
                && state
                    .permissions
                    .allowed(&user.user_id, resource, "write")
                    .await
                    .unwrap_or(false)
        }
    };
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::WebsocketUpgradeRequired, rejection.body_text())
    })?;
    let resume = params
        .since
        .zip(params.epoch)
        .map(|(since, epoch)| ResumePoint { since, epoch });
    let connection_id = state.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let member = Member {
        connection_id,
        user_id: user.user_id.clone(),
        roles: user.roles.clone(),
        token_id: user.token_id.clone(),
    };
    let config = state.config.clone();
    let queue = Arc::new(OutQueue::new(
        channel.as_str(),
        config.outbound_queue_len_max,
        conflates(channel.kind()),
    ));
    let reconnect_after_ms = jitter(state.seed, connection_id, config.reconnect_jitter_ms);
    let username = user.username.clone();
    let open_connections = state.open_connections.clone();
    Ok(upgrade
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(config.write_buffer_bytes)
        .max_write_buffer_size(config.write_buffer_bytes_max)
        .max_message_size(config.inbound_message_bytes_max)
        .max_frame_size(config.inbound_message_bytes_max)
        .on_upgrade(move |socket| async move {
            let _place = place;
            let _counted = OpenConnectionGuard::new(open_connections);
            let hub = state.hub.clone();
            let presence = (channel.kind() == ChannelKind::Project).then(|| state.presence.clone());
            let joined = async {
                hub.join(&channel, member.clone(), queue.clone(), resume)
                    .await?;
                if let Some(presence) = &presence {
                    let present = presence
                        .join(&channel, member.connection_id, &member.user_id, &username)
                        .await?;
                    queue.push_control(&ServerFrame::PresenceState {
                        channel: channel.as_str(),
                        epoch: &present.epoch,
                        offset: present.offset,
                        members: &present.members,
                        you: &presence.connection_name(member.connection_id),
                    });
                }
                Ok::<_, events::BusError>(())
            };
            if let Err(error) = joined.await {
                tracing::warn!(%error, %channel, "join failed");
                queue.close(close_code::INTERNAL_ERROR, "event bus unavailable");
            }
            connection::run(
                socket,
                ConnectionContext {
                    hub,
                    channel,
                    member,
                    username,
                    queue,
                    config,
                    may_publish,
                    presence,
                    shutdown: state.shutdown.clone(),
                    reconnect_after_ms,
                    closes: state.closes.clone(),
                },
            )
            .await;
        }))
}

/// A per-connection delay in `[0, max_ms]`, derived from the seed (splitmix64), so clients told to
/// reconnect at shutdown do not all come back at once.
fn jitter(seed: u64, connection_id: u64, max_ms: u64) -> u64 {
    let mut z = seed ^ connection_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    if max_ms == 0 { 0 } else { z % (max_ms + 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_need_both_parts_and_numbers() {
        assert!(parse_params(Some("since=5&epoch=e1")).is_ok());
        assert!(parse_params(Some("since=5")).is_err());
        assert!(parse_params(Some("since=x&epoch=e")).is_err());
        assert!(parse_params(Some("what=1")).is_err());
        assert_eq!(
            parse_params(Some("access_token=a.b.c"))
                .unwrap()
                .access_token
                .as_deref(),
            Some("a.b.c")
        );
    }

    #[test]
    fn origins_are_checked_against_the_allowlist() {
        let mut config = WebSocketConfig::default();
        let mut headers = HeaderMap::new();
        assert!(
            origin_allowed(&config, &headers),
            "no Origin: not a browser"
        );
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&config, &headers));
        config.allowed_origins = vec!["https://app.example".into()];
        assert!(!origin_allowed(&config, &headers));
        headers.insert(header::ORIGIN, "https://app.example".parse().unwrap());
        assert!(origin_allowed(&config, &headers));
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let delays: Vec<u64> = (0..50).map(|id| jitter(7, id, 5_000)).collect();
        assert!(delays.iter().all(|d| *d <= 5_000));
        assert!(
            delays
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 10
        );
    }
}
