//! The seams that let the same gateway and backend code run on real sockets and in simulation.
//!
//! - [`net`]: the [`Net`] trait (bind, accept, connect) and its tokio implementation [`TokioNet`].
//! - [`adapters`]: the three bridges written once: an `axum::serve::Listener`, a tonic
//!   `serve_with_incoming` stream, and a tonic connector for `connect_with_connector`.
//! - [`clock`]: the [`Clock`] trait for wall-clock time and its system implementation.
//!
//! Library code never binds, dials or reads the wall clock on its own: it is handed a `Net` and a
//! `Clock`. `sim/` implements both on turmoil.

pub mod adapters;
pub mod clock;
pub mod net;

pub use clock::{Clock, SharedClock, SystemClock};
pub use net::{Net, NetListener, TokioNet};
