//! The seeded demo data, in one place so Auth's permissions agree with the projects and
//! simulations the other services hold.
//!
//! | user | ID | roles | password |
//! |---|---|---|---|
//! | `alice` | `u-1` | `user`, `admin` | `demo-password` |
//! | `bob` | `u-2` | `user` | `demo-password` |
//!
//! Alice owns projects `p-1` and `p-2` and simulations `s-1` (completed) and `s-2` (running) of
//! `p-1`; Bob owns project `p-3`. Each owner holds `write` (which implies `read`) on what they own.
//! The password is for local development only: the mock compares it in plain text.

/// The password of every demo user.
pub const DEMO_PASSWORD: &str = "demo-password";

/// A seeded user.
#[derive(Debug, Clone, Copy)]
pub struct DemoUser {
    /// Stable user ID.
    pub id: &'static str,
    /// Login name.
    pub username: &'static str,
    /// Name shown in profiles.
    pub display_name: &'static str,
    /// Email shown in profiles.
    pub email: &'static str,
    /// Roles carried in tokens.
    pub roles: &'static [&'static str],
}

/// The seeded users.
pub const USERS: &[DemoUser] = &[
    DemoUser {
        id: "u-1",
        username: "alice",
        display_name: "Alice Liddell",
        email: "alice@example.com",
        roles: &["user", "admin"],
    },
    DemoUser {
        id: "u-2",
        username: "bob",
        display_name: "Bob Builder",
        email: "bob@example.com",
        roles: &["user"],
    },
];

/// A seeded project.
#[derive(Debug, Clone, Copy)]
pub struct DemoProject {
    /// Sequence number; the ID is `p-{seq}`.
    pub seq: u64,
    /// Name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Owner's user ID.
    pub owner_id: &'static str,
    /// Template it was created from.
    pub template_id: &'static str,
}

/// The seeded projects, oldest first.
pub const PROJECTS: &[DemoProject] = &[
    DemoProject {
        seq: 1,
        name: "Wind tunnel",
        description: "Airflow over a wing profile.",
        owner_id: "u-1",
        template_id: "t-fluid",
    },
    DemoProject {
        seq: 2,
        name: "Heat sink",
        description: "Passive cooling of a power stage.",
        owner_id: "u-1",
        template_id: "t-thermal",
    },
    DemoProject {
        seq: 3,
        name: "Crowd flow",
        description: "Evacuation of a concert hall.",
        owner_id: "u-2",
        template_id: "t-agents",
    },
];

/// A project template from the static catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Stable template ID.
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
}

/// The template catalogue.
pub const TEMPLATES: &[Template] = &[
    Template {
        id: "t-fluid",
        name: "Fluid dynamics",
        description: "Incompressible flow on a regular grid.",
    },
    Template {
        id: "t-thermal",
        name: "Heat transfer",
        description: "Conduction and convection in solids.",
    },
    Template {
        id: "t-agents",
        name: "Agent-based",
        description: "Many independent agents on a map.",
    },
];

/// How a seeded simulation stands when the backend starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRunState {
    /// Running from the moment the backend starts.
    Running,
    /// Already completed.
    Completed,
}

/// A seeded simulation.
#[derive(Debug, Clone, Copy)]
pub struct DemoSimulation {
    /// Sequence number; the ID is `s-{seq}`.
    pub seq: u64,
    /// The project's ID.
    pub project_id: &'static str,
    /// Name.
    pub name: &'static str,
    /// Who started it.
    pub created_by: &'static str,
    /// Total steps.
    pub steps: i64,
    /// Running or completed.
    pub state: DemoRunState,
}

/// The seeded simulations, oldest first. The running one is long enough (a million steps) to
/// stay running for any test.
pub const SIMULATIONS: &[DemoSimulation] = &[
    DemoSimulation {
        seq: 1,
        project_id: "p-1",
        name: "Wind tunnel, baseline",
        created_by: "u-1",
        steps: 1_000,
        state: DemoRunState::Completed,
    },
    DemoSimulation {
        seq: 2,
        project_id: "p-1",
        name: "Wind tunnel, high Reynolds",
        created_by: "u-1",
        steps: 1_000_000,
        state: DemoRunState::Running,
    },
];

/// The ID of project number `seq`.
pub fn project_id(seq: u64) -> String {
    format!("p-{seq}")
}

/// The ID of simulation number `seq`.
pub fn simulation_id(seq: u64) -> String {
    format!("s-{seq}")
}

/// The resource name permissions use for a project.
pub fn project_resource(project_id: &str) -> String {
    format!("project:{project_id}")
}

/// The resource name permissions use for a simulation.
pub fn simulation_resource(simulation_id: &str) -> String {
    format!("simulation:{simulation_id}")
}

/// The permissions seeded on Auth, as (user ID, resource, action): owners may write what they own.
pub fn permissions() -> Vec<(String, String, &'static str)> {
    let projects = PROJECTS.iter().map(|project| {
        (
            project.owner_id.to_owned(),
            project_resource(&project_id(project.seq)),
            "write",
        )
    });
    let simulations = SIMULATIONS.iter().map(|simulation| {
        (
            simulation.created_by.to_owned(),
            simulation_resource(&simulation_id(simulation.seq)),
            "write",
        )
    });
    projects.chain(simulations).collect()
}
