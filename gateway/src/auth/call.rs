//! The one way the gateway calls the Auth service with its typed client: token validation
//! (`ValidateToken`), permission checks (`CheckPermission`) and key fetches (`GetJwks`) all go
//! through [`call_auth`].

use std::{future::Future, time::Duration};

use proto::auth::v1::auth_service_client::AuthServiceClient;
use tokio::time::Instant;
use tonic::{Status, transport::Channel};

use crate::{
    backends::{Backend, settle},
    request::request_id,
};

/// The typed client on one leased channel.
pub type AuthClient = AuthServiceClient<Channel>;

/// Calls one Auth method: on a channel leased from `auth`, with `deadline` sent as `grpc-timeout`
/// and also enforced here (an Auth that never answers cannot hold the caller past it), the
/// current request's ID in the metadata (so Auth's logs name the request that needed the call),
/// and the end settled as every backend call's is ([`settle`]: a lost connection is UNAVAILABLE,
/// a call with no answer counts against its connection). `method` makes the call itself:
/// `|mut client, request| async move { client.get_jwks(request).await }`.
pub async fn call_auth<Req, Resp, Call, Answer>(
    auth: &Backend,
    message: Req,
    deadline: Duration,
    method: Call,
) -> Result<Resp, Status>
where
    Call: FnOnce(AuthClient, tonic::Request<Req>) -> Answer,
    Answer: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    if let Some(id) = request_id::current().and_then(|id| id.parse().ok()) {
        request.metadata_mut().insert(request_id::HEADER, id);
    }
    let lease = auth.lease();
    let client = AuthServiceClient::new(lease.channel());
    let started = Instant::now();
    let answer = tokio::time::timeout(deadline, method(client, request))
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer")));
    settle(&lease, answer, started, deadline).map(tonic::Response::into_inner)
}
