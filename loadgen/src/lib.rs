//! Load tools for the gateway.
//!
//! Now:
//!
//! - [`publisher`]: an open-loop event publisher through the project's one publishing step
//!   (`events::Publisher`), each event stamped with its sequence number and intended send time,
//!   so stalls count against latency (no coordinated omission);
//! - `ws-latency` (a binary): publish-to-client latency through a running gateway, with N
//!   WebSocket subscribers on one channel; `ci/ws-latency.sh` runs it against a release dev stack
//!   on Redis. Its figures are in `docs/benchmarks.md`.
//!
//! The goose campaigns (HTTP mix, WebSocket subscribers at scale, direct-gRPC baseline, merged
//! reports, thresholds) arrive with the load-campaign issue and build on the publisher.

pub mod publisher;
