//! The OpenAPI 3.0 document of the API, generated from the same descriptors as the routes (so a
//! route added by a `.proto` annotation appears here too) and served at `GET /openapi.json`.
//!
//! Every route with its path and query parameters, request body and answer, in the proto3 JSON
//! mapping the transcoder speaks (camelCase names, 64-bit integers as strings, enums by name,
//! `Timestamp` as RFC 3339); every error as the one error shape; aggregation routes; bearer
//! authentication where a route needs it.

use std::{collections::BTreeMap, sync::Arc};

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::{
    aggregate::Aggregate,
    routing::{BodyMapping, Route, RouteTable, path_template::Shadowed},
};

/// The document for `routes` and `aggregates`.
pub fn document(routes: &RouteTable, aggregates: &[Arc<Aggregate>]) -> Value {
    let mut schemas = Schemas::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for route in routes.routes() {
        let operation = operation(route, routes, &mut schemas);
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
    let mut components = schemas.0;
    components.insert("Error".to_owned(), error_schema());
    components.insert("Aggregate".to_owned(), aggregate_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Simulation platform API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The API gateway's HTTP/JSON API, generated from the gRPC services' \
                google.api.http annotations. Errors: docs/errors.md.",
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

fn operation(route: &Route, routes: &RouteTable, schemas: &mut Schemas) -> Value {
    let input = route.input();
    let mut parameters: Vec<Value> = route
        .template
        .variable_paths()
        .map(|path| {
            json!({
                "name": path.join("."),
                "in": "path",
                "required": true,
                "schema": path_variable_schema(route, routes, path),
            })
        })
        .collect();
    let bound: Vec<String> = route
        .template
        .variable_paths()
        .map(|path| path.join("."))
        .collect();
    let body_owner = match &route.body {
        BodyMapping::Whole => None,
        BodyMapping::Field(field) => Some(field.name().to_owned()),
        BodyMapping::None => Some(String::new()),
    };
    // Top-level scalar fields the path does not bind and the body does not own are query
    // parameters (nested ones are too, by dotted name; the top level covers every current route).
    if let Some(owner) = &body_owner {
        for field in input.fields() {
            let scalar = !field.is_map() && !matches!(field.kind(), Kind::Message(_));
            if scalar && !bound.contains(&field.name().to_owned()) && field.name() != owner {
                parameters.push(json!({
                    "name": field.name(),
                    "in": "query",
                    "required": false,
                    "schema": schemas.field(&field),
                }));
            }
        }
    }
    let request_body = match &route.body {
        BodyMapping::None => None,
        BodyMapping::Whole => Some(schemas.message(&input)),
        BodyMapping::Field(field) => Some(schemas.field(field)),
    };
    let answer = match &route.response_body {
        Some(field) => schemas.field(field),
        None => schemas.message(&route.grpc_method.output()),
    };
    let mut operation = json!({
        "operationId": route.grpc_method.name(),
        "summary": format!("{} ({})", route.label, route.grpc_method.full_name()),
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "The method's answer",
                "content": {"application/json": {"schema": answer}},
            },
            "default": {"$ref": "#/components/responses/Error"},
        },
        "security": if route.public { json!([]) } else { json!([{"bearer": []}]) },
    });
    if let Some(schema) = request_body {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}},
        });
    }
    operation
}

/// A path variable's schema: any text, except the values with which the path would belong to a
/// more specific template (docs/request-lifecycle.md, "Path matching"): `id` of
/// `/api/projects/{id}` is never `templates`.
fn path_variable_schema(route: &Route, routes: &RouteTable, variable: &[String]) -> Value {
    let mut literals: Vec<&str> = Vec::new();
    let mut verb_patterns: Vec<String> = Vec::new();
    for other in routes.routes() {
        match route.template.shadowed_by(&other.template) {
            Some(Shadowed::Literal(path, literal)) if path == variable => literals.push(literal),
            // At least one character, then `:verb` at the end (`[\s\S]`: any character, in
            // every regex dialect a client may validate with).
            Some(Shadowed::VerbSuffix(path, verb)) if path == variable => {
                verb_patterns.push(format!("[\\s\\S]:{}$", ecma_escape(verb)));
            }
            _ => {}
        }
    }
    // Several routes share a template (one per method): each value once.
    literals.sort_unstable();
    literals.dedup();
    verb_patterns.sort_unstable();
    verb_patterns.dedup();
    let mut forbidden: Vec<Value> = verb_patterns
        .into_iter()
        .map(|pattern| json!({"pattern": pattern}))
        .collect();
    if !literals.is_empty() {
        forbidden.insert(0, json!({"enum": literals}));
    }
    match forbidden.len() {
        0 => json!({"type": "string"}),
        1 => json!({"type": "string", "not": forbidden.remove(0)}),
        _ => json!({"type": "string", "not": {"anyOf": forbidden}}),
    }
}

/// `text` as a regular expression matching itself, in the syntax ECMA-262, RE2 and Python share.
fn ecma_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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

/// The component schemas of the messages met so far, by full name.
#[derive(Default)]
struct Schemas(Map<String, Value>);

impl Schemas {
    /// A `$ref` to `message`, adding its schema (and those it uses) the first time.
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(known) = well_known(message.full_name()) {
            return known;
        }
        let name = message.full_name().to_owned();
        if !self.0.contains_key(&name) {
            // Placeholder first: a message may refer to itself.
            self.0.insert(name.clone(), json!({}));
            let properties: Map<String, Value> = message
                .fields()
                .map(|field| (field.json_name().to_owned(), self.field(&field)))
                .collect();
            self.0.insert(
                name.clone(),
                json!({"type": "object", "properties": properties}),
            );
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The schema of one field's JSON value.
    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({"type": "object"});
            };
            let value = entry
                .get_field_by_name("value")
                .map_or(json!({}), |value| self.single(&value.kind()));
            return json!({"type": "object", "additionalProperties": value});
        }
        let single = self.single(&field.kind());
        if field.cardinality() == Cardinality::Repeated {
            json!({"type": "array", "items": single})
        } else {
            single
        }
    }

    fn single(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "int64"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(descriptor) => {
                let names: Vec<String> = descriptor.values().map(|v| v.name().to_owned()).collect();
                json!({"type": "string", "enum": names})
            }
            Kind::Message(message) => self.message(message),
        }
    }
}

/// The JSON forms of the well-known types the contracts use.
fn well_known(full_name: &str) -> Option<Value> {
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => json!({"type": "string", "example": "1.5s"}),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.StringValue" => json!({"type": "string", "nullable": true}),
        "google.protobuf.BoolValue" => json!({"type": "boolean", "nullable": true}),
        "google.protobuf.Int32Value" => json!({"type": "integer", "nullable": true}),
        "google.protobuf.Int64Value" => {
            json!({"type": "string", "format": "int64", "nullable": true})
        }
        "google.protobuf.DoubleValue" => json!({"type": "number", "nullable": true}),
        _ => return None,
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
