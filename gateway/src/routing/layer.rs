//! Phases 8 and 9 in one layer: match the route, then authenticate the caller unless the route
//! is public. What it matched travels on as a request extension ([`MatchedRoute`]).

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    auth::{self, TokenValidator},
    ops::metrics::RouteLabel,
    request::{error::ApiError, error_code::ErrorCode},
    routing::{Route, RouteLookup, RouteTable},
    transcode::Capture,
};

/// The route a request matched and its decoded path variables.
#[derive(Debug, Clone)]
pub struct MatchedRoute {
    /// The route.
    pub route: Arc<Route>,
    /// Its path variables.
    pub captures: Vec<Capture>,
}

/// What routing needs: the routes, the composite routes served beside them, and token
/// validation for those that are not public.
#[derive(Debug)]
pub struct Routing {
    /// The route table.
    pub table: Arc<RouteTable>,
    /// Paths of composite GET routes (the configured aggregates), with their labels: never
    /// public, answered by a handler of their own after this layer.
    pub composite: HashMap<String, Arc<str>>,
    /// Validates the tokens of non-public routes.
    pub validator: Arc<TokenValidator>,
}

/// Middleware: looks the request up in the route table (404 when no route has the path, 405 with
/// `Allow` when the path exists with other methods, 400 when a path variable is not UTF-8), then,
/// unless the route is public, authenticates it (`auth::authenticate`). Routing comes first
/// because whether a token is needed depends on the route; both run in one layer because each
/// layer costs every request a boxed service and future. A composite route's path takes GET
/// and HEAD (405 otherwise) and always needs a token.
pub async fn route_layer(
    State(routing): State<Arc<Routing>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !routing.composite.is_empty()
        && let Some(label) = routing.composite.get(request.uri().path())
    {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return ApiError::method_not_allowed(&[Method::GET, Method::HEAD]).into_response();
        }
        let label = RouteLabel(label.clone());
        let mut response = match auth::authenticate(&routing.validator, &mut request).await {
            Ok(()) => next.run(request).await,
            Err(refusal) => refusal,
        };
        response.extensions_mut().insert(label);
        return response;
    }
    match routing.table.lookup(request.method(), request.uri().path()) {
        RouteLookup::Found(route, captures) => {
            let label = RouteLabel(route.label.clone());
            let public = route.public;
            request
                .extensions_mut()
                .insert(MatchedRoute { route, captures });
            let authenticated = if public {
                Ok(())
            } else {
                auth::authenticate(&routing.validator, &mut request).await
            };
            let mut response = match authenticated {
                Ok(()) => next.run(request).await,
                Err(refusal) => refusal,
            };
            response.extensions_mut().insert(label);
            response
        }
        RouteLookup::NotFound => ApiError::route_not_found().into_response(),
        RouteLookup::MethodNotAllowed(allow) => {
            ApiError::method_not_allowed(&allow).into_response()
        }
        RouteLookup::BadPath(error) => {
            ApiError::bad_request(ErrorCode::InvalidPath, error.to_string()).into_response()
        }
    }
}
