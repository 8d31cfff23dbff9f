//! Routing: from the `google.api.http` annotations in a descriptor pool to a table that maps an
//! HTTP method and path to a gRPC method.
//!
//! - [`path_template`]: the template grammar, matching and variable capture.
//! - [`table`]: the route table built from descriptors, and the lookup with 404/405 semantics.
//! - [`layer`]: the routing layer: match the route, then authenticate when it asks for it.

pub mod layer;
pub mod path_template;
pub mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::field_check::{InvalidField, positive};

pub use layer::MatchedRoute;
pub use path_template::PathTemplate;
pub use table::{Route, RouteLookup, RouteTable, RouteTableError};

/// Where routes come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RoutesConfig {
    /// An encoded `FileDescriptorSet` to route from instead of the built-in contracts
    /// (`protox --include-imports -o` or `protoc --include_imports -o` makes one). Default: none.
    pub descriptor_set_path: Option<std::path::PathBuf>,
    /// Deadlines of route groups, in ms, by gRPC service (`project.v1.ProjectService`) or method
    /// (`project.v1.ProjectService/ListProjects`); a method's entry wins over its service's.
    /// Routes in no group use their backend's `deadline_ms`. Default: none.
    pub deadlines_ms: BTreeMap<String, u64>,
    /// Aggregation routes (`docs/resilience.md`): by the aggregate's path (`/api/dashboard`), its
    /// parts by name, each a GET route's path and query (`/api/projects?page_size=5`), called
    /// in parallel. Default: none.
    pub aggregates: BTreeMap<String, BTreeMap<String, String>>,
}

impl RoutesConfig {
    /// Checks the `[routes]` deadlines. The aggregates are checked by their owner
    /// (`proxy::aggregate::check_config`); that routes exist for a group is known only once the
    /// route table is built.
    pub fn check(&self) -> Result<(), InvalidField> {
        for (group, deadline) in &self.deadlines_ms {
            let field = format!("routes.deadlines_ms.{group}");
            check_route_group(&field, group)?;
            positive(field, *deadline)?;
        }
        Ok(())
    }
}

/// Checks that `group`, the key of `field`, names a route group: a gRPC service
/// (`package.Service`) or method (`package.Service/Method`), the keys of `routes.deadlines_ms`,
/// `cache.routes` and `rate_limit.groups`.
pub fn check_route_group(field: &str, group: &str) -> Result<(), InvalidField> {
    let valid = match group.split_once('/') {
        Some((service, method)) => {
            service.contains('.') && !method.is_empty() && !method.contains('/')
        }
        None => group.contains('.'),
    };
    if valid {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            "must name a gRPC service (package.Service) or method (package.Service/Method)",
        ))
    }
}
