//! Shared by the integration tests: a clock tests can move, backends on free ports, channels and
//! requests carrying the gateway's caller metadata.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use mock_backends::{
    MockBackends, MockConfig, RunningBackends, StartOptions,
    metadata::{REQUEST_ID, USER_ID, USER_ROLES},
};
use tonic::{
    Request,
    transport::{Channel, Endpoint},
};

/// A wall clock fixed at a known instant that tests advance by hand.
#[derive(Debug)]
pub struct TestClock {
    now_unix_seconds: AtomicI64,
}

/// Where every test clock starts: 2023-11-14T22:13:20Z.
pub const CLOCK_START_UNIX_SECONDS: i64 = 1_700_000_000;

impl TestClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            now_unix_seconds: AtomicI64::new(CLOCK_START_UNIX_SECONDS),
        })
    }

    pub fn advance(&self, seconds: i64) {
        self.now_unix_seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl seams::Clock for TestClock {
    fn now_since_epoch(&self) -> Duration {
        Duration::from_secs(self.now_unix_seconds.load(Ordering::SeqCst).unsigned_abs())
    }
}

/// The backends of one test and the clock they read.
pub struct Harness {
    pub backends: RunningBackends,
    pub clock: Arc<TestClock>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(MockConfig::for_tests()).await
    }

    pub async fn start_with(config: MockConfig) -> Self {
        Self::start_with_options(config, StartOptions::default()).await
    }

    pub async fn start_with_options(config: MockConfig, options: StartOptions) -> Self {
        let clock = TestClock::new();
        let backends = MockBackends::start_with(seams::TokioNet, clock.clone(), config, options)
            .await
            .expect("mock backends start");
        Self { backends, clock }
    }

    pub fn auth(&self) -> proto::auth::v1::auth_service_client::AuthServiceClient<Channel> {
        proto::auth::v1::auth_service_client::AuthServiceClient::new(channel(
            self.backends.auth_addr(),
        ))
    }

    pub fn project(
        &self,
    ) -> proto::project::v1::project_service_client::ProjectServiceClient<Channel> {
        proto::project::v1::project_service_client::ProjectServiceClient::new(channel(
            self.backends.project_addr(),
        ))
    }

    /// Waits (bounded) until backend `kind` has received a call with `request_id`: the call is
    /// then past its transport and in the service (hung there, when a hang is set).
    pub async fn until_received(&self, kind: mock_backends::ServiceKind, request_id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self
            .backends
            .recent_request_ids(kind)
            .iter()
            .any(|id| id == request_id)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind:?} never received {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn simulation(
        &self,
    ) -> proto::simulation::v1::simulation_service_client::SimulationServiceClient<Channel> {
        proto::simulation::v1::simulation_service_client::SimulationServiceClient::new(channel(
            self.backends.simulation_addr(),
        ))
    }
}

/// A channel to `addr` with a deadline generous enough for a loaded CI machine.
pub fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// The demo users as the gateway would forward them.
pub const ALICE: (&str, &str) = ("u-1", "user,admin");
pub const BOB: (&str, &str) = ("u-2", "user");

/// `message` with the caller metadata the gateway forwards for `user` = (id, roles).
pub fn as_user<T>(user: (&str, &str), message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(USER_ID, user.0.parse().expect("ascii"));
    request
        .metadata_mut()
        .insert(USER_ROLES, user.1.parse().expect("ascii"));
    request
}

/// [`as_user`] plus an `x-request-id`.
pub fn with_request_id<T>(user: (&str, &str), request_id: &str, message: T) -> Request<T> {
    let mut request = as_user(user, message);
    request
        .metadata_mut()
        .insert(REQUEST_ID, request_id.parse().expect("ascii"));
    request
}
