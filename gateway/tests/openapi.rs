//! The OpenAPI document: served without a token, valid OpenAPI 3.0 (parsed by the `openapiv3`
//! crate, every `$ref` resolved), and describing every route with its parameters, body, answer
//! and the error shape, generated from the descriptors (a test-only `.proto` shows up too).

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Stack, dynamic, json_request};

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

/// Checks the document is valid OpenAPI 3.0 and every reference resolves; returns it.
fn validated(document: &Value) -> openapiv3::OpenAPI {
    let parsed: openapiv3::OpenAPI =
        serde_json::from_value(document.clone()).expect("a valid OpenAPI 3.0 document");
    assert!(parsed.openapi.starts_with("3.0"));
    let mut found = Vec::new();
    refs(document, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let pointer = target.strip_prefix('#').expect("local references only");
        assert!(
            document.pointer(pointer).is_some(),
            "{target} does not resolve"
        );
    }
    parsed
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_describes_every_route() {
    let stack = Stack::start_with(
        |_| {},
        |config| {
            let parts = [("profile".to_owned(), "/api/auth/profile".to_owned())].into();
            config
                .routes
                .aggregates
                .insert("/api/dashboard".into(), parts);
        },
    )
    .await;
    let answer = stack
        .send(json_request("GET", "/openapi.json", None, ""))
        .await;
    assert_eq!(answer.status, 200);
    let document = answer.json;
    let parsed = validated(&document);

    let mut described = BTreeSet::new();
    for (path, item) in &parsed.paths.paths {
        let item = item.as_item().expect("inline path items");
        for (method, _) in item.iter() {
            described.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    for route in stack.app.routes().routes() {
        let path = route.template.as_str();
        assert!(
            described.contains(&format!("{} {path}", route.method)),
            "{} is not described",
            route.label
        );
    }
    assert!(described.contains("GET /api/dashboard"));

    // One route in detail: path and query parameters, the answer, errors, authentication.
    let get_project = &document["paths"]["/api/projects/{id}"]["get"];
    assert_eq!(get_project["operationId"], "GetProject");
    assert_eq!(get_project["parameters"][0]["name"], "id");
    assert_eq!(get_project["parameters"][0]["in"], "path");
    assert_eq!(get_project["security"][0]["bearer"], serde_json::json!([]));
    let list = &document["paths"]["/api/simulations"]["get"]["parameters"];
    let query: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        query.contains(&"page_size") && query.contains(&"state"),
        "{query:?}"
    );
    let project = &document["components"]["schemas"]["project.v1.Project"]["properties"];
    assert_eq!(
        project["createTime"]["format"], "date-time",
        "proto3 JSON names and types"
    );
    assert_eq!(
        document["components"]["responses"]["Error"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    let error = &document["components"]["schemas"]["Error"]["properties"]["error"];
    assert_eq!(
        error["required"],
        serde_json::json!(["code", "message", "request_id"])
    );
    // Login is public; creating a project has the project as its body.
    assert_eq!(
        document["paths"]["/api/auth/login"]["post"]["security"],
        serde_json::json!([])
    );
    let create = &document["paths"]["/api/projects"]["post"]["requestBody"]["content"];
    assert_eq!(
        create["application/json"]["schema"]["$ref"],
        "#/components/schemas/project.v1.NewProject"
    );
}

/// The document reads paths as the gateway routes them: a literal path lists only its own
/// methods, and a variable never takes a value that makes the path another template's.
#[tokio::test]
async fn literal_paths_own_their_methods_and_variables_exclude_them() {
    let stack = Stack::start().await;
    let document = stack
        .send(json_request("GET", "/openapi.json", None, ""))
        .await
        .json;
    let methods = |path: &str| -> Vec<String> {
        document["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path} is described"))
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(methods("/api/projects/templates"), ["get"]);
    assert_eq!(methods("/api/projects/{id}"), ["delete", "get", "patch"]);
    for method in ["get", "patch", "delete"] {
        let id = &document["paths"]["/api/projects/{id}"][method]["parameters"][0];
        assert_eq!(id["name"], "id");
        assert_eq!(
            id["schema"],
            serde_json::json!({"type": "string", "not": {"enum": ["templates"]}}),
            "{method}"
        );
    }
    let simulation_id = &document["paths"]["/api/simulations/{id}"]["get"]["parameters"][0];
    assert_eq!(
        simulation_id["schema"]["not"],
        serde_json::json!({"anyOf": [{"enum": ["status"]}, {"pattern": "[\\s\\S]:stop$"}]})
    );
    let stop_id = &document["paths"]["/api/simulations/{id}:stop"]["post"]["parameters"][0];
    assert_eq!(stop_id["schema"], serde_json::json!({"type": "string"}));
}

#[tokio::test]
async fn a_route_added_by_a_proto_annotation_is_described_with_no_gateway_code() {
    let pool = dynamic::compile("echo.proto");
    let config = dynamic::config_with_backend(
        "echo.v1.EchoService",
        "127.0.0.1:9".parse().unwrap(),
        &["Shout"],
    );
    let app = dynamic::app(config, &pool);
    let answer = support::send(
        app.api_router(),
        http::Request::get("/openapi.json")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    let document = answer.json;
    validated(&document);
    let shout = &document["paths"]["/api/echo/{channel}:shout"]["post"];
    assert_eq!(shout["operationId"], "Shout");
    assert_eq!(
        shout["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/echo.v1.Message"
    );
    let query: Vec<&str> = shout["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(query, ["repeat"]);
}
