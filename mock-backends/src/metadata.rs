//! The gRPC metadata the gateway forwards to backends, and how a backend reads its caller from it.
//!
//! The gateway authenticates the client, then forwards who it is: `x-user-id`, `x-user-name`,
//! `x-user-roles` (comma-separated) and `x-request-id`. Backends trust these keys as they trust
//! the gateway; nothing else may reach them.

use tonic::{Status, metadata::MetadataMap};

/// The caller's user ID, for example `u-1`.
pub const USER_ID: &str = "x-user-id";
/// The caller's username, for example `alice`.
pub const USER_NAME: &str = "x-user-name";
/// The caller's roles, comma-separated, for example `user,admin`.
pub const USER_ROLES: &str = "x-user-roles";
/// The request ID the gateway assigned, recorded by every backend and forwarded on the calls a
/// backend makes to Auth.
pub const REQUEST_ID: &str = "x-request-id";

/// The role that may do anything.
pub const ADMIN_ROLE: &str = "admin";

/// Who is calling, as the gateway told the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's ID.
    pub user_id: String,
    /// The user's roles (empty when the gateway sent none).
    pub roles: Vec<String>,
    /// The request ID, when the gateway sent one.
    pub request_id: Option<String>,
}

impl Caller {
    /// Reads the caller from `metadata`; UNAUTHENTICATED when `x-user-id` is missing or empty.
    pub fn from_metadata(metadata: &MetadataMap) -> Result<Self, Status> {
        let user_id = text(metadata, USER_ID)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Status::unauthenticated("missing caller identity"))?;
        let roles = text(metadata, USER_ROLES)
            .map(|roles| {
                roles
                    .split(',')
                    .map(str::trim)
                    .filter(|role| !role.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            user_id: user_id.to_owned(),
            roles,
            request_id: request_id(metadata),
        })
    }

    /// Whether the caller holds the admin role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|role| role == ADMIN_ROLE)
    }
}

/// The request ID in `metadata`, if any.
pub fn request_id(metadata: &MetadataMap) -> Option<String> {
    text(metadata, REQUEST_ID).map(str::to_owned)
}

fn text<'a>(metadata: &'a MetadataMap, key: &str) -> Option<&'a str> {
    metadata.get(key).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_roles_and_request_id() {
        let mut metadata = MetadataMap::new();
        metadata.insert(USER_ID, "u-1".parse().unwrap());
        metadata.insert(USER_ROLES, "user, admin".parse().unwrap());
        metadata.insert(REQUEST_ID, "req-7".parse().unwrap());
        let caller = Caller::from_metadata(&metadata).unwrap();
        assert_eq!(caller.user_id, "u-1");
        assert_eq!(caller.roles, ["user", "admin"]);
        assert!(caller.is_admin());
        assert_eq!(caller.request_id.as_deref(), Some("req-7"));
    }

    #[test]
    fn missing_user_is_unauthenticated() {
        let status = Caller::from_metadata(&MetadataMap::new()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
