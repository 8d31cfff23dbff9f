//! The gRPC-to-HTTP status table of `docs/errors.md`, one assertion per row, through the whole
//! path: a backend answers each status and the client sees the documented HTTP status and code.

mod support;

use std::sync::Arc;

use gateway::{App, Seams, request::error::grpc_to_http};
use seams::{SystemClock, TokioNet};
use support::{dynamic, json_request};
use tonic::{Code, Status};

/// The table as documented: gRPC code, HTTP status, error code.
const TABLE: &[(Code, u16, &str)] = &[
    (Code::Cancelled, 499, "cancelled"),
    (Code::Unknown, 500, "unknown"),
    (Code::InvalidArgument, 400, "invalid_argument"),
    (Code::DeadlineExceeded, 504, "deadline_exceeded"),
    (Code::NotFound, 404, "not_found"),
    (Code::AlreadyExists, 409, "already_exists"),
    (Code::PermissionDenied, 403, "permission_denied"),
    (Code::ResourceExhausted, 429, "resource_exhausted"),
    (Code::FailedPrecondition, 400, "failed_precondition"),
    (Code::Aborted, 409, "aborted"),
    (Code::OutOfRange, 400, "out_of_range"),
    (Code::Unimplemented, 501, "unimplemented"),
    (Code::Internal, 500, "internal"),
    (Code::Unavailable, 503, "unavailable"),
    (Code::DataLoss, 500, "data_loss"),
    (Code::Unauthenticated, 401, "unauthenticated"),
];

#[tokio::test]
async fn every_grpc_status_maps_to_its_documented_http_status() {
    let pool = dynamic::compile("failing.proto");
    let fail: dynamic::Handler = Arc::new(|request, _, _| {
        let code = request.get_field_by_name("code").unwrap().as_i32().unwrap();
        Err(Status::new(
            Code::from_i32(code),
            "secret backend detail: table users is locked",
        ))
    });
    let address = dynamic::serve(&pool, "failing.v1.FailingService", "Fail", fail).await;
    let mut config = dynamic::config_with_backend("failing.v1.FailingService", address, &["Fail"]);
    // Every call here fails on purpose: the breaker would soon answer for the backend.
    config.backends.get_mut("extra").unwrap().breaker.enabled = false;
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 3,
    };
    let app = App::new(config, &seams, &pool, gateway::app::embedded_bus(3)).unwrap();
    assert_eq!(TABLE.len(), 16, "every non-OK code has a row");
    for &(code, http, error_code) in TABLE {
        assert_eq!(grpc_to_http(code).0.as_u16(), http, "{code:?}");
        let answer = support::send(
            app.api_router(),
            json_request("GET", &format!("/api/fail/{}", code as i32), None, ""),
        )
        .await;
        let message = answer.assert_error(http, error_code);
        // Client errors pass the backend's message on; server errors never leak internals.
        if http >= 500 {
            assert!(!message.contains("secret"), "{code:?} leaked: {message}");
        } else {
            assert!(
                message.contains("secret"),
                "{code:?} should explain: {message}"
            );
        }
        if http == 503 {
            assert_eq!(answer.headers["retry-after"], "1");
        }
    }
}
