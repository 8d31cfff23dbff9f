//! Aggregation routes: one GET that calls several GET routes in parallel and answers with every
//! part's outcome, so a client renders a page in one round trip and a failing backend costs it
//! one part of the page, not the page.
//!
//! Each part goes through the same backend call as a direct request to its route (deadline,
//! retries, breaker, cache), as the authenticated caller of the aggregate. The answer is
//! `{"status": "complete" | "partial", "parts": {name: {"status", "body" | "error"}}}`; when no
//! part succeeds it is an error in the one error shape, with the parts alongside
//! (`docs/resilience.md`).

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::{
    auth::UserContext,
    proxy::{self, RouteHandler},
    request::{
        error::ApiError,
        error_code::ErrorCode,
        request_id::{self, RequestId},
    },
    routing::{MatchedRoute, RouteLookup, RouteTable},
};

/// Most parts one aggregate may have: each is a backend call per client request.
pub const PARTS_MAX: usize = 16;

/// Checks an aggregate's configuration on its own (the route table is checked at start-up by
/// [`Aggregate::resolve`]): a plain absolute path, 1 to [`PARTS_MAX`] parts with simple names,
/// each an absolute path.
pub fn check_config(path: &str, parts: &BTreeMap<String, String>) -> Result<(), String> {
    let plain_path = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b));
    if !plain_path || path.contains("//") {
        return Err(
            "the path must be absolute, without variables, query or special characters".into(),
        );
    }
    if path == "/health" || path.starts_with("/health/") {
        return Err("the path must not shadow the health endpoints".into());
    }
    if parts.is_empty() || parts.len() > PARTS_MAX {
        return Err(format!("must have 1 to {PARTS_MAX} parts"));
    }
    for (name, target) in parts {
        let simple = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !simple {
            return Err(format!(
                "part name {name:?}: letters, digits, '_' and '-' only"
            ));
        }
        if !target.starts_with('/') || target.parse::<Uri>().is_err() {
            return Err(format!(
                "part {name}: {target:?} is not an absolute path and query"
            ));
        }
    }
    Ok(())
}

/// A configured aggregate, resolved against the route table.
#[derive(Debug)]
pub struct Aggregate {
    path: String,
    label: Arc<str>,
    parts: Vec<Part>,
}

/// One part: the route its target matched and the target itself (its query is the request's).
#[derive(Debug)]
struct Part {
    name: String,
    uri: Uri,
    matched: MatchedRoute,
}

impl Aggregate {
    /// Resolves every part to a GET route of `table`. Refused when a part matches no GET route, or
    /// when the aggregate's path is already a route's (one of them would be unreachable).
    pub fn resolve(
        path: &str,
        parts: &BTreeMap<String, String>,
        table: &RouteTable,
    ) -> Result<Self, String> {
        check_config(path, parts)?;
        if !matches!(table.lookup(&Method::GET, path), RouteLookup::NotFound) {
            return Err("the path is already a route's".into());
        }
        let parts = parts
            .iter()
            .map(|(name, target)| {
                let uri: Uri = target
                    .parse()
                    .map_err(|_| format!("part {name}: invalid target {target:?}"))?;
                match table.lookup(&Method::GET, uri.path()) {
                    RouteLookup::Found(route, captures) => Ok(Part {
                        name: name.clone(),
                        uri,
                        matched: MatchedRoute { route, captures },
                    }),
                    _ => Err(format!("part {name}: {target:?} is not a GET route")),
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            path: path.to_owned(),
            label: format!("GET {path}").into(),
            parts,
        })
    }

    /// The aggregate's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its route label in the metrics (`GET /api/dashboard`).
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// Its parts' names, in order.
    pub fn part_names(&self) -> Vec<&str> {
        self.parts.iter().map(|part| part.name.as_str()).collect()
    }
}

/// The router serving `aggregates`, their parts called through `proxy`. Routing, the method
/// check and authentication happen before it, in the routing layer, as for every route
/// (`routing::layer`); so does the per-user limit, counted once for the whole aggregate.
pub fn router(aggregates: &[Arc<Aggregate>], proxy: &Arc<RouteHandler>) -> Router {
    aggregates.iter().fold(Router::new(), |router, aggregate| {
        let served = Arc::new(Served {
            aggregate: aggregate.clone(),
            proxy: proxy.clone(),
        });
        let path = served.aggregate.path.clone();
        router.route(&path, get(handle).with_state(served))
    })
}

/// One aggregate and the backend calls of its parts.
struct Served {
    aggregate: Arc<Aggregate>,
    proxy: Arc<RouteHandler>,
}

/// The merged answer.
#[derive(Serialize)]
struct Merged<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
    status: &'static str,
    parts: BTreeMap<&'a str, PartAnswer>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'static str,
    request_id: &'a str,
}

/// One part's outcome: its HTTP status and either its JSON body or its error.
#[derive(Serialize)]
struct PartAnswer {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<PartError>,
    /// The response cache's verdict (`hit`, `miss`, `stale`) on a cached route.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<String>,
    #[serde(skip)]
    outage: bool,
    #[serde(skip)]
    retry_after_seconds: Option<u64>,
}

#[derive(Serialize)]
struct PartError {
    code: &'static str,
    message: String,
}

async fn handle(State(served): State<Arc<Served>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let calls = served.aggregate.parts.iter().map(|part| {
        let request = part_request(part, &parts);
        let proxy = &served.proxy;
        async move { answer_of(proxy::forward(proxy, request).await).await }
    });
    let answers = futures::future::join_all(calls).await;
    // The routing layer labels the answer (`routing::layer`), as for every route.
    merge(&served.aggregate, answers)
}

/// The request for one part: its route and target, the caller's identity and request ID, and
/// the caller's `Cache-Control` (so `no-cache` reaches cached parts).
fn part_request(part: &Part, aggregate: &http::request::Parts) -> Request {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = part.uri.clone();
    let extensions = request.extensions_mut();
    extensions.insert(part.matched.clone());
    if let Some(user) = aggregate.extensions.get::<Arc<UserContext>>() {
        extensions.insert(user.clone());
    }
    if let Some(id) = aggregate.extensions.get::<RequestId>() {
        extensions.insert(id.clone());
    }
    for value in aggregate.headers.get_all(header::CACHE_CONTROL) {
        request
            .headers_mut()
            .append(header::CACHE_CONTROL, value.clone());
    }
    request
}

async fn answer_of(result: Result<Response, ApiError>) -> PartAnswer {
    let response = match result {
        Ok(response) => response,
        Err(error) => return failed(&error),
    };
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // The body is the transcoder's JSON, already in memory.
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .and_then(|json| RawValue::from_string(json).ok());
    match body {
        Some(body) => PartAnswer {
            status: status.as_u16(),
            body: Some(body),
            error: None,
            cache,
            outage: false,
            retry_after_seconds: None,
        },
        None => failed(&ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::BadGateway,
            "the backend's response could not be encoded",
        )),
    }
}

fn failed(error: &ApiError) -> PartAnswer {
    PartAnswer {
        status: error.status().as_u16(),
        body: None,
        error: Some(PartError {
            code: error.code().as_str(),
            message: error.message().to_owned(),
        }),
        cache: None,
        outage: error.is_backend_outage(),
        retry_after_seconds: error.retry_after_seconds(),
    }
}

/// The aggregate's answer: 200 `complete` or `partial` while any part succeeded; otherwise 503
/// `aggregate_unavailable` (with the latest `Retry-After` of its parts) when every part's
/// backend could not answer, else 502 `aggregate_failed`.
fn merge(aggregate: &Aggregate, answers: Vec<PartAnswer>) -> Response {
    let succeeded = answers.iter().filter(|a| a.error.is_none()).count();
    let all_outages = answers.iter().all(|a| a.outage);
    let retry_after = answers.iter().filter_map(|a| a.retry_after_seconds).max();
    let (status, error) = match succeeded {
        0 if all_outages => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some((
                ErrorCode::AggregateUnavailable,
                "no part could be fetched: their backends are not answering",
            )),
        ),
        0 => (
            StatusCode::BAD_GATEWAY,
            Some((
                ErrorCode::AggregateFailed,
                "every part of this aggregate failed",
            )),
        ),
        _ => (StatusCode::OK, None),
    };
    let request_id = request_id::current().unwrap_or_default();
    let merged = Merged {
        error: error.map(|(code, message)| ErrorBody {
            code: code.as_str(),
            message,
            request_id: &request_id,
        }),
        status: match succeeded {
            0 => "failed",
            n if n == answers.len() => "complete",
            _ => "partial",
        },
        parts: aggregate
            .parts
            .iter()
            .map(|part| part.name.as_str())
            .zip(answers)
            .collect(),
    };
    let Ok(body) = serde_json::to_vec(&merged) else {
        // Every field serializes; this guards the invariant without a panic.
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the aggregate could not be encoded",
        )
        .into_response();
    };
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some((code, _)) = error {
        response.extensions_mut().insert(code);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = retry_after.unwrap_or(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(name, target)| ((*name).to_owned(), (*target).to_owned()))
            .collect()
    }

    #[test]
    fn config_needs_a_plain_path_and_named_absolute_parts() {
        let ok = parts(&[
            ("profile", "/api/auth/profile"),
            ("p", "/api/projects?page_size=5"),
        ]);
        assert_eq!(check_config("/api/dashboard", &ok), Ok(()));
        for path in [
            "api/dashboard",
            "/api/{id}",
            "/api/x?y=1",
            "/health",
            "/api//x",
            "/api/*",
        ] {
            assert!(check_config(path, &ok).is_err(), "{path}");
        }
        assert!(check_config("/api/d", &parts(&[])).is_err());
        assert!(check_config("/api/d", &parts(&[("a b", "/api/x")])).is_err());
        assert!(check_config("/api/d", &parts(&[("a", "api/x")])).is_err());
        let many: Vec<(String, String)> = (0..=PARTS_MAX)
            .map(|i| (format!("p{i}"), "/api/projects".to_owned()))
            .collect();
        assert!(check_config("/api/d", &many.into_iter().collect()).is_err());
    }

    #[test]
    fn parts_must_be_get_routes_and_the_path_must_be_free() {
        let table = RouteTable::from_pool(&crate::app::builtin_descriptors(), &[]).unwrap();
        let resolved = Aggregate::resolve(
            "/api/dashboard",
            &parts(&[
                ("profile", "/api/auth/profile"),
                ("one", "/api/projects/p-1"),
            ]),
            &table,
        )
        .unwrap();
        let names: Vec<&str> = resolved.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["one", "profile"], "parts in name order");
        assert_eq!(resolved.parts[0].matched.captures.len(), 1, "p-1 is the id");
        let post_only = parts(&[("login", "/api/auth/login")]);
        assert!(Aggregate::resolve("/api/d", &post_only, &table).is_err());
        let unknown = parts(&[("x", "/api/nothing")]);
        assert!(Aggregate::resolve("/api/d", &unknown, &table).is_err());
        let ok = parts(&[("profile", "/api/auth/profile")]);
        assert!(Aggregate::resolve("/api/projects", &ok, &table).is_err());
    }
}
