//! The OpenAPI document: served without a token, valid OpenAPI 3.0 (parsed by the `openapiv3`
//! crate, every `$ref` resolved), and describing every route with its parameters, body, answer
//! and the error shape, generated from the descriptors (a test-only `.proto` shows up too).

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
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
/// methods, as OpenAPI matches a concrete path before a templated one.
#[tokio::test]
async fn a_literal_path_lists_only_its_own_methods() {
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
    assert_eq!(methods("/api/simulations/status"), ["get"]);
    assert_eq!(methods("/api/simulations/{id}:stop"), ["post"]);
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

/// The document of a route added by a `.proto` file (no backend needed to read it).
async fn document_of(file: &str, service: &str, methods: &[&str]) -> Value {
    let pool = dynamic::compile(file);
    let config = dynamic::config_with_backend(service, "127.0.0.1:9".parse().unwrap(), methods);
    let app = dynamic::app(config, &pool);
    let answer = support::send(
        app.api_router(),
        http::Request::get("/openapi.json")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    validated(&answer.json);
    answer.json
}

/// Every rule kind the gateway enforces is in the document, with the JSON Schema keyword that
/// says the same, in the body, the query and the path.
#[tokio::test]
async fn every_enforced_rule_is_stated_in_the_schema() {
    let document = document_of("rules.proto", "rules.v1.RulesService", &[]).await;
    let item = &document["components"]["schemas"]["rules.v1.Item"];
    assert_eq!(
        item["additionalProperties"], false,
        "unknown fields are refused"
    );
    assert_eq!(item["required"], json!(["name", "count", "weight"]));
    let field = |name: &str| &item["properties"][name];
    assert_eq!(
        field("name"),
        &json!({"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"})
    );
    // Optional: rules apply when set, and null (not set) is fine.
    assert_eq!(
        field("note"),
        &json!({"type": "string", "minLength": 3, "nullable": true})
    );
    // `gt: 0, lte: 10` on an int64: a JSON number or a decimal string, both bounded.
    let count = field("count")["anyOf"].as_array().unwrap();
    assert_eq!(
        count[0],
        json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 10})
    );
    assert_eq!(count[1]["type"], "string");
    assert_eq!(field("size")["anyOf"][0]["maximum"], 7);
    assert_eq!(field("size")["anyOf"][0]["nullable"], true);
    assert_eq!(field("tags")["maxItems"], 2);
    assert_eq!(
        field("inner")["allOf"][0]["$ref"],
        "#/components/schemas/rules.v1.Inner"
    );
    assert_eq!(
        document["components"]["schemas"]["rules.v1.Inner"]["required"],
        json!(["code"]),
        "a plain string with min_len 1 cannot be left out"
    );
    // Required (protovalidate's spelling) on a uint64: present and not zero.
    let weight = field("weight")["anyOf"].as_array().unwrap();
    assert_eq!(weight[0]["minimum"], 1);
    assert!(weight[0].get("nullable").is_none());
    // defined_only: the names, or the numbers the enum defines.
    assert_eq!(
        field("color")["anyOf"],
        json!([
            {"type": "string", "enum": ["COLOR_UNSPECIFIED", "COLOR_RED"], "nullable": true},
            {"type": "integer", "format": "int32", "minimum": 0, "maximum": 1},
        ])
    );

    let check = &document["paths"]["/api/rules/{id}:check"]["post"];
    assert_eq!(
        check["parameters"],
        json!([
            {"name": "id", "in": "path", "required": true,
             "schema": {"type": "string", "maxLength": 4}},
            {"name": "page_size", "in": "query", "required": false,
             "schema": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 99}},
        ])
    );
    assert_eq!(check["requestBody"]["required"], true, "`item` is required");
    assert_eq!(
        check["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/rules.v1.Item"
    );
    // A whole-message body whose `name` the path binds: the body may carry it, unchecked.
    let replace = &document["paths"]["/api/rules/{name}"]["put"];
    let body = &replace["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["required"], json!(["count", "weight"]));
    assert_eq!(
        body["properties"]["name"],
        json!({"type": "string", "nullable": true})
    );
    assert_eq!(replace["parameters"][0]["schema"]["pattern"], "^[a-z]+$");
    // A body whose `item.name` the path binds: `item` (required) is always present, `name`
    // unchecked in it, the rest of `item` checked as usual.
    let rename = &document["paths"]["/api/rules/{item.name}:rename"]["post"];
    let body = &rename["requestBody"]["content"]["application/json"]["schema"];
    assert!(body.get("required").is_none(), "{body}");
    assert_eq!(rename["requestBody"]["required"], false);
    assert_eq!(body["properties"]["item"]["nullable"], true);
    assert_eq!(
        body["properties"]["item"]["required"],
        json!(["count", "weight"])
    );
    assert_eq!(
        body["properties"]["item"]["properties"]["name"],
        json!({"type": "string", "nullable": true})
    );
    let tag = &document["paths"]["/api/rules/{item.name}:tag"]["post"];
    assert_eq!(tag["requestBody"]["required"], false);
    let body = &tag["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["required"], json!(["count", "weight"]));
    assert_eq!(
        body["properties"]["name"],
        json!({"type": "string", "nullable": true})
    );
    for status in ["400", "401", "404", "413", "415", "429"] {
        assert_eq!(
            check["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{status}"
        );
    }
}

/// The platform's own contract, as the issue lists it: limits, required fields, the body a
/// PATCH needs and the one a verb route does not.
#[tokio::test]
async fn the_platform_contract_is_in_the_document() {
    let stack = Stack::start().await;
    let document = stack
        .send(json_request("GET", "/openapi.json", None, ""))
        .await
        .json;
    let schemas = &document["components"]["schemas"];
    for body in [
        "auth.v1.LoginRequest",
        "project.v1.NewProject",
        "project.v1.ProjectPatch",
        "simulation.v1.StartSimulationRequest",
    ] {
        assert_eq!(
            schemas[body]["additionalProperties"], false,
            "{body}: the gateway refuses unknown fields"
        );
    }
    assert_eq!(
        schemas["project.v1.NewProject"]["required"],
        json!(["name"])
    );
    assert_eq!(
        schemas["project.v1.NewProject"]["properties"]["name"]["maxLength"],
        100
    );
    assert_eq!(
        schemas["simulation.v1.StartSimulationRequest"]["properties"]["projectId"]["maxLength"],
        64
    );
    assert_eq!(
        schemas["auth.v1.LoginRequest"]["required"],
        json!(["username", "password"])
    );
    let page_size = &document["paths"]["/api/projects"]["get"]["parameters"][0];
    assert_eq!(page_size["name"], "page_size");
    assert_eq!(page_size["schema"]["minimum"], 0);
    assert_eq!(
        document["paths"]["/api/projects/{id}"]["patch"]["requestBody"]["required"],
        true
    );
    assert_eq!(
        document["paths"]["/api/simulations/{id}:stop"]["post"]["requestBody"]["required"], false,
        "stopping needs no body"
    );
}
