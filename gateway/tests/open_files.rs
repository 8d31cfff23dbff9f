//! The gateway binary under low open-file limits, each in a child process started through `sh`
//! with `ulimit` (the limits of this test process stay as they are):
//!
//! - a low soft limit is raised to the hard one, and the connection cap derived from it, so two
//!   clients are served where the cap used to be one;
//! - a limit too low for the floor refuses to start, naming the setting;
//! - at the cap, the excess is refused with 503 while the health and metrics ports answer;
//! - out of descriptors (a cap set above what the limit holds), the listener backs off and logs
//!   once per interval, not once per attempt, and serves again once descriptors are freed.
//!
//! No backend runs: the answers used are the gateway's own (401 without a token, the health
//! and metrics ports, the 503 refusal).

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::Instant,
};

/// A gateway binary running in a child process with `ulimit` applied; killed on drop.
struct Gateway {
    child: Child,
    /// Every line it has logged so far (stdout and stderr).
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading its output; they end when it exits.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes terminal colour codes, which the log may carry.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Gateway {
    /// Starts the binary after `ulimit_commands` (e.g. `ulimit -Sn 1024 && ulimit -Hn 4096`: the soft limit
    /// first, as a hard limit below the soft one is refused), on
    /// loopback ports chosen by the kernel, with `env` as extra `GATEWAY_*` settings.
    fn start(ulimit_commands: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{ulimit_commands} && exec \"$0\""))
            .arg(env!("CARGO_BIN_EXE_gateway"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for port in ["API", "WEBSOCKET", "HEALTH", "METRICS"] {
            command.env(format!("GATEWAY_LISTEN__{port}"), "127.0.0.1:0");
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("sh starts the gateway binary");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let pipes = [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ];
        let readers = pipes
            .into_iter()
            .map(|pipe| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        lines
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(plain(&line));
                    }
                })
            })
            .collect();
        Self {
            child,
            lines,
            readers,
        }
    }

    /// The lines logged so far that contain `needle`.
    fn logged(&self, needle: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits (bounded) for a line containing `needle`; panics with the whole log otherwise.
    async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.logged(needle).into_iter().next() {
                return line;
            }
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "no line with {needle:?} (exit: {exited:?}); log:\n{}",
                    self.lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the "gateway listening" line; the addresses of the API, health and metrics
    /// ports.
    async fn addresses(&mut self) -> (SocketAddr, SocketAddr, SocketAddr) {
        let line = self.wait_for("gateway listening").await;
        let field = |name: &str| -> SocketAddr {
            let start = line.find(&format!("{name}=")).expect("field in the line") + name.len() + 1;
            line[start..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (field("api"), field("health"), field("metrics"))
    }

    /// Waits (bounded) for the process to exit; its exit code and its whole log.
    async fn exit(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Its output is closed: the readers end once they have taken the last lines.
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (
            status.code(),
            self.lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .join("\n"),
        )
    }
}

/// Sends one request for `path` on `stream`, keeping the connection open; the status code.
async fn request(stream: &mut TcpStream, path: &str) -> u16 {
    let head = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "closed before an answer");
            answer.extend_from_slice(&buffer[..read]);
        }
    })
    .await
    .expect("an answer within 5 s");
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("an HTTP status")
}

/// A `GET` on a connection of its own; the status code.
async fn status_of(address: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    request(&mut stream, path).await
}

#[tokio::test]
async fn a_low_soft_limit_is_raised_and_the_cap_derived_from_the_hard_one() {
    let mut gateway = Gateway::start("ulimit -Sn 1024 && ulimit -Hn 4096", &[]);
    let (api, _, _) = gateway.addresses().await;
    let line = gateway.wait_for("connection cap derived").await;
    for field in [
        "open_files_limit=4096",
        "raised_from=1024",
        "connections_max=3072",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    // The new user's case: one client holds a keep-alive connection, a second one is served
    // too (no token: 401 from the gateway itself, not 503 too_many_connections).
    let mut first = TcpStream::connect(api).await.unwrap();
    assert_eq!(request(&mut first, "/api/projects").await, 401);
    let mut second = TcpStream::connect(api).await.unwrap();
    assert_eq!(request(&mut second, "/api/projects").await, 401);
}

#[tokio::test]
async fn a_limit_too_low_for_the_floor_refuses_to_start_naming_the_setting() {
    // 160 descriptors, less a quarter kept back, leave 120 connections: below the floor of 128.
    let mut gateway = Gateway::start("ulimit -n 160", &[]);
    let (code, log) = gateway.exit().await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("http.connections_max"), "{log}");
    assert!(log.contains("open-file limit of 160"), "{log}");
    assert!(!log.contains("gateway listening"), "{log}");
}

/// Opens `count` connections to `address` and keeps them; the ones the gateway refused (503,
/// then closed) are counted and dropped.
async fn hold_connections(address: SocketAddr, count: usize) -> (Vec<TcpStream>, usize) {
    let mut streams = Vec::new();
    for _ in 0..count {
        streams.push(TcpStream::connect(address).await.unwrap());
    }
    // A refused connection gets its answer at once; an admitted one hears nothing until it
    // sends a request.
    let answers = futures::future::join_all(streams.into_iter().map(|mut stream| async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer));
        match read.await {
            Ok(_) => {
                let answer = String::from_utf8_lossy(&answer).into_owned();
                assert!(
                    answer.starts_with("HTTP/1.1 503 ") && answer.contains("too_many_connections"),
                    "{answer}"
                );
                None
            }
            Err(_) => Some(stream),
        }
    }))
    .await;
    let refused = answers.iter().filter(|held| held.is_none()).count();
    (answers.into_iter().flatten().collect(), refused)
}

#[tokio::test]
async fn at_the_cap_the_excess_is_refused_while_health_and_metrics_answer() {
    let mut gateway = Gateway::start(
        "ulimit -n 512",
        &[
            ("GATEWAY_HTTP__CONNECTIONS_MAX", "100"),
            ("GATEWAY_HTTP__HEADER_READ_TIMEOUT_MS", "60000"),
        ],
    );
    let (api, health, metrics) = gateway.addresses().await;
    let (held, refused) = hold_connections(api, 130).await;
    assert_eq!((held.len(), refused), (100, 30));
    assert_eq!(status_of(health, "/health/live").await, 200);
    assert_eq!(status_of(metrics, "/metrics").await, 200);
    assert!(gateway.logged("accept failed").is_empty());
}

#[tokio::test]
async fn out_of_descriptors_the_listener_backs_off_and_logs_once_per_interval() {
    // A cap above what 64 descriptors hold: the kernel, not the cap, runs out first.
    let mut gateway = Gateway::start(
        "ulimit -n 64",
        &[
            ("GATEWAY_HTTP__CONNECTIONS_MAX", "1000"),
            ("GATEWAY_HTTP__HEADER_READ_TIMEOUT_MS", "60000"),
        ],
    );
    let (api, health, _) = gateway.addresses().await;
    gateway
        .wait_for("more than the open-file limit leaves")
        .await;
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(TcpStream::connect(api).await.unwrap());
    }
    gateway.wait_for("accept failed").await;
    // Two seconds of pressure: retrying every 50 ms, as before, logged about 40 lines here.
    let pressure_ends = Instant::now() + Duration::from_secs(2);
    tokio::time::sleep_until(pressure_ends).await;
    let failures = gateway.logged("accept failed");
    assert!(failures.len() <= 2, "{failures:#?}");

    // Descriptors freed: the gateway serves again within its longest pause.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::time::timeout(Duration::from_secs(1), status_of(health, "/health/live"))
        .await
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "the health port never answered again"
        );
    }
    gateway.wait_for("accepting connections again").await;
}
