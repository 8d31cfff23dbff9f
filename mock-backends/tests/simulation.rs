//! Simulation over gRPC: starting needs write access to the project, runs advance with time and
//! complete, stop is idempotent, status counts the caller's runs, lists filter and page.

mod common;

use std::time::Duration;

use common::{ALICE, BOB, Harness, as_user};
use mock_backends::MockConfig;
use proto::simulation::v1::{
    GetSimulationRequest, GetStatusRequest, ListSimulationsRequest, Simulation, SimulationState,
    StartSimulationRequest, StopSimulationRequest,
};
use tonic::Code;

fn start_request(project_id: &str, steps: i64) -> StartSimulationRequest {
    StartSimulationRequest {
        project_id: project_id.to_owned(),
        name: "test run".to_owned(),
        steps,
    }
}

async fn start(harness: &Harness, user: (&str, &str), project_id: &str, steps: i64) -> Simulation {
    harness
        .simulation()
        .start_simulation(as_user(user, start_request(project_id, steps)))
        .await
        .expect("start succeeds")
        .into_inner()
}

async fn get(harness: &Harness, user: (&str, &str), id: &str) -> Result<Simulation, tonic::Status> {
    harness
        .simulation()
        .get_simulation(as_user(user, GetSimulationRequest { id: id.to_owned() }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_started_run_belongs_to_its_starter_and_runs() {
    let harness = Harness::start().await;
    let run = start(&harness, BOB, "p-3", 0).await;
    assert_eq!(run.id, "s-3");
    assert_eq!(run.state(), SimulationState::Running);
    assert_eq!(run.steps, 1_000);
    assert_eq!(run.created_by, "u-2");

    assert_eq!(get(&harness, BOB, &run.id).await.unwrap().id, run.id);
    // Bob may not start runs of Alice's project; Alice, an admin, may read Bob's run.
    let status = harness
        .simulation()
        .start_simulation(as_user(BOB, start_request("p-1", 10)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    get(&harness, ALICE, &run.id).await.unwrap();
}

#[tokio::test]
async fn others_may_not_read_or_stop_a_run() {
    let harness = Harness::start().await;
    // s-1 and s-2 are Alice's.
    let status = get(&harness, BOB, "s-2").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = harness
        .simulation()
        .stop_simulation(as_user(
            BOB,
            StopSimulationRequest {
                id: "s-2".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = get(&harness, BOB, "s-404").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn runs_complete_after_their_steps() {
    let mut config = MockConfig::for_tests();
    config.simulation.step_ms = 1;
    let harness = Harness::start_with(config).await;
    let run = start(&harness, BOB, "p-3", 20).await;
    let done = until(&harness, &run.id, |run| {
        run.state() != SimulationState::Running
    })
    .await;
    assert_eq!(done.state(), SimulationState::Completed);
    assert_eq!(done.progress_percent, 100.0);
}

/// Polls run `id` (as Bob) until `done` holds; panics after 10 s.
async fn until(harness: &Harness, id: &str, done: impl Fn(&Simulation) -> bool) -> Simulation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let run = get(harness, BOB, id).await.unwrap();
        if done(&run) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {id} stuck at {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn stopping_freezes_a_run_and_is_idempotent() {
    let mut config = MockConfig::for_tests();
    config.simulation.step_ms = 1;
    let harness = Harness::start_with(config).await;
    let run = start(&harness, BOB, "p-3", 1_000_000).await;
    let stop = || StopSimulationRequest { id: run.id.clone() };
    let stopped = harness
        .simulation()
        .stop_simulation(as_user(BOB, stop()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.state(), SimulationState::Stopped);
    // A run started after the stop has advanced 20 steps: the stopped one had as long to move.
    let witness = start(&harness, BOB, "p-3", 1_000_000).await;
    until(&harness, &witness.id, |run| run.progress_percent >= 0.002).await;
    let frozen = get(&harness, BOB, &run.id).await.unwrap();
    assert_eq!(frozen.progress_percent, stopped.progress_percent);
    let again = harness
        .simulation()
        .stop_simulation(as_user(BOB, stop()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state(), SimulationState::Stopped);
    assert_eq!(again.progress_percent, stopped.progress_percent);
}

#[tokio::test]
async fn status_counts_the_callers_runs_by_state() {
    let harness = Harness::start().await;
    let status = |user| {
        let mut client = harness.simulation();
        async move {
            client
                .get_status(as_user(user, GetStatusRequest {}))
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Seeded: Alice has one completed and one running run; Bob none.
    let alice = status(ALICE).await;
    assert_eq!((alice.running, alice.completed, alice.stopped), (1, 1, 0));
    assert_eq!(alice.capacity, 64);
    let bob = status(BOB).await;
    assert_eq!((bob.running, bob.completed), (0, 0));

    let run = start(&harness, BOB, "p-3", 1_000_000).await;
    start(&harness, BOB, "p-3", 1_000_000).await;
    harness
        .simulation()
        .stop_simulation(as_user(BOB, StopSimulationRequest { id: run.id }))
        .await
        .unwrap();
    let bob = status(BOB).await;
    assert_eq!((bob.running, bob.stopped), (1, 1));
}

#[tokio::test]
async fn starts_beyond_capacity_are_resource_exhausted() {
    let mut config = MockConfig::for_tests();
    // The seeded running run takes one slot.
    config.simulation.capacity = 2;
    let harness = Harness::start_with(config).await;
    start(&harness, BOB, "p-3", 1_000_000).await;
    let status = harness
        .simulation()
        .start_simulation(as_user(BOB, start_request("p-3", 1_000_000)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn bad_input_is_an_invalid_argument() {
    let harness = Harness::start().await;
    for request in [
        start_request("", 10),
        start_request("p-3", -1),
        start_request("p-3", 1_000_001),
    ] {
        let status = harness
            .simulation()
            .start_simulation(as_user(BOB, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn lists_filter_by_project_and_page_newest_first() {
    let harness = Harness::start().await;
    harness
        .project()
        .create_project(as_user(
            BOB,
            proto::project::v1::CreateProjectRequest {
                project: Some(proto::project::v1::NewProject {
                    name: "second".to_owned(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
    let a = start(&harness, BOB, "p-3", 1_000_000).await;
    let b = start(&harness, BOB, "p-4", 1_000_000).await;
    let c = start(&harness, BOB, "p-3", 1_000_000).await;
    let list = |project_id: &str, page_size, page_token: String| ListSimulationsRequest {
        project_id: project_id.to_owned(),
        page_size,
        page_token,
        ..Default::default()
    };

    let all = harness
        .simulation()
        .list_simulations(as_user(BOB, list("", 0, String::new())))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = all.simulations.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, [c.id.clone(), b.id.clone(), a.id.clone()]);

    let first = harness
        .simulation()
        .list_simulations(as_user(BOB, list("p-3", 1, String::new())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.simulations[0].id, c.id);
    let second = harness
        .simulation()
        .list_simulations(as_user(BOB, list("p-3", 1, first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.simulations[0].id, a.id);
    assert!(second.next_page_token.is_empty());

    harness
        .simulation()
        .stop_simulation(as_user(BOB, StopSimulationRequest { id: b.id.clone() }))
        .await
        .unwrap();
    let running = harness
        .simulation()
        .list_simulations(as_user(
            BOB,
            ListSimulationsRequest {
                state: SimulationState::Running as i32,
                ..list("", 0, String::new())
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = running.simulations.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, [c.id, a.id], "the stopped run is left out");
}
