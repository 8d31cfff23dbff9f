//! The API gateway of the simulation platform: HTTP/JSON in, gRPC out.
//!
//! Folders, in the order a request meets them (see `docs/request-lifecycle.md`, whose picture is
//! this tree); each imports only folders listed above it, which CI checks
//! (`cargo run -p module-cycles -- gateway`):
//!
//! - [`drain`]: the one drain signal every connection and background task watches.
//! - [`field_check`]: what a configuration section's check returns, and the range checks they
//!   share (each section checks itself where it lives).
//! - [`request`]: what every phase knows of a request: its ID, its peer, the one error shape.
//! - [`transcode`]: JSON ⇄ protobuf wire bytes, compiled per message at start-up.
//! - [`backends`]: the gRPC client: channel pools, circuit breakers, retries, the codec.
//! - [`ops`]: what operators read: metrics, health and readiness, the log format.
//! - [`serve`]: phase 0: listeners, connection caps, TLS, per-connection HTTP settings.
//! - [`auth`]: phase 9: token validation through Auth, local JWKS verification, permissions.
//! - [`routing`]: phase 8: the route table from `google.api.http` annotations, route matching.
//! - [`edge`]: phases 1 to 7 and 10: request ID, metrics, security headers and CORS, head
//!   limits, panic guard, rate limits.
//! - [`proxy`]: phase 11: body, validation, response cache, backend call, aggregates.
//! - [`realtime`]: the WebSocket port: the hub, its connections, presence, revocations.
//! - [`openapi`]: the OpenAPI document, generated from the routes.
//! - [`config`]: assembles every module's configuration section and validates the whole.
//! - [`app`]: builds the state, assembles the routers in request order, serves and drains.
//!
//! The network, the wall clock and the RNG seed come in through [`app::Seams`], so the same code
//! runs on real sockets and under turmoil.

pub mod app;
pub mod auth;
pub mod backends;
pub mod config;
pub mod drain;
pub mod edge;
pub mod field_check;
pub mod openapi;
pub mod ops;
pub mod proxy;
pub mod realtime;
pub mod request;
pub mod routing;
pub mod serve;
pub mod transcode;

pub use app::serve;
pub use app::{App, Seams, StartError};
pub use config::Config;
pub use serve::server::Listeners;
