//! Project over gRPC: creation grants the creator access on Auth, reads and writes are checked
//! on Auth, input is validated, lists page newest first.

mod common;

use common::{ALICE, BOB, Harness, as_user};
use proto::project::v1::{
    CreateProjectRequest, DeleteProjectRequest, GetProjectRequest, ListProjectsRequest,
    ListTemplatesRequest, NewProject, Project, ProjectPatch, UpdateProjectRequest,
};
use tonic::Code;

fn new_project(name: &str) -> CreateProjectRequest {
    CreateProjectRequest {
        project: Some(NewProject {
            name: name.to_owned(),
            description: "made by a test".to_owned(),
            template_id: "t-fluid".to_owned(),
        }),
    }
}

async fn create(harness: &Harness, user: (&str, &str), name: &str) -> Project {
    harness
        .project()
        .create_project(as_user(user, new_project(name)))
        .await
        .expect("create succeeds")
        .into_inner()
}

fn get(id: &str) -> GetProjectRequest {
    GetProjectRequest { id: id.to_owned() }
}

#[tokio::test]
async fn the_creator_may_read_a_new_project_and_another_user_may_not() {
    let harness = Harness::start().await;
    let project = create(&harness, BOB, "Bridge load").await;
    assert_eq!(project.id, "p-4");
    assert_eq!(project.owner_id, "u-2");
    assert_eq!(
        project.create_time.as_ref().map(|time| time.seconds),
        Some(common::CLOCK_START_UNIX_SECONDS)
    );

    let read = harness
        .project()
        .get_project(as_user(BOB, get(&project.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, project);

    // Alice is an admin; a plain user who was granted nothing is refused.
    let alice_project = create(&harness, ALICE, "Private").await;
    let status = harness
        .project()
        .get_project(as_user(BOB, get(&alice_project.id)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn seeded_projects_belong_to_their_owners() {
    let harness = Harness::start().await;
    let status = harness
        .project()
        .get_project(as_user(BOB, get("p-1")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let project = harness
        .project()
        .get_project(as_user(BOB, get("p-3")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(project.owner_id, "u-2");
}

#[tokio::test]
async fn unknown_projects_are_not_found() {
    let harness = Harness::start().await;
    for id in ["p-999", "nonsense", ""] {
        let status = harness
            .project()
            .get_project(as_user(ALICE, get(id)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{id:?}");
    }
}

#[tokio::test]
async fn bad_input_is_an_invalid_argument() {
    let harness = Harness::start().await;
    let long_name = "x".repeat(101);
    for name in ["", "   ", long_name.as_str()] {
        let status = harness
            .project()
            .create_project(as_user(BOB, new_project(name)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
    }
    let status = harness
        .project()
        .create_project(as_user(BOB, CreateProjectRequest { project: None }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// Whether a template exists depends on the catalogue, not on the request's form: NOT_FOUND.
#[tokio::test]
async fn a_project_from_an_unknown_template_is_not_found() {
    let harness = Harness::start().await;
    let mut unknown_template = new_project("ok");
    unknown_template.project.as_mut().unwrap().template_id = "t-nope".to_owned();
    let status = harness
        .project()
        .create_project(as_user(BOB, unknown_template))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), r#"template "t-nope" not found"#);
}

#[tokio::test]
async fn calls_without_a_caller_are_unauthenticated() {
    let harness = Harness::start().await;
    let status = harness
        .project()
        .create_project(new_project("anonymous"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn owners_update_and_delete_and_others_may_not() {
    let harness = Harness::start().await;
    let project = create(&harness, BOB, "Draft").await;
    harness.clock.advance(60);

    let patch = |id: &str, name: &str| UpdateProjectRequest {
        id: id.to_owned(),
        project: Some(ProjectPatch {
            name: Some(name.to_owned()),
            description: None,
        }),
    };
    let updated = harness
        .project()
        .update_project(as_user(BOB, patch(&project.id, "Final")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Final");
    assert_eq!(updated.description, project.description);
    assert_eq!(
        updated.update_time.unwrap().seconds,
        common::CLOCK_START_UNIX_SECONDS + 60
    );

    let status = harness
        .project()
        .update_project(as_user(BOB, patch("p-1", "Mine now")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = harness
        .project()
        .delete_project(as_user(
            BOB,
            DeleteProjectRequest {
                id: "p-1".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    harness
        .project()
        .delete_project(as_user(
            BOB,
            DeleteProjectRequest {
                id: project.id.clone(),
            },
        ))
        .await
        .unwrap();
    let status = harness
        .project()
        .get_project(as_user(BOB, get(&project.id)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn lists_show_own_projects_newest_first_one_page_at_a_time() {
    let harness = Harness::start().await;
    for name in ["one", "two", "three"] {
        create(&harness, BOB, name).await;
    }
    let list = |page_size: i32, page_token: String| ListProjectsRequest {
        page_size,
        page_token,
    };

    let first = harness
        .project()
        .list_projects(as_user(BOB, list(2, String::new())))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = first.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["three", "two"]);
    assert!(!first.next_page_token.is_empty());

    let second = harness
        .project()
        .list_projects(as_user(BOB, list(2, first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = second.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["one", "Crowd flow"]);
    assert!(second.next_page_token.is_empty());

    // Alice is an admin and sees everything: 3 seeded + 3 new.
    let all = harness
        .project()
        .list_projects(as_user(ALICE, list(0, String::new())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.projects.len(), 6);

    let status = harness
        .project()
        .list_projects(as_user(BOB, list(2, "not-a-token".to_owned())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_template_catalogue_has_three_entries() {
    let harness = Harness::start().await;
    let templates = harness
        .project()
        .list_templates(as_user(BOB, ListTemplatesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .templates;
    let ids: Vec<_> = templates.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t-fluid", "t-thermal", "t-agents"]);
}

#[tokio::test]
async fn project_calls_fail_unavailable_while_auth_fails() {
    let harness = Harness::start().await;
    let auth_faults = harness.backends.faults(mock_backends::ServiceKind::Auth);
    auth_faults.set_error_rate(1.0).unwrap();
    let status = harness
        .project()
        .get_project(as_user(BOB, get("p-3")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    auth_faults.clear();
    harness
        .project()
        .get_project(as_user(BOB, get("p-3")))
        .await
        .unwrap();
}

/// Project reading p-3 as Bob, then again once Auth fails every call: `Ok` when Auth's first yes
/// was remembered, the status otherwise.
async fn read_again_while_auth_fails(permission_cache_ttl_ms: u64) -> Result<(), Code> {
    let mut config = mock_backends::MockConfig::for_tests();
    config.upstream.permission_cache_ttl_ms = permission_cache_ttl_ms;
    let harness = Harness::start_with(config).await;
    harness
        .project()
        .get_project(as_user(BOB, get("p-3")))
        .await
        .unwrap();
    let auth_faults = harness.backends.faults(mock_backends::ServiceKind::Auth);
    auth_faults.set_error_rate(1.0).unwrap();
    let again = harness
        .project()
        .get_project(as_user(BOB, get("p-3")))
        .await;
    again.map(drop).map_err(|status| status.code())
}

#[tokio::test]
async fn auths_yes_is_remembered_for_the_permission_cache_ttl() {
    // A minute is far longer than the two calls take, however loaded the machine.
    assert_eq!(read_again_while_auth_fails(60_000).await, Ok(()));
}

#[tokio::test]
async fn a_zero_permission_cache_ttl_asks_auth_every_time() {
    assert_eq!(read_again_while_auth_fails(0).await, Err(Code::Unavailable));
}
