//! The `mockcontrol.v1` service: fault knobs, key rotation and revocations at run time, over
//! gRPC, on every
//! backend's port. Which backends a port can reach is its [`ControlPlane`]: backends started
//! together share one, so one backend's port can bring another back up.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use crate::{
    auth::{AuthBackend, AuthError},
    config::ServiceKind,
    control_proto::{
        FaultSettings as WireFaultSettings, GetFaultsRequest, RevokePermissionRequest,
        RevokePermissionResponse, RevokeTokenRequest, RevokeTokenResponse, RotateSigningKeyRequest,
        RotateSigningKeyResponse, SetFaultsRequest, control_service_server::ControlService,
    },
    faults::{FaultSettings, Faults},
};

/// The backends a control service can reach: their fault handles, and Auth for key rotation.
#[derive(Debug, Clone, Default)]
pub struct ControlPlane {
    faults: BTreeMap<ServiceKind, Faults>,
    auth: Option<AuthBackend>,
}

impl ControlPlane {
    /// A plane reaching no backend yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the fault handle of `kind`.
    pub fn with_faults(mut self, kind: ServiceKind, faults: Faults) -> Self {
        self.faults.insert(kind, faults);
        self
    }

    /// Adds Auth: its faults and key rotation.
    pub fn with_auth(mut self, auth: AuthBackend) -> Self {
        self.faults.insert(ServiceKind::Auth, auth.faults().clone());
        self.auth = Some(auth);
        self
    }
}

/// The control service as served on the port of the backend `local`.
#[derive(Debug, Clone)]
pub struct ControlApi {
    plane: ControlPlane,
    local: ServiceKind,
}

impl ControlApi {
    /// Serves `plane` on `local`'s port; an empty `service` in a request means `local`.
    pub fn new(plane: ControlPlane, local: ServiceKind) -> Self {
        Self { plane, local }
    }

    fn faults(&self, service: &str) -> Result<&Faults, Status> {
        let kind = if service.is_empty() {
            self.local
        } else {
            service
                .parse::<ServiceKind>()
                .map_err(|error| Status::invalid_argument(error.reason))?
        };
        self.plane.faults.get(&kind).ok_or_else(|| {
            Status::failed_precondition(format!("{kind} is not reachable from this port"))
        })
    }

    fn auth(&self) -> Result<&AuthBackend, Status> {
        self.plane
            .auth
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("auth is not reachable from this port"))
    }
}

#[tonic::async_trait]
impl ControlService for ControlApi {
    async fn get_faults(
        &self,
        request: Request<GetFaultsRequest>,
    ) -> Result<Response<WireFaultSettings>, Status> {
        let faults = self.faults(&request.into_inner().service)?;
        Ok(Response::new(faults.settings().into()))
    }

    async fn set_faults(
        &self,
        request: Request<SetFaultsRequest>,
    ) -> Result<Response<WireFaultSettings>, Status> {
        let SetFaultsRequest { service, faults } = request.into_inner();
        let handle = self.faults(&service)?;
        let settings = FaultSettings::from(faults.unwrap_or_default());
        handle
            .set(settings)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let target = if service.is_empty() {
            self.local.to_string()
        } else {
            service
        };
        tracing::info!(service = %target, ?settings, "faults set");
        Ok(Response::new(handle.settings().into()))
    }

    async fn rotate_signing_key(
        &self,
        _request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        match self.auth()?.rotate_signing_key() {
            Ok(kid) => Ok(Response::new(RotateSigningKeyResponse { kid })),
            Err(AuthError::RotationUnsupported) => Err(Status::failed_precondition(
                "signing keys rotate only with EdDSA",
            )),
            Err(error) => {
                tracing::error!(%error, "key rotation failed");
                Err(Status::internal("key rotation failed"))
            }
        }
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let token_id = request.into_inner().token_id;
        if token_id.is_empty() {
            return Err(Status::invalid_argument("token_id is required"));
        }
        self.auth()?.revoke_token(&token_id);
        Ok(Response::new(RevokeTokenResponse {}))
    }

    async fn revoke_permission(
        &self,
        request: Request<RevokePermissionRequest>,
    ) -> Result<Response<RevokePermissionResponse>, Status> {
        let RevokePermissionRequest {
            user_id,
            resource,
            action,
        } = request.into_inner();
        if user_id.is_empty() || resource.is_empty() {
            return Err(Status::invalid_argument(
                "user_id and resource are required",
            ));
        }
        match self.auth()?.revoke_permission(&user_id, &resource, &action) {
            Ok(()) => Ok(Response::new(RevokePermissionResponse {})),
            Err(error) => Err(Status::invalid_argument(error.to_string())),
        }
    }
}
