//! The Project service: in-memory projects (seeded from [`crate::demo`]) and a static template
//! catalogue. Every read and write of a project asks Auth for permission over gRPC; creating one
//! grants the creator `write` on it.
//!
//! When events are published: `project_created` on `user:{owner}`, `project_updated` and
//! `project_deleted` on `project:{id}` (see `docs/mock-backends.md`, "Events published"). Each is
//! published before the call answers; a publishing failure is logged and never fails the call.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use events::ChannelKind;
use prost_types::Timestamp;
use proto::project::v1::{
    CreateProjectRequest, DeleteProjectRequest, DeleteProjectResponse, GetProjectRequest,
    ListProjectsRequest, ListProjectsResponse, ListTemplatesRequest, ListTemplatesResponse,
    NewProject, Project, ProjectPatch, Template, UpdateProjectRequest,
    project_service_server::ProjectService,
};
use seams::SharedClock;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::{
    auth_client::AuthClient,
    config::{ConfigError, ProjectConfig, ServiceKind},
    demo,
    faults::Faults,
    metadata::Caller,
    paging,
    publish::EventSink,
    request_log::RequestLog,
};

/// Longest project name, in characters.
pub const NAME_LEN_MAX: usize = 100;
/// Longest project description, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 2_000;

/// Seeded projects are dated this far apart, oldest first, so their order is visible.
const DEMO_PROJECT_AGE_STEP: Duration = Duration::from_secs(24 * 60 * 60);

/// The Project backend: a cheap, cloneable handle on its state, which also implements the gRPC
/// service.
#[derive(Debug, Clone)]
pub struct ProjectBackend {
    inner: Arc<ProjectInner>,
}

#[derive(Debug)]
struct ProjectInner {
    clock: SharedClock,
    auth: AuthClient,
    /// Keyed by sequence number, so iteration order is creation order.
    projects: Mutex<BTreeMap<u64, StoredProject>>,
    next_seq: AtomicU64,
    projects_max: usize,
    faults: Faults,
    requests: RequestLog,
    events: EventSink,
}

#[derive(Debug, Clone)]
struct StoredProject {
    name: String,
    description: String,
    owner_id: String,
    template_id: String,
    create_time: Duration,
    update_time: Duration,
}

impl ProjectBackend {
    /// A Project backend with the demo projects, asking `auth` for permissions, its time from
    /// `clock`, its injected errors drawn from `seed`, publishing to `events`.
    pub fn new(
        config: &ProjectConfig,
        seed: u64,
        clock: SharedClock,
        auth: AuthClient,
        request_log_len_max: usize,
        events: EventSink,
    ) -> Result<Self, ConfigError> {
        let faults = Faults::seeded(config.faults, seed, ServiceKind::Project)?;
        let now = clock.now_since_epoch();
        let count = demo::PROJECTS.len() as u32;
        let projects = demo::PROJECTS
            .iter()
            .zip(0_u32..)
            .map(|(project, index)| {
                let created = now.saturating_sub(DEMO_PROJECT_AGE_STEP * (count - index));
                let stored = StoredProject {
                    name: project.name.to_owned(),
                    description: project.description.to_owned(),
                    owner_id: project.owner_id.to_owned(),
                    template_id: project.template_id.to_owned(),
                    create_time: created,
                    update_time: created,
                };
                (project.seq, stored)
            })
            .collect::<BTreeMap<_, _>>();
        let next_seq = projects.keys().max().copied().unwrap_or(0) + 1;
        Ok(Self {
            inner: Arc::new(ProjectInner {
                clock,
                auth,
                projects: Mutex::new(projects),
                next_seq: AtomicU64::new(next_seq),
                projects_max: config.projects_max,
                faults,
                requests: RequestLog::new(request_log_len_max),
                events,
            }),
        })
    }

    /// The fault knobs of this backend.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The request IDs this backend received.
    pub fn request_log(&self) -> &RequestLog {
        &self.inner.requests
    }

    fn projects(&self) -> MutexGuard<'_, BTreeMap<u64, StoredProject>> {
        // Every change is one insert, remove or field update: a poisoned map is still consistent.
        self.inner
            .projects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The project `id` if it exists, else NOT_FOUND.
    fn find(&self, id: &str) -> Result<(u64, StoredProject), Status> {
        let not_found = || Status::not_found(format!("project {id:?} not found"));
        let seq = parse_id(id).ok_or_else(not_found)?;
        let project = self.projects().get(&seq).cloned().ok_or_else(not_found)?;
        Ok((seq, project))
    }
}

#[tonic::async_trait]
impl ProjectService for ProjectBackend {
    async fn create_project(
        &self,
        request: Request<CreateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let NewProject {
            name,
            description,
            template_id,
        } = request
            .into_inner()
            .project
            .ok_or_else(|| Status::invalid_argument("project is required"))?;
        let name = validate_name(&name)?;
        validate_description(&description)?;
        // NOT_FOUND, not INVALID_ARGUMENT: whether a template exists depends on the catalogue,
        // and gRPC keeps INVALID_ARGUMENT for requests that are wrong whatever the state. The
        // API contract can say which IDs are well formed, not which ones exist.
        if !template_id.is_empty() && !demo::TEMPLATES.iter().any(|t| t.id == template_id) {
            return Err(Status::not_found(format!(
                "template {template_id:?} not found"
            )));
        }
        if self.projects().len() >= self.inner.projects_max {
            return Err(Status::resource_exhausted("project store full"));
        }

        // Grant before storing: a project nobody may touch must never become visible.
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let id = demo::project_id(seq);
        self.inner
            .auth
            .grant(&caller, &demo::project_resource(&id), "write")
            .await?;

        let now = self.inner.clock.now_since_epoch();
        let stored = StoredProject {
            name,
            description,
            owner_id: caller.user_id,
            template_id,
            create_time: now,
            update_time: now,
        };
        self.projects().insert(seq, stored.clone());
        tracing::debug!(%id, "project created");
        let event = ProjectEvent::Created {
            project_id: &id,
            name: &stored.name,
            description: &stored.description,
            template_id: &stored.template_id,
            owner_id: &stored.owner_id,
        };
        let events = &self.inner.events;
        events
            .publish(ChannelKind::User, &stored.owner_id, &event)
            .await;
        Ok(Response::new(to_wire(seq, &stored)))
    }

    async fn get_project(
        &self,
        request: Request<GetProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = request.into_inner().id;
        let (seq, _) = self.find(&id)?;
        self.inner
            .auth
            .require(&caller, &demo::project_resource(&id), "read")
            .await?;
        // Read again after the permission call: the project may have changed meanwhile.
        let (_, project) = self.find(&id)?;
        Ok(Response::new(to_wire(seq, &project)))
    }

    async fn list_projects(
        &self,
        request: Request<ListProjectsRequest>,
    ) -> Result<Response<ListProjectsResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let ListProjectsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let size = paging::page_size(page_size)?;
        let after = paging::decode_token("projects", &page_token)?;
        // Lists what the caller owns (admins: everything). Asking Auth about every project
        // would be exact for shared projects but costs a call per row; owners are what the
        // demo data and the gateway tests need.
        let store = self.projects();
        let visible = store
            .iter()
            .rev()
            .filter(|(_, project)| caller.is_admin() || project.owner_id == caller.user_id)
            .map(|(seq, project)| (*seq, to_wire(*seq, project)));
        let (projects, next_page_token) = paging::page("projects", visible, after, size);
        Ok(Response::new(ListProjectsResponse {
            projects,
            next_page_token,
        }))
    }

    async fn update_project(
        &self,
        request: Request<UpdateProjectRequest>,
    ) -> Result<Response<Project>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let UpdateProjectRequest { id, project } = request.into_inner();
        let ProjectPatch { name, description } =
            project.ok_or_else(|| Status::invalid_argument("project is required"))?;
        let name = name.as_deref().map(validate_name).transpose()?;
        if let Some(description) = &description {
            validate_description(description)?;
        }
        let (seq, _) = self.find(&id)?;
        self.inner
            .auth
            .require(&caller, &demo::project_resource(&id), "write")
            .await?;

        let now = self.inner.clock.now_since_epoch();
        let updated = {
            let mut projects = self.projects();
            let project = projects
                .get_mut(&seq)
                .ok_or_else(|| Status::not_found(format!("project {id:?} not found")))?;
            if let Some(name) = &name {
                project.name.clone_from(name);
            }
            if let Some(description) = &description {
                project.description.clone_from(description);
            }
            project.update_time = now;
            to_wire(seq, project)
        };
        let event = ProjectEvent::Updated {
            project_id: &id,
            updated_by: &caller.user_id,
            changes: Changes {
                name: name.as_deref(),
                description: description.as_deref(),
            },
        };
        let events = &self.inner.events;
        events.publish(ChannelKind::Project, &id, &event).await;
        Ok(Response::new(updated))
    }

    async fn delete_project(
        &self,
        request: Request<DeleteProjectRequest>,
    ) -> Result<Response<DeleteProjectResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = request.into_inner().id;
        let (seq, _) = self.find(&id)?;
        self.inner
            .auth
            .require(&caller, &demo::project_resource(&id), "write")
            .await?;
        self.projects().remove(&seq);
        tracing::debug!(%id, "project deleted");
        let event = ProjectEvent::Deleted {
            project_id: &id,
            deleted_by: &caller.user_id,
        };
        let events = &self.inner.events;
        events.publish(ChannelKind::Project, &id, &event).await;
        Ok(Response::new(DeleteProjectResponse {}))
    }

    async fn list_templates(
        &self,
        _request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        let templates = demo::TEMPLATES
            .iter()
            .map(|template| Template {
                id: template.id.to_owned(),
                name: template.name.to_owned(),
                description: template.description.to_owned(),
            })
            .collect();
        Ok(Response::new(ListTemplatesResponse { templates }))
    }
}

/// What Project publishes (field names in camelCase, `type` in snake_case).
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
enum ProjectEvent<'a> {
    /// On `user:{owner}`: the owner created a project.
    #[serde(rename = "project_created")]
    Created {
        project_id: &'a str,
        name: &'a str,
        description: &'a str,
        template_id: &'a str,
        owner_id: &'a str,
    },
    /// On `project:{id}`: the project's fields changed.
    #[serde(rename = "project_updated")]
    Updated {
        project_id: &'a str,
        updated_by: &'a str,
        changes: Changes<'a>,
    },
    /// On `project:{id}`: the project is gone.
    #[serde(rename = "project_deleted")]
    Deleted {
        project_id: &'a str,
        deleted_by: &'a str,
    },
}

/// The fields an update set, with their new values; fields it left alone are absent.
#[derive(Debug, Serialize)]
struct Changes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// The sequence number in a project ID `p-{seq}`.
fn parse_id(id: &str) -> Option<u64> {
    id.strip_prefix("p-")?.parse().ok()
}

fn validate_name(name: &str) -> Result<String, Status> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Status::invalid_argument("name must not be empty"));
    }
    if name.chars().count() > NAME_LEN_MAX {
        return Err(Status::invalid_argument(format!(
            "name must be at most {NAME_LEN_MAX} characters"
        )));
    }
    Ok(name.to_owned())
}

fn validate_description(description: &str) -> Result<(), Status> {
    if description.chars().count() > DESCRIPTION_LEN_MAX {
        return Err(Status::invalid_argument(format!(
            "description must be at most {DESCRIPTION_LEN_MAX} characters"
        )));
    }
    Ok(())
}

fn to_wire(seq: u64, project: &StoredProject) -> Project {
    Project {
        id: demo::project_id(seq),
        name: project.name.clone(),
        description: project.description.clone(),
        owner_id: project.owner_id.clone(),
        template_id: project.template_id.clone(),
        create_time: Some(timestamp(project.create_time)),
        update_time: Some(timestamp(project.update_time)),
    }
}

/// A protobuf timestamp for a time given as a duration since the Unix epoch.
pub(crate) fn timestamp(since_epoch: Duration) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        // Below one billion, so it always fits.
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_in_our_shape() {
        assert_eq!(parse_id("p-12"), Some(12));
        assert_eq!(parse_id("s-12"), None);
        assert_eq!(parse_id("p-"), None);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Wing  ").unwrap(), "Wing");
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(NAME_LEN_MAX + 1)).is_err());
    }
}
