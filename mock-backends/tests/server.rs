//! The server around every backend: health, request-ID recording and propagation, start-up
//! faults from config, and bounded shutdown.

mod common;

use std::time::Duration;

use common::{BOB, Harness, as_user, channel, with_request_id};
use mock_backends::{MockBackends, MockConfig, ServiceKind, StartError};
use proto::{
    project::v1::{GetProjectRequest, ListTemplatesRequest},
    simulation::v1::GetStatusRequest,
};
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn every_port_reports_serving_for_its_service_and_the_server() {
    let harness = Harness::start().await;
    for (kind, name) in [
        (ServiceKind::Auth, "auth.v1.AuthService"),
        (ServiceKind::Project, "project.v1.ProjectService"),
        (ServiceKind::Simulation, "simulation.v1.SimulationService"),
    ] {
        let mut health = HealthClient::new(channel(harness.backends.addr(kind)));
        for service in ["", name] {
            let response = health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                response.status(),
                ServingStatus::Serving,
                "{kind} {service:?}"
            );
        }
    }
}

#[tokio::test]
async fn request_ids_are_recorded_and_forwarded_to_auth() {
    let harness = Harness::start().await;
    harness
        .project()
        .get_project(with_request_id(
            BOB,
            "req-42",
            GetProjectRequest {
                id: "p-3".to_owned(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        harness.backends.recent_request_ids(ServiceKind::Project),
        ["req-42"]
    );
    // Project asked Auth for the permission under the same request ID.
    assert_eq!(
        harness.backends.recent_request_ids(ServiceKind::Auth),
        ["req-42"]
    );
    assert!(
        harness
            .backends
            .recent_request_ids(ServiceKind::Simulation)
            .is_empty()
    );
}

#[tokio::test]
async fn calls_that_fail_by_injection_are_still_recorded() {
    let harness = Harness::start().await;
    harness
        .backends
        .faults(ServiceKind::Simulation)
        .set_error_rate(1.0)
        .unwrap();
    let status = harness
        .simulation()
        .get_status(with_request_id(BOB, "req-failed", GetStatusRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        harness.backends.recent_request_ids(ServiceKind::Simulation),
        ["req-failed"]
    );
}

#[tokio::test]
async fn faults_in_the_config_apply_from_the_start() {
    let mut config = MockConfig::for_tests();
    config.project.faults.error_rate = 1.0;
    let harness = Harness::start_with(config).await;
    let status = harness
        .project()
        .list_templates(as_user(BOB, ListTemplatesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn invalid_config_is_refused_before_anything_binds() {
    let mut config = MockConfig::for_tests();
    config.simulation.faults.error_rate = -1.0;
    let error = MockBackends::start(seams::TokioNet, common::TestClock::new(), config)
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::Config(_)), "{error}");
}

#[tokio::test]
async fn shutdown_releases_hung_calls_and_finishes_within_the_grace_period() {
    let mut config = MockConfig::for_tests();
    config.server.shutdown_grace_ms = 300;
    let harness = Harness::start_with(config).await;
    harness
        .backends
        .faults(ServiceKind::Simulation)
        .set_hang(true);
    let hung = tokio::spawn({
        let mut client = harness.simulation();
        let request = with_request_id(BOB, "hung", GetStatusRequest {});
        async move { client.get_status(request).await }
    });
    // A health watch stream stays open until the server resets it.
    let mut health = HealthClient::new(channel(harness.backends.auth_addr()));
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    harness
        .until_received(ServiceKind::Simulation, "hung")
        .await;

    let started = Instant::now();
    harness.backends.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let status = hung.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_single_backend_starts_alone_and_dials_auth_where_configured() {
    let harness = Harness::start().await;
    let mut config = MockConfig::for_tests();
    config.upstream.auth_addr = Some(harness.backends.auth_addr().to_string());
    let project = MockBackends::start_service(
        seams::TokioNet,
        common::TestClock::new(),
        config,
        ServiceKind::Project,
    )
    .await
    .unwrap();
    let mut client = proto::project::v1::project_service_client::ProjectServiceClient::new(
        channel(project.addr()),
    );
    client
        .get_project(with_request_id(
            BOB,
            "req-alone",
            GetProjectRequest {
                id: "p-3".to_owned(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(project.recent_request_ids(), ["req-alone"]);
    assert!(
        harness
            .backends
            .recent_request_ids(ServiceKind::Auth)
            .contains(&"req-alone".to_owned())
    );
    project.shutdown().await.unwrap();
}
