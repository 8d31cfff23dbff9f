//! A real Redis server for one test, with stop and restart on the same address.
//!
//! The Redis integration tests (the Redis event bus, history, presence, shared rate limits) need a
//! real Redis they can crash and bring back. [`TestRedis::start`] starts one through testcontainers
//! (the `redis` module of testcontainers-modules) from a local image; [`TestRedis::stop`] kills it
//! like a crash (no persistence, so its data is gone) and [`TestRedis::restart`] brings it back on
//! the same `host:port`, so clients under test reconnect to the address they already know.
//! Dropping a [`TestRedis`] stops and removes the server.
//!
//! No container registry is reachable from this project's machines, so the image is prepared
//! locally: `ci/docker-engine.sh` starts a Docker engine, `ci/redis-image.sh` builds the image from
//! Debian's redis-server. A test never silently skips: without Docker, [`TestRedis::start`] fails
//! with a message saying how to provide it, unless a local `redis-server` process was asked for.
//!
//! # Environment
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `REDIS_IMAGE` | image name | `redis` |
//! | `REDIS_TAG` | image tag | `7-local` (what `ci/redis-image.sh` builds) |
//! | `REDIS_TEST_LOCAL` | `1`: when the Docker path fails, run a local `redis-server` process on a free `127.0.0.1` port instead | unset: Docker or an error |
//! | `REDIS_SERVER_BIN` | the `redis-server` program for the local fallback | `redis-server` (from `PATH`) |
//! | `DOCKER_HOST` | read by testcontainers: which Docker engine to use | the local socket |
//!
//! Tests that need explicit settings (rather than the process-global environment) build a
//! [`HarnessSettings`] and call [`TestRedis::start_with`].
//!
//! # Modules
//!
//! Everything is in this file: [`HarnessSettings`] (configuration), [`TestRedis`] (the server and
//! its two backends, container and local process) and [`HarnessError`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use testcontainers_modules::redis::Redis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Default image name, as in `ci/redis-image.sh`.
pub const DEFAULT_IMAGE: &str = "redis";
/// Default image tag, as in `ci/redis-image.sh`.
pub const DEFAULT_TAG: &str = "7-local";
/// The port Redis listens on inside the container.
const CONTAINER_PORT: u16 = 6379;

/// What a [`TestRedis`] is started from. [`HarnessSettings::from_env`] reads the environment
/// variables listed in the crate documentation.
#[derive(Debug, Clone)]
pub struct HarnessSettings {
    /// Image name (`REDIS_IMAGE`).
    pub image: String,
    /// Image tag (`REDIS_TAG`).
    pub tag: String,
    /// Run a local `redis-server` process when the Docker path fails (`REDIS_TEST_LOCAL=1`).
    pub local_fallback: bool,
    /// The `redis-server` program for the local fallback (`REDIS_SERVER_BIN`).
    pub redis_server_bin: PathBuf,
    /// How long to wait for Redis to answer PING after a start or restart.
    pub ready_timeout: Duration,
}

impl Default for HarnessSettings {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_owned(),
            tag: DEFAULT_TAG.to_owned(),
            local_fallback: false,
            redis_server_bin: PathBuf::from("redis-server"),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

impl HarnessSettings {
    /// Settings from `REDIS_IMAGE`, `REDIS_TAG`, `REDIS_TEST_LOCAL` and `REDIS_SERVER_BIN`; unset or
    /// empty variables keep the defaults.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let defaults = Self::default();
        Self {
            image: var("REDIS_IMAGE").unwrap_or(defaults.image),
            tag: var("REDIS_TAG").unwrap_or(defaults.tag),
            local_fallback: var("REDIS_TEST_LOCAL").is_some_and(|value| value == "1"),
            redis_server_bin: var("REDIS_SERVER_BIN")
                .map(PathBuf::from)
                .unwrap_or(defaults.redis_server_bin),
            ready_timeout: defaults.ready_timeout,
        }
    }
}

/// Why a [`TestRedis`] could not be started, stopped or restarted; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HarnessError(String);

/// A Redis server for one test. Dropping it stops and removes it.
pub struct TestRedis {
    /// Host to dial; `127.0.0.1` for a local engine and the local fallback.
    host: String,
    /// Host port, fixed for the life of the server so that a restart keeps the address.
    port: u16,
    backend: Backend,
    settings: HarnessSettings,
}

/// Where the server runs.
enum Backend {
    /// A testcontainers container whose port 6379 is published on the fixed host port; stop and
    /// restart are `docker stop` / `docker start` of this same container, which keeps that binding.
    Container(Box<ContainerAsync<Redis>>),
    /// A local `redis-server` process; `None` while stopped. `kill_on_drop` ends it with the test.
    Local(Option<Child>),
}

impl TestRedis {
    /// Starts Redis through testcontainers with image `$REDIS_IMAGE:$REDIS_TAG` (defaults as in
    /// `ci/redis-image.sh`). When Docker cannot be reached: if `REDIS_TEST_LOCAL=1` is set, starts a
    /// local `redis-server` process on a free 127.0.0.1 port instead; otherwise returns an error
    /// whose message says how to provide Docker (run `ci/docker-engine.sh` and
    /// `ci/redis-image.sh`) or set `REDIS_TEST_LOCAL=1`. Never silently skips.
    pub async fn start() -> Result<TestRedis, HarnessError> {
        Self::start_with(HarnessSettings::from_env()).await
    }

    /// [`TestRedis::start`] with explicit settings instead of the environment (testcontainers still
    /// reads `DOCKER_HOST` itself).
    pub async fn start_with(settings: HarnessSettings) -> Result<TestRedis, HarnessError> {
        let docker_failure = match start_container(&settings).await {
            Ok(redis) => return Ok(redis),
            Err(failure) => failure,
        };
        if !settings.local_fallback {
            return Err(HarnessError(format!(
                "cannot start Redis image {image}:{tag} through Docker: {docker_failure}\n\
                 To provide Docker and the image on this machine, run (as root):\n    \
                 bash ci/docker-engine.sh && bash ci/redis-image.sh\n\
                 (set REDIS_IMAGE / REDIS_TAG to use another image, DOCKER_HOST for another engine).\n\
                 Or, where no Docker can be had, set REDIS_TEST_LOCAL=1 to run a local redis-server \
                 process instead (apt-get install -y redis-server).",
                image = settings.image,
                tag = settings.tag,
            )));
        }
        // The fallback was asked for explicitly; say why it is taken so a broken Docker setup is
        // still visible in the test output.
        eprintln!(
            "redis-harness: Docker path failed ({docker_failure}); REDIS_TEST_LOCAL=1, so running \
             a local redis-server"
        );
        start_local(settings).await
    }

    /// `host:port` to dial (e.g. "127.0.0.1:49153").
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Stops the server (connections drop; data is lost as with a crash without persistence).
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        match &mut self.backend {
            // Timeout 0: SIGKILL at once, a crash rather than a clean shutdown.
            Backend::Container(container) => container
                .stop_with_timeout(Some(0))
                .await
                .map_err(|error| HarnessError(format!("cannot stop the Redis container: {error}"))),
            Backend::Local(child) => {
                if let Some(mut process) = child.take() {
                    process.kill().await.map_err(|error| {
                        HarnessError(format!("cannot kill the local redis-server: {error}"))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Starts it again on the SAME address (so clients reconnect to the same host:port).
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        match &mut self.backend {
            Backend::Container(container) => {
                // `docker start` of the stopped container: its port binding is part of the
                // container's host config, so the fixed host port comes back with it.
                container.start().await.map_err(|error| {
                    HarnessError(format!("cannot restart the Redis container: {error}"))
                })?;
            }
            Backend::Local(child) => {
                if child.is_none() {
                    *child = Some(spawn_local(&self.settings, self.port)?);
                }
            }
        }
        self.wait_ready().await
    }

    /// Waits, bounded by `ready_timeout`, until the server answers PING.
    async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let address = self.address();
        let deadline = tokio::time::Instant::now() + self.settings.ready_timeout;
        loop {
            let failure = match ping(&address).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if let Backend::Local(Some(process)) = &mut self.backend
                && let Ok(Some(status)) = process.try_wait()
            {
                return Err(HarnessError(format!(
                    "local redis-server on {address} exited ({status}) before answering PING; \
                     is the port taken? Run it by hand to see why: {} --port {}",
                    self.settings.redis_server_bin.display(),
                    self.port
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(HarnessError(format!(
                    "Redis on {address} did not answer PING within {:?}: {failure}",
                    self.settings.ready_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts the container with port 6379 published on a free host port picked here, so that the
/// port is known before the container exists and stays the container's across stop and start.
async fn start_container(settings: &HarnessSettings) -> Result<TestRedis, String> {
    let port = free_port().map_err(|error| format!("no free host port: {error}"))?;
    let container = Redis::default()
        .with_name(settings.image.as_str())
        .with_tag(settings.tag.as_str())
        .with_mapped_port(port, CONTAINER_PORT.tcp())
        .with_startup_timeout(settings.ready_timeout)
        .start()
        .await
        .map_err(|error| error_chain(&error))?;
    let host = match container.get_host().await {
        // testcontainers says "localhost" for a local engine; dial IPv4 explicitly, because
        // docker publishes on 0.0.0.0 and "localhost" may resolve to ::1 first.
        Ok(host) if host.to_string() == "localhost" => "127.0.0.1".to_owned(),
        Ok(host) => host.to_string(),
        Err(error) => return Err(error_chain(&error)),
    };
    let mut redis = TestRedis {
        host,
        port,
        backend: Backend::Container(Box::new(container)),
        settings: settings.clone(),
    };
    // The image's readiness condition is a log line; a PING proves the published port works too.
    redis.wait_ready().await.map_err(|error| error.0)?;
    Ok(redis)
}

/// Starts a local `redis-server` on a free 127.0.0.1 port.
async fn start_local(settings: HarnessSettings) -> Result<TestRedis, HarnessError> {
    let port = free_port().map_err(|error| HarnessError(format!("no free local port: {error}")))?;
    let child = spawn_local(&settings, port)?;
    let mut redis = TestRedis {
        host: "127.0.0.1".to_owned(),
        port,
        backend: Backend::Local(Some(child)),
        settings,
    };
    redis.wait_ready().await?;
    Ok(redis)
}

/// Spawns `redis-server` on `127.0.0.1:port` with no persistence, like the container's command.
fn spawn_local(settings: &HarnessSettings, port: u16) -> Result<Child, HarnessError> {
    Command::new(&settings.redis_server_bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            HarnessError(format!(
                "REDIS_TEST_LOCAL=1 but {} cannot be started: {error}. Install it \
                 (apt-get install -y redis-server) or point REDIS_SERVER_BIN at it; or provide \
                 Docker with ci/docker-engine.sh and ci/redis-image.sh and unset REDIS_TEST_LOCAL.",
                settings.redis_server_bin.display()
            ))
        })
}

/// A port that was free a moment ago. Another process could take it before Redis binds it; on a
/// test machine that is rare, and the start then fails with a clear error rather than hanging.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// One PING over a fresh connection, bounded to one second.
async fn ping(address: &str) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut reply = [0_u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    match tokio::time::timeout(Duration::from_secs(1), exchange).await {
        Ok(Ok(reply)) if &reply == b"+PONG\r\n" => Ok(()),
        Ok(Ok(reply)) => Err(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&reply)
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no reply within 1 s".to_owned()),
    }
}

/// An error with its sources, so "connection refused" below a client error is not lost.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}
