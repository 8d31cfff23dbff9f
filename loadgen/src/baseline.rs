//! The direct-gRPC baseline: the HTTP mix's calls ([`crate::http_mix`]), with the same weights,
//! made straight to the mock backends over gRPC with the metadata the gateway would send. Run
//! in the same campaign, it gives the ceiling the gateway's path is compared with: the campaign
//! reports gateway throughput as a ratio of this. Each call is a goose request `GRPC <method>`.

use std::{sync::OnceLock, time::Duration};

use goose::prelude::*;
use proto::{
    auth::v1::{GetProfileRequest, auth_service_client::AuthServiceClient},
    project::v1::{
        CreateProjectRequest, ListProjectsRequest, NewProject,
        project_service_client::ProjectServiceClient,
    },
    simulation::v1::{GetSimulationRequest, simulation_service_client::SimulationServiceClient},
};
use tonic::transport::{Channel, Endpoint};

use crate::http_mix::{SIMULATION_ID, with_the_mix};

/// Where the mock backends listen (`host:port`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Auth.
    pub auth: String,
    /// Project.
    pub project: String,
    /// Simulation.
    pub simulation: String,
}

/// One lazily connected channel per backend, shared by every user (HTTP/2 multiplexes).
struct Channels {
    auth: Channel,
    project: Channel,
    simulation: Channel,
}

static CHANNELS: OnceLock<Channels> = OnceLock::new();

/// The scenario, named `grpc_baseline`, for `settings` (call inside the tokio runtime).
pub fn scenario(settings: &Settings) -> Result<Scenario, GooseError> {
    let channel = |address: &str| -> Result<Channel, GooseError> {
        Ok(Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| GooseError::InvalidOption {
                option: "--auth/--project/--simulation".into(),
                value: address.into(),
                detail: error.to_string(),
            })?
            .timeout(Duration::from_secs(10))
            .connect_lazy())
    };
    let _ = CHANNELS.set(Channels {
        auth: channel(&settings.auth)?,
        project: channel(&settings.project)?,
        simulation: channel(&settings.simulation)?,
    });
    let scenario = scenario!("grpc_baseline").set_host("http://127.0.0.1");
    with_the_mix(
        scenario,
        [
            transaction!(profile),
            transaction!(list_projects),
            transaction!(simulation_status),
            transaction!(create_project),
        ],
    )
}

fn channels() -> Result<&'static Channels, Box<TransactionError>> {
    CHANNELS
        .get()
        .ok_or_else(|| Box::new(TransactionError::Custom("no gRPC channels".into())))
}

/// `message` with the metadata the gateway sets for the demo user.
fn as_alice<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        "x-user-id",
        tonic::metadata::MetadataValue::from_static("u-1"),
    );
    metadata.insert(
        "x-user-name",
        tonic::metadata::MetadataValue::from_static("alice"),
    );
    metadata.insert(
        "x-user-roles",
        tonic::metadata::MetadataValue::from_static("user,admin"),
    );
    request
}

/// Records one call's outcome under `GRPC <method>`.
async fn record<T>(
    user: &mut GooseUser,
    method: &str,
    started: tokio::time::Instant,
    result: Result<T, tonic::Status>,
) -> TransactionResult {
    let took = started.elapsed();
    let error = result
        .as_ref()
        .err()
        .map(|status| format!("{:?}", status.code()));
    user.record_custom_request_duration(
        "GRPC",
        method,
        took,
        result.is_ok(),
        None,
        error.as_deref(),
    )
    .await
}

async fn profile(user: &mut GooseUser) -> TransactionResult {
    let mut client = AuthServiceClient::new(channels()?.auth.clone());
    let started = tokio::time::Instant::now();
    let result = client.get_profile(as_alice(GetProfileRequest {})).await;
    record(user, "auth.v1.AuthService/GetProfile", started, result).await
}

async fn list_projects(user: &mut GooseUser) -> TransactionResult {
    let mut client = ProjectServiceClient::new(channels()?.project.clone());
    let started = tokio::time::Instant::now();
    let request = ListProjectsRequest {
        page_size: 20,
        ..ListProjectsRequest::default()
    };
    let result = client.list_projects(as_alice(request)).await;
    record(
        user,
        "project.v1.ProjectService/ListProjects",
        started,
        result,
    )
    .await
}

async fn simulation_status(user: &mut GooseUser) -> TransactionResult {
    let mut client = SimulationServiceClient::new(channels()?.simulation.clone());
    let started = tokio::time::Instant::now();
    let request = GetSimulationRequest {
        id: SIMULATION_ID.to_owned(),
    };
    let result = client.get_simulation(as_alice(request)).await;
    record(
        user,
        "simulation.v1.SimulationService/GetSimulation",
        started,
        result,
    )
    .await
}

async fn create_project(user: &mut GooseUser) -> TransactionResult {
    let mut client = ProjectServiceClient::new(channels()?.project.clone());
    let started = tokio::time::Instant::now();
    let request = CreateProjectRequest {
        project: Some(NewProject {
            name: "load".into(),
            description: String::new(),
            template_id: "t-fluid".into(),
        }),
    };
    let result = client.create_project(as_alice(request)).await;
    record(
        user,
        "project.v1.ProjectService/CreateProject",
        started,
        result,
    )
    .await
}
