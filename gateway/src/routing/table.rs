//! The route table: every annotated method of every service in the descriptor pool becomes a
//! [`Route`]. Adding an annotated method to a `.proto` adds its route with no gateway code.

use std::sync::Arc;

use http::{Method, uri::PathAndQuery};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};

use super::path_template::{PathError, PathTemplate, TemplateError, has_dot_segment};
use crate::transcode::{Answer, BodyMapping, Capture, Plans, RequestPlan};

/// The name of the HTTP annotation extension in the descriptor pool.
const HTTP_EXTENSION: &str = "google.api.http";

/// One HTTP route and the gRPC method it calls.
#[derive(Debug)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template.
    pub template: PathTemplate,
    /// The gRPC method called.
    pub grpc_method: MethodDescriptor,
    /// The gRPC path, `/package.Service/Method`.
    pub grpc_path: PathAndQuery,
    /// When set, only this response field is returned as the HTTP body.
    pub response_body: Option<FieldDescriptor>,
    /// How the request is encoded from the body, query and path (compiled from the descriptors).
    pub request: RequestPlan,
    /// How the gRPC answer is written as the JSON body (compiled from the descriptors).
    pub answer: Answer,
    /// Whether the route is reachable without a token.
    pub public: bool,
    /// A low-cardinality label for logs and metrics: `GET /api/projects/{id}` (shared, so that
    /// labelling a request copies nothing).
    pub label: Arc<str>,
    /// The full name of the service that serves this route (shared, for the same reason).
    pub service: Arc<str>,
    /// Whether a failed call may be sent again: the HTTP method is GET, or the proto marks the
    /// gRPC method `NO_SIDE_EFFECTS` or `IDEMPOTENT`.
    pub retryable: bool,
}

impl Route {
    /// The full name of the service that serves this route (`project.v1.ProjectService`).
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The gRPC request type.
    pub fn input(&self) -> MessageDescriptor {
        self.grpc_method.input()
    }
}

/// Why the descriptors do not make a valid route table.
#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    /// The descriptor bytes could not be decoded.
    #[error("invalid descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A path template does not parse.
    #[error("{method}: {source}")]
    Template {
        /// The gRPC method.
        method: String,
        /// The parse error.
        source: TemplateError,
    },
    /// An annotation refers to a field the request does not have, or one that cannot be bound.
    #[error("{method}: {reason}")]
    Binding {
        /// The gRPC method.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// Two methods claim the same HTTP method and template.
    #[error("{first} and {second} both map to {route}")]
    Duplicate {
        /// One gRPC method.
        first: String,
        /// The other.
        second: String,
        /// The contested route.
        route: String,
    },
}

/// The outcome of looking up a request.
#[derive(Debug)]
pub enum RouteLookup {
    /// A route matched; these are its decoded path variables.
    Found(Arc<Route>, Vec<Capture>),
    /// No route has this path.
    NotFound,
    /// Routes have this path, but none with this method; these are the methods that would work.
    MethodNotAllowed(Vec<Method>),
    /// The path matched, but a variable is not valid UTF-8 once decoded.
    BadPath(PathError),
}

/// Every route, searched in order of specificity.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds the table from a descriptor pool. `public_methods` lists the gRPC methods
    /// (`auth.v1.AuthService/Login`) reachable without a token.
    pub fn from_pool(
        pool: &DescriptorPool,
        public_methods: &[String],
    ) -> Result<Self, RouteTableError> {
        let Some(extension) = pool.get_extension_by_name(HTTP_EXTENSION) else {
            return Ok(Self::default());
        };
        let mut routes: Vec<Arc<Route>> = Vec::new();
        let plans = Arc::new(Plans::compile(pool));
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let method_name = format!("{}/{}", service.full_name(), method.name());
                if method.is_client_streaming() || method.is_server_streaming() {
                    return Err(RouteTableError::Binding {
                        method: method_name,
                        reason: "streaming methods cannot be transcoded".into(),
                    });
                }
                let rule = options.get_extension(&extension);
                let Some(rule) = rule.as_message() else {
                    continue;
                };
                let public = public_methods.contains(&method_name);
                let mut bindings = vec![rule.clone()];
                if let Some(Value::List(extra)) = rule
                    .get_field_by_name("additional_bindings")
                    .as_deref()
                    .cloned()
                {
                    bindings.extend(extra.iter().filter_map(|v| v.as_message().cloned()));
                }
                for binding in &bindings {
                    let route = build_route(&method, &method_name, binding, public, &plans)?;
                    if let Some(existing) = routes.iter().find(|r| {
                        r.method == route.method && r.template.as_str() == route.template.as_str()
                    }) {
                        return Err(RouteTableError::Duplicate {
                            first: existing.grpc_method.full_name().to_owned(),
                            second: method.full_name().to_owned(),
                            route: route.label.to_string(),
                        });
                    }
                    routes.push(Arc::new(route));
                }
            }
        }
        // Most specific first, so the first match is the best one.
        routes.sort_by(|a, b| b.template.specificity_cmp(&a.template));
        Ok(Self { routes })
    }

    /// Every route, most specific first.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Finds the route for a request.
    ///
    /// A path belongs to the most specific template that matches it, and only routes with a
    /// template of that same shape are considered: `/api/projects/templates` belongs to
    /// `ListTemplates` alone, so `PATCH` there is 405 with `Allow: GET` rather than
    /// `UpdateProject` with `id = "templates"`, and `GET /api/simulations/s-1:stop` is 405 rather
    /// than a lookup of a simulation called `s-1:stop` (a verb template is the more specific).
    /// So `Allow` lists exactly the methods that would work on the path.
    pub fn lookup(&self, method: &Method, path: &str) -> RouteLookup {
        if has_dot_segment(path) {
            return RouteLookup::BadPath(PathError::DotSegment);
        }
        let Some(rest) = path.strip_prefix('/') else {
            return RouteLookup::NotFound;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let mut allowed: Vec<Method> = Vec::new();
        let mut best: Option<&PathTemplate> = None;
        // Routes are sorted most specific first, so those of the best template's shape follow
        // its first match, before any less specific one.
        for route in &self.routes {
            if best.is_some_and(|best| route.template.specificity_cmp(best).is_lt()) {
                break;
            }
            let Some(matched) = route.template.matches_segments(&segments) else {
                continue;
            };
            best.get_or_insert(&route.template);
            if route.method != *method {
                if !allowed.contains(&route.method) {
                    allowed.push(route.method.clone());
                }
                continue;
            }
            return match matched.captures() {
                Ok(captures) => RouteLookup::Found(route.clone(), captures),
                Err(error) => RouteLookup::BadPath(error),
            };
        }
        if allowed.is_empty() {
            RouteLookup::NotFound
        } else {
            RouteLookup::MethodNotAllowed(allowed)
        }
    }
}

fn build_route(
    method: &MethodDescriptor,
    method_name: &str,
    rule: &DynamicMessage,
    public: bool,
    plans: &Arc<Plans>,
) -> Result<Route, RouteTableError> {
    let binding_error = |reason: String| RouteTableError::Binding {
        method: method_name.to_owned(),
        reason,
    };
    let string_field = |name: &str| -> String {
        rule.get_field_by_name(name)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut verb_and_path = None;
    for (field, http_method) in [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ] {
        if rule.has_field_by_name(field) {
            verb_and_path = Some((http_method, string_field(field)));
        }
    }
    if rule.has_field_by_name("custom")
        && let Some(custom) = rule
            .get_field_by_name("custom")
            .and_then(|v| v.as_message().cloned())
    {
        let kind = custom
            .get_field_by_name("kind")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let path = custom
            .get_field_by_name("path")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let http_method = Method::from_bytes(kind.as_bytes())
            .map_err(|_| binding_error(format!("invalid custom HTTP method {kind:?}")))?;
        verb_and_path = Some((http_method, path));
    }
    let Some((http_method, path)) = verb_and_path else {
        return Err(binding_error("the HTTP rule has no method and path".into()));
    };
    let template = PathTemplate::parse(&path).map_err(|source| RouteTableError::Template {
        method: method_name.to_owned(),
        source,
    })?;
    let input = method.input();
    for field_path in template.variable_paths() {
        let leaf = resolve_field_path(&input, field_path).map_err(&binding_error)?;
        if leaf.is_list() || leaf.is_map() || matches!(leaf.kind(), Kind::Message(_)) {
            return Err(binding_error(format!(
                "path variable {} must be a singular scalar field",
                field_path.join(".")
            )));
        }
    }
    let body = match string_field("body").as_str() {
        "" => BodyMapping::None,
        "*" => BodyMapping::Whole,
        name => {
            let field = input
                .get_field_by_name(name)
                .ok_or_else(|| binding_error(format!("body field {name:?} does not exist")))?;
            if field.is_list() || field.is_map() || !matches!(field.kind(), Kind::Message(_)) {
                return Err(binding_error(format!(
                    "body field {name:?} must be a singular message field"
                )));
            }
            BodyMapping::Field(field)
        }
    };
    let response_body = match string_field("response_body").as_str() {
        "" => None,
        name => Some(method.output().get_field_by_name(name).ok_or_else(|| {
            binding_error(format!("response_body field {name:?} does not exist"))
        })?),
    };
    let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let grpc_path = PathAndQuery::try_from(grpc_path)
        .map_err(|_| binding_error("the method name is not a valid gRPC path".into()))?;
    let bound_by_path = template.variable_paths().map(<[String]>::to_vec).collect();
    let request = RequestPlan::new(plans, &method.input(), body, bound_by_path);
    let answer = Answer::new(plans, &method.output(), response_body.as_ref());
    Ok(Route {
        label: format!("{http_method} {}", template.as_str()).into(),
        service: method.parent_service().full_name().into(),
        retryable: http_method == Method::GET || is_idempotent(method),
        method: http_method,
        template,
        grpc_method: method.clone(),
        grpc_path,
        response_body,
        request,
        answer,
        public,
    })
}

/// Whether the proto marks a method safe to repeat (`option idempotency_level`).
fn is_idempotent(method: &MethodDescriptor) -> bool {
    // google.protobuf.MethodOptions.IdempotencyLevel: 1 NO_SIDE_EFFECTS, 2 IDEMPOTENT.
    method
        .options()
        .get_field_by_name("idempotency_level")
        .and_then(|value| value.as_enum_number())
        .is_some_and(|level| level == 1 || level == 2)
}

/// Walks a dotted field path (`project.id`) through nested singular message fields.
pub(crate) fn resolve_field_path(
    message: &MessageDescriptor,
    path: &[String],
) -> Result<FieldDescriptor, String> {
    let mut current = message.clone();
    let mut field = None;
    for (index, name) in path.iter().enumerate() {
        let found = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))
            .ok_or_else(|| format!("field {} does not exist", path[..=index].join(".")))?;
        if index + 1 < path.len() {
            match found.kind() {
                Kind::Message(inner) if !found.is_list() && !found.is_map() => current = inner,
                _ => return Err(format!("{} is not a singular message field", name)),
            }
        }
        field = Some(found);
    }
    field.ok_or_else(|| "empty field path".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_pool(&crate::app::builtin_descriptors(), &[]).expect("valid routes")
    }

    fn found(table: &RouteTable, method: Method, path: &str) -> Option<String> {
        match table.lookup(&method, path) {
            RouteLookup::Found(route, _) => Some(route.grpc_method.name().to_owned()),
            _ => None,
        }
    }

    fn allow(table: &RouteTable, method: Method, path: &str) -> Vec<Method> {
        match table.lookup(&method, path) {
            RouteLookup::MethodNotAllowed(allow) => allow,
            other => panic!("{method} {path}: expected 405, got {other:?}"),
        }
    }

    #[test]
    fn a_literal_template_owns_its_path_for_every_method() {
        let table = table();
        let path = "/api/projects/templates";
        assert_eq!(
            found(&table, Method::GET, path).as_deref(),
            Some("ListTemplates")
        );
        for method in [Method::PATCH, Method::DELETE, Method::OPTIONS] {
            assert_eq!(allow(&table, method, path), [Method::GET]);
        }
        // Any other value of the variable still reaches the variable template's routes.
        let other = "/api/projects/p-1";
        assert_eq!(
            found(&table, Method::PATCH, other).as_deref(),
            Some("UpdateProject")
        );
        assert_eq!(
            allow(&table, Method::PUT, other),
            [Method::GET, Method::PATCH, Method::DELETE]
        );
    }

    #[test]
    fn a_verb_template_owns_its_path() {
        let table = table();
        let path = "/api/simulations/s-1:stop";
        assert_eq!(
            found(&table, Method::POST, path).as_deref(),
            Some("StopSimulation")
        );
        assert_eq!(allow(&table, Method::GET, path), [Method::POST]);
    }
}
