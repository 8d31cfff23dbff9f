//! What every phase knows of a request, so that no phase reaches forward for it: its ID (and
//! the access log it opens), the connection's peer, and the one error shape with its codes.

pub mod error;
pub mod error_code;
pub mod request_id;

/// The address of a request's connection peer, in its extensions as `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);
