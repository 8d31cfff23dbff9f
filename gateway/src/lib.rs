//! The API gateway of the simulation platform: HTTP/JSON in, gRPC out.
//!
//! Modules, in the order a request meets them (see `docs/request-lifecycle.md`):
//!
//! - [`request_id`]: the request ID, its span and the access log.
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`browser`]: security headers, and CORS from an allowlist.
//! - [`limits`]: limits on the request head (URI, headers, declared body size).
//! - [`routing`]: the route table derived from `google.api.http` annotations.
//! - [`rate_limit`]: GCRA limits per client IP (before authentication), per user and group.
//! - [`auth`]: bearer-token validation through Auth, with its cache.
//! - [`jwks`]: local verification against Auth's JWKS when Auth cannot answer.
//! - [`proxy`]: the final handler: transcode, call the backend, transcode back.
//! - [`aggregate`]: composite GET routes whose parts are called in parallel.
//! - [`openapi`]: the OpenAPI document, generated from the routes.
//! - [`transcode`]: JSON ⇄ dynamic protobuf messages.
//! - [`validate`]: the `.proto` field rules, checked on every transcoded request.
//! - [`codec`]: the tonic codec for dynamic messages.
//! - [`backends`]: backend channels dialled through the `Net` seam.
//! - [`error`]: the one error shape and the gRPC-to-HTTP table.
//! - [`health`]: liveness, readiness, dependency checks.
//! - [`websocket`]: the WebSocket endpoints: checks before the upgrade, then the hub.
//! - [`hub`]: fan-out of bus events to connections: queues, recovery, the frame protocol.
//! - [`permissions`]: `CheckPermission` with a short cache.
//! - [`revocations`]: applies Auth's revocation events to caches and connections.
//! - [`resilience`]: circuit breakers and retry budgets for backend calls.
//! - [`cache`]: the response cache of configured GET routes (fresh, shared misses, stale).
//! - [`config`]: the configuration and its validation.
//! - [`app`]: builds the state and assembles the routers.
//! - [`server`]: runs the listeners and drains on shutdown.
//! - [`connections`]: connection limits and the per-connection HTTP settings.
//! - [`open_files`]: the binaries' open-file limit and the connection cap derived from it.
//! - [`tls`]: TLS termination for the public ports.
//!
//! The network, the wall clock and the RNG seed come in through [`app::Seams`], so the same code
//! runs on real sockets and under turmoil.

pub mod aggregate;
pub mod app;
pub mod auth;
pub mod backends;
pub mod browser;
pub mod cache;
pub mod codec;
pub mod config;
pub mod connections;
pub mod edge;
pub mod error;
pub mod health;
pub mod hub;
pub mod jwks;
pub mod limits;
pub mod metrics;
pub mod open_files;
pub mod openapi;
pub mod permissions;
pub mod proxy;
pub mod rate_limit;
pub mod request_id;
pub mod resilience;
pub mod revocations;
pub mod routing;
pub mod server;
pub mod tls;
pub mod transcode;
pub mod validate;
pub mod websocket;

pub use app::{App, Seams, StartError};
pub use config::Config;
pub use server::{Listeners, serve};
