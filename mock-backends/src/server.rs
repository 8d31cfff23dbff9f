//! Entry points. The caller owns I/O: [`serve`] takes a bound listener, one [`MockService`] and a
//! shutdown signal and serves until it fires; [`MockBackends::start`]
//! binds all three through a [`Net`] and returns their addresses and handles.
//!
//! Each port serves, beside its backend's service: `grpc.health.v1` and `mockcontrol.v1`. The
//! backend's own service is wrapped, outermost first, by the request-ID record and the fault
//! layer (recording first, so calls that fail or hang by injection are still recorded); health
//! and control are not, so a hung backend can still be un-hung. Every accepted connection passes
//! through [`GatedListener`], which implements `down` and bounds shutdown.
//!
//! Events: given a publisher in [`StartOptions`], the backends publish on it (see
//! [`crate::publish`]); [`serve`] also runs the Simulation ticker until shutdown.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use events::Publisher;
use proto::{
    auth::v1::auth_service_server::AuthServiceServer,
    project::v1::project_service_server::ProjectServiceServer,
    simulation::v1::simulation_service_server::SimulationServiceServer,
};
use seams::{Net, NetListener, SharedClock};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tonic::{body::Body, server::NamedService, transport::Server};
use tower::{Layer, Service};

use crate::{
    auth::{AuthBackend, AuthError},
    auth_client::AuthClient,
    config::{ConfigError, MockConfig, ServerConfig, ServiceKind},
    connection::GatedListener,
    control::{ControlApi, ControlPlane},
    control_proto::control_service_server::ControlServiceServer,
    faults::{FaultLayer, Faults},
    health,
    project::ProjectBackend,
    publish::EventSink,
    request_log::{RequestLog, RequestLogLayer},
    simulation::SimulationBackend,
};

/// Serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server stopped with an error.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The task serving a backend panicked or was cancelled.
    #[error("server task of {service} failed: {reason}")]
    Task {
        /// The backend whose task failed.
        service: ServiceKind,
        /// The panic or cancellation.
        reason: String,
    },
}

/// Starting the backends failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Auth could not be set up (signing keys).
    #[error("auth setup failed: {0}")]
    Auth(#[from] AuthError),
    /// A listener could not be bound.
    #[error("could not bind {service} on {addr}: {source}")]
    Bind {
        /// The backend.
        service: ServiceKind,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// Serves `service` on `listener` until `shutdown` completes, then drains (see
/// [`ServerConfig`]). `control` lists the other backends this port's control service may reach;
/// the service itself is always reachable. Beside Simulation's server runs its ticker
/// ([`SimulationBackend::publish_updates`]), which stops when shutdown begins (or serving ends).
pub async fn serve<L: NetListener>(
    listener: L,
    service: MockService,
    control: ControlPlane,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let parts = service.setup(control, config);
    match service {
        MockService::Auth(auth) => {
            serve_service(listener, AuthServiceServer::new(auth), parts, shutdown).await
        }
        MockService::Project(project) => {
            serve_service(
                listener,
                ProjectServiceServer::new(project),
                parts,
                shutdown,
            )
            .await
        }
        MockService::Simulation(simulation) => {
            serve_with_ticker(listener, simulation, parts, shutdown).await
        }
    }
}

/// Serves Simulation with its ticker beside the server.
async fn serve_with_ticker<L: NetListener>(
    listener: L,
    backend: SimulationBackend,
    parts: ServerSetup,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // Dropped when shutdown begins or, failing that, when serving ends: either stops the ticker.
    let (ticker_running, ticker_stop) = oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        drop(ticker_running);
    };
    let ticker = backend.clone();
    let ticker = async move {
        ticker
            .publish_updates(async move {
                let _ = ticker_stop.await;
            })
            .await;
    };
    let serving = serve_service(
        listener,
        SimulationServiceServer::new(backend),
        parts,
        shutdown,
    );
    let (served, ()) = tokio::join!(serving, ticker);
    served
}

/// What every backend's server is built from besides its service.
struct ServerSetup {
    kind: ServiceKind,
    faults: Faults,
    requests: RequestLog,
    control: ControlPlane,
    config: ServerConfig,
}

async fn serve_service<L, S>(
    listener: L,
    service: S,
    parts: ServerSetup,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    L: NetListener,
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let ServerSetup {
        kind,
        faults,
        requests,
        control,
        config,
    } = parts;
    // `draining`: shutdown has begun (hung calls are released). `killed`: the grace period is
    // over (every connection still open is reset).
    let (drain, draining) = watch::channel(false);
    let (kill, killed) = watch::channel(false);

    let service = RequestLogLayer::new(requests)
        .layer(FaultLayer::new(faults.clone(), draining.clone()).layer(service));
    let (health_reporter, health_service) = health::serving::<S>().await;
    let control_service = ControlServiceServer::new(ControlApi::new(control, kind));
    let incoming = seams::adapters::tonic_incoming(GatedListener::new(listener, faults, killed));

    let router = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_millis(
            config.http2_keepalive_interval_ms,
        )))
        .http2_keepalive_timeout(Some(Duration::from_millis(
            config.http2_keepalive_timeout_ms,
        )))
        .max_concurrent_streams(config.max_concurrent_streams)
        .add_service(health_service)
        .add_service(control_service)
        .add_service(service);
    let signal = async move {
        shutdown.await;
        tracing::info!(service = %kind, "shutting down");
        health::not_serving::<S>(&health_reporter).await;
        drain.send_replace(true);
    };
    let serving = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(serving);

    let mut drain_started = draining;
    tokio::select! {
        biased;
        result = &mut serving => return Ok(result?),
        _ = drain_started.wait_for(|draining| *draining) => {}
    }
    if let Ok(result) = tokio::time::timeout(
        Duration::from_millis(config.shutdown_grace_ms),
        &mut serving,
    )
    .await
    {
        return Ok(result?);
    }
    tracing::warn!(service = %kind, "shutdown grace period over; resetting open connections");
    kill.send_replace(true);
    // Every connection now fails its next read, so the server finishes promptly.
    Ok(serving.await?)
}

/// One backend serving on a spawned task.
#[derive(Debug)]
pub struct RunningService {
    kind: ServiceKind,
    addr: SocketAddr,
    faults: Faults,
    requests: RequestLog,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl RunningService {
    /// Which backend this is.
    pub fn kind(&self) -> ServiceKind {
        self.kind
    }

    /// The address it is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its fault knobs.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The record of request IDs it received.
    pub fn request_log(&self) -> &RequestLog {
        &self.requests
    }

    /// The last request IDs it received, oldest first.
    pub fn recent_request_ids(&self) -> Vec<String> {
        self.requests.recent()
    }

    /// Stops serving: NOT_SERVING, in-flight calls drain for up to the grace period, then open
    /// connections are reset.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            // An error means the server already stopped; joining reports how.
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            Err(error) => Err(ServeError::Task {
                service: self.kind,
                reason: error.to_string(),
            }),
        }
    }

    /// Serves on `listener` on a spawned task with `serve(listener, shutdown)`.
    fn spawn<L, F, Fut>(
        (listener, addr): (L, SocketAddr),
        kind: ServiceKind,
        faults: Faults,
        requests: RequestLog,
        serve: F,
    ) -> Self
    where
        L: NetListener,
        F: FnOnce(L, ShutdownSignal) -> Fut,
        Fut: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let shutdown: ShutdownSignal = Box::pin(async move {
            // A dropped sender (the handle dropped) also shuts the server down.
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, shutdown));
        tracing::info!(service = %kind, %addr, "listening");
        Self {
            kind,
            addr,
            faults,
            requests,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        // Not shut down properly: stop at once rather than leave a server nobody can reach.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

type ShutdownSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Binds `addr` through `net`; returns the listener and the address it actually got.
async fn bind<N: Net>(
    net: &N,
    service: ServiceKind,
    addr: SocketAddr,
) -> Result<(N::Listener, SocketAddr), StartError> {
    let error = |source| StartError::Bind {
        service,
        addr,
        source,
    };
    let listener = net.bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// The address to dial for a listener bound to `bound`: loopback when it is bound to every
/// interface, since "0.0.0.0" is not a destination.
fn dial_addr(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port()).to_string()
}

/// What the backends are started with beyond their [`MockConfig`]: values that are not
/// configuration (they cannot be written in a file).
#[derive(Clone, Default)]
pub struct StartOptions {
    /// Where the backends publish events (`simulation:{id}` progress, `project:{id}` and
    /// `user:{id}` notifications, `auth:revocations`). `None`, the default: nothing is published.
    pub publisher: Option<Arc<dyn Publisher>>,
}

impl StartOptions {
    /// Options publishing events on `publisher` (an `events::MemoryBus`, the Redis bus, ...).
    pub fn with_publisher(publisher: Arc<dyn Publisher>) -> Self {
        Self {
            publisher: Some(publisher),
        }
    }

    fn events(&self, config: &MockConfig) -> EventSink {
        EventSink::new(self.publisher.clone(), &config.events)
    }
}

impl fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartOptions")
            .field("publisher", &self.publisher.as_ref().map(|_| "set"))
            .finish()
    }
}

/// Starts the mock backends on real or simulated networks.
#[derive(Debug, Clone, Copy)]
pub struct MockBackends;

impl MockBackends {
    /// Validates `config`, binds Auth, Project and Simulation through `net` on their configured
    /// addresses and serves each on its own task. Project and Simulation call the Auth started
    /// here (unless [`crate::UpstreamConfig::auth_addr`] says otherwise); the three ports share
    /// one control plane. Publishes no events; see [`MockBackends::start_with`].
    pub async fn start<N: Net>(
        net: N,
        clock: SharedClock,
        config: MockConfig,
    ) -> Result<RunningBackends, StartError> {
        Self::start_with(net, clock, config, StartOptions::default()).await
    }

    /// [`MockBackends::start`] with `options`: with a publisher, the backends publish events on it.
    pub async fn start_with<N: Net>(
        net: N,
        clock: SharedClock,
        config: MockConfig,
        options: StartOptions,
    ) -> Result<RunningBackends, StartError> {
        config.validate()?;
        let log_len = config.server.request_log_len_max;
        let events = options.events(&config);
        let auth = AuthBackend::new(
            &config.auth,
            config.seed,
            clock.clone(),
            log_len,
            events.clone(),
        )?;
        let auth_listener = bind(&net, ServiceKind::Auth, config.auth.addr).await?;
        let project_listener = bind(&net, ServiceKind::Project, config.project.addr).await?;
        let simulation_listener =
            bind(&net, ServiceKind::Simulation, config.simulation.addr).await?;
        let auth_addr = auth_listener.1;
        let upstream = config
            .upstream
            .auth_addr
            .clone()
            .unwrap_or_else(|| dial_addr(auth_addr));
        let auth_client = AuthClient::connect_lazy(net.clone(), &upstream, &config.upstream)?;
        let project = ProjectBackend::new(
            &config.project,
            config.seed,
            clock.clone(),
            auth_client.clone(),
            log_len,
            events.clone(),
        )?;
        let simulation = SimulationBackend::new(
            &config.simulation,
            config.seed,
            clock,
            auth_client,
            log_len,
            events,
        )?;
        let plane = ControlPlane::new()
            .with_auth(auth.clone())
            .with_faults(ServiceKind::Project, project.faults().clone())
            .with_faults(ServiceKind::Simulation, simulation.faults().clone());
        let server = config.server;
        let auth_service =
            MockService::Auth(auth.clone()).spawn(auth_listener, plane.clone(), server.clone());
        let project_service =
            MockService::Project(project).spawn(project_listener, plane.clone(), server.clone());
        let simulation_service =
            MockService::Simulation(simulation).spawn(simulation_listener, plane, server);

        Ok(RunningBackends {
            auth,
            auth_service,
            project_service,
            simulation_service,
        })
    }

    /// Validates `config` and starts one backend alone, as a separate process would run it.
    /// Project and Simulation call Auth at [`crate::UpstreamConfig::auth_addr`], or
    /// [`crate::AuthConfig::addr`] when that is unset. Its control plane reaches only itself.
    /// Publishes no events; see [`MockBackends::start_service_with`].
    pub async fn start_service<N: Net>(
        net: N,
        clock: SharedClock,
        config: MockConfig,
        kind: ServiceKind,
    ) -> Result<RunningService, StartError> {
        Self::start_service_with(net, clock, config, kind, StartOptions::default()).await
    }

    /// [`MockBackends::start_service`] with `options`: with a publisher, the backend publishes
    /// its events on it.
    pub async fn start_service_with<N: Net>(
        net: N,
        clock: SharedClock,
        config: MockConfig,
        kind: ServiceKind,
        options: StartOptions,
    ) -> Result<RunningService, StartError> {
        config.validate()?;
        let log_len = config.server.request_log_len_max;
        let events = options.events(&config);
        let auth_client = || {
            let upstream = config
                .upstream
                .auth_addr
                .clone()
                .unwrap_or_else(|| dial_addr(config.auth.addr));
            AuthClient::connect_lazy(net.clone(), &upstream, &config.upstream)
        };
        let (service, addr) = match kind {
            ServiceKind::Auth => (
                MockService::Auth(AuthBackend::new(
                    &config.auth,
                    config.seed,
                    clock,
                    log_len,
                    events,
                )?),
                config.auth.addr,
            ),
            ServiceKind::Project => (
                MockService::Project(ProjectBackend::new(
                    &config.project,
                    config.seed,
                    clock,
                    auth_client()?,
                    log_len,
                    events,
                )?),
                config.project.addr,
            ),
            ServiceKind::Simulation => (
                MockService::Simulation(SimulationBackend::new(
                    &config.simulation,
                    config.seed,
                    clock,
                    auth_client()?,
                    log_len,
                    events,
                )?),
                config.simulation.addr,
            ),
        };
        let listener = bind(&net, kind, addr).await?;
        Ok(service.spawn(listener, ControlPlane::new(), config.server))
    }
}

/// One mock service, built and ready to serve: what [`serve`] takes, and what both ways of
/// starting ([`MockBackends::start`], [`MockBackends::start_service`]) build.
#[derive(Debug, Clone)]
pub enum MockService {
    /// The Auth service.
    Auth(AuthBackend),
    /// The Project service.
    Project(ProjectBackend),
    /// The Simulation service.
    Simulation(SimulationBackend),
}

impl MockService {
    fn kind(&self) -> ServiceKind {
        match self {
            Self::Auth(_) => ServiceKind::Auth,
            Self::Project(_) => ServiceKind::Project,
            Self::Simulation(_) => ServiceKind::Simulation,
        }
    }

    fn faults(&self) -> &Faults {
        match self {
            Self::Auth(backend) => backend.faults(),
            Self::Project(backend) => backend.faults(),
            Self::Simulation(backend) => backend.faults(),
        }
    }

    fn request_log(&self) -> &RequestLog {
        match self {
            Self::Auth(backend) => backend.request_log(),
            Self::Project(backend) => backend.request_log(),
            Self::Simulation(backend) => backend.request_log(),
        }
    }

    /// What its server is built from: its fault switches and request log, and a control service
    /// that reaches `control` and the backend itself.
    fn setup(&self, control: ControlPlane, config: ServerConfig) -> ServerSetup {
        let control = match self {
            Self::Auth(auth) => control.with_auth(auth.clone()),
            other => control.with_faults(other.kind(), other.faults().clone()),
        };
        ServerSetup {
            kind: self.kind(),
            faults: self.faults().clone(),
            requests: self.request_log().clone(),
            control,
            config,
        }
    }

    /// Serves it on `listener` on a spawned task; `plane` is what its port's control service
    /// reaches besides itself.
    fn spawn<L: NetListener>(
        self,
        listener: (L, SocketAddr),
        plane: ControlPlane,
        server: ServerConfig,
    ) -> RunningService {
        let (kind, faults, requests) = (
            self.kind(),
            self.faults().clone(),
            self.request_log().clone(),
        );
        RunningService::spawn(listener, kind, faults, requests, move |listener, stop| {
            serve(listener, self, plane, server, stop)
        })
    }
}

/// The three backends, serving. Dropping this stops them at once; [`RunningBackends::shutdown`]
/// stops them gracefully.
#[derive(Debug)]
pub struct RunningBackends {
    auth: AuthBackend,
    auth_service: RunningService,
    project_service: RunningService,
    simulation_service: RunningService,
}

impl RunningBackends {
    /// The Auth handle: rotate keys, revoke tokens, mint tokens.
    pub fn auth(&self) -> &AuthBackend {
        &self.auth
    }

    /// The serving backend `kind`.
    pub fn service(&self, kind: ServiceKind) -> &RunningService {
        match kind {
            ServiceKind::Auth => &self.auth_service,
            ServiceKind::Project => &self.project_service,
            ServiceKind::Simulation => &self.simulation_service,
        }
    }

    /// The address backend `kind` is bound to.
    pub fn addr(&self, kind: ServiceKind) -> SocketAddr {
        self.service(kind).addr()
    }

    /// Auth's address.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth_service.addr()
    }

    /// Project's address.
    pub fn project_addr(&self) -> SocketAddr {
        self.project_service.addr()
    }

    /// Simulation's address.
    pub fn simulation_addr(&self) -> SocketAddr {
        self.simulation_service.addr()
    }

    /// The fault knobs of backend `kind`.
    pub fn faults(&self, kind: ServiceKind) -> &Faults {
        self.service(kind).faults()
    }

    /// The last request IDs backend `kind` received, oldest first (at most
    /// [`ServerConfig::request_log_len_max`]).
    pub fn recent_request_ids(&self, kind: ServiceKind) -> Vec<String> {
        self.service(kind).recent_request_ids()
    }

    /// Stops all three (concurrently, each within its grace period); the first error is returned
    /// after all have stopped.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let Self {
            auth_service,
            project_service,
            simulation_service,
            ..
        } = self;
        let (auth, project, simulation) = tokio::join!(
            auth_service.shutdown(),
            project_service.shutdown(),
            simulation_service.shutdown()
        );
        auth.and(project).and(simulation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_dialled_on_loopback() {
        assert_eq!(dial_addr("0.0.0.0:9000".parse().unwrap()), "127.0.0.1:9000");
        assert_eq!(dial_addr("[::]:9000".parse().unwrap()), "[::1]:9000");
        assert_eq!(dial_addr("10.0.0.2:9000".parse().unwrap()), "10.0.0.2:9000");
    }
}
