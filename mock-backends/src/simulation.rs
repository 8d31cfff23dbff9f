//! The Simulation service: in-memory runs (seeded from [`crate::demo`]) whose progress follows
//! `tokio::time`, so it advances with simulated time exactly as with real time. A run's state is
//! computed when it is read (elapsed time over steps times [`SimulationConfig::step_ms`]).
//!
//! When events are published, one ticker task ([`SimulationBackend::publish_updates`], run by
//! [`crate::serve`] until shutdown) publishes on `simulation:{id}` the progress of every
//! running simulation [`SimulationConfig::updates_per_second`] times a second, and a final
//! `state` event when a run completes or is stopped, together with `simulation_finished` on
//! `user:{owner}`. The ticker is the only publisher on `simulation:{id}`, so a run's final event
//! always follows its last progress event. Starting a run publishes `simulation_started` on
//! `project:{project_id}`.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use events::ChannelKind;
use proto::simulation::v1::{
    GetSimulationRequest, GetStatusRequest, GetStatusResponse, ListSimulationsRequest,
    ListSimulationsResponse, Simulation, SimulationState, StartSimulationRequest,
    StopSimulationRequest, simulation_service_server::SimulationService,
};
use seams::SharedClock;
use serde::Serialize;
use tokio::{
    sync::Notify,
    time::{Instant, MissedTickBehavior},
};
use tonic::{Request, Response, Status};

use crate::{
    auth_client::AuthClient,
    config::{ConfigError, ServiceKind, SimulationConfig},
    demo::{self, DemoRunState},
    faults::Faults,
    metadata::Caller,
    paging,
    project::timestamp,
    publish::EventSink,
    request_log::RequestLog,
};

/// Steps of a run whose request asks for 0.
pub const STEPS_DEFAULT: i64 = 1_000;
/// Most steps a run may take.
pub const STEPS_MAX: i64 = 1_000_000;
/// Longest run name, in characters.
pub const NAME_LEN_MAX: usize = 100;
/// Longest project ID accepted, in bytes.
const PROJECT_ID_LEN_MAX: usize = 64;

/// How long before start-up the seeded completed run was created.
const DEMO_COMPLETED_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// The Simulation backend: a cheap, cloneable handle on its state, which also implements the gRPC
/// service.
#[derive(Debug, Clone)]
pub struct SimulationBackend {
    inner: Arc<SimulationInner>,
}

#[derive(Debug)]
struct SimulationInner {
    clock: SharedClock,
    auth: AuthClient,
    step: Duration,
    capacity: usize,
    simulations_max: usize,
    store: Mutex<Store>,
    next_seq: AtomicU64,
    faults: Faults,
    requests: RequestLog,
    events: EventSink,
    /// Time between two progress events of one run.
    update_interval: Duration,
    /// Wakes the ticker when a run is stopped, so its final event goes out at once.
    stopped: Notify,
}

#[derive(Debug, Default)]
struct Store {
    /// Keyed by sequence number, so iteration order is start order.
    runs: BTreeMap<u64, Run>,
    /// Runs that were running when last looked at; pruned as they complete. At most `capacity`.
    running: BTreeSet<u64>,
    /// Runs whose final event the ticker has yet to publish: running ones, and ones that
    /// finished since its last look. Empty when events are not published.
    unannounced: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
struct Run {
    project_id: String,
    name: String,
    created_by: String,
    steps: i64,
    create_time: Duration,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Advancing: progress is elapsed `tokio::time` over the run's duration.
    Running { started: Instant },
    /// Completed or stopped; nothing changes any more.
    Finished {
        state: SimulationState,
        progress_percent: f64,
        steps_done: i64,
        update_time: Duration,
    },
}

/// A run as of one moment.
#[derive(Debug, Clone, Copy)]
struct View {
    state: SimulationState,
    progress_percent: f64,
    steps_done: i64,
    update_time: Duration,
}

impl Run {
    fn view(&self, step: Duration, now: Instant, now_wall: Duration) -> View {
        match self.phase {
            Phase::Finished {
                state,
                progress_percent,
                steps_done,
                update_time,
            } => View {
                state,
                progress_percent,
                steps_done,
                update_time,
            },
            Phase::Running { started } => {
                let elapsed = now.saturating_duration_since(started);
                let steps_done = (elapsed.as_nanos() / step.as_nanos().max(1)) as i64;
                if steps_done >= self.steps {
                    let duration =
                        step.saturating_mul(u32::try_from(self.steps).unwrap_or(u32::MAX));
                    View {
                        state: SimulationState::Completed,
                        progress_percent: 100.0,
                        steps_done: self.steps,
                        // When it completed, on the wall clock: it started at `create_time`.
                        update_time: self.create_time.saturating_add(duration),
                    }
                } else {
                    View {
                        state: SimulationState::Running,
                        progress_percent: steps_done as f64 * 100.0 / self.steps as f64,
                        steps_done,
                        update_time: now_wall,
                    }
                }
            }
        }
    }
}

impl SimulationBackend {
    /// A Simulation backend with the demo runs, asking `auth` for permissions, its wall-clock
    /// time from `clock`, its injected errors drawn from `seed`, publishing to `events`.
    pub fn new(
        config: &SimulationConfig,
        seed: u64,
        clock: SharedClock,
        auth: AuthClient,
        request_log_len_max: usize,
        events: EventSink,
    ) -> Result<Self, ConfigError> {
        let faults = Faults::seeded(config.faults, seed, ServiceKind::Simulation)?;
        let now_wall = clock.now_since_epoch();
        let now = Instant::now();
        let step = Duration::from_millis(config.step_ms);
        let mut store = Store::default();
        for demo_run in demo::SIMULATIONS {
            let (create_time, phase) = match demo_run.state {
                DemoRunState::Running => (now_wall, Phase::Running { started: now }),
                DemoRunState::Completed => {
                    let created = now_wall.saturating_sub(DEMO_COMPLETED_AGE);
                    let duration =
                        step.saturating_mul(u32::try_from(demo_run.steps).unwrap_or(u32::MAX));
                    let phase = Phase::Finished {
                        state: SimulationState::Completed,
                        progress_percent: 100.0,
                        steps_done: demo_run.steps,
                        update_time: created.saturating_add(duration),
                    };
                    (created, phase)
                }
            };
            if matches!(phase, Phase::Running { .. }) {
                store.running.insert(demo_run.seq);
                if events.is_enabled() {
                    store.unannounced.insert(demo_run.seq);
                }
            }
            store.runs.insert(
                demo_run.seq,
                Run {
                    project_id: demo_run.project_id.to_owned(),
                    name: demo_run.name.to_owned(),
                    created_by: demo_run.created_by.to_owned(),
                    steps: demo_run.steps,
                    create_time,
                    phase,
                },
            );
        }
        let next_seq = store.runs.keys().max().copied().unwrap_or(0) + 1;
        Ok(Self {
            inner: Arc::new(SimulationInner {
                clock,
                auth,
                step,
                capacity: config.capacity,
                simulations_max: config.simulations_max,
                store: Mutex::new(store),
                next_seq: AtomicU64::new(next_seq),
                faults,
                requests: RequestLog::new(request_log_len_max),
                events,
                // Validated to be 1 to 1,000 by SimulationConfig::validate.
                update_interval: Duration::from_secs(1) / config.updates_per_second.max(1),
                stopped: Notify::new(),
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

    fn store(&self) -> MutexGuard<'_, Store> {
        // Every change is one insert, remove or phase change: a poisoned store is consistent.
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> (Instant, Duration) {
        (Instant::now(), self.inner.clock.now_since_epoch())
    }

    /// The run `id` as of now, if it exists, else NOT_FOUND.
    fn find(&self, id: &str) -> Result<Simulation, Status> {
        let not_found = || Status::not_found(format!("simulation {id:?} not found"));
        let seq = parse_id(id).ok_or_else(not_found)?;
        let (now, now_wall) = self.now();
        let store = self.store();
        let run = store.runs.get(&seq).ok_or_else(not_found)?;
        Ok(to_wire(seq, run, run.view(self.inner.step, now, now_wall)))
    }
}

impl Store {
    /// How many runs are running now; forgets the ones that completed since last asked.
    fn running_count(&mut self, step: Duration, now: Instant, now_wall: Duration) -> usize {
        let runs = &self.runs;
        self.running.retain(|seq| {
            runs.get(seq)
                .is_some_and(|run| run.view(step, now, now_wall).state == SimulationState::Running)
        });
        self.running.len()
    }
}

#[tonic::async_trait]
impl SimulationService for SimulationBackend {
    async fn start_simulation(
        &self,
        request: Request<StartSimulationRequest>,
    ) -> Result<Response<Simulation>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let StartSimulationRequest {
            project_id,
            name,
            steps,
        } = request.into_inner();
        if project_id.is_empty() || project_id.len() > PROJECT_ID_LEN_MAX {
            return Err(Status::invalid_argument(format!(
                "project_id must be 1 to {PROJECT_ID_LEN_MAX} bytes"
            )));
        }
        let steps = match steps {
            0 => STEPS_DEFAULT,
            1..=STEPS_MAX => steps,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "steps must be 1 to {STEPS_MAX}"
                )));
            }
        };
        let name = match name.trim() {
            "" => format!("Run of {project_id}"),
            name if name.chars().count() > NAME_LEN_MAX => {
                return Err(Status::invalid_argument(format!(
                    "name must be at most {NAME_LEN_MAX} characters"
                )));
            }
            name => name.to_owned(),
        };
        self.inner
            .auth
            .require(&caller, &demo::project_resource(&project_id), "write")
            .await?;
        self.check_room()?;

        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let id = demo::simulation_id(seq);
        self.inner
            .auth
            .grant(&caller, &demo::simulation_resource(&id), "write")
            .await?;

        // Checked again: other starts may have filled the room while we waited on Auth.
        self.check_room()?;
        let (now, now_wall) = self.now();
        let run = Run {
            project_id,
            name,
            created_by: caller.user_id,
            steps,
            create_time: now_wall,
            phase: Phase::Running { started: now },
        };
        let view = run.view(self.inner.step, now, now_wall);
        let simulation = to_wire(seq, &run, view);
        {
            let mut store = self.store();
            store.runs.insert(seq, run);
            store.running.insert(seq);
            if self.inner.events.is_enabled() {
                // From here the ticker publishes its progress, then its final state.
                store.unannounced.insert(seq);
            }
        }
        tracing::debug!(%id, steps, "simulation started");
        let started = SimulationEvent::SimulationStarted {
            simulation_id: &simulation.id,
            project_id: &simulation.project_id,
            name: &simulation.name,
            steps,
            started_by: &simulation.created_by,
        };
        let events = &self.inner.events;
        events
            .publish(ChannelKind::Project, &simulation.project_id, &started)
            .await;
        Ok(Response::new(simulation))
    }

    async fn get_simulation(
        &self,
        request: Request<GetSimulationRequest>,
    ) -> Result<Response<Simulation>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = request.into_inner().id;
        self.find(&id)?;
        self.inner
            .auth
            .require(&caller, &demo::simulation_resource(&id), "read")
            .await?;
        Ok(Response::new(self.find(&id)?))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let (now, now_wall) = self.now();
        let mut status = GetStatusResponse {
            // Validated to fit an i32 by SimulationConfig::validate.
            capacity: i32::try_from(self.inner.capacity).unwrap_or(i32::MAX),
            ..GetStatusResponse::default()
        };
        let store = self.store();
        let mine = store
            .runs
            .values()
            .filter(|run| run.created_by == caller.user_id);
        for run in mine {
            let counter = match run.view(self.inner.step, now, now_wall).state {
                SimulationState::Queued => &mut status.queued,
                SimulationState::Running => &mut status.running,
                SimulationState::Completed => &mut status.completed,
                SimulationState::Stopped => &mut status.stopped,
                SimulationState::Failed => &mut status.failed,
                SimulationState::Unspecified => continue,
            };
            *counter = counter.saturating_add(1);
        }
        Ok(Response::new(status))
    }

    async fn stop_simulation(
        &self,
        request: Request<StopSimulationRequest>,
    ) -> Result<Response<Simulation>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let id = request.into_inner().id;
        self.find(&id)?;
        self.inner
            .auth
            .require(&caller, &demo::simulation_resource(&id), "write")
            .await?;

        let not_found = || Status::not_found(format!("simulation {id:?} not found"));
        let seq = parse_id(&id).ok_or_else(not_found)?;
        let (now, now_wall) = self.now();
        let mut store = self.store();
        let run = store.runs.get_mut(&seq).ok_or_else(not_found)?;
        let view = run.view(self.inner.step, now, now_wall);
        if view.state == SimulationState::Running {
            run.phase = Phase::Finished {
                state: SimulationState::Stopped,
                progress_percent: view.progress_percent,
                steps_done: view.steps_done,
                update_time: now_wall,
            };
            tracing::debug!(%id, "simulation stopped");
        }
        // A finished run is left as it is: stopping is idempotent.
        let simulation = to_wire(seq, run, run.view(self.inner.step, now, now_wall));
        store.running.remove(&seq);
        drop(store);
        // The ticker publishes the final state at once (a no-op when nothing is published).
        self.inner.stopped.notify_one();
        Ok(Response::new(simulation))
    }

    async fn list_simulations(
        &self,
        request: Request<ListSimulationsRequest>,
    ) -> Result<Response<ListSimulationsResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let ListSimulationsRequest {
            project_id,
            page_size,
            page_token,
            state,
        } = request.into_inner();
        let size = paging::page_size(page_size)?;
        let after = paging::decode_token("simulations", &page_token)?;
        let (now, now_wall) = self.now();
        let store = self.store();
        let visible = store
            .runs
            .iter()
            .rev()
            .filter(|(_, run)| run.created_by == caller.user_id)
            .filter(|(_, run)| project_id.is_empty() || run.project_id == project_id)
            .map(|(seq, run)| {
                (
                    *seq,
                    to_wire(*seq, run, run.view(self.inner.step, now, now_wall)),
                )
            })
            .filter(|(_, simulation)| {
                state == SimulationState::Unspecified as i32 || simulation.state == state
            });
        let (simulations, next_page_token) = paging::page("simulations", visible, after, size);
        Ok(Response::new(ListSimulationsResponse {
            simulations,
            next_page_token,
        }))
    }
}

impl SimulationBackend {
    /// The ticker: until `stop` completes, publishes the progress of every running run every
    /// `1 / updates_per_second`, and each run's final state (with a `simulation_finished`
    /// notification to its owner) once it has completed or been stopped. Returns at once when
    /// events are not published. Time is `tokio::time`, so it ticks with simulated time too.
    pub async fn publish_updates(&self, stop: impl Future<Output = ()>) {
        if !self.inner.events.is_enabled() {
            return;
        }
        let mut interval = tokio::time::interval(self.inner.update_interval);
        // After a stall (a slow bus), go on at the normal rate rather than burst stale progress.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::pin!(stop);
        loop {
            let with_progress = tokio::select! {
                biased;
                () = &mut stop => return,
                () = self.inner.stopped.notified() => false,
                _ = interval.tick() => true,
            };
            tokio::select! {
                biased;
                () = &mut stop => return,
                () = self.publish_tick(with_progress) => {}
            }
        }
    }

    /// One round: final events of runs that finished since the last round, and (on a tick, not
    /// on a wake-up by a stop) progress of the runs still running.
    async fn publish_tick(&self, with_progress: bool) {
        let (now, now_wall) = self.now();
        let step = self.inner.step;
        let mut updates = Vec::new();
        let mut finals = Vec::new();
        {
            let mut store = self.store();
            let Store {
                runs, unannounced, ..
            } = &mut *store;
            unannounced.retain(|seq| {
                let Some(run) = runs.get(seq) else {
                    return false;
                };
                let view = run.view(step, now, now_wall);
                if view.state == SimulationState::Running {
                    if with_progress {
                        updates.push(Snapshot::new(*seq, run, view));
                    }
                    true
                } else {
                    finals.push(Snapshot::new(*seq, run, view));
                    false
                }
            });
        }
        // Each run has its own channel, so the publishes of one round may run concurrently.
        let events = &self.inner.events;
        let simulation = ChannelKind::Simulation;
        let progress = updates.iter().map(|run| async move {
            events
                .publish(simulation, &run.id, &run.event("progress"))
                .await;
        });
        let finished = finals.iter().map(|run| async move {
            events
                .publish(simulation, &run.id, &run.event("state"))
                .await;
            events
                .publish(ChannelKind::User, &run.owner_id, &run.finished())
                .await;
        });
        futures::future::join(
            futures::future::join_all(progress),
            futures::future::join_all(finished),
        )
        .await;
    }

    /// RESOURCE_EXHAUSTED when no run may start now: at capacity, or the store is full.
    fn check_room(&self) -> Result<(), Status> {
        let (now, now_wall) = self.now();
        let mut store = self.store();
        if store.running_count(self.inner.step, now, now_wall) >= self.inner.capacity {
            return Err(Status::resource_exhausted("simulation capacity reached"));
        }
        if store.runs.len() >= self.inner.simulations_max {
            return Err(Status::resource_exhausted("simulation store full"));
        }
        Ok(())
    }
}

/// A run as the ticker saw it, for its events.
#[derive(Debug)]
struct Snapshot {
    id: String,
    project_id: String,
    name: String,
    owner_id: String,
    steps: i64,
    view: View,
}

impl Snapshot {
    fn new(seq: u64, run: &Run, view: View) -> Self {
        Self {
            id: demo::simulation_id(seq),
            project_id: run.project_id.clone(),
            name: run.name.clone(),
            owner_id: run.created_by.clone(),
            steps: run.steps,
            view,
        }
    }

    /// A `progress` or `state` event on `simulation:{id}`.
    fn event(&self, kind: &'static str) -> ProgressEvent<'_> {
        ProgressEvent {
            kind,
            simulation_id: &self.id,
            state: self.view.state.as_str_name(),
            progress_percent: self.view.progress_percent,
            step: self.view.steps_done,
            steps: self.steps,
        }
    }

    /// The `simulation_finished` notification on `user:{owner}`.
    fn finished(&self) -> SimulationEvent<'_> {
        SimulationEvent::SimulationFinished {
            simulation_id: &self.id,
            project_id: &self.project_id,
            name: &self.name,
            state: self.view.state.as_str_name(),
            progress_percent: self.view.progress_percent,
        }
    }
}

/// What the ticker publishes on `simulation:{id}`: `type` is `progress` while the run runs, then
/// one `state` when it has finished.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    simulation_id: &'a str,
    /// The proto enum name, as the HTTP API renders it (`SIMULATION_STATE_RUNNING`).
    state: &'static str,
    progress_percent: f64,
    /// Steps done.
    step: i64,
    /// Steps in all.
    steps: i64,
}

/// Simulation's notifications on other channels.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
enum SimulationEvent<'a> {
    /// On `project:{project_id}`: a run of the project started.
    SimulationStarted {
        simulation_id: &'a str,
        project_id: &'a str,
        name: &'a str,
        steps: i64,
        started_by: &'a str,
    },
    /// On `user:{owner}`: the owner's run completed or was stopped.
    SimulationFinished {
        simulation_id: &'a str,
        project_id: &'a str,
        name: &'a str,
        state: &'static str,
        progress_percent: f64,
    },
}

/// The sequence number in a simulation ID `s-{seq}`.
fn parse_id(id: &str) -> Option<u64> {
    id.strip_prefix("s-")?.parse().ok()
}

fn to_wire(seq: u64, run: &Run, view: View) -> Simulation {
    Simulation {
        id: demo::simulation_id(seq),
        project_id: run.project_id.clone(),
        name: run.name.clone(),
        state: view.state.into(),
        progress_percent: view.progress_percent,
        created_by: run.created_by.clone(),
        steps: run.steps,
        create_time: Some(timestamp(run.create_time)),
        update_time: Some(timestamp(view.update_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: i64, started: Instant) -> Run {
        Run {
            project_id: "p-1".to_owned(),
            name: "r".to_owned(),
            created_by: "u-1".to_owned(),
            steps,
            create_time: Duration::from_secs(1_000),
            phase: Phase::Running { started },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn progress_follows_tokio_time_and_completes() {
        let step = Duration::from_millis(10);
        let run = run(100, Instant::now());
        let wall = Duration::from_secs(1_000);
        assert_eq!(run.view(step, Instant::now(), wall).progress_percent, 0.0);
        tokio::time::advance(Duration::from_millis(505)).await;
        let halfway = run.view(step, Instant::now(), wall);
        assert_eq!(halfway.state, SimulationState::Running);
        assert_eq!(halfway.progress_percent, 50.0);
        tokio::time::advance(Duration::from_millis(500)).await;
        let done = run.view(step, Instant::now(), wall);
        assert_eq!(done.state, SimulationState::Completed);
        assert_eq!(done.progress_percent, 100.0);
        assert_eq!(done.update_time, Duration::from_secs(1_001));
    }
}
