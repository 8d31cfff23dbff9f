//! Deterministic simulation of the gateway on turmoil.
//!
//! The real gateway and mock-backend code run on turmoil's simulated network and clock: only the
//! seams differ. This crate holds:
//!
//! - [`client`]: HTTP and WebSocket clients for client hosts.
//! - [`hosts`]: the simulated Redis, mock-backend and gateway hosts, set up once.
//! - [`net`]: [`TurmoilNet`], the turmoil implementation of the `Net` seam.
//! - [`clock`]: [`SimClock`], wall-clock time derived from turmoil's simulated epoch, with skew.
//! - [`seed`]: how a run's seed is chosen and how a failing run says how to replay it.
//! - [`redis`]: [`redis::SimRedis`], a simulated Redis host speaking the RESP subset the project
//!   uses, running the project's Lua scripts unchanged.
//!
//! Scenario tests live in `sim/tests/`. Later issues add here: client hosts with HTTP and WebSocket workloads, fault schedules,
//! invariant checkers, trace hashing and seed exploration (see `docs/simulation.md`).

pub mod client;
pub mod clock;
pub mod explore;
pub mod hosts;
pub mod invariants;
pub mod net;
pub mod redis;
pub mod scenario;
pub mod seed;
pub mod trace;

pub use clock::SimClock;
pub use net::TurmoilNet;
