//! Events the backends publish when started with a publisher: Simulation's progress at the
//! configured rate and its final state, Project's notifications, Auth's revocations. Each test
//! subscribes first, then acts, then reads what arrived; every wait is bounded.

mod common;

use std::{sync::Arc, time::Duration};

use common::{BOB, Harness, as_user};
use events::{BusMessage, ChannelName, EventBus, MemoryBus, Subscription, memory::MemoryBusConfig};
use futures::FutureExt as _;
use mock_backends::{MockConfig, StartOptions};
use proto::{
    auth::v1::CheckPermissionRequest,
    project::v1::{
        CreateProjectRequest, DeleteProjectRequest, NewProject, ProjectPatch, UpdateProjectRequest,
    },
    simulation::v1::{StartSimulationRequest, StopSimulationRequest},
};
use serde_json::{Value, json};

/// Longest wait for one event; far above what any publish takes.
const EVENT_WAIT: Duration = Duration::from_secs(5);

async fn start(config: MockConfig) -> (Harness, MemoryBus) {
    let bus = MemoryBus::new(MemoryBusConfig::default(), "test-epoch".to_owned());
    let options = StartOptions::with_publisher(Arc::new(bus.clone()));
    (Harness::start_with_options(config, options).await, bus)
}

fn subscribe(bus: &MemoryBus, channel: &str) -> Subscription {
    bus.subscribe(&ChannelName::parse(channel).expect("valid channel"))
}

/// The next event's offset and payload, waiting at most [`EVENT_WAIT`].
async fn next(subscription: &mut Subscription) -> (u64, Value) {
    let message = tokio::time::timeout(EVENT_WAIT, subscription.next())
        .await
        .unwrap_or_else(|_| panic!("no event on {} in time", subscription.channel()));
    match message {
        Some(BusMessage::Event { event, .. }) => (
            event.offset,
            serde_json::from_str(event.data.get()).expect("payload is JSON"),
        ),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Every event already delivered, without waiting.
fn drain(subscription: &mut Subscription) -> Vec<(u64, Value)> {
    let mut events = Vec::new();
    while let Some(Some(message)) = subscription.next().now_or_never() {
        if let BusMessage::Event { event, .. } = message {
            let data = serde_json::from_str(event.data.get()).expect("payload is JSON");
            events.push((event.offset, data));
        }
    }
    events
}

async fn start_run(harness: &Harness, project_id: &str, steps: i64) -> String {
    let request = StartSimulationRequest {
        project_id: project_id.to_owned(),
        name: "published run".to_owned(),
        steps,
    };
    harness
        .simulation()
        .start_simulation(as_user(BOB, request))
        .await
        .expect("start succeeds")
        .into_inner()
        .id
}

#[tokio::test]
async fn progress_is_published_at_the_configured_rate_in_simulated_time() {
    let mut config = MockConfig::for_tests();
    config.simulation.updates_per_second = 10;
    config.simulation.step_ms = 10;
    let (harness, bus) = start(config).await;
    let mut progress = subscribe(&bus, "simulation:s-3");
    let id = start_run(&harness, "p-3", 1_000).await;
    assert_eq!(id, "s-3");

    // From here time moves only when the test moves it: no call is in flight, and events are
    // read without waiting, so the count depends on simulated time alone.
    tokio::time::pause();
    let before = drain(&mut progress);
    let mut during = Vec::new();
    for _ in 0..100 {
        tokio::time::advance(Duration::from_millis(10)).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        during.extend(drain(&mut progress));
    }
    tokio::time::resume();

    assert!(
        (9..=11).contains(&during.len()),
        "10 updates a second expected, got {}",
        during.len()
    );
    let all: Vec<_> = before.into_iter().chain(during).collect();
    let offsets: Vec<u64> = all.iter().map(|(offset, _)| *offset).collect();
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(offsets, expected, "offsets count up from 1 with no gap");
    let mut last_step = -1;
    for (_, data) in &all {
        assert_eq!(data["type"], "progress");
        assert_eq!(data["simulationId"], "s-3");
        assert_eq!(data["state"], "SIMULATION_STATE_RUNNING");
        assert_eq!(data["steps"], 1_000);
        let step = data["step"].as_i64().expect("step is a number");
        assert!(step >= last_step, "progress never goes back");
        last_step = step;
        let percent = data["progressPercent"]
            .as_f64()
            .expect("percent is a number");
        assert!((percent - step as f64 / 10.0).abs() < 1e-9);
    }
    // One simulated second of 10 ms steps is about 100 steps.
    assert!(last_step >= 90, "last step {last_step}");
}

#[tokio::test]
async fn a_faster_rate_gives_proportionally_more_updates() {
    let mut config = MockConfig::for_tests();
    config.simulation.updates_per_second = 50;
    let (harness, bus) = start(config).await;
    let mut progress = subscribe(&bus, "simulation:s-3");
    start_run(&harness, "p-3", 1_000_000).await;

    tokio::time::pause();
    drain(&mut progress);
    let mut count = 0;
    for _ in 0..200 {
        tokio::time::advance(Duration::from_millis(5)).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        count += drain(&mut progress).len();
    }
    tokio::time::resume();
    assert!(
        (49..=51).contains(&count),
        "50 a second expected, got {count}"
    );
}

#[tokio::test]
async fn stopping_publishes_a_final_state_and_tells_the_owner() {
    let (harness, bus) = start(MockConfig::for_tests()).await;
    let mut progress = subscribe(&bus, "simulation:s-3");
    let mut owner = subscribe(&bus, "user:u-2");
    let mut project = subscribe(&bus, "project:p-3");
    let id = start_run(&harness, "p-3", 1_000_000).await;

    let (offset, started) = next(&mut project).await;
    assert_eq!(offset, 1);
    assert_eq!(
        started,
        json!({
            "type": "simulation_started",
            "simulationId": "s-3",
            "projectId": "p-3",
            "name": "published run",
            "steps": 1_000_000,
            "startedBy": "u-2",
        })
    );
    // At least one progress update before the stop.
    let (first_offset, first) = next(&mut progress).await;
    assert_eq!((first_offset, &first["type"]), (1, &json!("progress")));

    harness
        .simulation()
        .stop_simulation(as_user(BOB, StopSimulationRequest { id: id.clone() }))
        .await
        .expect("stop succeeds");
    let mut last_offset = first_offset;
    let final_state = loop {
        let (offset, data) = next(&mut progress).await;
        assert_eq!(offset, last_offset + 1, "no gap, no duplicate");
        last_offset = offset;
        if data["type"] == "state" {
            break data;
        }
        assert_eq!(data["type"], "progress");
    };
    assert_eq!(final_state["simulationId"], "s-3");
    assert_eq!(final_state["state"], "SIMULATION_STATE_STOPPED");
    assert_eq!(final_state["steps"], 1_000_000);
    assert!(final_state["step"].is_i64());
    assert!(final_state["progressPercent"].is_f64());

    // Nothing follows the final state: a run started after the stop gets two progress updates
    // from the ticker meanwhile.
    let mut witness = subscribe(&bus, "simulation:s-4");
    assert_eq!(start_run(&harness, "p-3", 1_000_000).await, "s-4");
    for _ in 0..2 {
        assert_eq!(next(&mut witness).await.1["type"], "progress");
    }
    assert!(drain(&mut progress).is_empty());

    let (offset, finished) = next(&mut owner).await;
    assert_eq!(offset, 1);
    assert_eq!(finished["type"], "simulation_finished");
    assert_eq!(finished["simulationId"], "s-3");
    assert_eq!(finished["projectId"], "p-3");
    assert_eq!(finished["state"], "SIMULATION_STATE_STOPPED");
}

#[tokio::test]
async fn completing_publishes_the_final_state_at_100_percent() {
    let mut config = MockConfig::for_tests();
    config.simulation.step_ms = 1;
    let (harness, bus) = start(config).await;
    let mut progress = subscribe(&bus, "simulation:s-3");
    let mut owner = subscribe(&bus, "user:u-2");
    start_run(&harness, "p-3", 20).await;

    let final_state = loop {
        let (_, data) = next(&mut progress).await;
        if data["type"] == "state" {
            break data;
        }
    };
    assert_eq!(final_state["state"], "SIMULATION_STATE_COMPLETED");
    assert_eq!(final_state["progressPercent"], 100.0);
    assert_eq!(final_state["step"], 20);
    let (_, finished) = next(&mut owner).await;
    assert_eq!(finished["state"], "SIMULATION_STATE_COMPLETED");
}

#[tokio::test]
async fn project_changes_are_published_to_collaborators_and_the_owner() {
    let (harness, bus) = start(MockConfig::for_tests()).await;
    let mut owner = subscribe(&bus, "user:u-2");
    let mut collaboration = subscribe(&bus, "project:p-4");

    let created = harness
        .project()
        .create_project(as_user(
            BOB,
            CreateProjectRequest {
                project: Some(NewProject {
                    name: "Bridge".to_owned(),
                    description: "Load on a truss.".to_owned(),
                    template_id: "t-agents".to_owned(),
                }),
            },
        ))
        .await
        .expect("create succeeds")
        .into_inner();
    assert_eq!(created.id, "p-4");
    assert_eq!(
        next(&mut owner).await,
        (
            1,
            json!({
                "type": "project_created",
                "projectId": "p-4",
                "name": "Bridge",
                "description": "Load on a truss.",
                "templateId": "t-agents",
                "ownerId": "u-2",
            })
        )
    );

    harness
        .project()
        .update_project(as_user(
            BOB,
            UpdateProjectRequest {
                id: "p-4".to_owned(),
                project: Some(ProjectPatch {
                    name: Some("Suspension bridge".to_owned()),
                    description: None,
                }),
            },
        ))
        .await
        .expect("update succeeds");
    assert_eq!(
        next(&mut collaboration).await,
        (
            1,
            json!({
                "type": "project_updated",
                "projectId": "p-4",
                "updatedBy": "u-2",
                "changes": {"name": "Suspension bridge"},
            })
        )
    );

    harness
        .project()
        .delete_project(as_user(
            BOB,
            DeleteProjectRequest {
                id: "p-4".to_owned(),
            },
        ))
        .await
        .expect("delete succeeds");
    assert_eq!(
        next(&mut collaboration).await,
        (
            2,
            json!({"type": "project_deleted", "projectId": "p-4", "deletedBy": "u-2"})
        )
    );
}

#[tokio::test]
async fn revocations_are_published_on_auth_revocations() {
    let (harness, bus) = start(MockConfig::for_tests()).await;
    let mut revocations = subscribe(&bus, "auth:revocations");
    let auth = harness.backends.auth();
    let token = auth.issue_token_for("bob").expect("token");
    let jti = auth.validate_token(&token).expect("valid").token_id;

    auth.revoke_token(&jti);
    assert_eq!(
        next(&mut revocations).await,
        (
            1,
            json!({"type": "token_revoked", "tokenId": jti, "userId": "u-2"})
        )
    );
    assert!(auth.validate_token(&token).is_err());

    // A token ID Auth never issued is still revoked and published, without a user.
    auth.revoke_token("not-a-known-id");
    assert_eq!(
        next(&mut revocations).await,
        (
            2,
            json!({"type": "token_revoked", "tokenId": "not-a-known-id"})
        )
    );

    auth.revoke_permission("u-2", "project:p-3", "write")
        .expect("known action");
    assert_eq!(
        next(&mut revocations).await,
        (
            3,
            json!({
                "type": "permission_revoked",
                "userId": "u-2",
                "resource": "project:p-3",
                "action": "write",
            })
        )
    );
    let allowed = harness
        .auth()
        .check_permission(CheckPermissionRequest {
            user_id: "u-2".to_owned(),
            resource: "project:p-3".to_owned(),
            action: "write".to_owned(),
        })
        .await
        .expect("check succeeds")
        .into_inner()
        .allowed;
    assert!(!allowed);
    assert!(auth.revoke_permission("u-2", "project:p-3", "own").is_err());
    assert!(drain(&mut revocations).is_empty());
}

#[tokio::test]
async fn without_a_publisher_nothing_is_published_and_calls_still_work() {
    let harness = Harness::start().await;
    harness.backends.auth().revoke_token("any");
    start_run(&harness, "p-3", 10).await;
}
