//! Each fault knob, seen from a gRPC client: added latency, injected errors, hang and down, set
//! through the handle and through the control service, and undone.

mod common;

use std::time::Duration;

use common::{BOB, Harness, as_user, channel, with_request_id};
use mock_backends::{
    FaultSettings, ServiceKind,
    control_proto::{
        self, GetFaultsRequest, RotateSigningKeyRequest, SetFaultsRequest,
        control_service_client::ControlServiceClient,
    },
    faults::INJECTED_FAULT_MESSAGE,
};
use proto::{
    auth::v1::ValidateTokenRequest,
    project::v1::ListTemplatesRequest,
    simulation::v1::{GetStatusRequest, GetStatusResponse},
};
use tokio::time::Instant;
use tonic::Code;

async fn templates(harness: &Harness) -> Result<(), tonic::Status> {
    harness
        .project()
        .list_templates(as_user(BOB, ListTemplatesRequest {}))
        .await
        .map(drop)
}

async fn status(harness: &Harness) -> Result<GetStatusResponse, tonic::Status> {
    harness
        .simulation()
        .get_status(as_user(BOB, GetStatusRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

/// Retries `call` until it succeeds or `limit` passes; the last error otherwise.
async fn eventually<F, Fut, T>(limit: Duration, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) if Instant::now() >= deadline => return Err(status),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A failure below gRPC, never a status a backend chose to send. tonic reports these under
/// several codes: UNAVAILABLE when it cannot connect, UNKNOWN "transport error" when a connection
/// breaks mid-call, CANCELLED "operation was canceled" when the peer closes a new connection; what
/// they share is a `tonic::transport::Error` in the source chain. (The gateway maps all of them
/// to 503.)
fn is_transport_failure(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        source = error.source();
    }
    status.code() == Code::Unavailable && status.message().contains("connect")
}

#[tokio::test]
async fn latency_delays_every_call() {
    let harness = Harness::start().await;
    templates(&harness).await.unwrap();
    harness
        .backends
        .faults(ServiceKind::Project)
        .set_latency_ms(300);
    let started = Instant::now();
    templates(&harness).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    harness.backends.faults(ServiceKind::Project).clear();
    let started = Instant::now();
    templates(&harness).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn error_rate_one_answers_unavailable_until_reset() {
    let harness = Harness::start().await;
    let faults = harness.backends.faults(ServiceKind::Project);
    faults.set_error_rate(1.0).unwrap();
    for _ in 0..5 {
        let status = templates(&harness).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), INJECTED_FAULT_MESSAGE);
    }
    faults.set_error_rate(0.0).unwrap();
    templates(&harness).await.unwrap();
}

#[tokio::test]
async fn hang_holds_calls_past_a_client_timeout_until_cleared() {
    let harness = Harness::start().await;
    let faults = harness.backends.faults(ServiceKind::Simulation);
    faults.set_hang(true);

    let timed_out = tokio::time::timeout(Duration::from_millis(300), status(&harness)).await;
    assert!(timed_out.is_err(), "a hung call must not be answered");

    // A call waiting when the hang clears is answered.
    let waiting = tokio::spawn({
        let mut client = harness.simulation();
        let request = with_request_id(BOB, "waiting", GetStatusRequest {});
        async move { client.get_status(request).await }
    });
    harness
        .until_received(ServiceKind::Simulation, "waiting")
        .await;
    assert!(!waiting.is_finished());
    faults.set_hang(false);
    waiting.await.unwrap().unwrap();
    status(&harness).await.unwrap();
}

#[tokio::test]
async fn down_fails_calls_at_the_transport_and_recovers_when_cleared() {
    let harness = Harness::start().await;
    let mut auth = harness.auth();
    let validate = || ValidateTokenRequest {
        token: "x".to_owned(),
    };
    // Establish the connection first: down must break existing connections too.
    let status = auth.validate_token(validate()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let reached = harness
        .backends
        .service(ServiceKind::Auth)
        .request_log()
        .recent()
        .len();

    let faults = harness.backends.faults(ServiceKind::Auth);
    faults.set_down(true);
    for _ in 0..5 {
        let status = auth.validate_token(validate()).await.unwrap_err();
        assert!(is_transport_failure(&status), "{status:?}");
    }
    // A fresh channel gets no further.
    let status = proto::auth::v1::auth_service_client::AuthServiceClient::new(channel(
        harness.backends.auth_addr(),
    ))
    .validate_token(validate())
    .await
    .unwrap_err();
    assert!(is_transport_failure(&status), "{status:?}");
    // No call reached the service while it was down.
    assert_eq!(
        harness
            .backends
            .service(ServiceKind::Auth)
            .request_log()
            .recent()
            .len(),
        reached
    );

    faults.set_down(false);
    let status = eventually(Duration::from_secs(5), || {
        let mut auth = auth.clone();
        async move {
            match auth.validate_token(validate()).await {
                Err(status) if status.code() == Code::Unauthenticated => Ok(status),
                Err(status) => Err(status),
                Ok(_) => panic!("garbage token validated"),
            }
        }
    })
    .await
    .expect("auth answers again once back up");
    assert_eq!(status.message(), "malformed token");
}

#[tokio::test]
async fn the_control_service_sets_faults_on_any_backend_and_rotates_keys() {
    let harness = Harness::start().await;
    let mut control = ControlServiceClient::new(channel(harness.backends.project_addr()));

    // Through Project's port, take Auth down and bring it back.
    let down = control_proto::FaultSettings {
        down: true,
        ..Default::default()
    };
    let set = control
        .set_faults(SetFaultsRequest {
            service: "auth".to_owned(),
            faults: Some(down),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(set.down);
    assert!(harness.backends.faults(ServiceKind::Auth).is_down());
    control
        .set_faults(SetFaultsRequest {
            service: "auth".to_owned(),
            faults: Some(control_proto::FaultSettings::default()),
        })
        .await
        .unwrap();
    assert!(!harness.backends.faults(ServiceKind::Auth).is_down());

    // An empty service means the backend serving the call.
    control
        .set_faults(SetFaultsRequest {
            service: String::new(),
            faults: Some(control_proto::FaultSettings {
                latency_ms: 5,
                error_rate: 0.25,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        harness.backends.faults(ServiceKind::Project).settings(),
        FaultSettings {
            latency_ms: 5,
            error_rate: 0.25,
            hang: false,
            down: false
        }
    );
    let read = control
        .get_faults(GetFaultsRequest {
            service: "project".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.latency_ms, 5);

    let status = control
        .set_faults(SetFaultsRequest {
            service: "project".to_owned(),
            faults: Some(control_proto::FaultSettings {
                error_rate: 2.0,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = control
        .get_faults(GetFaultsRequest {
            service: "billing".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let kid = control
        .rotate_signing_key(RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .kid;
    assert_eq!(kid, harness.backends.auth().current_kid());
}

#[tokio::test]
async fn a_hung_backend_can_be_released_through_its_own_control_service() {
    let harness = Harness::start().await;
    let faults = harness.backends.faults(ServiceKind::Simulation);
    faults.set_hang(true);
    let mut control = ControlServiceClient::new(channel(harness.backends.simulation_addr()));
    control
        .set_faults(SetFaultsRequest {
            service: String::new(),
            faults: Some(control_proto::FaultSettings::default()),
        })
        .await
        .unwrap();
    status(&harness).await.unwrap();
}
