//! Auth over gRPC: login, refresh, token validation against the injected clock, revocation, the
//! JWKS and key rotation, profiles and permissions.

mod common;

use common::{BOB, Harness, as_user};
use jsonwebtoken::{DecodingKey, Validation};
use mock_backends::{
    JwtAlgorithm, MockConfig,
    auth::{AUDIENCE, CLOCK_LEEWAY_SECONDS, Claims, ISSUER},
    demo::DEMO_PASSWORD,
};
use proto::auth::v1::{
    CheckPermissionRequest, GetJwksRequest, GetProfileRequest, GrantPermissionRequest,
    LoginRequest, RefreshRequest, TokenPair, ValidateTokenRequest,
};
use tonic::Code;

async fn login(harness: &Harness, username: &str) -> TokenPair {
    harness
        .auth()
        .login(LoginRequest {
            username: username.to_owned(),
            password: DEMO_PASSWORD.to_owned(),
        })
        .await
        .expect("demo login succeeds")
        .into_inner()
}

async fn validate(
    harness: &Harness,
    token: &str,
) -> Result<proto::auth::v1::UserContext, tonic::Status> {
    harness
        .auth()
        .validate_token(ValidateTokenRequest {
            token: token.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn login_with_the_demo_password_issues_a_valid_token_pair() {
    let harness = Harness::start().await;
    let pair = login(&harness, "alice").await;
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.expires_in_seconds, 900);
    assert!(!pair.refresh_token.is_empty());

    let context = validate(&harness, &pair.access_token).await.unwrap();
    assert_eq!(context.user_id, "u-1");
    assert_eq!(context.username, "alice");
    assert_eq!(context.roles, ["user", "admin"]);
    assert_eq!(
        context.expires_at_unix_seconds,
        common::CLOCK_START_UNIX_SECONDS + 900
    );
    assert!(!context.token_id.is_empty());
}

#[tokio::test]
async fn login_with_a_wrong_password_or_user_is_unauthenticated() {
    let harness = Harness::start().await;
    for (username, password) in [("alice", "wrong"), ("mallory", DEMO_PASSWORD), ("", "")] {
        let status = harness
            .auth()
            .login(LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{username}/{password}"
        );
    }
}

#[tokio::test]
async fn garbage_tokens_are_unauthenticated_with_a_reason() {
    let harness = Harness::start().await;
    for token in ["", "garbage", "a.b.c"] {
        let status = validate(&harness, token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(!status.message().is_empty());
    }
}

#[tokio::test]
async fn a_tampered_token_fails_its_signature() {
    let harness = Harness::start().await;
    let alice = login(&harness, "alice").await.access_token;
    let bob = login(&harness, "bob").await.access_token;
    // Alice's header and signature around Bob's claims.
    let alice_parts: Vec<_> = alice.split('.').collect();
    let bob_parts: Vec<_> = bob.split('.').collect();
    let forged = format!("{}.{}.{}", alice_parts[0], bob_parts[1], alice_parts[2]);
    let status = validate(&harness, &forged).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "invalid signature");
}

#[tokio::test]
async fn tokens_expire_by_the_injected_clock() {
    let harness = Harness::start().await;
    let token = login(&harness, "bob").await.access_token;
    harness.clock.advance(900 + CLOCK_LEEWAY_SECONDS - 1);
    validate(&harness, &token)
        .await
        .expect("still valid within the leeway");
    harness.clock.advance(1);
    let status = validate(&harness, &token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token expired");
}

#[tokio::test]
async fn tokens_from_the_future_are_not_yet_valid() {
    let harness = Harness::start().await;
    let token = login(&harness, "bob").await.access_token;
    harness.clock.advance(-(CLOCK_LEEWAY_SECONDS + 1));
    let status = validate(&harness, &token).await.unwrap_err();
    assert_eq!(status.message(), "token not yet valid");
}

#[tokio::test]
async fn revoked_tokens_are_rejected_and_others_are_not() {
    let harness = Harness::start().await;
    let revoked = login(&harness, "alice").await.access_token;
    let kept = login(&harness, "alice").await.access_token;
    let jti = validate(&harness, &revoked).await.unwrap().token_id;
    harness.backends.auth().revoke_token(&jti);

    let status = validate(&harness, &revoked).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token revoked");
    validate(&harness, &kept).await.unwrap();
}

#[tokio::test]
async fn the_jwks_verifies_tokens_independently() {
    let harness = Harness::start().await;
    let token = login(&harness, "alice").await.access_token;
    let jwks = harness
        .auth()
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);
    let jwk = &jwks.keys[0];
    assert_eq!(
        (
            jwk.kty.as_str(),
            jwk.crv.as_str(),
            jwk.alg.as_str(),
            jwk.key_use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(jwk.kid.as_str()));
    let key = DecodingKey::from_ed_components(&jwk.x).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::EdDSA);
    // The test clock sits in the past; expiry is Auth's job, the signature is what is checked.
    validation.validate_exp = false;
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    let claims = jsonwebtoken::decode::<Claims>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims.sub, "u-1");
    assert_eq!(claims.name, "alice");
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.nbf, claims.iat);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_kid() {
    let harness = Harness::start().await;
    let old_token = login(&harness, "alice").await.access_token;
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();

    let new_kid = harness.backends.auth().rotate_signing_key().unwrap();
    assert_ne!(new_kid, old_kid);

    let new_token = login(&harness, "alice").await.access_token;
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    validate(&harness, &old_token).await.unwrap();
    validate(&harness, &new_token).await.unwrap();

    let kids: Vec<_> = harness
        .auth()
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|key| key.kid)
        .collect();
    assert_eq!(kids, [old_kid, new_kid]);
}

#[tokio::test]
async fn refresh_tokens_work_once_and_rotate() {
    let harness = Harness::start().await;
    let first = login(&harness, "bob").await;
    let second = harness
        .auth()
        .refresh(RefreshRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        validate(&harness, &second.access_token)
            .await
            .unwrap()
            .username,
        "bob"
    );

    let reused = harness
        .auth()
        .refresh(RefreshRequest {
            refresh_token: first.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn refresh_tokens_expire_by_the_injected_clock() {
    let harness = Harness::start().await;
    let pair = login(&harness, "bob").await;
    harness.clock.advance(86_400);
    let status = harness
        .auth()
        .refresh(RefreshRequest {
            refresh_token: pair.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_profile_is_the_caller_named_in_metadata() {
    let harness = Harness::start().await;
    let profile = harness
        .auth()
        .get_profile(as_user(BOB, GetProfileRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(profile.username, "bob");
    assert_eq!(profile.roles, ["user"]);

    let status = harness
        .auth()
        .get_profile(GetProfileRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn permissions_follow_grants_and_admin_may_do_anything() {
    let harness = Harness::start().await;
    let mut auth = harness.auth();
    let check = |user: &str, resource: &str, action: &str| CheckPermissionRequest {
        user_id: user.to_owned(),
        resource: resource.to_owned(),
        action: action.to_owned(),
    };
    let allowed = |response: tonic::Response<proto::auth::v1::CheckPermissionResponse>| {
        response.into_inner().allowed
    };

    // Seeded: Bob owns p-3, Alice is admin.
    assert!(allowed(
        auth.check_permission(check("u-2", "project:p-3", "write"))
            .await
            .unwrap()
    ));
    assert!(allowed(
        auth.check_permission(check("u-2", "project:p-3", "read"))
            .await
            .unwrap()
    ));
    assert!(!allowed(
        auth.check_permission(check("u-2", "project:p-1", "read"))
            .await
            .unwrap()
    ));
    assert!(allowed(
        auth.check_permission(check("u-1", "project:p-3", "write"))
            .await
            .unwrap()
    ));

    auth.grant_permission(GrantPermissionRequest {
        user_id: "u-2".to_owned(),
        resource: "project:p-1".to_owned(),
        action: "read".to_owned(),
    })
    .await
    .unwrap();
    assert!(allowed(
        auth.check_permission(check("u-2", "project:p-1", "read"))
            .await
            .unwrap()
    ));
    assert!(!allowed(
        auth.check_permission(check("u-2", "project:p-1", "write"))
            .await
            .unwrap()
    ));

    let status = auth
        .check_permission(check("u-2", "project:p-1", "delete"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = auth
        .grant_permission(GrantPermissionRequest {
            user_id: "u-404".to_owned(),
            resource: "project:p-1".to_owned(),
            action: "read".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn hs256_mode_issues_and_validates_tokens_and_publishes_no_keys() {
    let mut config = MockConfig::for_tests();
    config.auth.jwt_algorithm = JwtAlgorithm::Hs256;
    let harness = Harness::start_with(config.clone()).await;
    let token = login(&harness, "alice").await.access_token;
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        jsonwebtoken::Algorithm::HS256
    );
    validate(&harness, &token).await.unwrap();

    // Anyone holding the secret can verify, which is the point of HS256.
    let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_audience(&[AUDIENCE]);
    let key = DecodingKey::from_secret(config.auth.hs256_secret.as_bytes());
    jsonwebtoken::decode::<Claims>(&token, &key, &validation).unwrap();

    let jwks = harness.auth().get_jwks(GetJwksRequest {}).await.unwrap();
    assert!(jwks.into_inner().keys.is_empty());
}

#[tokio::test]
async fn the_same_seed_publishes_the_same_keys() {
    let first = Harness::start().await;
    let second = Harness::start().await;
    let keys = |harness: &Harness| {
        let mut auth = harness.auth();
        async move { auth.get_jwks(GetJwksRequest {}).await.unwrap().into_inner() }
    };
    assert_eq!(keys(&first).await, keys(&second).await);
}
