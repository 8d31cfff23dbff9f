//! Without a reachable Docker and without `REDIS_TEST_LOCAL=1`, `TestRedis::start` fails with a
//! message that says how to provide Docker; it never skips silently.
//!
//! Environment variables are process-global and testcontainers reads `DOCKER_HOST` itself, so the
//! check runs in a child process: this test binary, re-run with only the ignored child test, with
//! `DOCKER_HOST` pointing at a port where nothing listens.

use std::process::Command;

use redis_harness::{HarnessSettings, TestRedis};

/// Marks the child process, so the child test cannot pass by accident when run on its own.
const CHILD_MARKER: &str = "REDIS_HARNESS_NO_DOCKER_CHILD";

#[test]
fn start_without_docker_fails_with_instructions() {
    run_child_and_check();
}

/// Re-runs this binary with only `child_start_without_docker`, in the environment it needs.
fn run_child_and_check() {
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_start_without_docker",
            "--nocapture",
        ])
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .env_remove("REDIS_TEST_LOCAL")
        .env(CHILD_MARKER, "1")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run\nstdout:\n{stdout}"
    );
}

#[tokio::test]
#[ignore = "run by start_without_docker_fails_with_instructions in a child process"]
async fn child_start_without_docker() {
    if std::env::var(CHILD_MARKER).as_deref() != Ok("1") {
        // Run directly (e.g. `--include-ignored`): do the real check through a child process
        // rather than test whatever Docker this process happens to see.
        run_child_and_check();
        return;
    }
    let settings = HarnessSettings {
        local_fallback: false,
        ..HarnessSettings::from_env()
    };
    let error = match TestRedis::start_with(settings).await {
        Ok(redis) => panic!("started at {} with an unreachable Docker", redis.address()),
        Err(error) => error.to_string(),
    };
    println!("start_with failed as expected:\n{error}");
    assert!(error.contains("ci/docker-engine.sh"), "{error}");
    assert!(error.contains("ci/redis-image.sh"), "{error}");
    assert!(error.contains("REDIS_TEST_LOCAL=1"), "{error}");
}
