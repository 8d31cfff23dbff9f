//! The wire contracts of the simulation platform.
//!
//! - `proto/auth/v1`, `proto/project/v1`, `proto/simulation/v1`: the three backend services. Methods
//!   clients may call carry `google.api.http` annotations; the gateway derives its routes from them.
//!   Their request fields carry `google.api.field_behavior` and `buf.validate.field` annotations,
//!   which the gateway enforces before calling the service and writes into its OpenAPI document.
//! - `proto/google/api`: the `HttpRule` option and the `field_behavior` annotation (`REQUIRED`),
//!   defined here from their public specifications.
//! - `proto/buf/validate`: the part of protovalidate's field rules the gateway enforces (string
//!   lengths and patterns, integer bounds, enum values, list sizes), same package and numbers as
//!   the public specification.
//!
//! The crate exports the generated prost types and tonic stubs for each package, and
//! [`FILE_DESCRIPTOR_SET`], the encoded descriptors the gateway builds its route table from.

#![allow(missing_docs)] // Generated code documents what the .proto files document.

/// Encoded `google.protobuf.FileDescriptorSet` of every service above and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// `google.api`: the HTTP and field behaviour annotation types.
pub mod google {
    /// The `HttpRule` option and the `FieldBehavior` enum.
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

/// `auth.v1`: login, tokens, profiles and permissions.
pub mod auth {
    /// Version 1 of the Auth contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/auth.v1.rs"));
    }
}

/// `project.v1`: projects and templates.
pub mod project {
    /// Version 1 of the Project contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/project.v1.rs"));
    }
}

/// `simulation.v1`: simulation runs.
pub mod simulation {
    /// Version 1 of the Simulation contract.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/simulation.v1.rs"));
    }
}
