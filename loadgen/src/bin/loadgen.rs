//! The load generator: one goose scenario per process, or the publisher, or the report.
//!
//! ```text
//! loadgen http    --report DIR [RULES] [-- goose options]     the HTTP mix against --host
//! loadgen ws      --report DIR [RULES] --base-url ws://… --token T --channels N [-- goose options]
//! loadgen grpc    --report DIR --auth A --project P --simulation S [-- goose options]
//! loadgen publish --redis host:port --channels N --rate R --seconds S
//! loadgen report  --thresholds FILE --profile NAME --facts FILE --out DIR  DIR…
//! ```
//!
//! Each scenario process writes goose's own HTML and JSON reports and `process.json` (a
//! [`ProcessReport`], which merges) into its `--report` folder. Goose options after `--` are
//! goose's (`--users`, `--increase-rate`, `--run-time`, `--threshold`, …); goose's telnet
//! controller is off, so processes do not compete for its port. RULES (`--thresholds FILE
//! --profile NAME --processes N`) turn the campaign's thresholds into goose `--threshold` rules
//! for this process ([`report::goose_rules`]). Exit status: non-zero when a
//! goose threshold or a report threshold failed.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use events::{ChannelName, RedisBus, RedisBusConfig};
use goose::{GooseError, config::GooseConfiguration, prelude::*};
use loadgen::{
    baseline, http_mix,
    publisher::publish_open_loop,
    report::{self, Facts, ProcessReport},
    subscribers,
};
use seams::{SystemClock, TokioNet};

#[derive(Debug, Parser)]
#[command(about = "Load campaigns for the gateway (see ci/load.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a load process's goose `--threshold` rules come from: the campaign's thresholds file.
#[derive(Debug, clap::Args)]
struct Rules {
    /// The thresholds file (`ci/load-thresholds.toml`); without it, no rules are added.
    #[arg(long, requires = "profile")]
    thresholds: Option<PathBuf>,
    /// Its profile table (`smoke`, `full`).
    #[arg(long)]
    profile: Option<String>,
    /// Load processes of this role in the campaign: each carries its share of the HTTP rate.
    #[arg(long, default_value_t = 1)]
    processes: usize,
}

impl Rules {
    /// The goose rules for `role`, judged at the end of the run (a campaign reports in full).
    fn for_role(&self, role: &str) -> anyhow::Result<Vec<String>> {
        match (&self.thresholds, &self.profile) {
            (Some(path), Some(profile)) => {
                let thresholds = report::read_thresholds(path, profile)?;
                Ok(report::goose_rules(&thresholds, role, self.processes))
            }
            _ => Ok(Vec::new()),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The HTTP mix through a gateway (goose `--host http://…`).
    Http {
        /// Folder for this process's reports.
        #[arg(long)]
        report: PathBuf,
        #[command(flatten)]
        rules: Rules,
        /// Goose's options.
        #[arg(last = true)]
        goose: Vec<String>,
    },
    /// WebSocket subscribers on a gateway.
    Ws {
        /// Folder for this process's reports.
        #[arg(long)]
        report: PathBuf,
        #[command(flatten)]
        rules: Rules,
        /// The gateway's WebSocket base URL, `ws://host:port`.
        #[arg(long)]
        base_url: String,
        /// Access token for every connection.
        #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
        token: String,
        /// Simulation channels to spread the users over.
        #[arg(long, default_value_t = 100)]
        channels: usize,
        /// Goose's options.
        #[arg(last = true)]
        goose: Vec<String>,
    },
    /// The HTTP mix's calls straight to the mock backends over gRPC.
    Grpc {
        /// Folder for this process's reports.
        #[arg(long)]
        report: PathBuf,
        /// Auth's `host:port`.
        #[arg(long, default_value = "127.0.0.1:9000")]
        auth: String,
        /// Project's `host:port`.
        #[arg(long, default_value = "127.0.0.1:10000")]
        project: String,
        /// Simulation's `host:port`.
        #[arg(long, default_value = "127.0.0.1:11000")]
        simulation: String,
        /// Goose's options.
        #[arg(last = true)]
        goose: Vec<String>,
    },
    /// Publishes stamped events open loop on the subscribers' channels.
    Publish {
        /// Redis `host:port` (the gateways' event bus).
        #[arg(long)]
        redis: String,
        /// Channels (`simulation:load-0` …), as the subscribers were given.
        #[arg(long, default_value_t = 100)]
        channels: usize,
        /// Events per second, over all channels.
        #[arg(long)]
        rate: u32,
        /// Seconds of publishing.
        #[arg(long)]
        seconds: u64,
        /// Where to write what was published (JSON).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Merges the processes' reports, checks the thresholds, writes the summary.
    Report {
        /// The thresholds file (`ci/load-thresholds.toml`).
        #[arg(long)]
        thresholds: PathBuf,
        /// Its profile table (`smoke`, `full`).
        #[arg(long)]
        profile: String,
        /// Facts the campaign script measured (JSON), if any.
        #[arg(long)]
        facts: Option<PathBuf>,
        /// Where to write `summary.json` and `summary.html`.
        #[arg(long)]
        out: PathBuf,
        /// Folders holding a `process.json` each.
        folders: Vec<PathBuf>,
    },
}

/// Runs `scenario` with goose `options` and `rules` (goose thresholds, added to any in the
/// options), reports into `folder` as `role`. Ok(false) when a goose threshold failed (the
/// reports are written all the same).
async fn run_goose(
    role: &str,
    scenario: Scenario,
    options: &[String],
    rules: Vec<String>,
    folder: &std::path::Path,
    shared_client: bool,
) -> anyhow::Result<bool> {
    std::fs::create_dir_all(folder).with_context(|| format!("create {}", folder.display()))?;
    let mut configuration =
        GooseConfiguration::parse_args_default(options).context("goose options")?;
    configuration.no_telnet = true;
    if !rules.is_empty() {
        eprintln!("goose thresholds: {}", rules.join(", "));
        configuration.threshold.extend(rules);
        // Judged once at the end: a campaign runs its whole course and reports every figure.
        configuration.no_threshold_abort = true;
    }
    for format in ["html", "json"] {
        let file = folder.join(format!("goose.{format}"));
        configuration.report_file.push(file.display().to_string());
    }
    let mut attack = GooseAttack::initialize_with_config(configuration)?;
    if shared_client {
        attack = attack.set_client_builder_without_cookies(
            goose::client::GooseClientBuilder::new()
                .without_cookies()
                .timeout(Duration::from_secs(10)),
        )?;
    }
    let (metrics, passed) = match attack.register_scenario(scenario).execute().await {
        Ok(metrics) => (metrics, true),
        Err(GooseError::ThresholdsFailed { failed, metrics }) => {
            for result in &failed {
                eprintln!("goose threshold failed: {result:?}");
            }
            ((*metrics).clone(), false)
        }
        Err(error) => return Err(error.into()),
    };
    let report = ProcessReport::from_goose(role, &metrics);
    let path = folder.join("process.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(passed)
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Http {
            report,
            rules,
            goose,
        } => {
            let rules = rules.for_role("http")?;
            run_goose("http", http_mix::scenario()?, &goose, rules, &report, true).await
        }
        Command::Ws {
            report,
            rules,
            base_url,
            token,
            channels,
            goose,
        } => {
            let settings = subscribers::Settings {
                base_url,
                token,
                channels,
            };
            run_goose(
                "ws",
                subscribers::scenario(settings)?,
                &goose,
                rules.for_role("ws")?,
                &report,
                true,
            )
            .await
        }
        Command::Grpc {
            report,
            auth,
            project,
            simulation,
            goose,
        } => {
            let settings = baseline::Settings {
                auth,
                project,
                simulation,
            };
            run_goose(
                "grpc",
                baseline::scenario(&settings)?,
                &goose,
                Vec::new(),
                &report,
                true,
            )
            .await
        }
        Command::Publish {
            redis,
            channels,
            rate,
            seconds,
            out,
        } => {
            let names = (0..channels)
                .map(|index| {
                    ChannelName::parse(&format!("simulation:{}", subscribers::channel_id(index)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let bus = RedisBus::new(
                TokioNet,
                RedisBusConfig {
                    address: redis,
                    rng_seed: 0x10ad,
                    ..RedisBusConfig::default()
                },
            )?;
            let count = u64::from(rate) * seconds;
            let report =
                publish_open_loop(Arc::new(bus), &names, rate, count, &SystemClock, 10_000).await;
            println!(
                "published {} of {count} events at {rate}/s ({} failed, {} skipped)",
                report.published, report.failed, report.skipped
            );
            if let Some(out) = out {
                std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(report.failed == 0 && report.skipped == 0)
        }
        Command::Report {
            thresholds,
            profile,
            facts,
            out,
            folders,
        } => {
            let thresholds = report::read_thresholds(&thresholds, &profile)?;
            let facts: Facts = match facts {
                Some(path) => serde_json::from_slice(
                    &std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
                )?,
                None => Facts::default(),
            };
            let mut reports = Vec::new();
            for folder in &folders {
                let path = folder.join("process.json");
                let bytes =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                reports.push(serde_json::from_slice::<ProcessReport>(&bytes)?);
            }
            let checks = report::checks(&reports, &facts, &thresholds);
            print!("{}", report::table(&checks));
            if !facts.cpu.is_empty() {
                let cores = std::thread::available_parallelism().map_or(0, usize::from);
                println!(
                    "\nCPU by process group, cores busy of this machine's {cores} (steady state of each phase):"
                );
                print!("{}", report::cpu_table(&facts.cpu));
            }
            std::fs::create_dir_all(&out)?;
            let summary = serde_json::json!({ "profile": profile, "facts": facts, "checks": checks,
                "processes": reports.iter().map(|r| (&r.role, r.users, r.duration_s)).collect::<Vec<_>>() });
            std::fs::write(
                out.join("summary.json"),
                serde_json::to_vec_pretty(&summary)?,
            )?;
            let title = format!("Load campaign, profile {profile}");
            std::fs::write(
                out.join("summary.html"),
                report::html(&title, &checks, &facts.cpu),
            )?;
            Ok(checks.iter().all(|c| c.passed))
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadgen: a threshold failed");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::from(2)
        }
    }
}
