//! Bad input gets a clear 4xx with the error shape and nothing else: never a panic, never a 5xx,
//! and never a call to the backend.

mod support;

use axum::{body::Body, http::Request};
use mock_backends::ServiceKind;
use support::{Stack, json_request};

async fn stack_and_token() -> (Stack, String) {
    let stack = Stack::start_with(|_| {}, |config| config.http.body_bytes_max = 1024).await;
    let token = stack.login("alice").await;
    (stack, token)
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let (stack, token) = stack_and_token().await;
    for body in [
        "{",
        "not json",
        r#"{"name":"x"} trailing"#,
        "[1,2,3]",
        "\"a string\"",
        r#"{"name": "x",}"#,
    ] {
        stack
            .send(json_request("POST", "/api/projects", Some(&token), body))
            .await
            .assert_error(400, "invalid_json");
    }
}

#[tokio::test]
async fn unknown_fields_are_rejected_in_body_and_query() {
    let (stack, token) = stack_and_token().await;
    let message = stack
        .send(json_request(
            "POST",
            "/api/projects",
            Some(&token),
            r#"{"name":"x","colour":"red"}"#,
        ))
        .await
        .assert_error(400, "invalid_json");
    assert!(
        message.contains("colour"),
        "the message names the field: {message}"
    );
    let message = stack
        .get("/api/projects?pageSize=5&sort=name", &token)
        .await
        .assert_error(400, "invalid_argument");
    assert!(message.contains("sort"), "{message}");
}

#[tokio::test]
async fn a_key_given_twice_is_400_naming_it() {
    let (stack, token) = stack_and_token().await;
    for body in [
        r#"{"name":"a","name":"b"}"#,
        r#"{"name":"a","templateId":"t-cfd","template_id":"t-cfd"}"#,
    ] {
        let message = stack
            .send(json_request("POST", "/api/projects", Some(&token), body))
            .await
            .assert_error(400, "invalid_json");
        assert!(message.contains("more than once"), "{body}: {message}");
    }
}

#[tokio::test]
async fn wrong_field_types_are_400() {
    let (stack, token) = stack_and_token().await;
    for body in [
        r#"{"name": 42}"#,
        r#"{"name": ["a"]}"#,
        r#"{"name": {"nested": true}}"#,
        r#"{"name": null, "description": 1.5}"#,
    ] {
        stack
            .send(json_request("POST", "/api/projects", Some(&token), body))
            .await
            .assert_error(400, "invalid_json");
    }
    stack
        .send(json_request(
            "POST",
            "/api/simulations",
            Some(&token),
            r#"{"projectId":"p-1","steps":"many"}"#,
        ))
        .await
        .assert_error(400, "invalid_json");
    stack
        .get("/api/projects?pageSize=ten", &token)
        .await
        .assert_error(400, "invalid_argument");
    stack
        .get("/api/projects?pageSize=99999999999", &token)
        .await
        .assert_error(400, "invalid_argument");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_streamed() {
    let (stack, token) = stack_and_token().await;
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2_000));
    // Declared with Content-Length.
    let mut declared = json_request("POST", "/api/projects", Some(&token), &big);
    declared
        .headers_mut()
        .insert("content-length", big.len().to_string().parse().unwrap());
    stack
        .send(declared)
        .await
        .assert_error(413, "payload_too_large");
    // Streamed without a length: the limit holds while reading.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let streamed = Request::post("/api/projects")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    stack
        .send(streamed)
        .await
        .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn bodies_nested_past_the_depth_limit_are_400_before_parsing() {
    let (stack, token) = stack_and_token().await;
    // 40 levels in a field the message does not have: refused for its depth, not its field.
    let deep = format!(r#"{{"name":"n","x":{}{}}}"#, "[".repeat(40), "]".repeat(40));
    let answer = stack
        .send(json_request("POST", "/api/projects", Some(&token), &deep))
        .await;
    answer.assert_error(400, "json_too_deep");
    // Brackets inside strings are not nesting.
    let shallow = format!(r#"{{"name":"{}","templateId":"t-fluid"}}"#, "[".repeat(40));
    let answer = stack
        .send(json_request(
            "POST",
            "/api/projects",
            Some(&token),
            &shallow,
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
}

#[tokio::test]
async fn paths_that_do_not_decode_to_utf8_are_400() {
    let (stack, token) = stack_and_token().await;
    stack
        .get("/api/projects/%FF%FE", &token)
        .await
        .assert_error(400, "invalid_path");
}

#[tokio::test]
async fn over_long_uris_are_414() {
    let (stack, token) = stack_and_token().await;
    let path = format!("/api/projects/{}", "a".repeat(9_000));
    stack
        .get(&path, &token)
        .await
        .assert_error(414, "uri_too_long");
}

#[tokio::test]
async fn huge_or_too_many_headers_are_431() {
    let (stack, token) = stack_and_token().await;
    let mut huge = json_request("GET", "/api/projects", Some(&token), "");
    huge.headers_mut()
        .insert("x-padding", "p".repeat(20_000).parse().unwrap());
    stack
        .send(huge)
        .await
        .assert_error(431, "headers_too_large");

    let mut many = json_request("GET", "/api/projects", Some(&token), "");
    for index in 0..80 {
        many.headers_mut().insert(
            axum::http::HeaderName::try_from(format!("x-extra-{index}")).unwrap(),
            "1".parse().unwrap(),
        );
    }
    stack
        .send(many)
        .await
        .assert_error(431, "headers_too_large");
}

#[tokio::test]
async fn non_json_bodies_are_415() {
    let (stack, token) = stack_and_token().await;
    let mut request = json_request("POST", "/api/projects", Some(&token), "name=x");
    request.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    stack
        .send(request)
        .await
        .assert_error(415, "unsupported_media_type");
    let mut opaque = json_request("POST", "/api/projects", Some(&token), r#"{"name":"x"}"#);
    opaque.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_bytes(b"application/json\xff").unwrap(),
    );
    stack
        .send(opaque)
        .await
        .assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn unsupported_methods_on_known_paths_are_405_with_allow() {
    let (stack, token) = stack_and_token().await;
    for (method, path, allowed) in [
        ("DELETE", "/api/auth/login", "POST"),
        ("PUT", "/api/projects", "POST, GET"),
        ("GET", "/api/simulations/s-1:stop", "POST"),
        ("OPTIONS", "/api/projects/templates", "GET"),
    ] {
        let answer = stack
            .send(json_request(method, path, Some(&token), ""))
            .await;
        answer.assert_error(405, "method_not_allowed");
        // Exactly the methods that work on the path: a literal template's path does not
        // advertise the methods of the variable template it shadows.
        assert_eq!(answer.headers["allow"], allowed, "{method} {path}");
    }
}

/// Arbitrary bytes in a body never produce a 5xx: any answer is a 4xx with the error shape.
#[tokio::test]
async fn arbitrary_bodies_never_produce_a_server_error() {
    let (stack, token) = stack_and_token().await;
    let samples: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00],
        b"{\"name\":\"\xc3\x28\"}".to_vec(),
        "[".repeat(500).into_bytes(),
        br#"{"name":"\ud800"}"#.to_vec(),
        b"\x00\x00\x00\x00".to_vec(),
    ];
    for body in samples {
        let request = Request::post("/api/projects")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
        let answer = stack.send(request).await;
        assert!(
            answer.status.is_client_error(),
            "{:?} gave {}",
            String::from_utf8_lossy(&body),
            answer.status
        );
        answer.assert_error(answer.status.as_u16(), answer.error_code());
    }
}

/// The `.proto` contract's field rules are checked by the gateway before any backend is called:
/// 400 `invalid_field`, naming the field as the client wrote it and the rule.
#[tokio::test]
async fn requests_that_break_the_contract_are_400_invalid_field_before_the_backend() {
    // The default body limit: some cases are longer than this file's 1 KiB.
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    let long_name = "x".repeat(101);
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "POST",
            "/api/projects".to_owned(),
            "{}".to_owned(),
            r#"body field "name" is required (required)"#,
        ),
        (
            "POST",
            "/api/projects".to_owned(),
            format!(r#"{{"name":"{long_name}"}}"#),
            r#"body field "name" must be at most 100 characters (string.max_len)"#,
        ),
        (
            "POST",
            "/api/projects".to_owned(),
            // Only white space, by the Project service's reckoning: U+0085 and U+3000 too.
            r#"{"name":" \u0085\u3000 "}"#.to_owned(),
            r#"body field "name" must match the pattern"#,
        ),
        (
            "PATCH",
            "/api/projects/p-1".to_owned(),
            String::new(),
            "the request body is required (required)",
        ),
        (
            "PATCH",
            "/api/projects/p-1".to_owned(),
            format!(r#"{{"description":"{}"}}"#, "d".repeat(2_001)),
            r#"body field "description" must be at most 2000 characters (string.max_len)"#,
        ),
        (
            "GET",
            "/api/projects?pageSize=-1".to_owned(),
            String::new(),
            r#"query parameter "page_size" must be at least 0 (int32.gte)"#,
        ),
        (
            "POST",
            "/api/simulations".to_owned(),
            r#"{"projectId":"p-1","steps":"1000001"}"#.to_owned(),
            r#"body field "steps" must be at most 1000000 (int64.lte)"#,
        ),
        (
            "POST",
            "/api/simulations".to_owned(),
            format!(r#"{{"projectId":"{}"}}"#, "p".repeat(65)),
            r#"body field "projectId" must be at most 64 characters (string.max_len)"#,
        ),
        (
            "POST",
            "/api/simulations".to_owned(),
            r#"{"name":"no project"}"#.to_owned(),
            r#"body field "projectId" is required (required)"#,
        ),
    ];
    for (index, (method, path, body, expected)) in cases.iter().enumerate() {
        let id = format!("contract-{index}");
        let mut request = json_request(method, path, Some(&token), body);
        request
            .headers_mut()
            .insert("x-request-id", id.parse().unwrap());
        let message = stack.send(request).await.assert_error(400, "invalid_field");
        assert!(message.starts_with(expected), "{method} {path}: {message}");
        for kind in [ServiceKind::Project, ServiceKind::Simulation] {
            assert!(
                !stack.backends.recent_request_ids(kind).contains(&id),
                "{method} {path} reached {kind:?}"
            );
        }
    }
}

/// Login's fields are required: a request without them is refused by the gateway, not sent to
/// Auth to be answered 401.
#[tokio::test]
async fn a_login_without_credentials_is_400_not_401() {
    let (stack, _) = stack_and_token().await;
    let message = stack
        .send(json_request("POST", "/api/auth/login", None, "{}"))
        .await
        .assert_error(400, "invalid_field");
    assert_eq!(
        message,
        r#"body field "username" is required (required); body field "password" is required (required)"#
    );
}
