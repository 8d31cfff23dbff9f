//! `grpc.health.v1` for every backend: SERVING for the backend's own service name and for the
//! whole server (""), NOT_SERVING once shutdown begins. A backend that is `down` does not answer
//! at all, which is what a health checker should see of a dead process.

use tonic::server::NamedService;
use tonic_health::{
    ServingStatus,
    pb::health_server::{Health, HealthServer},
    server::HealthReporter,
};

/// A health service reporting SERVING for `S` and for the server as a whole, and the reporter
/// that changes it.
pub async fn serving<S: NamedService>() -> (HealthReporter, HealthServer<impl Health>) {
    let (reporter, server) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    (reporter, server)
}

/// Reports NOT_SERVING for `S` and the server, so health checkers stop routing here while
/// in-flight calls drain.
pub async fn not_serving<S: NamedService>(reporter: &HealthReporter) {
    reporter.set_not_serving::<S>().await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
