//! Load campaigns for the gateway (goose), arriving with the load-campaign issue.
//!
//! This crate will hold:
//!
//! - HTTP scenarios: a realistic mix (profile, list projects, create project, simulation status)
//!   with a login on start, over one shared HTTP client;
//! - WebSocket subscribers holding connections to simulation, notification and collaboration
//!   channels and recording publish-to-receive latency, counting offset gaps as failures;
//! - an open-loop event publisher using the project's shared publishing step, so stalls count
//!   against latency (no coordinated omission);
//! - a direct-gRPC baseline against the mock backends, so gateway throughput is reported as a
//!   ratio of the direct path measured in the same run;
//! - merging of per-process reports and threshold checks used by `ci/load.sh`.
//!
//! Until then the foundation's throughput figures are measured with a standard load tool; see
//! `docs/benchmarks.md`.
