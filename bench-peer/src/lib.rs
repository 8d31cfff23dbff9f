//! The load mix's four routes written by hand, the way a competent team would write them without a
//! gateway. **This crate exists only for measurement**: `ci/bench-peer.sh` runs it beside the
//! gateway, against the same mock backends, so the gateway's throughput has a yardstick (issue 16).
//! It is not deployed, does nothing but these four routes, and must stay honest: it does the work
//! a real service of these routes needs (authentication, the caller forwarded, deadlines, proto3
//! JSON, one error shape), no less and no more.
//!
//! | route | backend call |
//! |---|---|
//! | `GET /api/auth/profile` | `auth.v1.AuthService/GetProfile` |
//! | `GET /api/projects?pageSize=&pageToken=` | `project.v1.ProjectService/ListProjects` |
//! | `GET /api/simulations/{id}` | `simulation.v1.SimulationService/GetSimulation` |
//! | `POST /api/projects` (a `NewProject` JSON body) | `project.v1.ProjectService/CreateProject` |
//!
//! - Backends: one lazily connected tonic [`Channel`] each, from the generated clients of the
//!   `proto` crate.
//! - Authentication: `Authorization: Bearer <token>`, checked with Auth's `ValidateToken`; valid
//!   answers are kept in a `Mutex<HashMap>` until the token expires (bounded by
//!   [`TOKEN_CACHE_ENTRIES_MAX`]). No token, or one Auth rejects: 401.
//! - The caller reaches the backends as the gateway sends it: `x-request-id`, `x-user-id`,
//!   `x-user-name` (percent-encoded where not plain ASCII) and `x-user-roles` (comma-separated).
//! - Answers: the prost messages mapped by hand to the gateway's proto3 JSON (lowerCamelCase
//!   names, every field present except unset messages, 64-bit integers as strings, enums by name,
//!   timestamps in RFC 3339).
//! - Errors: `{"error":{"code","message","request_id"}}`, gRPC statuses mapped to HTTP as in
//!   `docs/errors.md`, messages of server-side failures replaced.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{
        Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use proto::{
    auth::v1::{
        GetProfileRequest, Profile, UserContext, ValidateTokenRequest,
        auth_service_client::AuthServiceClient,
    },
    project::v1::{
        CreateProjectRequest, ListProjectsRequest, ListProjectsResponse, NewProject, Project,
        project_service_client::ProjectServiceClient,
    },
    simulation::v1::{
        GetSimulationRequest, Simulation, SimulationState,
        simulation_service_client::SimulationServiceClient,
    },
};
use seams::{Clock, SystemClock};
use serde::{Deserialize, Serialize};
use tonic::{
    Code, Status,
    metadata::{Ascii, MetadataValue},
    transport::{Channel, Endpoint},
};

/// Longest wait for one backend call (the gateway's default `deadline_ms`).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a backend connection (the gateway's default `connect_timeout_ms`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Most cached token validations; past it, expired ones are dropped, then new tokens are
/// validated on every request.
pub const TOKEN_CACHE_ENTRIES_MAX: usize = 100_000;

/// Characters escaped in metadata values: controls, non-ASCII (by the encoder) and `%` itself.
const METADATA_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

/// One client per backend, each on its own channel.
#[derive(Debug, Clone)]
pub struct Backends {
    auth: AuthServiceClient<Channel>,
    project: ProjectServiceClient<Channel>,
    simulation: SimulationServiceClient<Channel>,
}

impl Backends {
    /// Clients of the three backends at these URLs (`http://host:port`, or `host:port`). Nothing
    /// is dialled until the first call.
    pub fn connect_lazy(
        auth: &str,
        project: &str,
        simulation: &str,
    ) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            auth: AuthServiceClient::new(channel(auth)?),
            project: ProjectServiceClient::new(channel(project)?),
            simulation: SimulationServiceClient::new(channel(simulation)?),
        })
    }
}

/// A lazily connected channel, every timeout and window chosen here (the gateway's values).
fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    Ok(Endpoint::from_shared(url)?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .connect_lazy())
}

/// Who a valid token belongs to, as metadata ready to forward.
#[derive(Debug)]
struct User {
    user_id: MetadataValue<Ascii>,
    username: MetadataValue<Ascii>,
    roles: MetadataValue<Ascii>,
    expires_at_unix_seconds: i64,
}

impl User {
    fn from_context(context: UserContext) -> Result<Self, ApiError> {
        let value = |text: &str| {
            MetadataValue::try_from(utf8_percent_encode(text, METADATA_ESCAPES).to_string())
                .map_err(|_| ApiError::unauthenticated("the token is invalid or expired"))
        };
        Ok(Self {
            user_id: value(&context.user_id)?,
            username: value(&context.username)?,
            roles: value(&context.roles.join(","))?,
            expires_at_unix_seconds: context.expires_at_unix_seconds,
        })
    }
}

/// The peer: its backends, its token cache and its request counter.
#[derive(Debug)]
pub struct Peer {
    backends: Backends,
    tokens: Mutex<HashMap<String, Arc<User>>>,
    clock: SystemClock,
    /// Per-process prefix of request IDs.
    request_id_prefix: u32,
    requests: AtomicU64,
}

impl Peer {
    /// A peer calling `backends`.
    pub fn new(backends: Backends) -> Arc<Self> {
        let clock = SystemClock;
        Arc::new(Self {
            backends,
            tokens: Mutex::new(HashMap::new()),
            request_id_prefix: clock.now_since_epoch().subsec_nanos(),
            clock,
            requests: AtomicU64::new(0),
        })
    }

    /// The four routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/auth/profile", get(profile))
            .route("/api/projects", get(list_projects).post(create_project))
            .route("/api/simulations/{id}", get(get_simulation))
            .with_state(self.clone())
    }

    /// Authenticates the request, runs `call` and writes its answer or error as JSON.
    async fn answer<T: Serialize>(
        &self,
        headers: &HeaderMap,
        call: impl AsyncFnOnce(&Caller) -> Result<T, ApiError>,
    ) -> Response {
        let sequence = self.requests.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{:08x}-{sequence:012x}", self.request_id_prefix);
        // Hex digits and a dash: always a valid metadata value.
        let id_metadata = MetadataValue::try_from(request_id.as_str()).ok();
        let result = match self.authenticate(headers, id_metadata.clone()).await {
            Ok(user) => {
                let caller = Caller {
                    request_id: id_metadata,
                    user,
                };
                call(&caller).await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(body) => match serde_json::to_vec(&body) {
                Ok(bytes) => json_response(StatusCode::OK, &request_id, bytes),
                Err(_) => ApiError::internal().into_response(&request_id),
            },
            Err(error) => error.into_response(&request_id),
        }
    }

    /// The user of the request's bearer token: from the cache while the token is unexpired,
    /// else from Auth's `ValidateToken`.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        request_id: Option<MetadataValue<Ascii>>,
    ) -> Result<Arc<User>, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("missing bearer token"))?
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .map(|(_, token)| token)
            .ok_or_else(|| ApiError::unauthenticated("malformed bearer token"))?;
        let now = self.clock.now_unix_seconds();
        let cached = self.tokens().get(token).cloned();
        if let Some(user) = cached.filter(|user| user.expires_at_unix_seconds > now) {
            return Ok(user);
        }

        let mut request = tonic::Request::new(ValidateTokenRequest {
            token: token.to_owned(),
        });
        if let Some(id) = request_id {
            request.metadata_mut().insert("x-request-id", id);
        }
        let context = match self.backends.auth.clone().validate_token(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) if status.code() == Code::Unauthenticated => {
                return Err(ApiError::unauthenticated("the token is invalid or expired"));
            }
            Err(_) => {
                return Err(ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "auth_unavailable",
                    message: "the Auth service is unavailable".into(),
                });
            }
        };
        if context.expires_at_unix_seconds <= now {
            return Err(ApiError::unauthenticated("the token is invalid or expired"));
        }
        let user = Arc::new(User::from_context(context)?);
        let mut tokens = self.tokens();
        if tokens.len() >= TOKEN_CACHE_ENTRIES_MAX {
            tokens.retain(|_, user| user.expires_at_unix_seconds > now);
        }
        if tokens.len() < TOKEN_CACHE_ENTRIES_MAX {
            tokens.insert(token.to_owned(), user.clone());
        }
        Ok(user)
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<User>>> {
        // The map holds no invariant a panic could break half-way.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An authenticated request: its ID and user, which every backend call carries.
struct Caller {
    request_id: Option<MetadataValue<Ascii>>,
    user: Arc<User>,
}

impl Caller {
    /// `message` as a gRPC request with the caller's metadata.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        if let Some(id) = &self.request_id {
            metadata.insert("x-request-id", id.clone());
        }
        metadata.insert("x-user-id", self.user.user_id.clone());
        metadata.insert("x-user-name", self.user.username.clone());
        metadata.insert("x-user-roles", self.user.roles.clone());
        request
    }
}

async fn profile(State(peer): State<Arc<Peer>>, headers: HeaderMap) -> Response {
    peer.answer(&headers, async |caller| {
        let mut auth = peer.backends.auth.clone();
        let profile = auth
            .get_profile(caller.request(GetProfileRequest {}))
            .await?;
        Ok(ProfileJson::from(profile.into_inner()))
    })
    .await
}

/// The query of `GET /api/projects`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListProjectsQuery {
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
}

async fn list_projects(
    State(peer): State<Arc<Peer>>,
    headers: HeaderMap,
    query: Result<Query<ListProjectsQuery>, QueryRejection>,
) -> Response {
    peer.answer(&headers, async |caller| {
        let Query(query) = query.map_err(|rejection| {
            ApiError::bad_request("invalid_argument", rejection.body_text())
        })?;
        let request = ListProjectsRequest {
            page_size: query.page_size,
            page_token: query.page_token,
        };
        let mut project = peer.backends.project.clone();
        let list = project.list_projects(caller.request(request)).await?;
        Ok(ListProjectsJson::from(list.into_inner()))
    })
    .await
}

/// The body of `POST /api/projects`: the new project's client-settable fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewProjectJson {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    template_id: String,
}

async fn create_project(
    State(peer): State<Arc<Peer>>,
    headers: HeaderMap,
    body: Result<Json<NewProjectJson>, JsonRejection>,
) -> Response {
    peer.answer(&headers, async |caller| {
        let Json(new) = body.map_err(|rejection| ApiError {
            status: rejection.status(),
            code: if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                "unsupported_media_type"
            } else {
                "invalid_json"
            },
            message: rejection.body_text(),
        })?;
        let request = CreateProjectRequest {
            project: Some(NewProject {
                name: new.name,
                description: new.description,
                template_id: new.template_id,
            }),
        };
        let mut project = peer.backends.project.clone();
        let created = project.create_project(caller.request(request)).await?;
        Ok(ProjectJson::from(created.into_inner()))
    })
    .await
}

async fn get_simulation(
    State(peer): State<Arc<Peer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    peer.answer(&headers, async |caller| {
        let mut simulation = peer.backends.simulation.clone();
        let found = simulation
            .get_simulation(caller.request(GetSimulationRequest { id }))
            .await?;
        Ok(SimulationJson::from(found.into_inner()))
    })
    .await
}

/// `auth.v1.Profile` in proto3 JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileJson {
    user_id: String,
    username: String,
    display_name: String,
    email: String,
    roles: Vec<String>,
}

impl From<Profile> for ProfileJson {
    fn from(profile: Profile) -> Self {
        Self {
            user_id: profile.user_id,
            username: profile.username,
            display_name: profile.display_name,
            email: profile.email,
            roles: profile.roles,
        }
    }
}

/// `project.v1.Project` in proto3 JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProjectJson {
    id: String,
    name: String,
    description: String,
    owner_id: String,
    template_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_time: Option<String>,
}

impl From<Project> for ProjectJson {
    fn from(project: Project) -> Self {
        Self {
            id: project.id,
            name: project.name,
            description: project.description,
            owner_id: project.owner_id,
            template_id: project.template_id,
            create_time: project.create_time.as_ref().map(ToString::to_string),
            update_time: project.update_time.as_ref().map(ToString::to_string),
        }
    }
}

/// `project.v1.ListProjectsResponse` in proto3 JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListProjectsJson {
    projects: Vec<ProjectJson>,
    next_page_token: String,
}

impl From<ListProjectsResponse> for ListProjectsJson {
    fn from(list: ListProjectsResponse) -> Self {
        Self {
            projects: list.projects.into_iter().map(ProjectJson::from).collect(),
            next_page_token: list.next_page_token,
        }
    }
}

/// An enum value in proto3 JSON: its name, or its number when this build does not know it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum EnumJson {
    Name(&'static str),
    Number(i32),
}

/// `simulation.v1.Simulation` in proto3 JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SimulationJson {
    id: String,
    project_id: String,
    name: String,
    state: EnumJson,
    progress_percent: f64,
    created_by: String,
    /// int64: a string in proto3 JSON.
    steps: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    update_time: Option<String>,
}

impl From<Simulation> for SimulationJson {
    fn from(simulation: Simulation) -> Self {
        let state = SimulationState::try_from(simulation.state)
            .map(|state| EnumJson::Name(state.as_str_name()))
            .unwrap_or(EnumJson::Number(simulation.state));
        Self {
            id: simulation.id,
            project_id: simulation.project_id,
            name: simulation.name,
            state,
            progress_percent: simulation.progress_percent,
            created_by: simulation.created_by,
            steps: simulation.steps.to_string(),
            create_time: simulation.create_time.as_ref().map(ToString::to_string),
            update_time: simulation.update_time.as_ref().map(ToString::to_string),
        }
    }
}

/// An error answer: its HTTP status, stable code and message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn unauthenticated(message: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: message.to_owned(),
        }
    }

    fn bad_request(code: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message,
        }
    }

    fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the backend failed to process the request".into(),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.code, "message": self.message, "request_id": request_id}
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = json_response(self.status, request_id, bytes);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A backend's status as the client sees it (the table of `docs/errors.md`): client errors keep
/// the backend's message, server-side ones get a fixed sentence.
impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        let (http, code) = match status.code() {
            Code::Ok | Code::Unknown => (500, "unknown"),
            Code::Cancelled => (499, "cancelled"),
            Code::InvalidArgument => (400, "invalid_argument"),
            Code::DeadlineExceeded => (504, "deadline_exceeded"),
            Code::NotFound => (404, "not_found"),
            Code::AlreadyExists => (409, "already_exists"),
            Code::PermissionDenied => (403, "permission_denied"),
            Code::ResourceExhausted => (429, "resource_exhausted"),
            Code::FailedPrecondition => (400, "failed_precondition"),
            Code::Aborted => (409, "aborted"),
            Code::OutOfRange => (400, "out_of_range"),
            Code::Unimplemented => (501, "unimplemented"),
            Code::Internal => (500, "internal"),
            Code::Unavailable => (503, "unavailable"),
            Code::DataLoss => (500, "data_loss"),
            Code::Unauthenticated => (401, "unauthenticated"),
        };
        let message = match status.code() {
            Code::DeadlineExceeded => "the backend did not answer in time",
            Code::Unimplemented => "the backend does not implement this method",
            Code::Unavailable => "the backend service is unavailable",
            _ if http >= 500 => "the backend failed to process the request",
            _ => status.message(),
        };
        Self {
            status: StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.to_owned(),
        }
    }
}

fn json_response(status: StatusCode, request_id: &str, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::try_from(request_id) {
        headers.insert("x-request-id", id);
    }
    response
}

/// Serves the peer's routes on `listener` (HTTP/1.1, and HTTP/2 with prior knowledge) until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    peer: Arc<Peer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|stream| {
        // As the gateway's listeners: small answers go out at once.
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, peer.router())
        .with_graceful_shutdown(shutdown)
        .await
}
