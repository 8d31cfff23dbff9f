//! Keeping backend calls healthy when backends are not: circuit breakers and retry budgets.
//! `docs/resilience.md` describes each mechanism, its configuration and what a client sees.
//!
//! - [`breaker`]: per backend, refuses calls at once while the backend is failing.
//! - [`retry`]: retries of safe calls, within a budget, with jittered backoff.
//! - [`window`]: the sliding window of counts both keep.

pub mod breaker;
pub mod retry;
pub mod window;

pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use retry::{RetryBudget, RetryConfig};

/// Whether a call's outcome says the backend is unwell (counts against its breaker). Client
/// mistakes and business answers (not found, permission denied...) do not.
pub fn is_backend_failure(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Internal
            | tonic::Code::Unknown
            | tonic::Code::DataLoss
    )
}
