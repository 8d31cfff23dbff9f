//! Configuration, as `docs/configuration.md` describes it: the defaults are valid and equal the
//! example file; a TOML file overrides the defaults; `GATEWAY_*` environment variables override the
//! file; every validation rule names its dotted field; unknown keys are rejected; and the binary
//! exits non-zero with a message naming the field when the configuration is bad.
//!
//! Environment overrides are read from the real process environment, which is global to this test
//! binary, so they are tested on the `gateway` binary run as a child process with its own
//! environment. No test here changes this process's environment.

mod support;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, mpsc},
    time::Duration,
};

use gateway::{
    App, Config, Seams, StartError, app::builtin_descriptors, backends::BackendConfig,
    config::ConfigError,
};
use seams::{SystemClock, TokioNet};

/// How long the binary may take to reject a bad configuration. It exits in milliseconds; the
/// bound is generous so a loaded CI machine does not make the test flaky.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

/// A TOML file under the system temporary directory, removed when dropped.
struct TempToml(PathBuf);

impl TempToml {
    /// Writes `text` to a file whose name is unique to this process and `name`.
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "gateway-config-test-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("the temporary directory is writable");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `Config::load` also reads `GATEWAY_*` variables; with one set, these tests would not test what
/// they say, so they fail and say why instead.
fn assert_no_gateway_variables() {
    let set: Vec<String> = std::env::vars_os()
        .map(|(key, _)| key.to_string_lossy().into_owned())
        .filter(|key| key.to_ascii_uppercase().starts_with("GATEWAY_"))
        .collect();
    assert!(
        set.is_empty(),
        "unset {set:?} to run these tests: Config::load reads GATEWAY_* variables"
    );
}

/// Loads `text` as the configuration file, through the same `Config::load` the binary uses.
fn load_toml(name: &str, text: &str) -> Result<Config, ConfigError> {
    assert_no_gateway_variables();
    let file = TempToml::new(name, text);
    Config::load(Some(file.path()))
}

fn invalid_field(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Err(ConfigError::Invalid { field, reason }) => (field, reason),
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

fn load_error(result: Result<Config, ConfigError>) -> String {
    match result {
        Err(error @ ConfigError::Load(_)) => error.to_string(),
        other => panic!("expected ConfigError::Load, got {other:?}"),
    }
}

#[test]
fn the_defaults_are_valid_and_are_what_loading_nothing_gives() {
    Config::default().validate().expect("the defaults validate");
    assert_no_gateway_variables();
    assert_eq!(Config::load(None).unwrap(), Config::default());
}

#[test]
fn the_example_file_equals_the_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
    assert_no_gateway_variables();
    let loaded = Config::load(Some(&example)).expect("the example file loads");
    assert_eq!(
        loaded,
        Config::default(),
        "gateway/gateway.example.toml and docs/configuration.md must list the defaults"
    );
}

#[test]
fn a_file_overrides_the_defaults_and_keeps_the_rest() {
    let config = load_toml(
        "overrides",
        r#"
            [http]
            body_bytes_max = 4096

            [listen]
            api = "127.0.0.1:18000"

            [backends.project]
            address = "project.internal:10000"
            deadline_ms = 750

            [auth]
            public_methods = ["auth.v1.AuthService/Login"]
        "#,
    )
    .expect("the file loads");
    let defaults = Config::default();

    assert_eq!(config.http.body_bytes_max, 4096);
    assert_eq!(config.http.uri_bytes_max, defaults.http.uri_bytes_max);
    assert_eq!(config.listen.api.to_string(), "127.0.0.1:18000");
    assert_eq!(config.listen.health, defaults.listen.health);

    let project = &config.backends["project"];
    assert_eq!(project.address, "project.internal:10000");
    assert_eq!(project.deadline_ms, 750);
    assert_eq!(
        project.services, defaults.backends["project"].services,
        "fields the file does not name keep their default"
    );
    assert_eq!(
        project.connect_timeout_ms,
        defaults.backends["project"].connect_timeout_ms
    );
    assert_eq!(config.backends["auth"], defaults.backends["auth"]);

    // A list in the file replaces the default list; it is not appended to it.
    assert_eq!(
        config.auth.public_methods,
        ["auth.v1.AuthService/Login".to_owned()]
    );
    assert_eq!(
        config.auth.token_cache_ttl_ms,
        defaults.auth.token_cache_ttl_ms
    );
}

#[test]
fn a_new_backend_in_a_file_gets_the_default_timeouts() {
    let config = load_toml(
        "new-backend",
        r#"
            [backends.billing]
            address = "billing.internal:12000"
            services = ["billing.v1.BillingService"]
        "#,
    )
    .expect("the file loads");
    let defaults = &Config::default().backends["auth"];
    assert_eq!(
        config.backends["billing"],
        BackendConfig {
            address: "billing.internal:12000".to_owned(),
            services: vec!["billing.v1.BillingService".to_owned()],
            ..defaults.clone()
        }
    );
    assert_eq!(config.backends.len(), 4, "the three defaults remain");
}

#[test]
fn a_new_backend_needs_an_address_and_services() {
    let message = load_error(load_toml(
        "backend-without-services",
        r#"
            [backends.billing]
            address = "billing.internal:12000"
        "#,
    ));
    assert!(message.contains("services"), "{message}");
}

#[test]
fn unknown_keys_in_a_file_are_rejected_by_name() {
    for (name, text, key) in [
        ("top", "[metrics]\nenabled = true\n", "metrics"),
        ("http", "[http]\nbody_max = 1\n", "body_max"),
        ("listen", "[listen]\nadmin = \"0.0.0.0:9999\"\n", "admin"),
        (
            "backend",
            "[backends.auth]\nadress = \"auth.internal:9000\"\n",
            "adress",
        ),
        ("auth", "[auth]\ntoken_ttl_ms = 1\n", "token_ttl_ms"),
    ] {
        let message = load_error(load_toml(&format!("unknown-{name}"), text));
        assert!(
            message.contains(key),
            "the error names the unknown key {key}: {message}"
        );
    }
}

#[test]
fn a_value_of_the_wrong_type_is_rejected() {
    let message = load_error(load_toml(
        "wrong-type",
        "[http]\nbody_bytes_max = \"a lot\"\n",
    ));
    assert!(message.contains("body_bytes_max"), "{message}");
}

#[test]
fn a_missing_file_is_an_error_not_the_defaults() {
    assert_no_gateway_variables();
    let missing = std::env::temp_dir().join(format!(
        "gateway-config-test-{}-does-not-exist.toml",
        std::process::id()
    ));
    load_error(Config::load(Some(&missing)));
}

#[test]
fn a_backend_address_without_a_port_is_rejected() {
    let (field, reason) = invalid_field(load_toml(
        "address-without-port",
        "[backends.auth]\naddress = \"auth.internal\"\n",
    ));
    assert_eq!(field, "backends.auth.address");
    assert_eq!(reason, "must be host:port");
}

#[test]
fn two_backends_claiming_one_service_are_rejected() {
    let (field, reason) = invalid_field(load_toml(
        "service-twice",
        r#"
            [backends.identity]
            address = "identity.internal:9000"
            services = ["auth.v1.AuthService"]
        "#,
    ));
    // Backends are checked in name order, so the second claimant is the one named.
    assert_eq!(field, "backends.identity.services");
    assert_eq!(
        reason,
        "auth.v1.AuthService is already served by backend auth"
    );
}

#[test]
fn an_empty_service_list_switches_a_default_backend_off() {
    let config = load_toml(
        "replace-auth",
        r#"
            [auth]
            backend = "identity"

            [backends.auth]
            services = []

            [backends.identity]
            address = "identity.internal:9000"
            services = ["auth.v1.AuthService"]
        "#,
    )
    .expect("replacing the default Auth backend is valid");
    assert!(!config.backends.contains_key("auth"));
    assert_eq!(
        config.backends["identity"].address,
        "identity.internal:9000"
    );
    assert_eq!(
        config
            .backend_for_service("auth.v1.AuthService")
            .map(|(name, _)| name),
        Some("identity")
    );
}

/// One row per rule of `Config::validate`: how to break the defaults, and the field named.
#[test]
fn every_validation_rule_names_its_dotted_field() {
    type Breaks = fn(&mut Config);
    fn backend<'c>(config: &'c mut Config, name: &str) -> &'c mut BackendConfig {
        config.backends.get_mut(name).expect("a default backend")
    }
    let rules: &[(&str, Breaks)] = &[
        ("backends", |c| c.backends.clear()),
        ("backends.auth.address", |c| {
            backend(c, "auth").address = "auth.internal".into()
        }),
        ("backends.auth.address", |c| {
            backend(c, "auth").address = ":9000".into()
        }),
        ("backends.auth.address", |c| {
            backend(c, "auth").address = "auth.internal:grpc".into()
        }),
        ("backends.auth.address", |c| {
            backend(c, "auth").address = "auth.internal:65536".into()
        }),
        ("backends.project.services", |c| {
            backend(c, "project").services.clear()
        }),
        ("backends.simulation.services", |c| {
            backend(c, "simulation")
                .services
                .push("project.v1.ProjectService".into())
        }),
        ("backends.auth.connect_timeout_ms", |c| {
            backend(c, "auth").connect_timeout_ms = 0
        }),
        ("backends.auth.deadline_ms", |c| {
            backend(c, "auth").deadline_ms = 0
        }),
        ("backends.project.keepalive_interval_ms", |c| {
            backend(c, "project").keepalive_interval_ms = 0
        }),
        ("backends.project.keepalive_timeout_ms", |c| {
            backend(c, "project").keepalive_timeout_ms = 0
        }),
        ("backends.simulation.reconnect_interval_ms", |c| {
            backend(c, "simulation").reconnect_interval_ms = 0
        }),
        ("auth.backend", |c| c.auth.backend = "identity".into()),
        ("auth.public_methods", |c| {
            c.auth.public_methods.push("Login".into())
        }),
        ("auth.public_methods", |c| {
            c.auth.public_methods.push("/Login".into())
        }),
        ("auth.public_methods", |c| {
            c.auth.public_methods.push("auth.v1.AuthService/".into())
        }),
        ("auth.token_cache_ttl_ms", |c| c.auth.token_cache_ttl_ms = 0),
        ("auth.token_bytes_max", |c| c.auth.token_bytes_max = 0),
        ("auth.validation_deadline_ms", |c| {
            c.auth.validation_deadline_ms = 0
        }),
        ("http.body_bytes_max", |c| c.http.body_bytes_max = 0),
        ("http.uri_bytes_max", |c| c.http.uri_bytes_max = 0),
        ("http.header_bytes_max", |c| c.http.header_bytes_max = 0),
        ("http.header_count_max", |c| c.http.header_count_max = 0),
        ("health.check_interval_ms", |c| {
            c.health.check_interval_ms = 0
        }),
        ("health.check_timeout_ms", |c| c.health.check_timeout_ms = 0),
        ("shutdown.grace_period_ms", |c| {
            c.shutdown.grace_period_ms = 0
        }),
        // Each section checks itself where its type lives; one row per owner at least.
        ("backends.auth.pool.max_channels", |c| {
            backend(c, "auth").pool.max_channels = 1
        }),
        ("backends.auth.breaker.failure_ratio", |c| {
            backend(c, "auth").breaker.failure_ratio = 1.5
        }),
        ("backends.auth.retry.backoff_initial_ms", |c| {
            backend(c, "auth").retry.backoff_initial_ms = 1_000
        }),
        ("auth.clock_leeway_seconds", |c| {
            c.auth.clock_leeway_seconds = -1
        }),
        ("routes.deadlines_ms.ProjectService", |c| {
            c.routes.deadlines_ms.insert("ProjectService".into(), 100);
        }),
        ("routes.aggregates./api/dash//board", |c| {
            c.routes.aggregates.insert(
                "/api/dash//board".into(),
                [("me".to_owned(), "/api/users/me".to_owned())].into(),
            );
        }),
        ("cache.routes.project.v1.ProjectService.ttl_ms", |c| {
            c.cache.routes.insert(
                "project.v1.ProjectService".into(),
                serde_json::from_str(r#"{"ttl_ms": 0}"#).expect("a cache rule"),
            );
        }),
        ("rate_limit.trusted_proxies", |c| {
            c.rate_limit.trusted_proxies.push("10.0.0.0/33".into())
        }),
        ("rate_limit.shared_retry_interval_ms", |c| {
            c.rate_limit.shared_retry_interval_ms = 0
        }),
        ("rate_limit.shared", |c| c.rate_limit.shared = true),
        ("websocket.history_read_attempts", |c| {
            c.websocket.history_read_attempts = 0
        }),
        ("websocket.write_buffer_bytes", |c| {
            c.websocket.write_buffer_bytes = c.websocket.write_buffer_bytes_max
        }),
        ("websocket.presence_ttl_ms", |c| {
            c.websocket.presence_ttl_ms = c.websocket.presence_heartbeat_interval_ms
        }),
        ("event_bus.redis", |c| {
            c.event_bus.kind = gateway::realtime::EventBusKind::Redis;
            c.event_bus.redis.history_len_max = 0;
        }),
        ("cors.allowed_origins", |c| {
            c.cors.allowed_origins.push("app.example.com".into())
        }),
        ("security_headers", |c| {
            c.security_headers.frame_options = "DENY\n".into()
        }),
        ("tls", |c| c.tls.cert_path = Some(PathBuf::from("cert.pem"))),
    ];
    for (index, (expected, breaks)) in rules.iter().enumerate() {
        let mut config = Config::default();
        breaks(&mut config);
        let error = config
            .validate()
            .expect_err(&format!("row {index} ({expected}) should be invalid"));
        let message = error.to_string();
        let (field, reason) = invalid_field(Err(error));
        assert_eq!(field, *expected, "row {index}: {reason}");
        assert!(!reason.is_empty(), "row {index} says why");
        assert_eq!(
            message,
            format!("invalid configuration: {field}: {reason}"),
            "row {index}: the message the binary prints"
        );
    }
}

/// Zero is a meaningful value for these two: no caching of rejections, no caching at all.
#[test]
fn zero_is_accepted_where_it_means_no_caching() {
    let mut config = Config::default();
    config.auth.negative_cache_ttl_ms = 0;
    config.auth.token_cache_entries_max = 0;
    config.validate().expect("zero disables these caches");
}

#[test]
fn a_route_whose_service_has_no_backend_stops_start_up() {
    let mut config = Config::default();
    config.backends.remove("simulation");
    config.validate().expect("the config alone is still valid");
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 7,
    };
    match App::new(
        config,
        &seams,
        &builtin_descriptors(),
        gateway::app::embedded_bus(7),
    ) {
        Err(StartError::UnservedRoute { route, service }) => {
            assert_eq!(service, "simulation.v1.SimulationService");
            assert!(route.contains("/api/simulations"), "{route}");
        }
        other => panic!("expected StartError::UnservedRoute, got {other:?}"),
    }
}

#[tokio::test]
async fn the_defaults_build_the_gateway() {
    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 7,
    };
    App::from_config(Config::default(), &seams, gateway::app::embedded_bus(7))
        .expect("every built-in route has a backend");
}

/// What the binary did: its exit code and what it wrote to stderr.
#[derive(Debug)]
struct Exit {
    code: Option<i32>,
    stderr: String,
}

/// Runs the `gateway` binary with `args` and exactly the `GATEWAY_*` variables in `env`, and
/// waits for it to exit. Should a bad configuration be accepted by mistake, the gateway binds only
/// free loopback ports and is killed after [`EXIT_WITHIN`].
fn run_gateway(args: &[&str], env: &[(&str, &str)]) -> Exit {
    let mut command = support::gateway_binary();
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the gateway binary runs");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // The pipe closes when the process exits; reading it on a thread lets this wait be bounded.
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = sender.send(text);
    });
    match receiver.recv_timeout(EXIT_WITHIN) {
        Ok(stderr) => {
            let status = child.wait().expect("the gateway is waited for");
            Exit {
                code: status.code(),
                stderr,
            }
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway kept running with args {args:?} and env {env:?}");
        }
    }
}

fn assert_rejected(exit: &Exit, field: &str) {
    assert_eq!(exit.code, Some(1), "{exit:?}");
    assert!(
        exit.stderr.contains(field),
        "the message names {field}: {}",
        exit.stderr
    );
}

#[test]
fn the_binary_rejects_an_invalid_environment_override() {
    let exit = run_gateway(&[], &[("GATEWAY_HTTP__BODY_BYTES_MAX", "0")]);
    assert_rejected(&exit, "http.body_bytes_max");
    assert!(
        exit.stderr.contains("must be greater than zero"),
        "{exit:?}"
    );
}

/// The file sets an invalid `http.uri_bytes_max`; the environment corrects it and breaks
/// `shutdown.grace_period_ms`, which is validated after `http`. The error naming the latter proves
/// the environment's value replaced the file's.
#[test]
fn environment_overrides_win_over_the_file() {
    let file = TempToml::new("env-over-file", "[http]\nuri_bytes_max = 0\n");
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let exit = run_gateway(
        &["--config", path],
        &[
            ("GATEWAY_HTTP__URI_BYTES_MAX", "4321"),
            ("GATEWAY_SHUTDOWN__GRACE_PERIOD_MS", "0"),
        ],
    );
    assert_rejected(&exit, "shutdown.grace_period_ms");
    assert!(!exit.stderr.contains("uri_bytes_max"), "{exit:?}");

    // Without the override, the file's value is the one rejected.
    let exit = run_gateway(&["--config", path], &[]);
    assert_rejected(&exit, "http.uri_bytes_max");
}

/// `GATEWAY_CONFIG` names the file; it is not itself read as a configuration field.
#[test]
fn the_binary_reads_the_file_named_by_gateway_config() {
    let file = TempToml::new(
        "gateway-config-variable",
        "[health]\ncheck_timeout_ms = 0\n",
    );
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let exit = run_gateway(&[], &[("GATEWAY_CONFIG", path)]);
    assert_rejected(&exit, "health.check_timeout_ms");
}

#[test]
fn the_binary_rejects_an_unknown_field_in_the_file() {
    let file = TempToml::new("binary-unknown-field", "[http]\nbody_limit = 10\n");
    let path = file.path().to_str().expect("a UTF-8 temporary path");
    let exit = run_gateway(&["--config", path], &[]);
    assert_rejected(&exit, "body_limit");
}

#[test]
fn the_binary_rejects_an_unknown_environment_variable() {
    let exit = run_gateway(&[], &[("GATEWAY_HTTP__BODY_LIMIT", "10")]);
    assert_rejected(&exit, "body_limit");
}
