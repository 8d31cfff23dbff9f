//! What operators read: the Prometheus metrics every phase records into (`metrics`), health:
//! liveness, readiness and the dependency checks behind it (`health`), and the binary's log
//! format (`logs`). `docs/operations.md` is the operator's guide to all three.

pub mod health;
pub mod logs;
pub mod metrics;
