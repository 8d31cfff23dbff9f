//! The binary's JSON log lines (`[log] format = "json"`, docs/operations.md#logs): every line is
//! one JSON object, and a request's access line carries its request ID, method, path and status.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

/// How long the gateway may take to log the next line; generous for loaded CI machines.
const WITHIN: Duration = Duration::from_secs(30);
/// Lines read before giving up on the one awaited.
const LINES_MAX: usize = 200;

/// The gateway binary, killed when dropped.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn json_logs_are_one_object_a_line_and_the_access_line_names_the_request() {
    let mut command = support::gateway_binary();
    command
        .env("GATEWAY_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut gateway = Gateway(command.spawn().expect("the gateway binary runs"));
    let stdout = gateway.0.stdout.take().expect("stdout is piped");
    // Lines are read on a thread, so every wait below is bounded.
    let (sender, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    // The next line logged with `message`; every line before it must be JSON too.
    let awaited = |message: &str| -> Value {
        for _ in 0..LINES_MAX {
            let line = lines
                .recv_timeout(WITHIN)
                .unwrap_or_else(|_| panic!("the gateway logs {message:?} in time"));
            let json: Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
            if json["message"] == message {
                return json;
            }
        }
        panic!("no {message:?} in {LINES_MAX} lines");
    };

    let listening = awaited("gateway listening");
    let api = listening["api"]
        .as_str()
        .expect("the API address is logged");
    let mut stream = TcpStream::connect(api).expect("the API port accepts");
    stream
        .write_all(
            b"GET /api/nowhere?secret=1 HTTP/1.1\r\nHost: gateway\r\nx-request-id: log-test-1\r\n\
              Connection: close\r\n\r\n",
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    let served = awaited("served");
    assert_eq!(served["request_id"], "log-test-1", "{served}");
    assert_eq!(served["method"], "GET");
    assert_eq!(served["path"], "/api/nowhere", "never the query: {served}");
    assert_eq!(served["status"], 404);
    assert_eq!(served["error_code"], "not_found");
    assert_eq!(served["level"], "INFO");
    assert!(served["latency_us"].is_u64(), "{served}");
    assert!(served["timestamp"].is_string(), "{served}");
}
