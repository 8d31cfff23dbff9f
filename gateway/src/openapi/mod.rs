//! The OpenAPI 3.0 document of the API, generated from the same descriptors as the routes (so a
//! route added by a `.proto` annotation appears here too) and served at `GET /openapi.json`.
//!
//! Every route with its path and query parameters, request body and answer, in the proto3 JSON
//! mapping the transcoder speaks; the contract's field rules as JSON Schema keywords, read from
//! the same compiled rules the gateway enforces ([`Validation`]); every error as the one error
//! shape, with the 4xx answers the gateway itself gives; aggregation routes; bearer
//! authentication where a route needs it. docs/errors.md, "Validation", says what the schemas
//! state and where proto3 JSON reads more spellings than they list.
//!
//! - [`schemas`]: message and field schemas, in the request and the response form.
//! - [`decimal`]: patterns for integers written as decimal text.

mod decimal;
mod schemas;

use std::sync::Arc;

use prost_reflect::Kind;
use serde_json::{Map, Value, json};

use self::schemas::Schemas;
use crate::{
    proxy::aggregate::Aggregate,
    proxy::validate::Validation,
    routing::{Route, RouteTable, table::resolve_field_path},
    transcode::BodyMapping,
};

/// The document for `routes` (whose request rules are `validation`) and `aggregates`.
pub fn document(
    routes: &RouteTable,
    validation: &Validation,
    aggregates: &[Arc<Aggregate>],
) -> Value {
    let mut schemas = Schemas::new(validation);
    let mut paths: std::collections::BTreeMap<String, Map<String, Value>> = Default::default();
    for route in routes.routes() {
        let operation = operation(route, &mut schemas);
        paths
            .entry(openapi_path(route.template.as_str()))
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), operation);
    }
    for aggregate in aggregates {
        paths
            .entry(aggregate.path().to_owned())
            .or_default()
            .insert("get".to_owned(), aggregate_operation(aggregate));
    }
    let mut components = schemas.into_components();
    components.insert("Error".to_owned(), error_schema());
    components.insert("Aggregate".to_owned(), aggregate_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Simulation platform API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The API gateway's HTTP/JSON API, generated from the gRPC services' \
                google.api.http annotations; request rules from their google.api.field_behavior \
                and buf.validate annotations, enforced by the gateway. Errors: docs/errors.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
            "responses": {
                "Error": {
                    "description": "An error, in the one error shape",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        },
    })
}

/// `/api/{name=projects/*}/x:verb` → `/api/{name}/x:verb`: OpenAPI names a variable only.
fn openapi_path(template: &str) -> String {
    let mut path = String::with_capacity(template.len());
    let mut in_pattern = false;
    for c in template.chars() {
        match c {
            '=' if path.rfind('{') > path.rfind('}') => in_pattern = true,
            '}' => {
                in_pattern = false;
                path.push(c);
            }
            _ if in_pattern => {}
            _ => path.push(c),
        }
    }
    path
}

fn operation(route: &Route, schemas: &mut Schemas) -> Value {
    let input = route.input();
    let bound: Vec<&[String]> = route.template.variable_paths().collect();
    let mut parameters: Vec<Value> = bound
        .iter()
        .map(|&path| {
            // Start-up checked that every variable binds a scalar field of the request.
            let schema = resolve_field_path(&input, path)
                .map_or(json!({"type": "string"}), |field| schemas.parameter(&field));
            json!({
                "name": path.join("."),
                "in": "path",
                "required": true,
                "schema": schema,
            })
        })
        .collect();
    let body_owner = match route.request.body() {
        BodyMapping::Whole => None,
        BodyMapping::Field(field) => Some(field.name().to_owned()),
        BodyMapping::None => Some(String::new()),
    };
    // Top-level scalar fields the path does not bind and the body does not own are query
    // parameters (nested ones are too, by dotted name; the top level covers every current route).
    if let Some(owner) = &body_owner {
        for field in input.fields() {
            let scalar = !field.is_map() && !matches!(field.kind(), Kind::Message(_));
            let is_bound = bound.iter().any(|path| path == &[field.name().to_owned()]);
            if scalar && !is_bound && field.name() != owner {
                parameters.push(json!({
                    "name": field.name(),
                    "in": "query",
                    "required": !schemas.admits_absence(&field),
                    "schema": schemas.parameter(&field),
                }));
            }
        }
    }
    // The body: its schema, and whether it may be left out (an empty body is no fields).
    let request_body = match route.request.body() {
        BodyMapping::None => None,
        BodyMapping::Whole => Some((
            schemas.request_body(&input, &bound),
            !schemas.body_is_optional(&input, &bound),
        )),
        // Route building accepts only singular message fields as body fields.
        BodyMapping::Field(field) => match field.kind() {
            Kind::Message(message) => {
                let inner: Vec<&[String]> = bound
                    .iter()
                    .filter_map(|path| path.split_first())
                    .filter(|(first, _)| first.as_str() == field.name())
                    .map(|(_, rest)| rest)
                    .collect();
                // A path variable inside the body field sets it, so the body may be left out.
                let required = inner.is_empty() && !schemas.admits_absence(field);
                Some((schemas.request_body(&message, &inner), required))
            }
            _ => None,
        },
    };
    let answer = match &route.response_body {
        Some(field) => schemas.response_field(field),
        None => schemas.response_message(&route.grpc_method.output()),
    };
    let mut responses = json!({
        "200": {
            "description": "The method's answer",
            "content": {"application/json": {"schema": answer}},
        },
        "default": {"$ref": "#/components/responses/Error"},
    });
    for (status, description) in client_errors(route) {
        responses[status] = json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        });
    }
    let mut operation = json!({
        "operationId": route.grpc_method.name(),
        "summary": format!("{} ({})", route.label, route.grpc_method.full_name()),
        "parameters": parameters,
        "responses": responses,
        "security": if route.public { json!([]) } else { json!([{"bearer": []}]) },
    });
    if let Some((schema, required)) = request_body {
        operation["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": schema}},
        });
    }
    operation
}

/// The 4xx answers any routed request can get (docs/errors.md), by status; the backend's own
/// (403, 409, ...) and the server errors are under `default`.
fn client_errors(route: &Route) -> Vec<(&'static str, String)> {
    vec![
        (
            "400",
            "The request breaks the contract: `invalid_field` (a field rule, named in the \
             message), `invalid_json`, `json_too_deep`, `invalid_argument` (a query parameter \
             or path variable), `invalid_path`; or the backend's `invalid_argument`, \
             `failed_precondition`, `out_of_range`"
                .to_owned(),
        ),
        (
            "401",
            if route.public {
                "`unauthenticated`: the backend refused the credentials".to_owned()
            } else {
                "`unauthenticated`: no valid bearer token".to_owned()
            },
        ),
        (
            "404",
            "`not_found`: the backend has no such resource".to_owned(),
        ),
        (
            "413",
            "`payload_too_large`: the body is over the gateway's limit".to_owned(),
        ),
        (
            "415",
            "`unsupported_media_type`: a body that is not `application/json`".to_owned(),
        ),
        (
            "429",
            "`rate_limited` (with `Retry-After`) or the backend's `resource_exhausted`".to_owned(),
        ),
    ]
}

fn aggregate_operation(aggregate: &Aggregate) -> Value {
    json!({
        "operationId": format!("aggregate{}", aggregate.path().replace(['/', '-', '.', '~'], "_")),
        "summary": format!("GET {} (aggregate: {})", aggregate.path(), aggregate.part_names().join(", ")),
        "responses": {
            "200": {
                "description": "Every part's outcome (status complete or partial)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Aggregate"}}},
            },
            "default": {"$ref": "#/components/responses/Error"},
        },
        "security": [{"bearer": []}],
    })
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable (docs/errors.md)"},
                    "message": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            },
        },
    })
}

fn aggregate_schema() -> Value {
    json!({
        "type": "object",
        "required": ["status", "parts"],
        "properties": {
            "status": {"type": "string", "enum": ["complete", "partial", "failed"]},
            "parts": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "integer"},
                        "body": {"type": "object"},
                        "error": {
                            "type": "object",
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        },
                        "cache": {"type": "string", "enum": ["hit", "miss", "stale"]},
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_keep_only_the_variable_name() {
        assert_eq!(openapi_path("/api/projects/{id}"), "/api/projects/{id}");
        assert_eq!(openapi_path("/v1/{name=projects/*}:run"), "/v1/{name}:run");
        assert_eq!(
            openapi_path("/api/simulations/{id}:stop"),
            "/api/simulations/{id}:stop"
        );
    }
}
