//! What operators read: the Prometheus metrics every phase records into, and health: liveness,
//! readiness and the dependency checks behind it.

pub mod health;
pub mod metrics;
