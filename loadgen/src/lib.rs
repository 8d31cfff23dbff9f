//! Load tools for the gateway: goose scenarios, an open-loop publisher and report merging,
//! driven by `ci/load.sh` (`docs/benchmarks.md` has the campaigns' figures).
//!
//! - [`http_mix`]: the HTTP scenario (login on start, then profile, projects, a simulation's
//!   status and project creation), all users on one shared HTTP client.
//! - [`subscribers`]: WebSocket subscribers holding one connection each and recording every
//!   event's publish-to-receive latency; offset gaps are failures.
//! - [`baseline`]: the HTTP mix's calls straight to the mock backends over gRPC, the ceiling the
//!   gateway is compared with.
//! - [`publisher`]: an open-loop publisher through the project's one publishing step, each
//!   event stamped with its sequence number and intended send time (no coordinated omission).
//! - [`report`]: per-process reports that merge, thresholds, the summary table, JSON and HTML.
//!
//! The `loadgen` binary runs each of these; `ws-latency` is the earlier standalone latency tool.

pub mod baseline;
pub mod http_mix;
pub mod publisher;
pub mod report;
pub mod subscribers;
