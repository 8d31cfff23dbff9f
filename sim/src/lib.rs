//! Deterministic simulation of the gateway on turmoil.
//!
//! The real gateway and mock-backend code run on turmoil's simulated network and clock: only the
//! seams differ. Modules, from the seams up (`docs/simulation.md` is the guide):
//!
//! - [`net`]: [`TurmoilNet`], the turmoil implementation of the `Net` seam.
//! - [`clock`]: [`SimClock`], wall-clock time derived from turmoil's simulated epoch, with skew.
//! - [`redis`]: [`redis::SimRedis`], a simulated Redis host speaking the RESP subset the project
//!   uses, running the project's Lua scripts unchanged.
//! - [`hosts`]: the simulated Redis, mock-backend and gateway hosts, set up once.
//! - [`client`]: HTTP and WebSocket clients for client hosts, and the mock backends' control plane.
//! - [`trace`]: what a run observed, in order, and the trace's hash (its fingerprint).
//! - [`topology`]: the simulated deployment's settings: the gateways' configuration, the Redis
//!   bus settings, the workload's paths and the shared limit it runs into.
//! - [`faults`]: the faults a scenario schedules and how they are applied, and the sabotages that
//!   prove invariants can fail.
//! - [`workload`]: the client hosts a scenario spawns (subscribers, collaborators, the revoker,
//!   the publisher, the HTTP clients, the prober) and what each records in the trace.
//! - [`scenario`]: a topology, a workload, a fault schedule and a duration, run into a trace.
//! - [`invariants`]: the properties every trace must have, each a documented function, one file
//!   per family.
//! - [`explore`]: fault schedules generated from a seed, and campaigns over many seeds.
//! - [`seed`]: how a run's seed is chosen and how a failing run says how to replay it.
//!
//! Scenario tests live in `sim/tests/`.

pub mod client;
pub mod clock;
pub mod explore;
pub mod faults;
pub mod hosts;
pub mod invariants;
pub mod net;
pub mod redis;
pub mod scenario;
pub mod seed;
pub mod topology;
pub mod trace;
pub mod workload;

pub use clock::SimClock;
pub use net::TurmoilNet;
