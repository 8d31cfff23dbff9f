//! Mock Auth, Project and Simulation gRPC backends: in-memory state, seeded demo data and fault
//! knobs, so the gateway can be tested in-process, under simulation and under load against
//! backends that misbehave on demand.
//!
//! Modules, from the outside in:
//!
//! - [`server`]: entry points. [`serve`] takes a listener, one [`MockService`] and a shutdown
//!   signal (the caller owns I/O); [`MockBackends::start`] binds all three
//!   through a [`seams::Net`] and returns their addresses and handles.
//! - [`config`]: [`MockConfig`] and its per-service sections, with documented defaults and one
//!   validation pass.
//! - [`auth`]: the Auth service: demo users, JWT issue and validation (EdDSA or HS256) against the
//!   injected clock, refresh tokens, revocation, key rotation and JWKS, permissions.
//! - [`project`]: the Project service: project CRUD and templates, permissions checked and granted
//!   on Auth over gRPC.
//! - [`simulation`]: the Simulation service: runs whose progress follows `tokio::time`, and the
//!   ticker that publishes their progress.
//! - [`publish`]: [`publish::EventSink`], the backends' one way onto the event bus (the
//!   `events` crate's publishing step), with failures logged and never returned.
//! - [`config_error`]: [`ConfigError`], what loading or checking a [`MockConfig`] fails with.
//! - [`auth_client`]: the gRPC client Project and Simulation use to reach Auth through the `Net`.
//! - [`faults`]: the fault knobs (latency, error rate, hang, down) and the layer that applies them.
//! - [`connection`]: the wrapper around accepted connections that turns `down` and the shutdown
//!   deadline into real transport failures.
//! - [`control`]: the `mockcontrol.v1` gRPC service that sets fault knobs and rotates keys at run
//!   time.
//! - [`health`]: `grpc.health.v1` for every backend.
//! - [`request_log`]: the bounded record of `x-request-id` values each backend received.
//! - [`metadata`]: the gRPC metadata keys the gateway forwards and how a backend reads its caller.
//! - [`demo`]: the seeded demo data (users, projects, simulations, permissions), in one place so
//!   the three services agree.
//! - [`paging`]: page sizes and opaque page tokens shared by the list methods.
//!
//! Wall-clock time comes only from the injected [`seams::Clock`], monotonic time from
//! `tokio::time`, and randomness from RNGs seeded by [`MockConfig::seed`], so a run replays
//! exactly under turmoil.

pub mod auth;
pub mod auth_client;
pub mod config;
pub mod config_error;
pub mod connection;
pub mod control;
pub mod demo;
pub mod faults;
pub mod health;
pub mod metadata;
pub mod paging;
pub mod project;
pub mod publish;
pub mod request_log;
mod rng;
pub mod server;
pub mod simulation;

/// Generated types and stubs of the control-plane contract, `mockcontrol.v1`.
pub mod control_proto {
    #![allow(missing_docs)] // Generated code documents what control.proto documents.
    include!(concat!(env!("OUT_DIR"), "/mockcontrol.v1.rs"));
}

pub use auth::{AuthBackend, AuthError, Claims};
pub use auth_client::AuthClient;
pub use config::{
    AuthConfig, ConfigError, EventsConfig, JwtAlgorithm, MockConfig, ProjectConfig, ServerConfig,
    ServiceKind, SimulationConfig, UpstreamConfig,
};
pub use control::ControlPlane;
pub use faults::{FaultSettings, Faults};
pub use project::ProjectBackend;
pub use request_log::RequestLog;
pub use server::{
    MockBackends, MockService, RunningBackends, RunningService, ServeError, StartError,
    StartOptions, serve,
};
pub use simulation::SimulationBackend;
