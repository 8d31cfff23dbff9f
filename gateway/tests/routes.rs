//! Every client-facing route works end to end through the gateway and the mock backends, and every
//! protected route refuses a request without a valid token.

mod support;

use mock_backends::ServiceKind;
use support::{Stack, json_request};

#[tokio::test]
async fn auth_routes_login_refresh_and_profile() {
    let stack = Stack::start().await;
    let login = stack
        .send(json_request(
            "POST",
            "/api/auth/login",
            None,
            r#"{"username":"alice","password":"demo-password"}"#,
        ))
        .await;
    assert_eq!(login.status, 200, "{}", login.json);
    assert_eq!(login.json["tokenType"], "Bearer");
    let refresh_token = login.json["refreshToken"].as_str().unwrap();
    let access_token = login.json["accessToken"].as_str().unwrap();

    let profile = stack.get("/api/auth/profile", access_token).await;
    assert_eq!(profile.status, 200, "{}", profile.json);
    assert_eq!(profile.json["userId"], "u-1");
    assert_eq!(profile.json["username"], "alice");

    let refreshed = stack
        .send(json_request(
            "POST",
            "/api/auth/refresh",
            None,
            &format!(r#"{{"refreshToken":"{refresh_token}"}}"#),
        ))
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.json);
    let new_token = refreshed.json["accessToken"].as_str().unwrap();
    assert_eq!(
        stack.get("/api/auth/profile", new_token).await.json["username"],
        "alice"
    );

    let wrong_password = stack
        .send(json_request(
            "POST",
            "/api/auth/login",
            None,
            r#"{"username":"alice","password":"nope"}"#,
        ))
        .await;
    wrong_password.assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn project_routes_create_get_list_update_delete_and_templates() {
    let stack = Stack::start().await;
    let token = stack.login("bob").await;

    let created = stack
        .send(json_request(
            "POST",
            "/api/projects",
            Some(&token),
            r#"{"name":"Bridge load","description":"Static load test","templateId":"t-fluid"}"#,
        ))
        .await;
    assert_eq!(created.status, 200, "{}", created.json);
    assert_eq!(created.json["name"], "Bridge load");
    assert_eq!(created.json["ownerId"], "u-2");
    let id = created.json["id"].as_str().unwrap().to_owned();

    let fetched = stack.get(&format!("/api/projects/{id}"), &token).await;
    assert_eq!(fetched.status, 200, "{}", fetched.json);
    assert_eq!(fetched.json["description"], "Static load test");

    let page = stack.get("/api/projects?pageSize=1", &token).await;
    assert_eq!(page.status, 200, "{}", page.json);
    assert_eq!(page.json["projects"].as_array().unwrap().len(), 1);
    let next = page.json["nextPageToken"].as_str().unwrap().to_owned();
    assert!(
        !next.is_empty(),
        "bob has two projects, so a second page exists"
    );
    let second = stack
        .get(
            &format!("/api/projects?page_size=1&page_token={next}"),
            &token,
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_ne!(
        second.json["projects"][0]["id"],
        page.json["projects"][0]["id"]
    );

    let updated = stack
        .send(json_request(
            "PATCH",
            &format!("/api/projects/{id}"),
            Some(&token),
            r#"{"name":"Bridge load v2"}"#,
        ))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.json);
    assert_eq!(updated.json["name"], "Bridge load v2");
    assert_eq!(
        updated.json["description"], "Static load test",
        "unset fields keep their value"
    );

    let templates = stack.get("/api/projects/templates", &token).await;
    assert_eq!(templates.status, 200, "{}", templates.json);
    assert_eq!(templates.json["templates"].as_array().unwrap().len(), 3);

    let deleted = stack
        .send(json_request(
            "DELETE",
            &format!("/api/projects/{id}"),
            Some(&token),
            "",
        ))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.json);
    stack
        .get(&format!("/api/projects/{id}"), &token)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn another_users_project_is_forbidden() {
    let stack = Stack::start().await;
    let bob = stack.login("bob").await;
    stack
        .get("/api/projects/p-1", &bob)
        .await
        .assert_error(403, "permission_denied");
}

#[tokio::test]
async fn simulation_routes_start_get_status_stop_and_list() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;

    let started = stack
        .send(json_request(
            "POST",
            "/api/simulations",
            Some(&token),
            r#"{"projectId":"p-1","name":"Gust response","steps":"500"}"#,
        ))
        .await;
    assert_eq!(started.status, 200, "{}", started.json);
    let id = started.json["id"].as_str().unwrap().to_owned();
    assert_eq!(started.json["projectId"], "p-1");

    let fetched = stack.get(&format!("/api/simulations/{id}"), &token).await;
    assert_eq!(fetched.status, 200, "{}", fetched.json);
    assert_eq!(fetched.json["name"], "Gust response");

    let status = stack.get("/api/simulations/status", &token).await;
    assert_eq!(status.status, 200, "{}", status.json);
    assert!(status.json["capacity"].as_i64().unwrap() > 0);

    // The verb route, with no body at all.
    let stopped = stack
        .send(json_request(
            "POST",
            &format!("/api/simulations/{id}:stop"),
            Some(&token),
            "",
        ))
        .await;
    assert_eq!(stopped.status, 200, "{}", stopped.json);
    assert_eq!(stopped.json["state"], "SIMULATION_STATE_STOPPED");

    let listed = stack.get("/api/simulations?projectId=p-1", &token).await;
    assert_eq!(listed.status, 200, "{}", listed.json);
    let ids: Vec<&str> = listed.json["simulations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()), "{ids:?} should contain {id}");
}

/// Every route that is not login or refresh refuses a request without a valid token, and none
/// of those requests reaches the route's backend.
#[tokio::test]
async fn protected_routes_need_a_valid_token() {
    let stack = Stack::start().await;
    let routes = [
        ("GET", "/api/auth/profile"),
        ("POST", "/api/projects"),
        ("GET", "/api/projects/p-1"),
        ("GET", "/api/projects"),
        ("PATCH", "/api/projects/p-1"),
        ("DELETE", "/api/projects/p-1"),
        ("GET", "/api/projects/templates"),
        ("POST", "/api/simulations"),
        ("GET", "/api/simulations/s-1"),
        ("GET", "/api/simulations/status"),
        ("POST", "/api/simulations/s-1:stop"),
        ("GET", "/api/simulations"),
    ];
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl";
    let mut sent_ids = Vec::new();
    for (method, path) in routes {
        for (attempt, token) in [None, Some("not-a-jwt"), Some(forged)]
            .into_iter()
            .enumerate()
        {
            let id = format!("unauth-{}-{attempt}", sent_ids.len());
            let mut request = json_request(method, path, token, "");
            request
                .headers_mut()
                .insert("x-request-id", id.parse().unwrap());
            let answer = stack.send(request).await;
            answer.assert_error(401, "unauthenticated");
            sent_ids.push(id);
        }
    }
    for kind in [ServiceKind::Project, ServiceKind::Simulation] {
        let seen = stack.backends.recent_request_ids(kind);
        for id in &sent_ids {
            assert!(!seen.contains(id), "{id} reached {kind:?}");
        }
    }
    let mut basic = json_request("GET", "/api/projects", None, "");
    basic
        .headers_mut()
        .insert("authorization", "Basic YWxpY2U6ZGVtbw==".parse().unwrap());
    stack.send(basic).await.assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_revoked_token_is_refused_once_its_cached_validation_ends() {
    use base64::Engine as _;
    let stack = Stack::start_with(|_| {}, |config| config.auth.token_cache_ttl_ms = 1).await;
    let token = stack.login("alice").await;
    assert_eq!(stack.get("/api/auth/profile", &token).await.status, 200);
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    stack
        .backends
        .auth()
        .revoke_token(claims["jti"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    stack
        .get("/api/auth/profile", &token)
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // Two seconds, not one: `exp` is whole seconds from the login's second, so a one-second
    // token issued late in a second could expire before the first request (seen once in CI).
    let stack = Stack::start_with(|config| config.auth.token_ttl_seconds = 2, |_| {}).await;
    let token = stack.login("alice").await;
    assert_eq!(stack.get("/api/auth/profile", &token).await.status, 200);
    // Real time passes here: the backends and the gateway use the system clock in this test.
    // Past the token's expiry and past the gateway's cached answer (at most the TTL).
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    stack
        .get("/api/auth/profile", &token)
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_are_405_with_allow() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    for path in [
        "/api/nothing",
        "/api/projects/p-1/extra",
        "/",
        "/api/projects/",
    ] {
        stack.get(path, &token).await.assert_error(404, "not_found");
    }
    let answer = stack
        .send(json_request("PUT", "/api/projects/p-1", Some(&token), "{}"))
        .await;
    answer.assert_error(405, "method_not_allowed");
    let allow = answer.headers["allow"].to_str().unwrap();
    for method in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(method), "Allow {allow:?} lacks {method}");
    }
}

/// A literal template owns its path: `/api/projects/templates` is `ListTemplates` for every
/// method, never `UpdateProject` or `DeleteProject` with `id = "templates"` (which is still
/// reachable percent-encoded, as `/api/projects/template%73`).
#[tokio::test]
async fn a_literal_path_answers_only_its_own_methods() {
    let stack = Stack::start().await;
    let token = stack.login("alice").await;
    for method in ["PATCH", "DELETE", "OPTIONS", "PUT"] {
        let answer = stack
            .send(json_request(
                method,
                "/api/projects/templates",
                Some(&token),
                r#"{"name":"x"}"#,
            ))
            .await;
        answer.assert_error(405, "method_not_allowed");
        assert_eq!(answer.headers["allow"], "GET", "{method}");
    }
    // The backend's own 404, not the route table's: the encoded id reached GetProject.
    let message = stack
        .get("/api/projects/template%73", &token)
        .await
        .assert_error(404, "not_found");
    assert_eq!(message, r#"project "templates" not found"#);
}
