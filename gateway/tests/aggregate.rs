//! Aggregation routes end to end against the mock backends: parts called in parallel as the
//! caller, each part's outcome reported, a failing backend costing one part, and the error shape
//! when no part succeeds.

mod support;

use std::{collections::BTreeMap, time::Duration};

use gateway::app::{App, Seams, StartError};
use mock_backends::ServiceKind;
use seams::{SystemClock, TokioNet};
use support::{Answer, Stack, json_request};

fn dashboard() -> BTreeMap<String, String> {
    [
        ("profile", "/api/auth/profile"),
        ("projects", "/api/projects?page_size=5"),
        ("running", "/api/simulations?state=SIMULATION_STATE_RUNNING"),
    ]
    .into_iter()
    .map(|(name, target)| (name.to_owned(), target.to_owned()))
    .collect()
}

/// A stack serving `/api/dashboard`, with retries and breakers off so a fault shows at once.
async fn dashboard_stack() -> Stack {
    Stack::start_with(
        |_| {},
        |config| {
            config
                .routes
                .aggregates
                .insert("/api/dashboard".into(), dashboard());
            for backend in config.backends.values_mut() {
                backend.breaker.enabled = false;
                backend.retry.max_attempts = 1;
            }
        },
    )
    .await
}

async fn get_dashboard(stack: &Stack, token: &str, id: &str) -> Answer {
    let mut request = json_request("GET", "/api/dashboard", Some(token), "");
    request
        .headers_mut()
        .insert("x-request-id", id.parse().unwrap());
    stack.send(request).await
}

fn part_names(answer: &Answer) -> Vec<&str> {
    answer.json["parts"]
        .as_object()
        .unwrap_or_else(|| panic!("no parts: {}", answer.json))
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn a_dashboard_merges_its_parts_fetched_as_the_caller() {
    let stack = dashboard_stack().await;
    let token = stack.login("alice").await;
    let answer = get_dashboard(&stack, &token, "dash-1").await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["status"], "complete");
    assert_eq!(part_names(&answer), ["profile", "projects", "running"]);
    let parts = &answer.json["parts"];
    assert_eq!(parts["profile"]["status"], 200);
    assert_eq!(parts["profile"]["body"]["username"], "alice");
    let projects: Vec<&str> = parts["projects"]["body"]["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        projects.contains(&"p-1") && projects.contains(&"p-2"),
        "{projects:?}"
    );
    // The query of the part's target reaches the backend: only the running simulation.
    let running: Vec<&str> = parts["running"]["body"]["simulations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["s-2"]);
    // Every part carries the aggregate's request ID to its backend.
    for kind in [
        ServiceKind::Auth,
        ServiceKind::Project,
        ServiceKind::Simulation,
    ] {
        assert!(
            stack
                .backends
                .recent_request_ids(kind)
                .contains(&"dash-1".to_owned()),
            "{kind:?} saw the request ID"
        );
    }

    // Another caller gets their own parts.
    let bob = stack.login("bob").await;
    let answer = get_dashboard(&stack, &bob, "dash-bob").await;
    let parts = &answer.json["parts"];
    assert_eq!(parts["profile"]["body"]["username"], "bob");
    assert_eq!(parts["projects"]["body"]["projects"][0]["id"], "p-3");
    assert_eq!(
        parts["projects"]["body"]["projects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn parts_are_called_in_parallel() {
    let stack = dashboard_stack().await;
    let token = stack.login("alice").await;
    let project = stack.backends.faults(ServiceKind::Project);
    let simulation = stack.backends.faults(ServiceKind::Simulation);
    project.set_hang(true);
    simulation.set_hang(true);
    let api = stack.api();
    let request = json_request("GET", "/api/dashboard", Some(&token), "");
    let pending = tokio::spawn(support::send(api, request));
    // Both backends hold a call of this one request at the same time: the parts did not wait
    // for each other.
    let both_held = async {
        while project.hung_calls() == 0 || simulation.hung_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), both_held)
        .await
        .expect("both parts in flight at once");
    project.set_hang(false);
    simulation.set_hang(false);
    let answer = pending.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.json);
}

#[tokio::test]
async fn a_failing_backend_costs_its_part_only() {
    let stack = dashboard_stack().await;
    let token = stack.login("alice").await;
    stack.backends.faults(ServiceKind::Project).set_down(true);
    let answer = get_dashboard(&stack, &token, "dash-2").await;

    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["status"], "partial");
    let parts = &answer.json["parts"];
    assert_eq!(parts["projects"]["status"], 503);
    assert_eq!(parts["projects"]["error"]["code"], "unavailable");
    assert!(parts["projects"].get("body").is_none());
    assert_eq!(parts["profile"]["status"], 200);
    assert_eq!(parts["running"]["status"], 200);
}

#[tokio::test]
async fn no_part_succeeding_is_an_error_in_the_one_shape_with_the_parts() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            let mut parts = dashboard();
            parts.remove("profile");
            config.routes.aggregates.insert("/api/work".into(), parts);
            for backend in config.backends.values_mut() {
                backend.breaker.enabled = false;
                backend.retry.max_attempts = 1;
            }
        },
    )
    .await;
    let token = stack.login("alice").await;
    stack.backends.faults(ServiceKind::Project).set_down(true);
    stack
        .backends
        .faults(ServiceKind::Simulation)
        .set_down(true);
    let answer = stack.get("/api/work", &token).await;

    assert_eq!(answer.status, 503, "{}", answer.json);
    assert_eq!(answer.error_code(), "aggregate_unavailable");
    assert_eq!(
        answer.json["error"]["request_id"].as_str(),
        answer
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    );
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(answer.json["status"], "failed");
    assert_eq!(answer.json["parts"]["projects"]["status"], 503);
    assert_eq!(answer.json["parts"]["running"]["status"], 503);
}

#[tokio::test]
async fn an_aggregate_needs_a_token_and_answers_get_only() {
    let stack = dashboard_stack().await;
    let anonymous = stack
        .send(json_request("GET", "/api/dashboard", None, ""))
        .await;
    anonymous.assert_error(401, "unauthenticated");
    // The method is checked before the token, as for every route.
    let post = stack
        .send(json_request("POST", "/api/dashboard", None, "{}"))
        .await;
    post.assert_error(405, "method_not_allowed");
    assert_eq!(post.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn an_aggregate_of_a_route_that_is_not_get_is_refused_at_start() {
    let mut config = gateway::config::Config::default();
    let parts = [("login".to_owned(), "/api/auth/login".to_owned())].into();
    config.routes.aggregates.insert("/api/bad".into(), parts);
    let seams = Seams {
        net: TokioNet,
        clock: std::sync::Arc::new(SystemClock),
        seed: 1,
    };
    let bus = gateway::app::embedded_bus(1);
    match App::from_config(config, &seams, bus) {
        Err(StartError::Aggregate { path, reason }) => {
            assert_eq!(path, "/api/bad");
            assert!(reason.contains("not a GET route"), "{reason}");
        }
        other => panic!("expected an aggregate error, got {other:?}"),
    }
}
