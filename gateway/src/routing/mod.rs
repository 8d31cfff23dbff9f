//! Routing: from the `google.api.http` annotations in a descriptor pool to a table that maps an
//! HTTP method and path to a gRPC method.
//!
//! - [`path_template`]: the template grammar, matching and variable capture.
//! - [`table`]: the route table built from descriptors, and the lookup with 404/405 semantics.

pub mod path_template;
pub mod table;

pub use path_template::PathTemplate;
pub use table::{Route, RouteLookup, RouteTable, RouteTableError};
