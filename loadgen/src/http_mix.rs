//! The HTTP scenario: a user logs in once on start, then asks a realistic mix of the API, by
//! weight: their profile (4), their projects (4), a simulation's status (2) and creating a
//! project (1). Every user shares one HTTP client (goose would give each its own, about 100 KB
//! and a connection pool apiece), so the process holds as many connections as requests in flight.

use goose::{goose::GooseResponse, prelude::*};
use serde_json::json;

/// The demo user every load user logs in as (the mock Auth's seeded admin).
pub const USERNAME: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "demo-password";
/// A seeded simulation of that user, whose status the mix asks.
pub const SIMULATION_ID: &str = "s-1";

/// A user's bearer token, from its login.
#[derive(Debug, Clone)]
struct Session {
    authorization: String,
}

/// The scenario, named `http_mix`.
pub fn scenario() -> Result<Scenario, GooseError> {
    let scenario = scenario!("http_mix")
        .register_transaction(transaction!(login).set_on_start().set_name("login"));
    with_the_mix(
        scenario,
        [
            transaction!(profile),
            transaction!(list_projects),
            transaction!(simulation_status),
            transaction!(create_project),
        ],
    )
}

/// Registers the mix's four calls (profile, list projects, simulation status, create project, in
/// that order) on `scenario` with their weights and names: one definition for the HTTP mix and
/// its gRPC baseline.
pub fn with_the_mix(scenario: Scenario, calls: [Transaction; 4]) -> Result<Scenario, GooseError> {
    const MIX: [(&str, usize); 4] = [
        ("profile", 4),
        ("list projects", 4),
        ("simulation status", 2),
        ("create project", 1),
    ];
    calls
        .into_iter()
        .zip(MIX)
        .try_fold(scenario, |scenario, (call, (name, weight))| {
            Ok(scenario.register_transaction(call.set_weight(weight)?.set_name(name)))
        })
}

fn failed(detail: String) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(detail))
}

async fn login(user: &mut GooseUser) -> TransactionResult {
    let body = json!({ "username": USERNAME, "password": PASSWORD });
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/auth/login")
        .name("POST /api/auth/login")
        .set_request_builder(
            user.get_request_builder(&GooseMethod::Post, "/api/auth/login")?
                .json(&body),
        )
        .build();
    let GooseResponse { response, .. } = user.request(request).await?;
    let answer: serde_json::Value = response
        .map_err(|error| failed(format!("login: {error}")))?
        .json()
        .await
        .map_err(|error| failed(format!("login answer: {error}")))?;
    let token = answer["accessToken"]
        .as_str()
        .ok_or_else(|| failed(format!("login answered no access token: {answer}")))?;
    user.set_session_data(Session {
        authorization: format!("Bearer {token}"),
    });
    Ok(())
}

/// Sends `method path` with the user's token, counted under `name` (the route, so ids do not
/// split the statistics).
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<serde_json::Value>,
) -> TransactionResult {
    let authorization = user
        .get_session_data::<Session>()
        .ok_or_else(|| failed("no session: login failed".into()))?
        .authorization
        .clone();
    let mut builder = user
        .get_request_builder(&method, path)?
        .header("authorization", authorization);
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    user.request(request).await?;
    Ok(())
}

async fn profile(user: &mut GooseUser) -> TransactionResult {
    let path = "/api/auth/profile";
    call(user, GooseMethod::Get, path, "GET /api/auth/profile", None).await
}

async fn list_projects(user: &mut GooseUser) -> TransactionResult {
    let path = "/api/projects?pageSize=20";
    call(user, GooseMethod::Get, path, "GET /api/projects", None).await
}

async fn simulation_status(user: &mut GooseUser) -> TransactionResult {
    let path = format!("/api/simulations/{SIMULATION_ID}");
    call(
        user,
        GooseMethod::Get,
        &path,
        "GET /api/simulations/{id}",
        None,
    )
    .await
}

async fn create_project(user: &mut GooseUser) -> TransactionResult {
    let body = json!({ "name": "load", "description": "", "templateId": "t-fluid" });
    call(
        user,
        GooseMethod::Post,
        "/api/projects",
        "POST /api/projects",
        Some(body),
    )
    .await
}
