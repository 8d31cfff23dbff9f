//! The JWT attack suite: forged, tampered and misdirected tokens all get 401, whether Auth judges
//! them or, while Auth cannot answer, the gateway does from Auth's JWKS; and none of them reaches
//! a backend other than Auth. An unknown `kid` refreshes the JWKS at a bounded rate.

mod support;

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use mock_backends::ServiceKind;
use support::{Answer, Stack, json_request};

/// The token's three segments.
fn segments(token: &str) -> (String, String, String) {
    let mut parts = token.split('.').map(str::to_owned);
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a JWT: {token}");
    };
    (header, payload, signature)
}

fn encode_json(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn decode_json(segment: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// HMAC-SHA256 of `message` under `key`, by the RFC 2104 construction.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Every attack, by name, built from a valid token of alice's and Auth's keys.
fn attacks(stack: &Stack, valid: &str) -> Vec<(&'static str, String)> {
    let auth = stack.backends.auth();
    let (header, payload, signature) = segments(valid);
    let claims = |change: &dyn Fn(&mut mock_backends::Claims)| {
        let mut claims = auth.claims_for("alice").unwrap();
        change(&mut claims);
        auth.sign_claims(&claims).unwrap()
    };
    let kid = decode_json(&header)["kid"].clone();
    let none_header = encode_json(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid}));
    // HS256 with Auth's public key as the shared secret: the classic algorithm confusion.
    let public_key = auth.jwks().keys[0].x.clone();
    let hs_header = encode_json(&serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}));
    let hs_signature = URL_SAFE_NO_PAD.encode(hmac_sha256(
        public_key.as_bytes(),
        format!("{hs_header}.{payload}").as_bytes(),
    ));
    let unknown_kid =
        encode_json(&serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "attacker-key"}));
    let mut flipped = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    flipped[10] ^= 0x01;
    vec![
        (
            "alg none, no signature",
            format!("{none_header}.{payload}."),
        ),
        (
            "alg none, any signature",
            format!("{none_header}.{payload}.{signature}"),
        ),
        (
            "HS256 signed with the public key",
            format!("{hs_header}.{payload}.{hs_signature}"),
        ),
        (
            "expired",
            // `iat` is Auth's now.
            claims(&|c| {
                c.exp = c.iat - 3_600;
                c.nbf = c.iat - 7_200;
            }),
        ),
        ("nbf in the future", claims(&|c| c.nbf = c.iat + 3_600)),
        ("wrong audience", claims(&|c| c.aud = "another-api".into())),
        (
            "wrong issuer",
            claims(&|c| c.iss = "https://evil.example".into()),
        ),
        (
            "bad signature",
            format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(&flipped)),
        ),
        ("truncated", valid[..valid.len() / 2].to_owned()),
        ("64 KB", format!("{valid}{}", "A".repeat(64 * 1024))),
        (
            "unknown kid",
            format!("{unknown_kid}.{payload}.{signature}"),
        ),
    ]
}

async fn try_token(stack: &Stack, token: &str, request_id: &str) -> Answer {
    let mut request = json_request("GET", "/api/projects", Some(token), "");
    request
        .headers_mut()
        .insert("x-request-id", request_id.parse().unwrap());
    stack.send(request).await
}

fn reached(stack: &Stack, kind: ServiceKind, request_id: &str) -> bool {
    stack
        .backends
        .recent_request_ids(kind)
        .contains(&request_id.to_owned())
}

/// A stack whose head limits let a 64 KB `Authorization` header through to authentication (with
/// the default 16 KiB of headers it is refused first, 431: see below).
async fn attack_stack() -> Stack {
    Stack::start_with(
        |_| {},
        |config| {
            config.http.header_bytes_max = 128 * 1024;
            config.auth.validation_deadline_ms = 300;
        },
    )
    .await
}

fn assert_refused(stack: &Stack, name: &str, answer: &Answer, request_id: &str) {
    assert_eq!(answer.status, 401, "{name}: {}", answer.json);
    answer.assert_error(401, "unauthenticated");
    for kind in [ServiceKind::Project, ServiceKind::Simulation] {
        assert!(!reached(stack, kind, request_id), "{name} reached {kind:?}");
    }
}

#[tokio::test]
async fn every_attack_gets_401_from_auth_and_reaches_no_other_backend() {
    let stack = attack_stack().await;
    let valid = stack.login("alice").await;
    // The control: the valid token works and reaches Project.
    let control = try_token(&stack, &valid, "control").await;
    assert_eq!(control.status, 200, "{}", control.json);
    assert!(reached(&stack, ServiceKind::Project, "control"));

    for (n, (name, token)) in attacks(&stack, &valid).into_iter().enumerate() {
        let id = format!("attack-{n}");
        let answer = try_token(&stack, &token, &id).await;
        assert_refused(&stack, name, &answer, &id);
    }
}

#[tokio::test]
async fn every_attack_gets_401_when_the_gateway_judges_it_while_auth_is_down() {
    let stack = attack_stack().await;
    let valid = stack.login("alice").await;
    support::until_local_keys(&stack.app).await;
    let attacks = attacks(&stack, &valid);
    stack.backends.faults(ServiceKind::Auth).set_down(true);
    // The control: verified locally, the valid token still works.
    let control = try_token(&stack, &valid, "control").await;
    assert_eq!(control.status, 200, "{}", control.json);

    for (n, (name, token)) in attacks.into_iter().enumerate() {
        let id = format!("local-attack-{n}");
        let answer = try_token(&stack, &token, &id).await;
        assert_refused(&stack, name, &answer, &id);
    }
}

#[tokio::test]
async fn with_default_head_limits_a_64_kb_token_is_refused_before_authentication() {
    let stack = Stack::start().await;
    let token = format!("a.b.{}", "A".repeat(64 * 1024));
    let answer = try_token(&stack, &token, "huge").await;
    answer.assert_error(431, "headers_too_large");
    assert!(!reached(&stack, ServiceKind::Auth, "huge"));
}

#[tokio::test]
async fn unknown_kids_refresh_the_jwks_at_most_once_per_interval() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            config.auth.validation_deadline_ms = 200;
            config.auth.jwks_refresh_min_interval_ms = 1_000;
        },
    )
    .await;
    let valid = stack.login("alice").await;
    support::until_local_keys(&stack.app).await;
    // Past the interval since the start-up fetch: one refresh is due.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (_, payload, signature) = segments(&valid);
    // Auth holds every call: each token is judged locally after the validation deadline, and
    // its unknown `kid` asks for a JWKS refresh. Auth's request log records every call it was
    // sent, held or not, under the request's ID.
    stack.backends.faults(ServiceKind::Auth).set_hang(true);
    let ids: Vec<String> = (0..20).map(|n| format!("kid-{n}")).collect();
    let requests = ids.iter().map(|id| {
        let header = encode_json(&serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": id}));
        let token = format!("{header}.{payload}.{signature}");
        let stack = &stack;
        async move { try_token(stack, &token, id).await }
    });
    for answer in futures::future::join_all(requests).await {
        answer.assert_error(401, "unauthenticated");
    }
    let calls = stack
        .backends
        .recent_request_ids(ServiceKind::Auth)
        .into_iter()
        .filter(|recorded| ids.contains(recorded))
        .count();
    assert_eq!(calls, 21, "20 validations and one JWKS refresh");
    stack.backends.faults(ServiceKind::Auth).set_hang(false);
}
